"""A run whose process died is reported ``crashed``; a live one stays ``running``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from synapse_sdk.journal import Journal

from .conftest import peek, subprocess_env

# A journaled run whose second step either kills its own process (``die``) or
# waits for a line on stdin (``wait``); prints the run id first.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys

    from pydantic import BaseModel

    from synapse_sdk.execution import run_action
    from synapse_sdk.journal import Journal
    from synapse_sdk.plugins.actions import ActionContext, BaseAction
    from synapse_sdk.plugins.steps import BaseStep, StepResult
    from synapse_sdk.runtime import RuntimeContext

    path, mode = sys.argv[1], sys.argv[2]

    class Params(BaseModel):
        pass

    class First(BaseStep):
        name = 'first'
        progress_weight = 1.0

        def execute(self, context):
            return StepResult(data={'ok': True}, rollback_data={'made': 'x'})

    class Second(BaseStep):
        name = 'second'
        progress_weight = 1.0

        def execute(self, context):
            context.append_rollback('keys', 'a')
            context.append_rollback('keys', 'b')
            print('in-step', flush=True)
            if mode == 'die':
                os.kill(os.getpid(), signal.SIGKILL)
            sys.stdin.readline()
            return StepResult()

    class Third(Second):
        name = 'third'

    class Action(BaseAction[Params]):
        context_class = ActionContext

        def setup_steps(self, registry):
            registry.register(First())
            registry.register(Second())
            registry.register(Third())

    runtime = RuntimeContext(logger=[])
    print(runtime.run_id, flush=True)
    run_action(Action, {}, runtime, journal=Journal(path))
    print('done', flush=True)
    """
)


def start(tmp_path: Path, home: Path, mode: str) -> tuple[subprocess.Popen[str], str]:
    script = tmp_path / 'journaled_run.py'
    script.write_text(SCRIPT, encoding='utf-8')
    proc = subprocess.Popen(
        [sys.executable, str(script), str(home / 'runs.db'), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(home),
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == 'in-step'
    return proc, run_id


def test_a_run_whose_process_was_killed_is_crashed(tmp_path: Path, home: Path) -> None:
    proc, run_id = start(tmp_path, home, 'die')
    assert proc.wait(timeout=60) == -signal.SIGKILL

    # before anyone looked, the database still says running
    assert peek(home / 'runs.db', 'SELECT status FROM runs WHERE id = ?', (run_id,)) == [
        ('running',)
    ]
    journal = Journal(home / 'runs.db')
    try:
        run = journal.get_run(run_id)
        assert run.status == 'crashed'
        assert run.ended_at is not None
        assert run.error == 'the process running it died'
        assert not run.active
        assert [r.id for r in journal.list_runs(status='crashed')] == [run_id]
        assert journal.list_runs(status='running') == []
        steps = {s.name: s for s in journal.steps(run_id)}
        assert steps['first'].status == 'succeeded'
        assert steps['first'].rollback_data == {'made': 'x'}
        assert steps['second'].status == 'started'
        assert steps['third'].status == 'pending'
        # what the killed step recorded before it died is there for its rollback
        assert journal.partial_rollback_data(run_id, 1) == {'keys': ['a', 'b']}
        assert journal.rollback_data_of(run_id, steps['second']) == {'keys': ['a', 'b']}
        assert journal.detect_crashed() == []  # marked once
    finally:
        journal.close()


def test_list_runs_alone_detects_the_crash(tmp_path: Path, home: Path) -> None:
    proc, run_id = start(tmp_path, home, 'die')
    proc.wait(timeout=60)
    journal = Journal(home / 'runs.db')
    try:
        assert [(r.id, r.status) for r in journal.list_runs()] == [(run_id, 'crashed')]
    finally:
        journal.close()


def test_a_running_run_of_a_live_process_stays_running(tmp_path: Path, home: Path) -> None:
    proc, run_id = start(tmp_path, home, 'wait')
    journal = Journal(home / 'runs.db')
    try:
        assert journal.detect_crashed() == []
        run = journal.get_run(run_id)
        assert run.status == 'running'
        assert run.active
        assert run.pid == proc.pid
        assert run.ended_at is None
        assert [r.id for r in journal.list_runs(status='running')] == [run_id]
        assert journal.steps(run_id)[1].status == 'started'

        # let it finish: it succeeds, nothing was disturbed by looking
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write('\n')
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == 'in-step'  # third step
        proc.stdin.write('\n')
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == 'done'
        assert proc.wait(timeout=60) == 0
        assert journal.get_run(run_id).status == 'succeeded'
    finally:
        journal.close()


def test_a_killed_child_is_crashed_even_before_it_is_reaped(tmp_path: Path, home: Path) -> None:
    proc, run_id = start(tmp_path, home, 'wait')
    journal = Journal(home / 'runs.db')
    try:
        assert journal.get_run(run_id).status == 'running'
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not _is_zombie(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.005)  # not reaped: the Popen is not polled meanwhile
        assert _is_zombie(proc.pid)
        # a zombie: the pid exists, but the process is gone
        assert journal.get_run(run_id).status == 'crashed'
    finally:
        proc.wait(timeout=60)
        journal.close()


def _is_zombie(pid: int) -> bool:
    try:
        text = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return False
    return text.rpartition(')')[2].split()[0] == 'Z'


def test_a_reused_pid_is_not_taken_for_the_run_owner(journal: Journal) -> None:
    journal.start_run('mine', entrypoint='tests:x', params={})
    journal.start_run('reused', entrypoint='tests:x', params={})
    # same pid as this live process, but another process start time: the pid was reused
    journal.db.execute("UPDATE runs SET pid_started = '1' WHERE id = 'reused'")
    assert journal.get_run('mine').status == 'running'
    assert journal.get_run('reused').status == 'crashed'


def test_a_run_of_another_host_is_never_taken_for_crashed(journal: Journal) -> None:
    journal.start_run('remote', entrypoint='tests:x', params={})
    journal.db.execute(
        "UPDATE runs SET host = ?, pid = 999999999 WHERE id = 'remote'",
        (socket.gethostname() + '-elsewhere',),
    )
    assert journal.detect_crashed() == []
    assert journal.get_run('remote').status == 'running'


def test_a_finished_run_is_never_reported_crashed(journal: Journal) -> None:
    for status in ('succeeded', 'rolled_back', 'cancelled', 'rollback_failed'):
        journal.start_run(status, entrypoint='tests:x', params={})
        journal.set_run_status(status, status)
        journal.db.execute('UPDATE runs SET pid = 999999999 WHERE id = ?', (status,))
    assert journal.detect_crashed() == []
    assert {r.id: r.status for r in journal.list_runs()} == {
        s: s for s in ('succeeded', 'rolled_back', 'cancelled', 'rollback_failed')
    }
