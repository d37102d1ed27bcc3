"""SIGINT / SIGTERM to ``synapse plugin run``: cancel, roll back, exit 130 / 143.

The run is a real subprocess (``python -m synapse_sdk.cli``) with ``SYNAPSE_HOME``
in tmp_path. The test watches the journal (``runs.db``) with a connection of its
own and signals the process once the upload step has stored something.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.clients import LocalBackendClient

from .conftest import EXAMPLE, cli_env, make_files, synapse, synapse_command, try_peek, wait_for

pytestmark = pytest.mark.skipif(not hasattr(signal, 'SIGKILL'), reason='POSIX signals')


class Run:
    """``synapse plugin run`` in the background, its output going to files."""

    def __init__(
        self, home: Path, plugin: Path, action: str, params: dict[str, Any], **env: str
    ) -> None:
        self.home = home
        self.db = home / 'runs.db'
        self.out = home.parent / f'{action}.stdout'
        self.err = home.parent / f'{action}.stderr'
        with self.out.open('wb') as out, self.err.open('wb') as err:
            self.process = subprocess.Popen(
                synapse_command(
                    'plugin', 'run', action, '--path', plugin, '--params', json.dumps(params)
                ),
                stdout=out,
                stderr=err,
                cwd=home.parent,
                env=cli_env(home, **env),
            )

    def wait_until(self, condition: Any, what: str, timeout: float = 30.0) -> Any:
        def check() -> Any:
            if self.process.poll() is not None:
                pytest.fail(
                    f'the run exited ({self.process.returncode}) before {what}:\n{self.stderr}'
                )
            return condition()

        return wait_for(check, timeout, what)

    def finish(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f'the run did not stop within {timeout}s:\n{self.stderr}')

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def stderr(self) -> str:
        return self.err.read_text(encoding='utf-8', errors='replace')

    def run_id(self) -> str | None:
        rows = try_peek(self.db, 'SELECT id FROM runs')
        return rows[0][0] if rows else None

    def step_status(self, name: str) -> str | None:
        rows = try_peek(self.db, 'SELECT status FROM steps WHERE name = ?', (name,))
        return rows[0][0] if rows else None

    def rollback_items(self) -> int:
        rows = try_peek(self.db, 'SELECT COUNT(*) FROM rollback_items')
        return rows[0][0] if rows else 0


def show(home: Path, run_id: str) -> dict[str, Any]:
    done = synapse(home, 'runs', 'show', run_id, '--json')
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def stored_files(home: Path) -> list[dict[str, Any]]:
    return list(LocalBackendClient(home / 'storage').list_files())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / 'home'


@pytest.mark.parametrize(('signame', 'exit_code'), [('SIGINT', 130), ('SIGTERM', 143)])
def test_a_signal_during_the_upload_cancels_and_rolls_back(
    home: Path, tmp_path: Path, signame: str, exit_code: int
) -> None:
    source = tmp_path / 'source'
    make_files(source, 400)
    run = Run(home, EXAMPLE, 'upload', {'source_path': str(source)})
    try:
        run.wait_until(
            lambda: run.step_status('upload_files') == 'started' and run.rollback_items() >= 3,
            'the upload to have stored some files',
        )
        run.process.send_signal(getattr(signal, signame))
        code = run.finish()
    finally:
        run.kill()

    stderr = run.stderr
    assert code == exit_code, stderr
    assert f'the run was cancelled ({signame})' in stderr
    assert 'Traceback' not in stderr
    run_id = run.run_id()
    assert run_id is not None and f'synapse runs show {run_id}' in stderr

    record = show(home, run_id)
    assert record['status'] == 'cancelled'
    assert record['error'] == f'cancelled: the run was cancelled ({signame})'
    assert record['ended_at'] is not None
    statuses = {step['name']: step['status'] for step in record['steps']}
    assert statuses == {
        'discover_files': 'rolled_back',
        'upload_files': 'rolled_back',
        'finalize': 'pending',
    }
    assert stored_files(home) == []  # every file the run stored was removed again


SLOW_PLUGIN_CONFIG = """\
name: Slow Rollback
code: slow_rollback
version: 0.1.0
category: upload
description: Uploads a few files, waits to be cancelled; its rollback is slow.
actions:
  upload:
    entrypoint: slow_rollback_plugin:SlowRollbackAction
"""

SLOW_PLUGIN = '''\
"""Uploads files, then waits (cooperatively) to be cancelled; its rollback takes a while.

Markers (files in params.marker_dir) tell the test where the run is:
``uploaded`` once every file is stored, ``rollback-started`` when the rollback begins.
The rollback sleeps ``SLOW_ROLLBACK_DELAY`` seconds (environment) per file.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from synapse_sdk.clients import FileNotFoundInStorageError
from synapse_sdk.plugins.actions import ActionContext, BaseAction
from synapse_sdk.plugins.steps import BaseStep, StepRegistry, StepResult


class Params(BaseModel):
    source_path: str
    marker_dir: str


@dataclass(kw_only=True)
class Context(ActionContext):
    pass


def mark(context: Context, name: str) -> None:
    Path(context.params['marker_dir'], name).write_text('x', encoding='utf-8')


class PrepareStep(BaseStep[Context]):
    name = 'prepare'
    progress_weight = 1.0

    def execute(self, context: Context) -> StepResult:
        return StepResult()


class UploadStep(BaseStep[Context]):
    name = 'upload'
    progress_weight = 8.0

    def execute(self, context: Context) -> StepResult:
        files = sorted(Path(context.params['source_path']).iterdir())
        run_id = context.runtime_ctx.run_id
        for i, path in enumerate(files):
            key = f'{run_id}:{path.name}'
            context.append_rollback('keys', key)
            context.client.upload_file(path, key=key)
            context.set_progress(i + 1, len(files) + 1)
        mark(context, 'uploaded')
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # "the rest of the work": until cancelled
            context.raise_if_cancelled()
            time.sleep(0.01)
        return StepResult()

    def rollback(self, context: Context, result: StepResult) -> None:
        mark(context, 'rollback-started')
        delay = float(os.environ.get('SLOW_ROLLBACK_DELAY', '0'))
        for key in result.rollback_data.get('keys', []):
            time.sleep(delay)
            found = context.client.find_file(key)
            if found is not None:
                try:
                    context.client.delete_file(found)
                except FileNotFoundInStorageError:
                    pass


class SlowRollbackAction(BaseAction[Params]):
    context_class: ClassVar[Any] = Context

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(PrepareStep())
        registry.register(UploadStep())
'''


def slow_plugin(tmp_path: Path, files: int) -> tuple[Path, Path, Path]:
    """The slow-rollback plugin, a source folder of ``files`` files, a marker folder."""
    plugin = tmp_path / 'slow_plugin'
    plugin.mkdir()
    (plugin / 'config.yaml').write_text(SLOW_PLUGIN_CONFIG, encoding='utf-8')
    (plugin / 'slow_rollback_plugin.py').write_text(SLOW_PLUGIN, encoding='utf-8')
    source = tmp_path / 'source'
    make_files(source, files)
    markers = tmp_path / 'markers'
    markers.mkdir()
    return plugin, source, markers


def crashed_upload(home: Path, tmp_path: Path, files: int) -> tuple[str, Path]:
    """The slow-rollback plugin's upload, SIGKILLed once it has stored its files:
    (run id, marker folder)."""
    plugin, source, markers = slow_plugin(tmp_path, files)
    params = {'source_path': str(source), 'marker_dir': str(markers)}
    run = Run(home, plugin, 'upload', params)
    try:
        run.wait_until(lambda: (markers / 'uploaded').exists(), 'the upload')
        run.process.send_signal(signal.SIGKILL)  # a crash: everything left to recovery
        run.finish()
    finally:
        run.kill()
    run_id = run.run_id()
    assert run_id is not None
    assert len(stored_files(home)) == files
    return run_id, markers


def interrupt_recovery(
    home: Path, tmp_path: Path, verb: str, run_id: str, ready: Path, **env: str
) -> tuple[int, str]:
    """``synapse runs VERB RUN_ID``, sent SIGINT once ``ready`` exists: (exit code, stderr)."""
    err = tmp_path / f'{verb}.stderr'
    with err.open('wb') as stderr:
        process = subprocess.Popen(
            synapse_command('runs', verb, run_id),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=cli_env(home, **env),
        )
    try:
        wait_for(ready.exists, 30, f'{ready.name} during runs {verb}')
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    return code, err.read_text(encoding='utf-8')


def test_a_second_signal_during_rollback_leaves_the_rest_for_runs_rollback(
    home: Path, tmp_path: Path
) -> None:
    plugin, source, markers = slow_plugin(tmp_path, 6)

    params = {'source_path': str(source), 'marker_dir': str(markers)}
    run = Run(home, plugin, 'upload', params, SLOW_ROLLBACK_DELAY='0.2')
    try:
        run.wait_until(lambda: (markers / 'uploaded').exists(), 'the upload')
        run.process.send_signal(signal.SIGINT)
        run.wait_until(lambda: (markers / 'rollback-started').exists(), 'the rollback to begin')
        run.process.send_signal(signal.SIGINT)
        code = run.finish()
    finally:
        run.kill()

    stderr = run.stderr
    assert code == 130, stderr
    assert 'Traceback' not in stderr
    run_id = run.run_id()
    assert run_id is not None
    assert f'synapse runs rollback {run_id}' in stderr

    record = show(home, run_id)
    assert record['status'] == 'cancelled'
    assert f'synapse runs rollback {run_id}' in record['error']
    assert 'interrupted during rollback' in record['error']
    left = stored_files(home)
    assert 0 < len(left) <= 6, left  # the rollback was cut short

    done = synapse(home, 'runs', 'rollback', run_id)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report['status'] == 'rolled_back' and report['errors'] == []
    assert report['rolled_back'] == ['upload', 'prepare']
    assert stored_files(home) == []
    assert show(home, run_id)['status'] == 'rolled_back'

    again = synapse(home, 'runs', 'rollback', run_id)  # safe to repeat
    assert again.returncode == 0, again.stderr
    assert stored_files(home) == []


def test_ctrl_c_during_runs_rollback_leaves_the_rest_pending(home: Path, tmp_path: Path) -> None:
    run_id, markers = crashed_upload(home, tmp_path, 6)
    code, message = interrupt_recovery(
        home, tmp_path, 'rollback', run_id, markers / 'rollback-started', SLOW_ROLLBACK_DELAY='0.3'
    )
    assert code == 130, message
    assert 'Traceback' not in message
    assert f'rollback interrupted; the rest is pending: synapse runs rollback {run_id}' in message
    record = show(home, run_id)
    assert record['status'] == 'cancelled'
    assert 0 < len(stored_files(home)) <= 6

    done = synapse(home, 'runs', 'rollback', run_id)
    assert done.returncode == 0, done.stderr
    assert stored_files(home) == []
    assert show(home, run_id)['status'] == 'rolled_back'


def test_ctrl_c_during_runs_resume_cancels_it_with_rollback(home: Path, tmp_path: Path) -> None:
    run_id, markers = crashed_upload(home, tmp_path, 4)
    (markers / 'uploaded').unlink()
    code, message = interrupt_recovery(home, tmp_path, 'resume', run_id, markers / 'uploaded')
    assert code == 130, message
    assert 'Traceback' not in message
    assert 'StepCancelled: the run was cancelled (SIGINT)' in message
    assert show(home, run_id)['status'] == 'cancelled'
    assert stored_files(home) == []  # the resumed step was rolled back on the way out


def test_ctrl_c_while_resume_undoes_the_cut_off_step_cancels_it_with_rollback(
    home: Path, tmp_path: Path
) -> None:
    """Before any step runs again: the steps the crashed run had finished are undone too
    (their journal records say so), not left looking as if they had never run."""
    run_id, markers = crashed_upload(home, tmp_path, 4)
    (markers / 'uploaded').unlink()
    code, message = interrupt_recovery(
        home, tmp_path, 'resume', run_id, markers / 'rollback-started', SLOW_ROLLBACK_DELAY='0.2'
    )
    assert code == 130, message
    assert 'Traceback' not in message
    record = show(home, run_id)
    assert record['status'] == 'cancelled'
    assert {step['name']: step['status'] for step in record['steps']} == {
        'prepare': 'rolled_back',
        'upload': 'rolled_back',
    }
    assert stored_files(home) == []
    assert not (markers / 'uploaded').exists()  # the upload did not run again
