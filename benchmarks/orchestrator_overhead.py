"""Per-step overhead of the Orchestrator against a plain loop over the same steps.

Run with ``.venv/bin/python benchmarks/orchestrator_overhead.py [--quick]``.

For N no-op steps (N = 1,000, 10,000, 100,000) this times:

* the floor: a plain loop over the step objects that does the least a runner
  must do: ``step.can_skip(ctx)``, ``step.execute(ctx)`` (which builds a
  ``StepResult``), append the result to ``ctx.step_results`` (the list the
  orchestrator keeps them in, so both keep the same objects alive for as
  long), call the progress callback;
* the orchestrator: creating an ``Orchestrator`` over a prebuilt registry and
  calling ``execute()`` (registering the steps is not timed), with its
  defaults: no listeners, so results are not timed (``timing=None``);
* for information, the orchestrator with ``timing=True`` (every action run
  times its steps): what measuring ``duration_seconds`` adds.

Each figure is the best of several samples (``time.perf_counter``, garbage
collection off while timing, as ``timeit`` does); a sample runs enough
workflows to cover about 100,000 steps so small N are not lost in timer noise.
Prints figures and whether the targets hold; never asserts, always exits 0.

Targets: orchestrator/floor <= 1.3 at every N, and the orchestrator's
per-step cost at 100k within 20% of its cost at 1k.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _common import NoOpStep, timed

from synapse_sdk.plugins.pipelines.steps import (
    BaseStepContext,
    Orchestrator,
    StepRegistry,
)

SIZES = (1_000, 10_000, 100_000)
STEPS_PER_SAMPLE = 100_000  # each timed sample runs at least this many steps
MAX_RATIO = 1.3
MAX_LINEARITY_DRIFT = 0.20


class _Runtime:
    """A runtime context that does nothing."""

    client: Any = None

    def log(self, event: str, data: dict[str, Any] | None = None, file: str | None = None) -> None:
        pass

    def set_progress(self, current: float, total: float, category: str | None = None) -> None:
        pass

    def set_metrics(self, value: dict[str, Any], category: str) -> None:
        pass


@dataclass(kw_only=True)
class BenchContext(BaseStepContext):
    pass


def _progress(current: int, total: int) -> None:
    pass


def _new_context() -> BenchContext:
    return BenchContext(runtime_ctx=_Runtime())


def _run_floor(steps: list[NoOpStep], ctx: BenchContext) -> None:
    append = ctx.step_results.append  # kept as long as the orchestrator's results are
    callback = _progress
    total = len(steps)
    for index, step in enumerate(steps, 1):
        if not step.can_skip(ctx):
            append(step.execute(ctx))
        callback(index, total)


def _run_orchestrator(
    registry: StepRegistry[BenchContext], ctx: BenchContext, timing: bool | None = None
) -> None:
    Orchestrator(registry, ctx, _progress, timing=timing).execute()


def _sample(run: Callable[[BenchContext], None], runs: int) -> float:
    """Seconds for ``runs`` workflows, each on a fresh (untimed) context."""
    contexts = [_new_context() for _ in range(runs)]

    def all_runs() -> None:
        for ctx in contexts:
            run(ctx)

    return timed(all_runs)


def measure(n: int, repeats: int) -> tuple[float, float, float]:
    """Best floor, orchestrator and timed-orchestrator cost per step, in µs, for ``n`` steps."""
    steps = [NoOpStep(i) for i in range(n)]
    registry: StepRegistry[BenchContext] = StepRegistry()
    for step in steps:
        registry.register(step)
    runs = max(1, STEPS_PER_SAMPLE // n)

    def floor(ctx: BenchContext) -> None:
        _run_floor(steps, ctx)

    def orchestrated(ctx: BenchContext) -> None:
        _run_orchestrator(registry, ctx)

    def orchestrated_timed(ctx: BenchContext) -> None:
        _run_orchestrator(registry, ctx, timing=True)

    paths = (floor, orchestrated, orchestrated_timed)
    for path in paths:  # warm up
        path(_new_context())
    best = [float('inf')] * len(paths)
    for _ in range(repeats):  # interleaved, so all see the same machine state
        for i, path in enumerate(paths):
            best[i] = min(best[i], _sample(path, runs))
    per_step = 1e6 / (runs * n)
    return best[0] * per_step, best[1] * per_step, best[2] * per_step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument('--quick', action='store_true', help='fewer repetitions (smoke test)')
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 7

    print(
        f'Python {platform.python_version()} ({platform.python_implementation()}), '
        f'best of {repeats}, ~{STEPS_PER_SAMPLE:,} steps per sample'
        + (' [--quick]' if args.quick else '')
    )
    header = (
        f'{"N":>9}  {"floor us/step":>14}  {"orch us/step":>13}  {"orch/floor":>10}'
        f'  {"timed us/step":>14}  {"timed/floor":>11}'
    )
    print(header)
    print('-' * len(header))
    results: dict[int, tuple[float, float]] = {}
    for n in SIZES:
        floor_us, orch_us, timed_us = measure(n, repeats)
        results[n] = (floor_us, orch_us)
        print(
            f'{n:>9,}  {floor_us:>14.3f}  {orch_us:>13.3f}  {orch_us / floor_us:>9.2f}x'
            f'  {timed_us:>14.3f}  {timed_us / floor_us:>10.2f}x'
        )

    ratios = {n: orch / floor for n, (floor, orch) in results.items()}
    linearity = results[SIZES[-1]][1] / results[SIZES[0]][1]
    worst_n = max(ratios, key=ratios.__getitem__)
    print()
    print(
        f'linearity (orch us/step at {SIZES[-1]:,} / at {SIZES[0]:,}): {linearity:.2f}x'
        f'   (floor: {results[SIZES[-1]][0] / results[SIZES[0]][0]:.2f}x)'
    )
    ratio_ok = all(r <= MAX_RATIO for r in ratios.values())
    linear_ok = abs(linearity - 1.0) <= MAX_LINEARITY_DRIFT
    print(
        f'target ratio <= {MAX_RATIO:.1f}x at every N: {"MET" if ratio_ok else "NOT MET"}'
        f' (worst {ratios[worst_n]:.2f}x at N={worst_n:,})'
    )
    print(
        f'target per-step cost at {SIZES[-1]:,} within {MAX_LINEARITY_DRIFT:.0%} of '
        f'{SIZES[0]:,}: {"MET" if linear_ok else "NOT MET"} ({linearity:.2f}x)'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
