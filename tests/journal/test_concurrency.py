"""Several processes journaling runs into the same database at the same time (SQLite, and
PostgreSQL)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from synapse_sdk.journal import Journal

from .conftest import peek, subprocess_env

WORKER = textwrap.dedent(
    """
    import sys, time

    from pydantic import BaseModel

    from synapse_sdk.execution import run_action
    from synapse_sdk.journal import Journal
    from synapse_sdk.plugins.actions import ActionContext, BaseAction
    from synapse_sdk.plugins.steps import BaseStep, StepResult
    from synapse_sdk.runtime import RuntimeContext

    path, worker, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Params(BaseModel):
        n: int

    class Work(BaseStep):
        progress_weight = 1.0

        def __init__(self, name):
            self._name = name

        @property
        def name(self):
            return self._name

        def execute(self, context):
            for i in range(5):
                context.append_rollback('items', f'{self._name}-{i}')
                context.set_progress(i + 1, 5)
            return StepResult(data={'n': context.params['n']}, rollback_data={'done': True})

    class Action(BaseAction[Params]):
        context_class = ActionContext

        def setup_steps(self, registry):
            for name in ('read', 'write', 'check'):
                registry.register(Work(name))

    journal = Journal(path)
    print('ready', flush=True)
    start = float(sys.stdin.readline())
    while time.time() < start:  # spin: start within microseconds of each other
        pass
    journal.db  # open it (the first process to do so creates it)
    for n in range(runs):
        runtime = RuntimeContext(logger=[], run_id=f'{worker}-{n:02d}')
        run_action(Action, {'n': n}, runtime, journal=journal)
    print('ok', flush=True)
    """
)


def start_workers(
    tmp_path: Path, home: Path, db: str, workers: int, runs: int
) -> list[subprocess.Popen[str]]:
    script = tmp_path / 'worker.py'
    script.write_text(WORKER, encoding='utf-8')
    return [
        subprocess.Popen(
            [sys.executable, str(script), str(db), f'w{w}', str(runs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(home),
        )
        for w in range(workers)
    ]


def release(procs: list[subprocess.Popen[str]]) -> None:
    """Once every worker is ready, tell them all the same start time, shortly ahead."""
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == 'ready'
    start = time.time() + 0.2
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f'{start}\n')
        proc.stdin.flush()


def finish(procs: list[subprocess.Popen[str]]) -> list[str]:
    """The stderr of every worker that did not exit 0 with 'ok'."""
    problems = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0 or out.strip() != 'ok':
            problems.append(f'exit {proc.returncode}: {err.strip().splitlines()[-1:]}')
    return problems


@pytest.mark.both_databases
def test_two_processes_journal_runs_at_once_without_losing_any(
    tmp_path: Path, home: Path, journal_database: str
) -> None:
    db = journal_database
    Journal(db).db.close()  # the journal exists; both then write runs into it at once
    procs = start_workers(tmp_path, home, db, workers=2, runs=20)
    release(procs)
    assert finish(procs) == []

    journal = Journal(db)
    try:
        runs = journal.list_runs()
        expected = {f'w{w}-{n:02d}' for w in range(2) for n in range(20)}
        assert {r.id for r in runs} == expected
        assert {r.status for r in runs} == {'succeeded'}
        assert {r.progress for r in runs} == {100}
        for run in runs:
            steps = journal.steps(run.id)
            assert [(s.name, s.status, s.attempts) for s in steps] == [
                ('read', 'succeeded', 1),
                ('write', 'succeeded', 1),
                ('check', 'succeeded', 1),
            ]
            n = int(run.id.split('-')[1])
            assert run.params == {'n': n}
            for step in steps:
                assert step.data == {'n': n}
                assert step.rollback_data == {
                    'items': [f'{step.name}-{i}' for i in range(5)],
                    'done': True,
                }
    finally:
        journal.close()
    assert peek(db, 'SELECT count(*) FROM rollback_items') == [(0,)]
    if Journal(db).path is not None:
        assert peek(db, 'PRAGMA integrity_check') == [('ok',)]


def test_opening_a_new_journal_waits_while_another_process_initialises_it(home: Path) -> None:
    """Two processes that use a new journal at the same moment (e.g. two
    ``synapse plugin run`` started together on a fresh machine) race to switch
    the new database to WAL mode. The loser must wait (busy timeout), not fail.

    Made deterministic here: another connection holds the write lock of the
    new, not yet WAL, database for 0.3 s, as the winner of that race does.
    """
    db = home / 'runs.db'
    db.parent.mkdir(parents=True)
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute('BEGIN IMMEDIATE')
    releaser = threading.Timer(0.3, lambda: other.execute('COMMIT'))
    releaser.start()
    journal = Journal(db)
    try:
        journal.db  # noqa: B018 - opening is what is tested
        journal.start_run('after-the-wait', entrypoint='tests:x', params={})
        assert journal.get_run('after-the-wait').status == 'running'
    finally:
        releaser.join()
        other.close()
        journal.close()
