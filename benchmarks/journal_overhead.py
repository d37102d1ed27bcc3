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

Target: at most 50 µs of journal overhead per step (prints MET / NOT MET).
Prints figures; never asserts a time, always exits 0.

Durability: the journal runs SQLite in WAL mode with ``synchronous=NORMAL``.
A commit then survives the process being killed (SIGKILL, OOM killer), which
is what crash recovery needs; only a power loss or an OS crash can lose the
last few commits (never corrupt the file). ``Journal(durable=True)`` selects
``synchronous=FULL`` (an fsync per commit) for that case too, at a much
higher cost per commit; these figures are for the default.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
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
    samples: int, registry: StepRegistry[BenchContext], folder: Path, journaled: bool
) -> float:
    """Best time of ``samples`` runs of ``registry``; with a fresh journal per run if asked."""
    best = float('inf')
    for sample in range(samples):
        context = BenchContext(runtime_ctx=_Runtime())
        listeners: list[RunListener] = []
        journal: Journal | None = None
        if journaled:
            journal = Journal(folder / f'runs-{next(_fresh)}.db')  # a new database each time
            run_id = f'bench-{sample}'
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer samples')
    args = parser.parse_args(argv)
    samples = 3 if args.quick else 7
    item_samples = 2 if args.quick else 5

    print(
        f'Python {platform.python_version()} ({platform.python_implementation()}), '
        f'SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.machine()}'
    )
    print(f'journal: WAL, synchronous=NORMAL; best of {samples} (steps), {item_samples} (items)')
    print()

    with tempfile.TemporaryDirectory(prefix='synapse-journal-bench-') as tmp:
        folder = Path(tmp)

        steps = _registry([NoOpStep(i) for i in range(STEPS)])
        best_of(1, steps, folder, journaled=True)  # warm up imports, caches, the page cache
        plain = best_of(samples, steps, folder, journaled=False)
        journaled = best_of(samples, steps, folder, journaled=True)
        per_step = (journaled - plain) / STEPS * 1e6
        print(f'{STEPS:,} no-op steps')
        _figure('without journal', plain, STEPS, 'step')
        _figure('with journal', journaled, STEPS, 'step')
        print(f'  journal overhead {per_step:9.2f} µs/step   ratio {journaled / plain:.1f}x')
        floor = commit_floor(folder, samples) * 1e6
        print(
            f'  (one SQLite commit here: {floor:.1f} µs; the journal commits once per step, '
            f'so {floor:.1f} µs/step is the floor of this design)'
        )
        verdict = 'MET' if per_step <= TARGET_US_PER_STEP else 'NOT MET'
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
            f'  journal overhead {per_item:9.2f} µs/report  '
            f'ratio {journaled_items / plain_items:.1f}x'
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
