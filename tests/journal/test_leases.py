"""Leases: crash detection any machine agrees on, and exactly one recoverer at a time.

Every test reads the journal through the ``journal`` fixture (conftest.py), the
one place a journal is built, so that the suite can run against each database.
"Another machine" is played by moving a run's ``host`` in the journal
(``elsewhere``): this host's pid check then says nothing about it, and only
its lease can tell whether its process is alive, exactly as on another host.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import synapse_sdk.db._sqlite as sqlite_driver
from synapse_sdk.journal import Journal, JournalError, RecoveryInProgressError, UnknownRunError
from synapse_sdk.journal._lease import LEASE_ENV, LEASE_MARGIN_S, Holder, database_time
from synapse_sdk.plugins.steps import RunCancelledError

from .conftest import (
    FnStep,
    default_location,
    dispatch,
    make_action,
    make_files,
    one_line_error,
    pre_store,
    run_cli,
    stored,
    subprocess_env,
)
from .test_recovery_cli import crashed_run

pytestmark = pytest.mark.both_databases  # leases use each database's own clock

SYNAPSE = str(Path(sys.executable).parent / 'synapse')
OTHER_HOST = socket.gethostname() + '-elsewhere'

# A journaled run of one step that waits for the file argv[1] to exist, heeding a
# cancel meanwhile; prints its run id, 'in-step', then 'done' or 'error: ...'.
SCRIPT = textwrap.dedent(
    """
    import os, sys, time

    from pydantic import BaseModel

    from synapse_sdk.execution import run_action
    from synapse_sdk.journal import Journal
    from synapse_sdk.plugins.actions import ActionContext, BaseAction
    from synapse_sdk.plugins.steps import BaseStep, StepResult
    from synapse_sdk.runtime import RuntimeContext

    gate = sys.argv[1]

    class Params(BaseModel):
        pass

    class Wait(BaseStep):
        name = 'wait'
        progress_weight = 1.0

        def execute(self, context):
            print('in-step', flush=True)
            while not os.path.exists(gate):
                context.raise_if_cancelled()
                time.sleep(0.05)
            return StepResult()

        def rollback(self, context, result):
            print('rolled back', flush=True)

    class Action(BaseAction[Params]):
        context_class = ActionContext

        def setup_steps(self, registry):
            registry.register(Wait())

    runtime = RuntimeContext(logger=[])
    print(runtime.run_id, flush=True)
    try:
        run_action(Action, {}, runtime, journal=Journal())
    except Exception as error:
        print(f'error: {error}', flush=True)
        sys.exit(1)
    print('done', flush=True)
    """
)


# ------------------------------------------------------------------ helpers


def start(tmp_path: Path, home: Path) -> tuple[subprocess.Popen[str], str, Path]:
    """The waiting run in a process of its own, inside its step; (process, run id, gate)."""
    script = tmp_path / 'waiting_run.py'
    script.write_text(SCRIPT, encoding='utf-8')
    gate = tmp_path / 'gate'
    proc = subprocess.Popen(
        [sys.executable, str(script), str(gate)],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(home),
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == 'in-step', run_id
    return proc, run_id, gate


def elsewhere(journal: Journal, run_id: str) -> None:
    """Make the run, and its recoverer if it has one, look as if they ran on another host."""
    row = journal.db.fetchone('SELECT recoverer FROM runs WHERE id = ?', (run_id,))
    assert row is not None
    holder = Holder.parse(row[0] or '')
    recoverer = str(replace(holder, host=OTHER_HOST)) if holder else None
    journal.db.execute(
        'UPDATE runs SET host = ?, recoverer = COALESCE(?, recoverer) WHERE id = ?',
        (OTHER_HOST, recoverer, run_id),
    )


def row(journal: Journal, run_id: str, *columns: str) -> tuple[Any, ...]:
    found = journal.db.fetchone(f'SELECT {", ".join(columns)} FROM runs WHERE id = ?', (run_id,))
    assert found is not None
    return found


def lease_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith('synapse-lease-')]


def wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f'{what}: not within {seconds}s'
        time.sleep(0.1)


# ------------------------------------------------------------------ a run's lease


def test_a_run_holds_a_lease_while_it_runs_and_its_heartbeat_ends_with_it(
    journal: Journal,
) -> None:
    seen: list[tuple[Any, ...]] = []

    def look(context: Any) -> None:
        run_id = context.runtime_ctx.run_id
        seen.append(
            (*row(journal, run_id, 'lease_owner', 'lease_until'), database_time(journal.db))
        )
        seen.append(tuple(t.name for t in lease_threads()))

    done = dispatch(make_action(FnStep('look', execute=look)), journal)
    assert done.error is None
    (owner, until, clock), threads = seen
    assert owner.startswith(f'{socket.gethostname()}:{os.getpid()} since ')
    assert 29 < until - clock <= 30  # the default lease, by the database's clock
    assert threads == (f'synapse-lease-{done.run_id}',)
    assert lease_threads() == []  # stopped with the run
    assert journal.get_run(done.run_id).status == 'succeeded'


def test_a_step_slower_than_the_lease_keeps_its_run_alive_on_every_host(
    tmp_path: Path, home: Path, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEASE_ENV, '2')
    proc, run_id, gate = start(tmp_path, home)
    try:
        elsewhere(journal, run_id)
        (first,) = row(journal, run_id, 'lease_until')
        deadline = time.monotonic() + 6  # three leases
        while time.monotonic() < deadline:
            assert journal.get_run(run_id).status == 'running'
            time.sleep(0.2)
        (last,) = row(journal, run_id, 'lease_until')
        assert last > first + 2  # renewed, more than once
        gate.touch()
        assert proc.wait(timeout=60) == 0
    finally:
        gate.touch()
        proc.wait(timeout=60)
    assert proc.stdout is not None and proc.stdout.read().split() == ['done']
    assert journal.get_run(run_id).status == 'succeeded'


def test_a_killed_run_is_crashed_for_another_host_once_its_lease_expires(
    tmp_path: Path, home: Path, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEASE_ENV, '3')
    proc, run_id, gate = start(tmp_path, home)
    elsewhere(journal, run_id)
    proc.kill()
    proc.wait(timeout=60)
    killed = time.monotonic()
    # its process is gone, but another host cannot see that: the lease still runs
    assert journal.get_run(run_id).status == 'running'
    assert journal.detect_crashed() == []
    wait_for(lambda: journal.get_run(run_id).status == 'crashed', 3 + 5, 'crashed')
    assert time.monotonic() - killed <= 3 + LEASE_MARGIN_S + 3
    run = journal.get_run(run_id)
    (until,) = row(journal, run_id, 'lease_until')
    assert until < database_time(journal.db) - LEASE_MARGIN_S
    assert run.error is not None
    assert re.fullmatch(
        rf'the process running it \({socket.gethostname()}:{proc.pid}\) stopped renewing'
        r' its lease, which expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC',
        run.error,
    ), run.error
    assert journal.detect_crashed() == []  # marked once


def test_a_paused_process_loses_its_run_and_stops_it_when_it_wakes(
    tmp_path: Path, home: Path, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paused past its lease: crashed, even on its own host where its pid lives on (the
    lease is the rule, the same answer on every host); woken, it stops the run."""
    monkeypatch.setenv(LEASE_ENV, '1.5')
    proc, run_id, gate = start(tmp_path, home)
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        wait_for(lambda: journal.get_run(run_id).status == 'crashed', 15, 'crashed')
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        gate.touch()
        proc.wait(timeout=60)
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert 'rolled back' in out
    assert f"run '{run_id}' was declared crashed: its lease expired" in out
    run = journal.get_run(run_id)
    assert run.status == 'cancelled'
    assert run.error is not None and 'was declared crashed' in run.error


@pytest.mark.sqlite_only  # holds SQLite's write lock to keep the renewals out
def test_a_lease_that_cannot_be_renewed_cancels_its_run(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The journal is out of reach (here: SQLite's write lock held by someone else) for
    longer than the lease: the run is told, and cancelled, before anyone may recover it."""
    monkeypatch.setenv(LEASE_ENV, '1.5')
    monkeypatch.setattr(sqlite_driver, 'BUSY_TIMEOUT_S', 0.2)
    journal.close()  # reconnect with the short busy timeout
    told: list[bool] = []

    def hold_the_write_lock(context: Any) -> None:
        blocker = sqlite3.connect(journal.path, timeout=30, isolation_level=None)
        blocker.execute('BEGIN IMMEDIATE')
        try:
            deadline = time.monotonic() + 30
            while not context.cancelled and time.monotonic() < deadline:
                time.sleep(0.05)
            told.append(context.cancelled)
        finally:
            blocker.execute('ROLLBACK')
            blocker.close()
        context.raise_if_cancelled()

    with caplog.at_level(logging.WARNING, logger='synapse_sdk.journal'):
        done = dispatch(make_action(FnStep('hold', execute=hold_the_write_lock)), journal)
    assert told == [True]
    assert isinstance(done.error, RunCancelledError)
    reason = done.error.reason
    assert reason.startswith(f"the lease of run '{done.run_id}' could not be renewed for 1.5s (")
    assert 'database is locked' in reason
    assert reason.endswith('another machine may now recover it, so it stops here')
    run = journal.get_run(done.run_id)
    assert run.status == 'cancelled'
    assert run.error is not None and 'could not be renewed' in run.error
    warnings = [r.getMessage() for r in caplog.records]
    assert f'cannot renew the lease of run {done.run_id} (OperationalError' in warnings[0]


def test_leases_are_measured_by_the_database_clock_not_the_readers(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = str(Holder.new(time.time()))
    journal.start_run('live', entrypoint='tests:x', params={}, lease_owner=holder)
    journal.start_run('lapsed', entrypoint='tests:x', params={}, lease_owner=holder)
    elsewhere(journal, 'live')
    elsewhere(journal, 'lapsed')
    clock = database_time(journal.db)
    journal.db.execute("UPDATE runs SET lease_until = ? WHERE id = 'lapsed'", (clock - 5,))
    real = time.time
    monkeypatch.setattr(time, 'time', lambda: real() + 3600)  # this machine: an hour ahead
    assert journal.detect_crashed() == ['lapsed']
    monkeypatch.setattr(time, 'time', lambda: real() - 3600)  # an hour behind
    assert journal.get_run('live').status == 'running'
    assert journal.get_run('lapsed').status == 'crashed'


def test_a_run_without_a_lease_is_judged_by_its_pid_alone(journal: Journal) -> None:
    """Runs recorded before leases existed (or without one) never expire."""
    journal.start_run('old', entrypoint='tests:x', params={})
    elsewhere(journal, 'old')
    assert row(journal, 'old', 'lease_owner', 'lease_until') == (None, None)
    assert journal.detect_crashed() == []


def test_a_lease_length_that_is_not_a_number_is_refused_in_one_line(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bad in ('soon', '0', '-3', 'nan', 'inf'):
        monkeypatch.setenv(LEASE_ENV, bad)
        fresh = Journal(journal.path)
        try:
            with pytest.raises(JournalError, match=rf"^{LEASE_ENV}='{bad}' is not a number"):
                fresh.start_run(f'run-{bad}', entrypoint='tests:x', params={}, lease_owner='me')
            assert fresh.list_runs() == []  # nothing half-written; reading needs no lease
        finally:
            fresh.close()
    with pytest.raises(JournalError, match='^the lease length is not a number'):
        Journal(journal.path, lease_seconds=0).lease_seconds  # noqa: B018


# ------------------------------------------------------------------ one recoverer


def test_of_two_claims_on_a_run_one_wins_and_the_other_learns_who_holds_it(
    journal: Journal,
) -> None:
    journal.start_run('r', entrypoint='tests:x', params={})
    first = journal.claim_recovery('r')
    with pytest.raises(RecoveryInProgressError) as refused:
        journal.claim_recovery('r')
    (until,) = row(journal, 'r', 'recoverer_until')
    assert str(refused.value) == (
        f"run 'r' is being recovered by {socket.gethostname()}:{os.getpid()} (since"
        f' {Holder.parse(first).since}); wait for it or retry after its lease expires at'  # type: ignore[union-attr]
        f' {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))}'
    )
    journal.release_recovery('r', first)
    assert row(journal, 'r', 'recoverer', 'recoverer_until') == (None, None)
    second = journal.claim_recovery('r')
    assert second != first
    journal.release_recovery('r', first)  # not the holder any more: changes nothing
    assert row(journal, 'r', 'recoverer') == (second,)


def test_a_claim_of_another_host_holds_until_its_lease_expires(journal: Journal) -> None:
    journal.start_run('r', entrypoint='tests:x', params={})
    journal.claim_recovery('r')
    elsewhere(journal, 'r')
    with pytest.raises(RecoveryInProgressError, match=f'recovered by {OTHER_HOST}:{os.getpid()}'):
        journal.claim_recovery('r')
    clock = database_time(journal.db)
    journal.db.execute("UPDATE runs SET recoverer_until = ? WHERE id = 'r'", (clock - 0.2,))
    with pytest.raises(RecoveryInProgressError):  # within the margin: still held
        journal.claim_recovery('r')
    journal.db.execute(
        "UPDATE runs SET recoverer_until = ? WHERE id = 'r'", (clock - LEASE_MARGIN_S - 1,)
    )
    mine = journal.claim_recovery('r')
    assert Holder.parse(mine).host == socket.gethostname()  # type: ignore[union-attr]


def test_a_claim_of_a_dead_process_on_this_host_is_taken_at_once(journal: Journal) -> None:
    journal.start_run('r', entrypoint='tests:x', params={})
    dead = subprocess.run(
        [sys.executable, '-c', 'import os; print(os.getpid())'],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(dead.stdout)
    gone = replace(Holder.new(time.time()), pid=pid)
    clock = database_time(journal.db)
    journal.db.execute(
        "UPDATE runs SET recoverer = ?, recoverer_until = ? WHERE id = 'r'",
        (str(gone), clock + 30),
    )
    mine = journal.claim_recovery('r')
    assert row(journal, 'r', 'recoverer') == (mine,)


def test_a_claim_on_an_unknown_run_says_so(journal: Journal) -> None:
    with pytest.raises(UnknownRunError, match="^no run 'nope' in the journal"):
        journal.claim_recovery('nope')


# ------------------------------------------------------------------ the CLI, several machines

FILES = 12


@pytest.fixture
def source(tmp_path: Path) -> dict[str, str]:
    return make_files(tmp_path / 'source', FILES, seed=7)


@pytest.fixture
def before(home: Path, tmp_path: Path) -> list[tuple[int, str, str]]:
    return pre_store(home, tmp_path)


def recoverer(home: Path, command: str, run_id: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SYNAPSE, 'runs', command, run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home.parent,
        env=subprocess_env(home, **env),
    )


def deletions(log: Path) -> list[tuple[str, int, int]]:
    """``(what, file id, pid)`` lines of the test plugin's JT_DELETE_LOG."""
    if not log.exists():
        return []
    return [
        (w, int(i), int(p)) for w, i, p in (line.split() for line in log.read_text().splitlines())
    ]


BUSY = re.compile(
    r"error: run '(?P<run>\w+)' is being recovered by (?P<host>[^:]+):(?P<pid>\d+) \(since"
    r' [\d-]+ [\d:]+ UTC\); wait for it or retry after its lease expires at [\d-]+ [\d:]+ UTC'
)


@pytest.mark.parametrize('commands', [('rollback', 'rollback'), ('rollback', 'resume')])
def test_two_recoverers_at_once_one_does_the_work_the_other_is_told_who(
    commands: tuple[str, str],
    home: Path,
    plugin_dir: Path,
    tmp_path: Path,
    source: dict[str, str],
    before: list[tuple[int, str, str]],
) -> None:
    run_id = crashed_run(home, plugin_dir, tmp_path, JT_CRASH_AFTER='5')
    made = [entry for entry in stored(home) if entry not in before]
    assert len(made) == 5
    gate, log = tmp_path / 'gate', tmp_path / 'deletions'
    env = {'JT_ROLLBACK_GATE': str(gate), 'JT_DELETE_LOG': str(log)}
    procs = [recoverer(home, command, run_id, **env) for command in commands]
    try:
        # the winner waits at the gate inside its undoing: the loser must end first
        wait_for(lambda: any(p.poll() is not None for p in procs), 120, 'a recoverer ended')
        [loser] = [p for p in procs if p.poll() is not None]
        [winner] = [p for p in procs if p is not loser]
        out, err = loser.communicate(timeout=60)
        line = one_line_error(subprocess.CompletedProcess(loser.args, loser.returncode, out, err))
        found = BUSY.fullmatch(line)
        assert found, line
        assert (found['run'], found['host'], int(found['pid'])) == (
            run_id,
            socket.gethostname(),
            winner.pid,
        )
        gate.touch()
        out, err = winner.communicate(timeout=120)
        assert winner.returncode == 0, err
    finally:
        gate.touch()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    # the work was done once, by the winner: each file the run made, deleted once
    ids = sorted(entry[0] for entry in made)
    assert sorted(i for w, i, _ in deletions(log) if w == 'attempt') == ids
    assert sorted(i for w, i, _ in deletions(log) if w == 'deleted') == ids
    assert {pid for _, _, pid in deletions(log)} == {winner.pid}
    won = commands[procs.index(winner)]
    journal = Journal(default_location(home))
    try:
        run = journal.get_run(run_id)
        assert run.status == ('rolled_back' if won == 'rollback' else 'succeeded')
        assert (run.recoverer, run.recoverer_until) == (None, None)  # released
    finally:
        journal.close()
    left = [entry for entry in stored(home) if entry not in before]
    assert len(left) == (0 if won == 'rollback' else FILES)


@pytest.mark.parametrize('where', ['this host', 'another host'])
def test_a_recoverer_killed_halfway_leaves_the_run_to_the_next_one(
    where: str,
    home: Path,
    plugin_dir: Path,
    tmp_path: Path,
    source: dict[str, str],
    before: list[tuple[int, str, str]],
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed after undoing 5 of 12 files. On its own host the next recoverer sees at once
    that it is gone; from another host, it is refused until the dead one's lease expires.
    Either way every file is deleted exactly once and the run ends rolled back."""
    monkeypatch.setenv(LEASE_ENV, '6')
    run_id = crashed_run(home, plugin_dir, tmp_path, JT_CRASH_IN='finalize')
    made = sorted(entry[0] for entry in stored(home) if entry not in before)
    assert len(made) == FILES
    log = tmp_path / 'deletions'
    killed = run_cli(
        home, 'runs', 'rollback', run_id, JT_CRASH_ROLLBACK_AFTER='5', JT_DELETE_LOG=str(log)
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    first = deletions(log)
    assert len([d for d in first if d[0] == 'deleted']) == 5
    statuses = {s.name: s.status for s in journal.steps(run_id)}
    assert statuses == {'prepare': 'succeeded', 'store': 'succeeded', 'finalize': 'rolled_back'}
    if where == 'another host':
        elsewhere(journal, run_id)
        refused = run_cli(home, 'runs', 'rollback', run_id, JT_DELETE_LOG=str(log))
        found = BUSY.fullmatch(one_line_error(refused))
        assert found and found['host'] == OTHER_HOST, refused.stderr
        assert deletions(log) == first  # nothing undone by the refused one
        (until,) = row(journal, run_id, 'recoverer_until')
        wait_for(lambda: database_time(journal.db) > until + LEASE_MARGIN_S, 15, 'lease over')
    done = run_cli(home, 'runs', 'rollback', run_id, JT_DELETE_LOG=str(log))
    assert done.returncode == 0, done.stderr
    deleted = Counter(i for w, i, _ in deletions(log) if w == 'deleted')
    assert sorted(deleted) == made and set(deleted.values()) == {1}
    assert stored(home) == before
    run = journal.get_run(run_id)
    assert run.status == 'rolled_back'
    assert {s.name: s.status for s in journal.steps(run_id)} == {
        'prepare': 'rolled_back',
        'store': 'rolled_back',
        'finalize': 'rolled_back',
    }


def test_a_bad_lease_length_stops_a_recovery_in_one_line(home: Path, journal: Journal) -> None:
    journal.start_run('r', entrypoint='tests:x', params={})
    journal.set_run_status('r', 'failed')
    done = run_cli(home, 'runs', 'rollback', 'r', **{LEASE_ENV: 'soon'})
    assert one_line_error(done) == (
        f"error: {LEASE_ENV}='soon' is not a number of seconds above 0; give one such as 30"
        ' (the default: 30)'
    )
