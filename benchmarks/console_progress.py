"""Cost of live terminal progress: a step reporting 100,000 progress updates.

Runs the same step (100,000 items of small real work: hashing 32 KiB each)
three ways in one process and prints the ratios:

- baseline: the loop alone, no progress reported;
- console: ``context.set_progress`` on every item, drawn by the rich
  ``ConsoleLogger`` into a terminal-like buffer (bar updates throttled);
- unthrottled: the same with the throttle off (every update drawn), on a
  twentieth of the items, to show what the throttle saves.

Target: console within a few percent of the baseline. Figures only; nothing
is asserted (shared machines are noisy).

    python benchmarks/console_progress.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import time

from rich.console import Console

from synapse_sdk.plugins.pipelines.steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    StepRegistry,
    StepResult,
)
from synapse_sdk.runtime import ConsoleLogger, RuntimeContext

PAYLOAD = b'x' * 32768


class Work(BaseStep[BaseStepContext]):
    def __init__(self, items: int, report: bool) -> None:
        self.items = items
        self.report = report

    @property
    def name(self) -> str:
        return 'work'

    @property
    def progress_weight(self) -> float:
        return 1.0

    def execute(self, context: BaseStepContext) -> StepResult:
        digest = hashlib.sha256()
        items = self.items
        for i in range(items):
            digest.update(PAYLOAD)
            if self.report:
                context.set_progress(i + 1, items, 'work')
        return StepResult(data={'digest': digest.hexdigest()})


def run_once(items: int, report: bool, min_interval: float) -> float:
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    logger = ConsoleLogger(console, min_interval=min_interval)
    runtime = RuntimeContext(logger=logger, client=object(), env={})
    registry = StepRegistry[BaseStepContext]()
    registry.register(Work(items, report))
    context = BaseStepContext(runtime_ctx=runtime)
    gc.disable()
    started = time.perf_counter()
    Orchestrator(
        registry, context, progress_callback=lambda c, t: runtime.set_progress(c, t)
    ).execute()
    elapsed = time.perf_counter() - started
    gc.enable()
    runtime.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer items and repeats')
    args = parser.parse_args()
    items = 20_000 if args.quick else 100_000
    repeats = 3 if args.quick else 7

    # Interleaved, so that a noisy neighbour hurts both sides alike; best of each.
    baseline = console = float('inf')
    for _ in range(repeats):
        baseline = min(baseline, run_once(items, False, 0.1))
        console = min(console, run_once(items, True, 0.1))
    few = items // 20  # drawing every update is slow: measure it on fewer items
    unthrottled = run_once(few, True, 0.0) - run_once(few, False, 0.1)

    print(f'{items:,} items, best of {repeats} (interleaved)')
    print(f'{"run":<34}{"seconds":>10}{"us/item":>10}{"vs baseline":>13}')
    for label, seconds in (
        ('baseline (no progress)', baseline),
        ('console, throttled (default)', console),
    ):
        print(
            f'{label:<34}{seconds:>10.3f}{seconds / items * 1e6:>10.2f}{seconds / baseline:>12.3f}x'
        )
    overhead = (console - baseline) / baseline * 100
    per_update = (console - baseline) / items * 1e6
    verdict = 'MET' if overhead <= 5 else 'NOT MET'
    print(f'throttled: {per_update:.2f} us per progress update')
    print(f'unthrottled (every update drawn): {unthrottled / few * 1e6:.0f} us per update')
    print(f'throttled progress overhead: {overhead:+.1f}% (target <= 5%): {verdict}')


if __name__ == '__main__':
    main()
