"""How soon a run stops after ``synapse runs cancel``, and what its log lines in the journal cost.

Run with ``.venv/bin/python benchmarks/cancel_latency.py [--quick]``.

1. Cancel latency: a journaled run (``run_action``, in this process) whose
   step reports progress every millisecond; another thread waits a random
   0-1 s into the step (so the request lands anywhere in the heartbeat's poll
   period), then calls ``cancel_run``. Reported: request -> the step is
   interrupted (its ``set_progress`` raises), and request -> ``run_action``
   has returned (rolled back, journaled ``cancelled``); median and max of N,
   on SQLite and on PostgreSQL (a throwaway local server, as
   ``journal_overhead.py`` starts one; skipped if PostgreSQL is not installed).
   The heartbeat polls every ``journal.POLL_S`` (0.5 s): expect about half of
   that on average, at most that plus a round trip.
2. Log lines in the journal, per step and per ``context.log``: ``run_action``
   of 1,000 no-op steps, and of one step calling ``context.log`` 10,000 times,
   journaled, with the run's log lines going to the journal (the default) and
   without (``logging_to_journal`` made a no-op); CPU time, best of N, on SQLite. The
   lines are taken in the run's thread (a JSON line, an append) and written by
   the heartbeat thread, so this is what the run's own thread pays.

Prints figures; never asserts a time, always exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import NoOpStep
from journal_overhead import postgres
from pydantic import BaseModel

import synapse_sdk.execution._local as local
from synapse_sdk.execution import cancel_run, run_action
from synapse_sdk.journal import POLL_S, Journal
from synapse_sdk.plugins.actions import ActionContext, BaseAction
from synapse_sdk.plugins.steps import (
    BaseStep,
    StepCancelled,
    StepExecutionError,
    StepRegistry,
    StepResult,
)
from synapse_sdk.runtime import RuntimeContext

STEPS = 1_000
LOGS = 10_000


class NoParams(BaseModel):
    pass


class Spinning(BaseStep[Any]):
    """Reports progress every millisecond until cancelled; notes when it was stopped."""

    name = 'spin'
    progress_weight = 1.0
    started = threading.Event()
    stopped_at = 0.0

    def execute(self, context: Any) -> StepResult:
        try:
            for i in range(60_000):
                context.set_progress(i, 60_000)
                Spinning.started.set()
                time.sleep(0.001)
        except StepCancelled:
            Spinning.stopped_at = time.perf_counter()
            raise
        return StepResult()


class SpinAction(BaseAction[NoParams]):
    context_class = ActionContext

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Spinning())


class NoOps(BaseAction[NoParams]):
    context_class = ActionContext

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        for i in range(STEPS):
            registry.register(NoOpStep(i))


class Chatty(BaseStep[Any]):
    name = 'chatty'
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        for i in range(LOGS):
            context.log('item', {'i': i})
        return StepResult()


class ChattyAction(BaseAction[NoParams]):
    context_class = ActionContext

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Chatty())


def cancel_once(journal: Journal) -> tuple[float, float]:
    """(request -> step interrupted, request -> run_action returned), in seconds."""
    Spinning.started.clear()
    runtime = RuntimeContext(logger=[])
    asked: list[float] = []

    def cancel() -> None:
        Spinning.started.wait(30)
        time.sleep(random.uniform(0.0, 1.0))
        asked.append(time.perf_counter())
        cancel_run(journal, runtime.run_id)

    thread = threading.Thread(target=cancel)
    thread.start()
    with contextlib.suppress(StepExecutionError):  # RunCancelledError
        run_action(SpinAction, {}, runtime, journal=journal)
    returned = time.perf_counter()
    thread.join()
    assert journal.get_run(runtime.run_id).status == 'cancelled'
    return Spinning.stopped_at - asked[0], returned - asked[0]


def latency(label: str, journal: Journal, samples: int) -> None:
    figures = [cancel_once(journal) for _ in range(samples)]
    for name, values in (('step interrupted', [f[0] for f in figures]),
                         ('run ended, rolled back', [f[1] for f in figures])):  # fmt: skip
        print(
            f'  {label:<11} request -> {name:<22} median {statistics.median(values) * 1000:6.0f} ms'
            f'   max {max(values) * 1000:6.0f} ms   (n={samples})'
        )


@contextlib.contextmanager
def without_journal_lines() -> Iterator[None]:
    real = local.logging_to_journal

    @contextlib.contextmanager
    def nothing(ctx: Any, journal: Any, buffer: Any = None) -> Iterator[Any]:
        yield _Idle()

    local.logging_to_journal = nothing  # type: ignore[assignment]
    try:
        yield
    finally:
        local.logging_to_journal = real


class _Idle:
    buffer = None

    def flush(self) -> None:
        pass


def overhead(folder: Path, samples: int) -> None:
    journal = Journal(folder / 'runs.db')

    def run(action: type[BaseAction[Any]]) -> float:
        """CPU seconds of the run (this process's, all threads): steadier than wall time
        on a shared machine; the run is too short for the heartbeat to tick."""
        gc.collect()
        gc.disable()
        try:
            started = time.process_time()
            run_action(action, {}, RuntimeContext(logger=[]), journal=journal)
            return time.process_time() - started
        finally:
            gc.enable()

    for label, action, count, unit in (
        (f'{STEPS:,} no-op steps', NoOps, STEPS, 'step'),
        (f'{LOGS:,} context.log', ChattyAction, LOGS, 'log'),
    ):
        with without_journal_lines():
            bare = min(run(action) for _ in range(samples))
        lines = min(run(action) for _ in range(samples))
        extra = (lines - bare) / count * 1e6
        print(
            f'  {label:<20} without lines {bare * 1000:7.1f} ms   with {lines * 1000:7.1f} ms'
            f'   +{extra:5.1f} µs/{unit}'
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer samples')
    args = parser.parse_args(argv)
    samples = 5 if args.quick else 15
    print(f'Python {sys.version.split()[0]}; heartbeat poll {POLL_S:g} s')
    print('cancel latency (random moment within the poll period)')
    with tempfile.TemporaryDirectory(prefix='synapse-bench-cancel-') as tmp:
        latency('SQLite', Journal(Path(tmp) / 'runs.db'), samples)
        with postgres(None) as url:
            if url is None:
                print('  PostgreSQL  skipped: not installed')
            else:
                latency('PostgreSQL', Journal(url), samples)
        print('log lines into the journal: CPU time of the run (SQLite, best of N)')
        overhead(Path(tmp), 3 if args.quick else 7)
    return 0


if __name__ == '__main__':
    sys.exit(main())
