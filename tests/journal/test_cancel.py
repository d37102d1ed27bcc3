"""Cancelling a run through the journal: from another process, wherever the run runs.

The request is a mark on the run (``runs.cancel_requested_at``); the run's
heartbeat thread reads it (``POLL_S``) and cancels the run's token, as Ctrl-C
does: the run rolls back and ends ``cancelled``.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.errors import ErrorKind, RunCancelledError
from synapse_sdk.execution import cancel_on_signals, cancel_run, run_action
from synapse_sdk.journal import POLL_S, Journal, RunAlreadyEndedError, UnknownRunError
from synapse_sdk.plugins.steps import CancelToken, StepResult
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

from .conftest import (
    SYNAPSE,
    FnStep,
    journal_run_ids,
    make_action,
    make_files,
    one_line_error,
    peek_items,
    run_cli,
    stored,
    subprocess_env,
    write,
)

pytestmark = pytest.mark.both_databases


def start_plugin_run(
    home: Path, plugin_dir: Path, source: Path, **env: str
) -> subprocess.Popen[str]:
    """``synapse plugin run store`` in a subprocess of its own (its run slowed by JT_SLOW)."""
    params = json.dumps({'source_path': str(source)})
    return subprocess.Popen(
        [SYNAPSE, 'plugin', 'run', 'store', '--path', str(plugin_dir), '--params', params],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home.parent,
        env=subprocess_env(home, **env),
    )


def wait_until(check: Any, timeout: float = 60.0, what: str = 'the condition') -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f'timed out waiting for {what}')


def the_run_storing(journal: Journal, home: Path, files: int = 2) -> str:
    """The id of the one run, once its store step has recorded ``files`` keys."""
    run_ids = wait_until(lambda: journal_run_ids(home), what='the run to be journaled')
    run_id = run_ids[0]
    wait_until(
        lambda: len(peek_items(journal, run_id)) >= files, what=f'{files} files to be stored'
    )
    return str(run_id)


def test_a_local_run_is_cancelled_from_another_process_and_rolled_back(
    home: Path, tmp_path: Path, plugin_dir: Path, journal: Journal
) -> None:
    make_files(tmp_path / 'source', 30, seed=3)
    running = start_plugin_run(home, plugin_dir, tmp_path / 'source', JT_SLOW='0.2')
    try:
        run_id = the_run_storing(journal, home)
        assert stored(home)  # its work stands so far

        done = run_cli(home, 'runs', 'cancel', run_id[:6])  # a prefix, as other commands

        assert done.returncode == 0, done.stderr
        assert f'cancel requested for run {run_id}' in done.stderr
        assert f'run {run_id} cancelled; rolled back: store, prepare' in done.stdout
        out, err = running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 130, err  # as for Ctrl-C: ErrorKind.CANCELLED
    assert 'cancel requested by' in err
    result = json.loads(out)  # the run's result, printed however it ended
    assert result['success'] is False
    run = journal.get_run(run_id)
    assert run.status == 'cancelled'
    assert run.error is not None and 'cancel requested by' in run.error
    assert run.cancel_requested_at is not None
    assert {s.name: s.status for s in journal.steps(run_id)}['store'] == 'rolled_back'
    assert stored(home) == []  # what it stored is gone again
    shown = run_cli(home, 'runs', 'show', run_id).stdout
    assert f'requested by {run.cancel_requested_by} at {run.cancel_requested_at}' in shown


def test_the_run_notices_the_request_within_a_poll(journal: Journal) -> None:
    """In this process: the step loops reporting progress; a cancel from another thread
    stops it within about POLL_S, and the rollback undoes what it did."""
    started = threading.Event()
    undone: list[int] = []

    def work(context: Any) -> StepResult:
        for i in range(2000):
            context.append_rollback('items', i)
            context.set_progress(i + 1, 2000)
            started.set()
            time.sleep(0.01)
        return StepResult()

    def undo(context: Any, result: StepResult) -> None:
        undone.extend(result.rollback_data['items'])

    action = make_action(FnStep('work', execute=work, rollback=undo))
    runtime = RuntimeContext(logger=MemoryLogger())
    caught: list[BaseException] = []
    stopped_at: list[float] = []

    def run() -> None:
        try:
            run_action(action, {}, runtime, journal=journal)
        except BaseException as error:  # noqa: BLE001 - checked below
            caught.append(error)
        stopped_at.append(time.monotonic())

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(30)
    asked_at = time.monotonic()
    record = cancel_run(journal, runtime.run_id)
    worker.join(30)

    assert record.status == 'running' and record.cancel_requested_at is not None
    assert len(caught) == 1 and isinstance(caught[0], RunCancelledError), caught
    assert caught[0].kind is ErrorKind.CANCELLED
    assert stopped_at[0] - asked_at < POLL_S + 1.5  # noticed within a poll, rolled back
    assert undone and undone == list(range(len(undone)))
    assert journal.get_run(runtime.run_id).status == 'cancelled'


def test_cancelling_a_run_that_ended_says_so_in_one_line(
    home: Path, tmp_path: Path, plugin_dir: Path, journal: Journal
) -> None:
    make_files(tmp_path / 'source', 2, seed=4)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    ran = run_cli(home, 'plugin', 'run', 'store', '--path', plugin_dir, '--params', params)
    assert ran.returncode == 0, ran.stderr
    (run_id,) = journal_run_ids(home)

    line = one_line_error(run_cli(home, 'runs', 'cancel', run_id))

    assert line == f'error: run {run_id} already ended (succeeded); nothing to cancel'
    with pytest.raises(RunAlreadyEndedError) as caught:
        cancel_run(journal, run_id)
    assert caught.value.status == 'succeeded' and caught.value.kind is ErrorKind.BAD_INPUT
    assert journal.get_run(run_id).cancel_requested_at is None  # nothing recorded


def test_an_unknown_run_cannot_be_cancelled(home: Path, journal: Journal) -> None:
    journal.start_run('known-run', entrypoint='tests:x', params={})
    with pytest.raises(UnknownRunError):
        cancel_run(journal, 'nope')
    line = one_line_error(run_cli(home, 'runs', 'cancel', 'nope'))
    assert "no run 'nope'" in line


def test_a_crashed_run_points_to_rollback(home: Path, journal: Journal) -> None:
    journal.start_run('gone-run', entrypoint='tests:x', params={}, lease_owner='elsewhere:1')
    write(
        journal, 'UPDATE runs SET lease_until = 0, host = ? WHERE id = ?', ('elsewhere', 'gone-run')
    )

    with pytest.raises(RunAlreadyEndedError) as caught:
        cancel_run(journal, 'gone-run')

    assert caught.value.status == 'crashed'
    message = str(caught.value)
    assert message.startswith('run gone-run already ended (crashed: ')
    assert 'synapse runs rollback gone-run' in message
    assert 'synapse runs rollback gone-run' in one_line_error(
        run_cli(home, 'runs', 'cancel', 'gone-run')
    )


def test_a_second_request_keeps_the_first_and_a_resume_forgets_it(journal: Journal) -> None:
    journal.start_run('r', entrypoint='tests:x', params={}, lease_owner='h:1 since x #a')
    first = cancel_run(journal, 'r', by='the web view')
    again = journal.request_cancel('r', by='someone else')
    assert (again.cancel_requested_at, again.cancel_requested_by) == (
        first.cancel_requested_at,
        'the web view',
    )
    journal.set_run_status('r', 'failed')  # it ended; a resume takes it up again
    journal.claim_run('r')
    run = journal.get_run('r')
    assert (run.status, run.cancel_requested_at, run.cancel_requested_by) == ('running', None, None)


def test_a_run_waited_for_past_the_timeout_keeps_its_request(
    home: Path, tmp_path: Path, plugin_dir: Path, journal: Journal
) -> None:
    """The run is held in its rollback (a gate file): ``--timeout`` ends the wait, exit 1."""
    make_files(tmp_path / 'source', 30, seed=5)
    gate = tmp_path / 'gate'
    running = start_plugin_run(
        home, plugin_dir, tmp_path / 'source', JT_SLOW='0.2', JT_ROLLBACK_GATE=str(gate)
    )
    try:
        run_id = the_run_storing(journal, home)
        done = run_cli(home, 'runs', 'cancel', run_id, '--timeout', '1')
        assert done.returncode == 1, done.stderr
        assert f'run {run_id} still runs after 1s; the cancel request stands' in done.stderr
        gate.touch()
        running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 130
    assert journal.get_run(run_id).status == 'cancelled'


def test_no_wait_returns_at_once(
    home: Path, tmp_path: Path, plugin_dir: Path, journal: Journal
) -> None:
    make_files(tmp_path / 'source', 30, seed=6)
    running = start_plugin_run(home, plugin_dir, tmp_path / 'source', JT_SLOW='0.2')
    try:
        run_id = the_run_storing(journal, home)
        done = run_cli(home, 'runs', 'cancel', run_id, '--no-wait')
        assert done.returncode == 0, done.stderr
        assert journal.get_run(run_id).cancel_requested_at is not None
        running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 130
    assert journal.get_run(run_id).status == 'cancelled'


@pytest.mark.sqlite_only
def test_a_cancel_from_elsewhere_gets_the_grace_a_signal_gets() -> None:
    """Under ``synapse plugin run`` (``cancel_on_signals``), a step that never checks is
    interrupted after the grace, whoever cancelled: here a thread, as the heartbeat does."""
    token = CancelToken()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), cancel_on_signals(token, grace=0.3) as state:
        threading.Timer(0.05, token.cancel, args=('cancel requested by h:1',)).start()
        while time.monotonic() - started < 20:  # a step that does not check
            sum(range(100))
    assert 0.3 <= time.monotonic() - started < 10
    assert state.first is None and state.exit_code == 130  # no signal: SIGINT's code
