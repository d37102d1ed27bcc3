"""``synapse runs resume --mode ray`` and ``RayExecutor.resume``: a crashed run finished on Ray.

The run is killed (SIGKILL) in a ``synapse plugin run`` subprocess; the resume
rebuilds its action from the journal in a Ray worker, reuses the step that
had finished, and runs the rest there, with the events on the driver.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.execution._on_ray import RayExecutor
from synapse_sdk.execution._recovery import RecoveryError
from synapse_sdk.journal import Journal, UnknownRunError
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

SYNAPSE = str(Path(sys.executable).parent / 'synapse')

CONFIG = """\
name: Resumable
code: resumable
version: 0.1.0
category: upload
actions:
  go:
    entrypoint: resumable_plugin:Go
"""

PLUGIN = """\
import os
import signal
from pathlib import Path

from pydantic import BaseModel

from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.testing import FunctionStep


class Params(BaseModel):
    marker: str


def prepare(context):
    return None


def work(context):
    marker = Path(context.params_model.marker)
    if not marker.exists():  # the first run dies here
        marker.write_text('crashed once')
        os.kill(os.getpid(), signal.SIGKILL)
    from synapse_sdk.plugins.steps import StepResult
    return StepResult(data={'pid': os.getpid()})


class Go(BaseUploadAction[Params]):
    def setup_steps(self, registry):
        registry.register(FunctionStep('prepare', execute=prepare))
        registry.register(FunctionStep('work', execute=work))
        registry.register(FunctionStep('finish'))
"""


def env_for(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env['SYNAPSE_HOME'] = str(home)
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    env['COLUMNS'] = '200'
    for name in ('FORCE_COLOR', 'TTY_COMPATIBLE', 'TTY_INTERACTIVE', 'RAY_ADDRESS'):
        env.pop(name, None)
    return env


def synapse(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYNAPSE, *args],
        capture_output=True,
        text=True,
        cwd=home.parent,
        env=env_for(home),
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def crashed(tmp_path: Path) -> tuple[Path, str]:
    """``(home, run id)`` of a run killed in its ``work`` step, ``prepare`` done."""
    folder = tmp_path / 'resumable'
    folder.mkdir()
    (folder / 'config.yaml').write_text(CONFIG, encoding='utf-8')
    (folder / 'resumable_plugin.py').write_text(textwrap.dedent(PLUGIN), encoding='utf-8')
    home = tmp_path / 'home'
    params = json.dumps({'marker': str(tmp_path / 'marker')})
    killed = synapse(home, 'plugin', 'run', 'go', '--path', str(folder), '--params', params)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [run] = Journal(home / 'runs.db').list_runs()
    assert run.status == 'crashed'
    return home, run.id


def test_ray_executor_resumes_a_crashed_run_in_a_worker_reusing_what_it_finished(
    crashed: tuple[Path, str], tmp_path: Path
) -> None:
    home, run_id = crashed
    journal = Journal(home / 'runs.db')
    memory = MemoryLogger()
    runtime = RuntimeContext(
        logger=memory, client=LocalBackendClient(home / 'storage'), run_id=run_id
    )

    result = RayExecutor(journal=journal, console=False).resume(run_id, ctx=runtime)

    assert (result['run_id'], result['success'], result['resumed_from']) == (run_id, True, 'work')
    assert (result['steps_reused'], result['steps_executed']) == (1, 2)
    assert result['steps']['work']['pid'] != os.getpid()  # it ran in a Ray worker
    assert journal.get_run(run_id).status == 'succeeded'
    assert [s.status for s in journal.steps(run_id)] == ['reused', 'succeeded', 'succeeded']
    # the worker's events reached the driver's loggers: the cut-off step undone, then run
    assert memory.lifecycle == [
        ('rollback_start', 'work'),
        ('rollback_end', 'work'),
        ('run_start', None),
        ('step_start', 'work'),
        ('step_end', 'work'),
        ('step_start', 'finish'),
        ('step_end', 'finish'),
        ('run_end', 'succeeded'),
    ]

    with pytest.raises(RecoveryError, match=f"run '{run_id}' succeeded: only"):
        RayExecutor(journal=journal, console=False).resume(run_id, ctx=RuntimeContext(logger=[]))
    with pytest.raises(UnknownRunError, match="no run 'nope'"):
        RayExecutor(journal=journal, console=False).resume('nope')


def test_runs_resume_mode_ray_from_the_command_line(crashed: tuple[Path, str]) -> None:
    home, run_id = crashed

    done = synapse(home, 'runs', 'resume', run_id[:6], '--mode', 'ray', timeout=180)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result['run_id'], result['success'], result['steps_reused']) == (run_id, True, 1)
    assert Journal(home / 'runs.db').get_run(run_id).status == 'succeeded'


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (['--ray-address', '127.0.0.1:1'], '--ray-address goes with --mode ray'),
        (['--mode', 'bogus'], "--mode must be 'local' or 'ray', got 'bogus'"),
    ],
)
def test_runs_resume_mode_and_address_are_checked_first(
    crashed: tuple[Path, str], args: list[str], message: str
) -> None:
    home, run_id = crashed
    done = synapse(home, 'runs', 'resume', run_id, *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f'error: {message}'
    assert Journal(home / 'runs.db').get_run(run_id).status == 'crashed'  # nothing ran
