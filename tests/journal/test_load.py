"""Load: many processes journaling into one PostgreSQL at once, and a journal of 100,000 runs.

- 16 processes, each running an action of 200 steps that succeeds and one that fails
  at its last step and rolls all 200 back, all released at the same moment: every
  step, every rollback item and every rollback is recorded exactly once; no
  process deadlocks or loses a run.
- ``runs list`` on 100,000 runs (bulk-inserted in one statement) reads the newest
  from the started_at index, on SQLite and on PostgreSQL: the query plans are
  checked, never a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from tests.services.postgres import PostgresDSN

from synapse_sdk.journal import Journal

from .conftest import cli_json, peek, subprocess_env

PROCESSES = 16
STEPS = 200

WORKER = textwrap.dedent(
    """
    import sys, time

    from pydantic import BaseModel

    from synapse_sdk.execution import run_action
    from synapse_sdk.journal import Journal
    from synapse_sdk.plugins.actions import ActionContext, BaseAction
    from synapse_sdk.plugins.steps import BaseStep, StepExecutionError, StepResult
    from synapse_sdk.runtime import RuntimeContext

    url, worker, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Params(BaseModel):
        fail: bool = False

    class Work(BaseStep):
        progress_weight = 1.0

        def __init__(self, index, last):
            self.index, self.last = index, last

        @property
        def name(self):
            return f's{self.index:03d}'

        def execute(self, context):
            run_id = context.runtime_ctx.run_id
            context.append_rollback('items', f'{run_id}:{self.index}')
            if self.last and context.params['fail']:
                raise RuntimeError('the last step fails')
            return StepResult(data={'i': self.index})

        def rollback(self, context, result):
            pass

    class Action(BaseAction[Params]):
        context_class = ActionContext

        def setup_steps(self, registry):
            for i in range(steps):
                registry.register(Work(i, i == steps - 1))

    journal = Journal(url)
    journal.db  # connected before the start
    print('ready', flush=True)
    start = float(sys.stdin.readline())
    while time.time() < start:
        pass
    run_action(Action, {}, RuntimeContext(logger=[], run_id=f'{worker}-ok'), journal=journal)
    try:
        run_action(
            Action, {'fail': True}, RuntimeContext(logger=[], run_id=f'{worker}-fail'),
            journal=journal,
        )
    except StepExecutionError:
        pass
    print('ok', flush=True)
    """
)


def test_16_processes_of_200_steps_record_everything_exactly_once(
    tmp_path: Path, home: Path, postgres_db: PostgresDSN
) -> None:
    url = postgres_db.url
    Journal(url).db.close()  # the schema exists; then they all write at once
    script = tmp_path / 'worker.py'
    script.write_text(WORKER, encoding='utf-8')
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url, f'w{w:02d}', str(STEPS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(home),
        )
        for w in range(PROCESSES)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == 'ready'
    start = time.time() + 0.3
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f'{start}\n')
        proc.stdin.flush()
    outcomes = [proc.communicate(timeout=240) for proc in procs]  # a deadlock: a timeout
    failed = [
        err[-500:]
        for proc, (out, err) in zip(procs, outcomes)
        if proc.returncode or out.strip() != 'ok'
    ]
    assert failed == []

    journal = Journal(url)
    try:
        runs = {run.id: run for run in journal.list_runs(limit=10 * PROCESSES)}
        workers = [f'w{w:02d}' for w in range(PROCESSES)]
        assert set(runs) == {f'{w}-{kind}' for w in workers for kind in ('ok', 'fail')}
        for run_id, run in runs.items():
            ok = run_id.endswith('-ok')
            assert (run.status, run.progress == 100) == (
                ('succeeded', True) if ok else ('rolled_back', False)
            ), run
            steps = journal.steps(run_id)
            assert [s.index for s in steps] == list(range(STEPS))
            status = 'succeeded' if ok else 'rolled_back'
            assert {s.status for s in steps} == {status}, run_id
            assert {s.attempts for s in steps} == {1}
            for step in steps:  # each item once, in its own step
                assert step.rollback_data == {'items': [f'{run_id}:{step.index}']}
    finally:
        journal.close()
    assert peek(url, 'SELECT count(*) FROM steps') == [(2 * PROCESSES * STEPS,)]
    assert peek(url, 'SELECT count(*) FROM rollback_items') == [(0,)]  # all merged, none left


# ------------------------------------------------------------------ 100,000 runs

MANY = 100_000

# one statement: run i started i seconds after 2024-01-01, every 10th failed
_BULK = {
    'sqlite': """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO runs (id, entrypoint, params, status, started_at, ended_at, host, pid)
SELECT printf('run-%06d', i), 'bulk:Action', '{}',
       CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
       strftime('%Y-%m-%dT%H:%M:%S+00:00', '2024-01-01', '+' || i || ' seconds'),
       strftime('%Y-%m-%dT%H:%M:%S+00:00', '2024-01-01', '+' || (i + 1) || ' seconds'),
       'bulk-host', 1
FROM n
""",
    'postgresql': """
INSERT INTO runs (id, entrypoint, params, status, started_at, ended_at, host, pid)
SELECT 'run-' || lpad(i::text, 6, '0'), 'bulk:Action', '{}',
       CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
       to_char(timestamp '2024-01-01' + i * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS')
           || '+00:00',
       to_char(timestamp '2024-01-01' + (i + 1) * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS')
           || '+00:00',
       'bulk-host', 1
FROM generate_series(1, ?) AS i
""",
}


def plan(journal: Journal, sql: str, args: tuple[Any, ...]) -> str:
    """The database's plan for ``sql``, as one text."""
    db = journal.db
    if db.dialect == 'sqlite':
        rows = db.fetchall(f'EXPLAIN QUERY PLAN {sql}', args)
        return ' | '.join(str(row[-1]) for row in rows)
    return ' | '.join(str(row[0]) for row in db.fetchall(f'EXPLAIN {sql}', args))


@pytest.mark.both_databases
def test_runs_list_reads_the_newest_of_100000_runs_from_the_index(
    journal: Journal, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = journal.db
    with journal.transaction():
        db.execute(_BULK[db.dialect], (MANY,))
    if db.dialect == 'postgresql':
        db.execute('ANALYZE runs')
    assert db.fetchone('SELECT count(*) FROM runs') == (MANY,)

    captured: list[tuple[str, tuple[Any, ...]]] = []
    real = db.fetchall

    def spy(sql: str, args: Any = ()) -> Any:  # the statements list_runs sends
        captured.append((sql, tuple(args)))
        return real(sql, args)

    monkeypatch.setattr(db, 'fetchall', spy)
    newest = journal.list_runs(limit=20)
    recent = journal.list_runs(limit=5, since=_at(MANY - 3))
    failed = journal.list_runs(status='failed', limit=3)
    monkeypatch.setattr(db, 'fetchall', real)
    assert [r.id for r in newest] == [f'run-{i:06d}' for i in range(MANY, MANY - 20, -1)]
    assert [r.id for r in recent] == [f'run-{i:06d}' for i in range(MANY, MANY - 4, -1)]
    assert [r.id for r in failed] == [f'run-{i:06d}' for i in (MANY, MANY - 10, MANY - 20)]

    listings = [(sql, args) for sql, args in captured if 'ORDER BY started_at' in sql]
    assert len(listings) == 3
    for sql, args in listings[:2]:  # newest first, with or without --since: from the index
        shown = plan(journal, sql, args)
        if db.dialect == 'sqlite':
            assert 'USING INDEX runs_by_started' in shown or 'USING COVERING INDEX' in shown
            assert 'TEMP B-TREE' not in shown, shown  # no sort of the whole table
        else:
            assert 'Index Scan Backward using runs_by_started' in shown, shown
            assert 'Sort' not in shown, shown

    # and the command, with --limit and --since
    listed = cli_json(home, 'runs', 'list', '--json', '--limit', '3')
    assert [r['id'] for r in listed] == [f'run-{i:06d}' for i in range(MANY, MANY - 3, -1)]
    since = cli_json(home, 'runs', 'list', '--json', '--since', _at(MANY - 1).isoformat())
    assert [r['id'] for r in since] == [f'run-{MANY:06d}', f'run-{MANY - 1:06d}']
    assert json.dumps(since)  # plain JSON


def _at(i: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
