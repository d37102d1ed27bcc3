"""The README's quick start runs as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.testing import RecordingRuntime, assert_progress_monotonic

README = Path(__file__).resolve().parents[1] / 'README.md'


def quick_start() -> str:
    text = README.read_text(encoding='utf-8')
    return re.findall(r'```python\n(.*?)```', text, re.S)[0]


def test_the_quick_start_uploads_and_rolls_back(tmp_path: Path) -> None:
    namespace: dict[str, object] = {'__name__': 'quick_start'}
    exec(compile(quick_start(), str(README), 'exec', dont_inherit=True), namespace)
    action = namespace['MyUpload']
    files = []
    for name in ('a.txt', 'b.txt'):
        (tmp_path / name).write_text(name)
        files.append(str(tmp_path / name))
    client = LocalBackendClient(tmp_path / 'store')
    runtime = RecordingRuntime(client)
    result = action.dispatch({'paths': files}, runtime)  # type: ignore[attr-defined]
    assert result['steps'] == {'upload': {'count': 2}}
    assert sorted(f['name'] for f in client.list_files()) == ['a.txt', 'b.txt']
    assert_progress_monotonic(runtime.memory)

    # a missing file fails the step halfway: what it uploaded is deleted again
    failing = RecordingRuntime(client)
    try:
        action.dispatch({'paths': [files[0], str(tmp_path / 'missing.txt')]}, failing)  # type: ignore[attr-defined]
    except RuntimeError as error:
        assert "Step 'upload' failed: SourceFileError" in str(error)
    else:
        raise AssertionError('the upload of a missing file should fail')
    assert len(client.list_files()) == 2


def fenced(language: str) -> list[str]:
    return re.findall(rf'```{language}\n(.*?)```', README.read_text(encoding='utf-8'), re.S)


def test_the_quick_start_plugin_folder_runs_from_the_command_line(tmp_path: Path) -> None:
    """plugin.py + the README's config.yaml, then its first command, as written."""
    plugin = tmp_path / 'my_plugin'
    plugin.mkdir()
    (plugin / 'plugin.py').write_text(quick_start(), encoding='utf-8')
    [config] = fenced('yaml')
    (plugin / 'config.yaml').write_text(config, encoding='utf-8')
    (tmp_path / 'a.txt').write_text('hello', encoding='utf-8')
    command = next(
        shlex.split(line, comments=True)
        for line in fenced('bash')[1].splitlines()
        if line.startswith('synapse plugin run') and '--mode' not in line
    )
    synapse = Path(sys.executable).parent / 'synapse'
    env = {**os.environ, 'SYNAPSE_HOME': str(tmp_path / 'home'), 'NO_COLOR': '1'}
    done = subprocess.run(
        [str(synapse), *command[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result['success'] is True and result['steps'] == {'upload': {'count': 1}}
    stored = LocalBackendClient(tmp_path / 'home' / 'storage').list_files()
    assert [f['name'] for f in stored] == ['a.txt']
