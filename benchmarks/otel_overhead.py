"""What the OpenTelemetry listener costs per step, with the batch span processor.

Run with ``.venv/bin/python benchmarks/otel_overhead.py [--quick]`` (needs the
``otel`` extra).

An ``Orchestrator`` run of 1,000 no-op steps with an ``OtelListener`` on a
``TracerProvider`` with a ``BatchSpanProcessor`` (its defaults: spans queued,
exported from its own thread in batches of 512) and an exporter that drops
what it gets (the cost of the network is the collector's side), against:

* the same run without the listener (a bare run makes no events at all), and
* the same run with a listener that takes the same events and does nothing
  (every action run has listeners, its loggers: this is the listener's own cost).

The provider is flushed after each timed run, outside the timing, so that no
span is dropped for a full queue. Each figure is the best of N samples,
garbage collection off while timing, measured twice: as wall time
(``time.perf_counter``) and as the process's CPU time (``time.process_time``,
all threads: the batch processor's too), which a loaded machine disturbs much
less. Reported as µs of overhead per step and as a ratio.

Target: at most 20 µs per step against the run without the listener
(prints MET / NOT MET). Never asserts a time, always exits 0.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from _common import NoOpStep
from opentelemetry import version as otel_version
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from synapse_sdk.otel import OtelListener
from synapse_sdk.plugins.steps import (
    LIFECYCLE_EVENTS,
    BaseStepContext,
    Orchestrator,
    RunEvent,
    RunListener,
    StepRegistry,
)

STEPS = 1_000
TARGET_US_PER_STEP = 20.0


class DropExporter(SpanExporter):
    """Takes the batches and drops them; counts the spans, so that none go missing unseen."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class IdleListener(RunListener):
    """Takes what the OpenTelemetry listener takes, and does nothing with it."""

    listens_to = LIFECYCLE_EVENTS

    def on_event(self, event: RunEvent) -> None:
        pass


class _Runtime:
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
    pass


def registry(steps: int) -> StepRegistry[BenchContext]:
    built: StepRegistry[BenchContext] = StepRegistry()
    for i in range(steps):
        built.register(NoOpStep(i))
    return built


def timed(run: Callable[[], object], clock: Callable[[], float]) -> float:
    """Seconds of ``clock`` that ``run()`` takes, the garbage collector off meanwhile."""
    gc.collect()
    gc.disable()
    try:
        started = clock()
        run()
        return clock() - started
    finally:
        gc.enable()


def best_of(
    samples: int,
    steps: StepRegistry[BenchContext],
    mode: str,
    provider: TracerProvider,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Best time of ``samples`` runs; ``mode``: 'bare', 'idle' (a no-op listener) or 'otel'."""
    best = float('inf')
    for _ in range(samples):
        listeners: list[RunListener] = []
        if mode == 'idle':
            listeners.append(IdleListener())
        elif mode == 'otel':
            listeners.append(OtelListener(tracer_provider=provider, plugin='bench', action='run'))
        context = BenchContext(runtime_ctx=_Runtime())
        orchestrator = Orchestrator(steps, context, listeners=listeners)
        best = min(best, timed(orchestrator.execute, clock))
        provider.force_flush()  # outside the timing: the queue starts empty every sample
    return best


def batch_provider() -> tuple[TracerProvider, DropExporter]:
    exporter = DropExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, exporter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer samples')
    args = parser.parse_args(argv)
    samples = 3 if args.quick else 9
    print(
        f'Python {platform.python_version()} ({platform.python_implementation()}), '
        f'OpenTelemetry SDK {otel_version.__version__}, {platform.system()} {platform.machine()}'
    )
    print(f'{STEPS:,} no-op steps, BatchSpanProcessor (defaults), best of {samples}')
    provider, exporter = batch_provider()
    steps = registry(STEPS)
    best_of(1, steps, 'otel', provider)  # warm up imports and caches
    over = {}
    for clock, what in ((time.perf_counter, 'wall time'), (time.process_time, 'CPU time')):
        print(f'{what}:')
        figures = {m: best_of(samples, steps, m, provider, clock) for m in ('bare', 'idle', 'otel')}
        for mode, label in (('bare', 'bare run'), ('idle', 'no-op listener'), ('otel', 'otel')):
            seconds = figures[mode]
            print(f'  {label:<15} {seconds * 1e3:8.2f} ms  ({seconds / STEPS * 1e6:6.2f} µs/step)')
        over[what] = (figures['otel'] - figures['bare']) / STEPS * 1e6
        over_idle = (figures['otel'] - figures['idle']) / STEPS * 1e6
        print(
            f'  otel overhead   {over[what]:8.2f} µs/step vs the bare run '
            f'(ratio {figures["otel"] / figures["bare"]:.1f}x); '
            f'{over_idle:.2f} µs/step vs the no-op listener'
        )
    expected = (STEPS + 1) * (2 * samples + 1)
    print(f'spans exported: {exporter.spans:,} of {expected:,}')
    for what, figure in over.items():
        verdict = 'MET' if figure <= TARGET_US_PER_STEP else 'NOT MET'
        print(f'target <= {TARGET_US_PER_STEP:g} µs/step ({what}): {verdict}')
    provider.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
