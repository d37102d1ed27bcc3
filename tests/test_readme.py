"""The README's quick start runs as written, and what it says about it is true."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.clients._local import StrPath
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.testing import FakeClock, RecordingRuntime, assert_progress_monotonic

README = Path(__file__).resolve().parents[1] / 'README.md'
SYNAPSE = Path(sys.executable).parent / 'synapse'


def fenced(language: str) -> list[str]:
    return re.findall(rf'```{language}\n(.*?)```', README.read_text(encoding='utf-8'), re.S)


def quick_start() -> str:
    return fenced('python')[0]


def quick_start_action() -> Any:
    namespace: dict[str, object] = {'__name__': 'quick_start'}
    exec(compile(quick_start(), str(README), 'exec', dont_inherit=True), namespace)
    return namespace['MyUpload']


def plugin_folder(where: Path) -> Path:
    """``my_plugin``: the quick start's plugin.py and config.yaml, as the README says."""
    plugin = where / 'my_plugin'
    plugin.mkdir()
    (plugin / 'plugin.py').write_text(quick_start(), encoding='utf-8')
    [config] = fenced('yaml')
    (plugin / 'config.yaml').write_text(config, encoding='utf-8')
    return plugin


def synapse(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, 'SYNAPSE_HOME': str(home), 'NO_COLOR': '1'}
    return subprocess.run(
        [str(SYNAPSE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_quick_start_uploads_and_rolls_back(tmp_path: Path) -> None:
    action = quick_start_action()
    files = []
    for name in ('a.txt', 'b.txt'):
        (tmp_path / name).write_text(name)
        files.append(str(tmp_path / name))
    client = LocalBackendClient(tmp_path / 'store')
    runtime = RecordingRuntime(client, run_id='run-1')
    result = action.dispatch({'paths': files}, runtime)
    assert result['steps'] == {'upload': {'count': 2}}
    assert sorted(f['name'] for f in client.list_files()) == ['a.txt', 'b.txt']
    assert_progress_monotonic(runtime.memory)

    # a missing file fails the step halfway: what it uploaded is deleted again
    failing = RecordingRuntime(client, run_id='run-2')
    with pytest.raises(RuntimeError, match="Step 'upload' failed: SourceFileError"):
        action.dispatch({'paths': [files[0], str(tmp_path / 'missing.txt')]}, failing)
    assert sorted(f['name'] for f in client.list_files()) == ['a.txt', 'b.txt']


class LosesReplies(LocalBackendClient):
    """Stores the file, then loses the reply (``ConnectionError``) ``times`` times for ``name``:
    the window between the upload and the step's record of it."""

    def __init__(self, root: Path, name: str, times: int) -> None:
        super().__init__(root)
        self.name, self.times = name, times

    def upload_file(self, path: StrPath, *, key: str | None = None) -> int:
        file_id = super().upload_file(path, key=key)
        if Path(path).name == self.name and self.times > 0:
            self.times -= 1
            raise ConnectionError('connection reset after the file was stored')
        return file_id


@pytest.mark.parametrize(
    ('lost', 'stored'),
    [
        pytest.param(1, ['a.txt', 'b.txt'], id='retried-no-duplicate'),
        pytest.param(3, [], id='given-up-no-orphan'),
    ],
)
def test_an_upload_whose_reply_is_lost_is_neither_duplicated_nor_orphaned(
    tmp_path: Path, lost: int, stored: list[str]
) -> None:
    action = quick_start_action()
    files = []
    for name in ('a.txt', 'b.txt'):
        (tmp_path / name).write_text(name)
        files.append(str(tmp_path / name))
    client = LosesReplies(tmp_path / 'store', 'b.txt', lost)
    runtime = RecordingRuntime(client, sleep=FakeClock().sleep)
    try:
        action.dispatch({'paths': files}, runtime)
    except RuntimeError as error:
        assert stored == [], error  # only the run that gave up may fail
    assert sorted(f['name'] for f in client.list_files()) == stored


KILLED_RUN = """
import os, signal, sys
from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.execution import run_action
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.actions import ActionOrigin
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

class DiesAfterStoring(LocalBackendClient):
    def upload_file(self, path, *, key=None):
        file_id = super().upload_file(path, key=key)
        if path.endswith('b.txt'):
            os.kill(os.getpid(), signal.SIGKILL)  # stored; the step never hears of it
        return file_id

folder = sys.argv[1]
action = Plugin.load(folder).load_action('upload')
runtime = RuntimeContext(logger=MemoryLogger(), client=DiesAfterStoring(), run_id='killed')
run_action(
    action, {'paths': ['a.txt', 'b.txt']}, runtime, journal=Journal(),
    origin=ActionOrigin(folder, 'upload'),
)
"""


def test_a_run_killed_right_after_an_upload_is_rolled_back_completely(tmp_path: Path) -> None:
    """The README's claim: what the step stored is known to the journal even after a kill."""
    plugin = plugin_folder(tmp_path)
    home = tmp_path / 'home'
    for name in ('a.txt', 'b.txt'):
        (tmp_path / name).write_text(name)
    env = {**os.environ, 'SYNAPSE_HOME': str(home)}
    killed = subprocess.run(
        [sys.executable, '-c', KILLED_RUN, str(plugin)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    storage = LocalBackendClient(home / 'storage')
    assert sorted(f['name'] for f in storage.list_files()) == ['a.txt', 'b.txt']

    undone = synapse(tmp_path, home, 'runs', 'rollback', 'killed')

    assert undone.returncode == 0, undone.stderr
    assert storage.list_files() == []
    assert Journal(home / 'runs.db').get_run('killed').status == 'rolled_back'


def test_the_quick_start_plugin_folder_runs_from_the_command_line(tmp_path: Path) -> None:
    """plugin.py + the README's config.yaml, then its first command, as written."""
    plugin_folder(tmp_path)
    (tmp_path / 'a.txt').write_text('hello', encoding='utf-8')
    command = next(
        shlex.split(line, comments=True)
        for line in fenced('bash')[1].splitlines()
        if line.startswith('synapse plugin run') and '--mode' not in line
    )
    done = synapse(tmp_path, tmp_path / 'home', *command[1:])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result['success'] is True and result['steps'] == {'upload': {'count': 1}}
    stored = LocalBackendClient(tmp_path / 'home' / 'storage').list_files()
    assert [f['name'] for f in stored] == ['a.txt']


def dispatch_paragraph() -> str:
    text = README.read_text(encoding='utf-8')
    start = text.index('From Python, `MyUpload.dispatch(')
    return text[start : text.index('\n\n', start)]


def test_dispatch_returns_what_the_command_prints_but_what_the_readme_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both runs of the same params; every difference in their results is named in the README,
    and so are the command's journal and log file, which dispatch does not write."""
    plugin = plugin_folder(tmp_path)
    home = tmp_path / 'home'
    (tmp_path / 'a.txt').write_text('hello', encoding='utf-8')
    params = '{"paths": ["a.txt"]}'
    done = synapse(
        tmp_path, home, 'plugin', 'run', 'upload', '--path', str(plugin), '--params', params
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)

    monkeypatch.setenv('SYNAPSE_HOME', str(home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'path', list(sys.path))  # the loader puts the plugin folder first
    try:
        action = Plugin.load(plugin).load_action('upload')
    finally:
        sys.modules.pop('plugin', None)  # the module was imported from tmp_path
    returned = action.dispatch({'paths': ['a.txt']})  # as the README writes it

    paragraph = dispatch_paragraph()
    missing = object()
    differing = sorted(
        key
        for key in printed.keys() | returned.keys()
        if printed.get(key, missing) != returned.get(key, missing)
    )
    for key in differing:
        assert f'`{key}`' in paragraph, f'the README does not say that {key!r} differs'
    assert differing == ['run_id']  # each run has its own id; nothing else differs
    # one journaled run and one log file: the command's
    [run] = Journal(home / 'runs.db').list_runs()
    assert run.status == 'succeeded'
    assert '`$SYNAPSE_HOME/logs/RUN_ID.jsonl`' in paragraph
    assert sorted(p.name for p in (home / 'logs').iterdir()) == [f'{run.id}.jsonl']
    assert len(LocalBackendClient(home / 'storage').list_files()) == 2  # the same storage
