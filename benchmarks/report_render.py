"""What `synapse runs report` costs for a big run: a 1,000-step run, read and drawn.

Run with ``.venv/bin/python benchmarks/report_render.py [--quick]``.

A real run of 1,000 no-op steps (every tenth one retried once, the last one
failing so that all 1,000 are rolled back) is recorded by the run journal and
the JSON-lines logger, as ``synapse plugin run`` records it. Then, each the
best of N samples (``time.perf_counter``, garbage collection off while timing):

- baseline: reading the run's journal rows (``get_run`` + ``steps``), all
  that the old ``runs show`` read;
- ``load_run``: the rows, the rollback data recovery would use, the log
  parsed, the spans and the attempt history built;
- ``render_report``: the HTML with its inline SVG, from the loaded run;
- the terminal timeline (``gantt``) printed to a string.

Target: the whole report (load + render) within a second (prints MET / NOT
MET). Prints figures; never asserts a time, always exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import NoOpStep, timed
from rich.console import Console

from synapse_sdk.journal import Journal, JournalListener
from synapse_sdk.observe import gantt, load_run, render_report
from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RetryPolicy,
    StepRegistry,
    StepResult,
)
from synapse_sdk.runtime import JsonLinesLogger, RuntimeContext

STEPS = 1_000
TARGET_SECONDS = 1.0
RUN_ID = 'bench-report'


class FlakyStep(NoOpStep):
    """Fails its first attempt; retried at once."""

    retry = RetryPolicy(max_attempts=2, initial_delay=0.0, jitter=0.0)

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.failed = False

    def execute(self, context: Any) -> StepResult:
        if not self.failed:
            self.failed = True
            raise ConnectionError('first attempt fails')
        return StepResult(success=True)


class LastStep(NoOpStep):
    def execute(self, context: Any) -> StepResult:
        raise RuntimeError('the last step fails: everything is rolled back')


def record_run(folder: Path, steps: int) -> tuple[Journal, Path]:
    """A journaled, logged run of ``steps`` steps; the journal and the log's path."""
    journal = Journal(folder / 'runs.db')
    log = folder / f'{RUN_ID}.jsonl'
    registry: StepRegistry[Any] = StepRegistry()
    for i in range(steps - 1):
        step: BaseStep[Any] = FlakyStep(i) if i % 10 == 9 else NoOpStep(i)
        registry.register(step)
    registry.register(LastStep(steps - 1))
    logger = JsonLinesLogger(log, run_id=RUN_ID)
    runtime = RuntimeContext(logger=logger, run_id=RUN_ID)
    journal.start_run(RUN_ID, entrypoint='benchmarks:report_render', params={'steps': steps})
    context = BaseStepContext(runtime_ctx=runtime)
    listeners = [logger, JournalListener(journal, RUN_ID)]
    orchestrator = Orchestrator(registry, context, listeners=listeners, timing=True)
    with contextlib.suppress(RuntimeError):  # the last step fails on purpose
        orchestrator.execute()
    runtime.close()
    return journal, log


def best(samples: int, run: Any) -> float:
    return min(timed(run) for _ in range(samples))


def measure(steps: int, samples: int, folder: Path) -> dict[str, float]:
    """Seconds (best of ``samples``) per phase, for a run of ``steps`` steps."""
    journal, log = record_run(folder, steps)
    view = load_run(journal, RUN_ID, log)
    out = Console(file=io.StringIO(), width=140)
    return {
        'journal rows': best(samples, lambda: (journal.get_run(RUN_ID), journal.steps(RUN_ID))),
        'load_run': best(samples, lambda: load_run(journal, RUN_ID, log)),
        'render_report': best(samples, lambda: render_report(view)),
        'report (load + render)': best(
            samples, lambda: render_report(load_run(journal, RUN_ID, log))
        ),
        'terminal timeline': best(samples, lambda: out.print(gantt(view))),
        'spans': float(len(view.spans)),
        'html bytes': float(len(render_report(view))),
        'log lines': float(len(view.log)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer samples')
    args = parser.parse_args()
    samples = 3 if args.quick else 10
    with tempfile.TemporaryDirectory() as folder:
        figures = measure(STEPS, samples, Path(folder))
    print(f'Python {platform.python_version()} on {platform.machine()}, {STEPS} steps')
    print(
        f'{figures["spans"]:.0f} spans, {figures["log lines"]:.0f} log lines,'
        f' report {figures["html bytes"] / 1024:.0f} KiB'
    )
    base = figures['journal rows']
    for name in ('journal rows', 'load_run', 'render_report', 'report (load + render)',
                 'terminal timeline'):  # fmt: skip
        seconds = figures[name]
        print(f'{name:>24}: {seconds * 1000:8.1f} ms  {seconds / base:6.1f}x the journal rows')
    whole = figures['report (load + render)']
    verdict = 'MET' if whole <= TARGET_SECONDS else 'NOT MET'
    print(f'target: the report within {TARGET_SECONDS:g} s: {verdict}')


if __name__ == '__main__':
    sys.exit(main())
