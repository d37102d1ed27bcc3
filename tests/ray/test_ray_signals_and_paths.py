"""Signals and relative paths on the Ray path.

- SIGTERM to ``synapse plugin run --mode ray`` cancels and rolls back (exit 143):
  ``ray.init`` must not keep the SIGTERM handler it installs over ours;
- a ``RayExecutor.run`` caller keeps the handler it had installed;
- ``context.map(..., backend='ray')`` items see the caller's cwd, so relative
  paths mean there what they mean to the step that fanned out;
- the CLI names an interrupt that carries no message by its type.

The signal tests run a fresh process (Ray is already up in this one, and
``ray.init`` is what takes the handler).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.cli.main import _describe_interrupt
from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.execution import LocalExecutor
from synapse_sdk.execution._on_ray import RayExecutor
from synapse_sdk.journal import Journal
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

REPO = Path(__file__).resolve().parents[2]
SYNAPSE = str(Path(sys.executable).parent / 'synapse')
EXAMPLE = REPO / 'examples' / 'file_upload'


def env_for(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env['SYNAPSE_HOME'] = str(home)
    env['PYTHONDONTWRITEBYTECODE'] = '1'  # no __pycache__ in the repository's example
    env['COLUMNS'] = '200'
    for name in ('FORCE_COLOR', 'TTY_COMPATIBLE', 'TTY_INTERACTIVE', 'RAY_ADDRESS'):
        env.pop(name, None)
    return env


def peek(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """The journal as another process sees it; [] while it is not there yet."""
    if not db.exists():
        return []
    try:
        connection = sqlite3.connect(db, timeout=5.0, isolation_level=None)
        try:
            return connection.execute(sql).fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return []


def wait_for(process: subprocess.Popen[bytes], condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 120  # Ray starts first: 8-10 s alone, more on a busy machine
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f'the process exited ({process.returncode}) before {what}')
        if condition():
            return
        time.sleep(0.02)
    pytest.fail(f'timed out waiting for {what}')


def finish(process: subprocess.Popen[bytes], timeout: float = 90) -> int:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f'the process did not stop within {timeout}s')


# --- 1. SIGTERM under --mode ray ------------------------------------------------
def uploading(db: Path) -> bool:
    """``upload_files`` is running and has recorded a few uploads."""
    step = peek(db, "SELECT status FROM steps WHERE name = 'upload_files'")
    recorded = peek(db, 'SELECT COUNT(*) FROM rollback_items')
    return step == [('started',)] and bool(recorded) and recorded[0][0] >= 3


def test_sigterm_under_ray_mode_cancels_rolls_back_and_exits_143(tmp_path: Path) -> None:
    home = tmp_path / 'home'
    source = tmp_path / 'big'
    source.mkdir()
    for i in range(2000):  # the upload takes a few seconds: time to signal it mid-step
        (source / f'f{i:04d}.txt').write_text(f'file {i}\n', encoding='utf-8')
    db = home / 'runs.db'
    params = json.dumps({'source_path': str(source)})
    err = tmp_path / 'stderr'
    with err.open('wb') as stderr:
        process = subprocess.Popen(
            [SYNAPSE, 'plugin', 'run', 'upload', '--path', str(EXAMPLE), '--params', params]
            + ['--mode', 'ray'],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=tmp_path,
            env=env_for(home),
        )
    try:
        wait_for(process, lambda: uploading(db), 'the upload to have stored some files')
        process.send_signal(signal.SIGTERM)
        code = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    message = err.read_text(encoding='utf-8', errors='replace')
    assert code == 143, message
    assert 'SIGTERM received' not in message  # Ray's handler did not take the signal
    assert 'the run was cancelled (SIGTERM)' in message
    assert 'Traceback' not in message
    (run_id,) = peek(db, 'SELECT id FROM runs')[0]
    record = Journal(db).get_run(run_id)
    assert record.status == 'cancelled'
    steps = {s.name: s.status for s in Journal(db).steps(run_id)}
    assert steps['upload_files'] == 'rolled_back'
    assert list(LocalBackendClient(home / 'storage').list_files()) == []


# --- 1b. a programmatic RayExecutor.run keeps the caller's handler -------------
DRIVER = """\
import os, signal, sys, time
from synapse_sdk.execution._on_ray import RayExecutor
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.actions import ActionOrigin
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.runtime import RuntimeContext

folder, journal = sys.argv[1], sys.argv[2]
seen = []

def mine(signum, frame):
    seen.append(signum)

signal.signal(signal.SIGTERM, mine)
action = Plugin.load(folder).load_action('run')
executor = RayExecutor(num_cpus=1, journal=Journal(journal), console=False)
result = executor.run(
    action, {}, ctx=RuntimeContext(logger=[]), origin=ActionOrigin(folder, 'run')
)
print('handler kept:', signal.getsignal(signal.SIGTERM) is mine, flush=True)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.5)
print('seen:', seen, 'ok:', result['ok'], flush=True)
"""


def test_a_sigterm_handler_installed_before_ray_executor_run_is_still_in_place(
    plugin_factory: Any, tmp_path: Path
) -> None:
    plugin = plugin_factory(
        'noop',
        """\
        from pydantic import BaseModel

        from synapse_sdk.plugins import BaseUploadAction


        class Params(BaseModel):
            pass


        class Action(BaseUploadAction[Params]):
            def execute(self):
                return {'ok': True}
        """,
    )
    script = tmp_path / 'driver.py'
    script.write_text(DRIVER, encoding='utf-8')

    done = subprocess.run(
        [sys.executable, str(script), str(plugin.path), str(tmp_path / 'runs.db')],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env_for(tmp_path / 'home'),
        timeout=180,
    )

    assert done.returncode == 0, done.stderr
    assert 'handler kept: True' in done.stdout, done.stdout + done.stderr
    assert f'seen: [{int(signal.SIGTERM)}] ok: True' in done.stdout, done.stdout + done.stderr
    assert 'SIGTERM received' not in done.stderr


# --- 2. relative paths in context.map(..., backend='ray') -----------------------
@pytest.mark.parametrize('mode', ['local', 'ray'])
def test_ray_map_items_see_relative_paths_as_the_caller_does(
    mode: str, example: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tasks' own cwd (the job's working_dir, or where Ray started) is not the caller's."""
    data = tmp_path / 'data'
    for i in range(5):
        (data / f'part{i % 2}').mkdir(parents=True, exist_ok=True)
        (data / f'part{i % 2}' / f'f{i}.txt').write_text(f'file {i}\n', encoding='utf-8')
    monkeypatch.chdir(tmp_path)
    store = LocalBackendClient(tmp_path / 'store')
    runtime = RuntimeContext(logger=MemoryLogger(), client=store)
    journal = Journal(tmp_path / 'runs.db')
    runner = (
        LocalExecutor(console=False, journal=journal)
        if mode == 'local'
        else RayExecutor(journal=journal, console=False)
    )
    params = {'source_path': 'data', 'parallel': 'ray', 'workers': 2}

    result = runner.run(example.action, params, ctx=runtime, origin=example.origin)

    assert result['steps']['upload_files'] == {'uploaded': 5}
    assert sorted(f['name'] for f in store.list_files()) == [f'f{i}.txt' for i in range(5)]


# --- 3. the CLI's message for an interrupt without a message -------------------
def test_an_interrupt_without_a_message_is_named_by_its_type(tmp_path: Path) -> None:
    journal = Journal(tmp_path / 'runs.db')
    journal.start_run('run-1', entrypoint='x:y', params={})
    journal.set_run_status('run-1', 'cancelled', 'stopped on the driver')

    assert _describe_interrupt(KeyboardInterrupt(), None, None) == 'stopped by KeyboardInterrupt'
    assert _describe_interrupt(KeyboardInterrupt('SIGINT'), None, None) == 'stopped by SIGINT'
    assert _describe_interrupt(KeyboardInterrupt(), journal, 'run-1') == (
        'stopped by KeyboardInterrupt; run run-1 is cancelled (stopped on the driver)'
    )
