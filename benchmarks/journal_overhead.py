"""What the run journal costs: per step, and per in-step progress report with rollback data.

Run with ``.venv/bin/python benchmarks/journal_overhead.py [--quick]``.

1. Per step: an ``Orchestrator`` run of 1,000 no-op steps with a
   ``JournalListener`` on a fresh ``Journal`` (a new database in a temp dir,
   the run row written by ``start_run`` before timing), against the same run
   without the listener, in the same process. Each figure is the best of N
   samples (``time.perf_counter``, garbage collection off while timing).
   Reported as µs (microseconds) of journal overhead per step and as a ratio.
   Per step the journal commits once: the step's result, rollback data and
   context snapshot together with the next step's ``started`` mark.
2. Per in-step report: one step that calls ``context.append_rollback(key, i)``
   and ``context.set_progress(i + 1, n)`` 10,000 times, with and without the
   journal. Every ``append_rollback`` is its own commit (the item must be in
   the database before the work it describes, so a SIGKILL loses nothing);
   progress is written at most every half second.

3. Per step, SQLite and PostgreSQL side by side: the journal overhead per step
   (1.) against a raw insert-and-commit of the same row (the values the journal
   writes for a step: name, status, times, result, snapshot, into a table keyed
   like the journal's) through the driver itself (``sqlite3``; ``psycopg``,
   autocommit), on the same database.
4. 16 concurrent writers: 16 processes each running 500 no-op steps journaled
   into one database at once; journaled steps per second, wall clock.

PostgreSQL: ``--database postgresql://...`` (a database the benchmark may
create tables in), else a throwaway server started like the test fixture's
(``initdb`` + ``pg_ctl`` on 127.0.0.1, ``fsync=off``, ``synchronous_commit=off``:
what is measured is the journal, not the disk); skipped if PostgreSQL is not
installed.

Targets: at most 50 µs of journal overhead per step on SQLite; on PostgreSQL at
most 2.5x a raw psycopg insert-and-commit of the same rows (prints MET / NOT
MET). Prints figures; never asserts a time, always exits 0.

Durability: the journal runs SQLite in WAL mode with ``synchronous=NORMAL``.
A commit then survives the process being killed (SIGKILL, OOM killer), which
is what crash recovery needs; only a power loss or an OS crash can lose the
last few commits (never corrupt the file). ``Journal(durable=True)`` selects
``synchronous=FULL`` (an fsync per commit) for that case too, at a much
higher cost per commit; these figures are for the default.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from _common import NoOpStep, timed

from synapse_sdk.journal import Journal, JournalListener
from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RunListener,
    StepRegistry,
    StepResult,
)

STEPS = 1_000
ITEMS = 10_000
TARGET_US_PER_STEP = 50.0
TARGET_RATIO_POSTGRES = 2.5
WRITERS = 16
WRITER_STEPS = 500
REPO = Path(__file__).resolve().parents[1]

_fresh = itertools.count()


class _Runtime:
    """A runtime context that does nothing."""

    client: Any = None
    run_id = 'bench'

    def log(self, event: str, data: dict[str, Any] | None = None, file: str | None = None) -> None:
        pass

    def set_progress(self, current: float, total: float, category: str | None = None) -> None:
        pass

    def set_metrics(self, value: dict[str, Any], category: str) -> None:
        pass


@dataclass(kw_only=True)
class BenchContext(BaseStepContext):
    """A context with a couple of fields of its own, so each snapshot holds something."""

    count: int = 0
    source: str = '/data/in'


class ItemLoopStep(BaseStep[BenchContext]):
    """One step that reports progress and records a rollback item per item."""

    name = 'items'
    progress_weight = 1.0

    def __init__(self, items: int) -> None:
        self.items = items

    def execute(self, context: BenchContext) -> StepResult:
        total = self.items
        for i in range(total):
            context.append_rollback('keys', i)
            context.set_progress(i + 1, total)
        return StepResult(success=True)


def _registry(steps: list[BaseStep[BenchContext]]) -> StepRegistry[BenchContext]:
    registry: StepRegistry[BenchContext] = StepRegistry()
    for step in steps:
        registry.register(step)
    return registry


def best_of(
    samples: int,
    registry: StepRegistry[BenchContext],
    folder: Path,
    journaled: bool,
    database: str | None = None,
) -> float:
    """Best time of ``samples`` runs of ``registry``; journaled if asked: in a fresh SQLite
    file per run, or in ``database`` (a URL) with a fresh run id."""
    best = float('inf')
    for _ in range(samples):
        context = BenchContext(runtime_ctx=_Runtime())
        listeners: list[RunListener] = []
        journal: Journal | None = None
        if journaled:
            journal = Journal(database or folder / f'runs-{next(_fresh)}.db')
            run_id = f'bench-{uuid.uuid4().hex}'
            journal.start_run(run_id, entrypoint='benchmarks:journal_overhead', params={})
            listeners.append(JournalListener(journal, run_id))
        orchestrator = Orchestrator(registry, context, listeners=listeners)
        try:
            best = min(best, timed(orchestrator.execute))
        finally:
            if journal is not None:
                journal.close()
    return best


def commit_floor(folder: Path, samples: int, commits: int = 1_000) -> float:
    """Seconds per commit of a one-row UPDATE: the least any write-ahead record costs here."""
    journal = Journal(folder / f'runs-{next(_fresh)}.db')
    journal.start_run('floor', entrypoint='benchmarks:journal_overhead', params={})
    db = journal.db
    update = 'UPDATE runs SET progress = ? WHERE id = ?'

    def run() -> None:
        for i in range(commits):
            db.execute(update, (i % 100, 'floor'))

    try:
        return min(timed(run) for _ in range(samples)) / commits
    finally:
        journal.close()


def _figure(label: str, seconds: float, count: int, unit: str) -> None:
    print(f'  {label:<16} {seconds * 1e3:9.2f} ms  ({seconds / count * 1e6:7.2f} µs/{unit})')


# --- the same rows, through the driver alone ------------------------------------------

_RAW_TABLE = (
    'CREATE TABLE IF NOT EXISTS bench_raw (run_id TEXT, idx INTEGER, name TEXT, weight REAL,'
    ' status TEXT, started_at TEXT, ended_at TEXT, duration REAL, data TEXT,'
    ' rollback_data TEXT, error TEXT, attempts INTEGER, snapshot TEXT,'
    ' PRIMARY KEY (run_id, idx))'  # keyed as the journal's steps are
)


def step_rows(count: int) -> list[tuple[Any, ...]]:
    """What the journal writes for each of ``count`` no-op steps of a BenchContext run
    (under a new run id each time)."""
    run, moment = uuid.uuid4().hex, '2026-01-01T00:00:00.000000+00:00'
    snap = json.dumps({'count': 0, 'source': '/data/in'}, separators=(',', ':'))
    return [
        (run, i, f'step_{i}', 1.0, 'succeeded', moment, moment, 1e-6, '{}', '{}', None, 1, snap)
        for i in range(count)
    ]


def raw_sqlite(folder: Path, samples: int, count: int = STEPS) -> float:
    """Seconds per row: sqlite3 inserting and committing each row (WAL, synchronous=NORMAL)."""
    conn = sqlite3.connect(folder / f'raw-{next(_fresh)}.db', isolation_level=None)
    conn.execute('PRAGMA journal_mode = WAL')
    conn.execute('PRAGMA synchronous = NORMAL')
    conn.execute(_RAW_TABLE)
    insert = f'INSERT INTO bench_raw VALUES ({", ".join("?" * 13)})'

    def run() -> None:
        for row in step_rows(count):
            conn.execute(insert, row)

    try:
        return min(timed(run) for _ in range(samples)) / count
    finally:
        conn.close()


def raw_postgres(url: str, samples: int, count: int = STEPS) -> float:
    """Seconds per row: psycopg inserting each row in autocommit mode (one commit each)."""
    import psycopg

    insert = f'INSERT INTO bench_raw VALUES ({", ".join(["%s"] * 13)})'
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_RAW_TABLE)

        def run() -> None:
            for row in step_rows(count):
                conn.execute(insert, row)

        return min(timed(run) for _ in range(samples)) / count


# --- 16 writers at once ---------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys, time
    from synapse_sdk.journal import Journal, JournalListener
    from synapse_sdk.plugins.steps import BaseStepContext, Orchestrator, StepRegistry, StepResult
    from synapse_sdk.plugins.steps import BaseStep

    class Step(BaseStep):
        progress_weight = 1.0
        def __init__(self, i):
            self._name = f'step_{i}'
        @property
        def name(self):
            return self._name
        def execute(self, context):
            return StepResult()

    class Runtime:
        client, run_id = None, 'bench'
        def log(self, *a, **k): pass
        def set_progress(self, *a, **k): pass
        def set_metrics(self, *a, **k): pass

    location, run_id, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    registry = StepRegistry()
    for i in range(steps):
        registry.register(Step(i))
    journal = Journal(location)
    journal.start_run(run_id, entrypoint='benchmarks:writers', params={})
    print('ready', flush=True)
    start = float(sys.stdin.readline())
    while time.time() < start:
        pass
    context = BaseStepContext(runtime_ctx=Runtime())
    Orchestrator(registry, context, listeners=[JournalListener(journal, run_id)]).execute()
    print(time.time(), flush=True)
    """
)


def writers_throughput(location: str, writers: int = WRITERS, steps: int = WRITER_STEPS) -> float:
    """Journaled steps per second, ``writers`` processes at once into ``location``."""
    import synapse_sdk

    env = dict(os.environ, PYTHONPATH=str(Path(synapse_sdk.__file__).resolve().parents[1]))
    tag = uuid.uuid4().hex[:12]
    procs = [
        subprocess.Popen(
            [sys.executable, '-c', _WRITER, location, f'writer-{tag}-{w}', str(steps)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(writers)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == 'ready'
    start = time.time() + 0.5
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f'{start}\n')
        proc.stdin.flush()
    ends = [float(proc.communicate(timeout=600)[0].strip()) for proc in procs]
    return writers * steps / (max(ends) - start)


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    """``url``, else a throwaway server's database (None if PostgreSQL is not installed)."""
    if url is not None:
        yield url
        return
    sys.path.insert(0, str(REPO))
    from tests.services.postgres import PostgresServer, find_bindir, server_account

    bindir = find_bindir()
    if bindir is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix='synapse-bench-pg-') as tmp:
        server = PostgresServer(bindir, Path(tmp), server_account())
        server.init()
        server.start_on_a_free_port()
        try:
            yield server.create_database('bench').url
        finally:
            server.stop('fast')


# --- the report -----------------------------------------------------------------------


def _figure(label: str, seconds: float, count: int, unit: str) -> None:
    print(f'  {label:<16} {seconds * 1e3:9.2f} ms  ({seconds / count * 1e6:7.2f} µs/{unit})')


def side_by_side(
    samples: int, folder: Path, database: str | None, raw: Callable[[int], float]
) -> tuple[float, float]:
    """(journal overhead per step, raw seconds per row) on SQLite or in ``database``, each
    the best of ``samples``, taken in turns so that a shared machine's load weighs on
    both alike."""
    steps = _registry([NoOpStep(i) for i in range(STEPS)])
    best_of(1, steps, folder, journaled=True, database=database)  # warm up
    raw(1)
    plain = journaled = row = float('inf')
    for _ in range(samples):
        plain = min(plain, best_of(1, steps, folder, journaled=False))
        journaled = min(journaled, best_of(1, steps, folder, journaled=True, database=database))
        row = min(row, raw(1))
    return (journaled - plain) / STEPS, row


def compare(samples: int, folder: Path, url: str | None) -> None:
    """Section 3: per step on each database, against the driver alone."""
    print(f'{STEPS:,} no-op steps, journal overhead per step vs a raw insert-and-commit of its row')
    sqlite_step, sqlite_raw = side_by_side(samples, folder, None, partial(raw_sqlite, folder))
    print(
        f'  SQLite      {sqlite_step * 1e6:7.1f} µs/step; sqlite3 alone'
        f' {sqlite_raw * 1e6:6.1f} µs/row; {sqlite_step / sqlite_raw:.1f}x'
    )
    if url is None:
        print('  PostgreSQL  skipped: not installed (apt-get install postgresql) and no --database')
        return
    pg_step, pg_raw = side_by_side(samples, folder, url, partial(raw_postgres, url))
    ratio = pg_step / pg_raw
    verdict = 'MET' if ratio <= TARGET_RATIO_POSTGRES else 'NOT MET'
    print(
        f'  PostgreSQL  {pg_step * 1e6:7.1f} µs/step; psycopg alone {pg_raw * 1e6:6.1f} µs/row;'
        f' {ratio:.2f}x   target <= {TARGET_RATIO_POSTGRES:g}x: {verdict}'
    )


def concurrency(folder: Path, url: str | None, writers: int, steps: int) -> None:
    """Section 4: journaled steps per second with ``writers`` processes at once."""
    print(f'{writers} processes at once, {steps} no-op steps each, journaled')
    rate = writers_throughput(str(folder / f'writers-{next(_fresh)}.db'), writers, steps)
    print(f'  SQLite      {rate:9,.0f} journaled steps/s')
    if url is not None:
        rate = writers_throughput(url, writers, steps)
        print(f'  PostgreSQL  {rate:9,.0f} journaled steps/s')


def single(samples: int, item_samples: int, folder: Path) -> None:
    """Sections 1 and 2, on SQLite."""
    steps = _registry([NoOpStep(i) for i in range(STEPS)])
    best_of(1, steps, folder, journaled=True)  # warm up imports, caches, the page cache
    plain = best_of(samples, steps, folder, journaled=False)
    journaled = best_of(samples, steps, folder, journaled=True)
    per_step_us = (journaled - plain) / STEPS * 1e6
    print(f'{STEPS:,} no-op steps')
    _figure('without journal', plain, STEPS, 'step')
    _figure('with journal', journaled, STEPS, 'step')
    print(f'  journal overhead {per_step_us:9.2f} µs/step   ratio {journaled / plain:.1f}x')
    floor = commit_floor(folder, samples) * 1e6
    print(
        f'  (one SQLite commit here: {floor:.1f} µs; the journal commits once per step, '
        f'so {floor:.1f} µs/step is the floor of this design)'
    )
    verdict = 'MET' if per_step_us <= TARGET_US_PER_STEP else 'NOT MET'
    print(f'  target <= {TARGET_US_PER_STEP:g} µs/step: {verdict}')
    print()

    items = _registry([ItemLoopStep(ITEMS)])
    plain_items = best_of(item_samples, items, folder, journaled=False)
    journaled_items = best_of(item_samples, items, folder, journaled=True)
    per_item = (journaled_items - plain_items) / ITEMS * 1e6
    print(f'one step, {ITEMS:,} x (append_rollback + set_progress)')
    _figure('without journal', plain_items, ITEMS, 'report')
    _figure('with journal', journaled_items, ITEMS, 'report')
    print(
        f'  journal overhead {per_item:9.2f} µs/report  ratio {journaled_items / plain_items:.1f}x'
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer samples')
    parser.add_argument('--database', metavar='URL', help='a PostgreSQL database to use')
    args = parser.parse_args(argv)
    samples = 3 if args.quick else 7
    item_samples = 2 if args.quick else 5
    writer_steps = WRITER_STEPS // 5 if args.quick else WRITER_STEPS

    print(
        f'Python {platform.python_version()} ({platform.python_implementation()}), '
        f'SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.machine()}'
    )
    print(f'journal: WAL, synchronous=NORMAL; best of {samples} (steps), {item_samples} (items)')
    print()
    with (
        tempfile.TemporaryDirectory(prefix='synapse-journal-bench-') as tmp,
        postgres(args.database) as url,
    ):
        folder = Path(tmp)
        single(samples, item_samples, folder)
        print()
        if url is not None:
            print(f'PostgreSQL: {_server_line(url)}')
        compare(samples, folder, url)
        print()
        concurrency(folder, url, WRITERS, writer_steps)
    return 0


def _server_line(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        version = conn.execute('SHOW server_version').fetchone()
        sync = conn.execute('SHOW synchronous_commit').fetchone()
        fsync = conn.execute('SHOW fsync').fetchone()
    return (
        f'{version[0] if version else "?"}, synchronous_commit={sync[0] if sync else "?"},'
        f' fsync={fsync[0] if fsync else "?"}, psycopg {psycopg.__version__}'
    )


if __name__ == '__main__':
    sys.exit(main())
