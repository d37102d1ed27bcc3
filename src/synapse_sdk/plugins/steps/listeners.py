"""Lifecycle events of a run, for the layers above the core.

Loggers, the run journal and the Ray relay subclass :class:`RunListener`
and pass instances to ``Orchestrator(..., listeners=[...])``. The core never
imports them. Every method is a no-op here, so a listener overrides only
what it needs.

Order of events for a run of steps ``a, b`` where ``b`` fails::

    on_run_start
    on_step_start(a)  [on_rollback_data(a) ...]  [on_progress ...]  on_step_end(a)
    on_step_start(b)  ...  on_step_end(b, failed result)
    on_rollback_start(b)  on_rollback_end(b)
    on_rollback_start(a)  on_rollback_end(a)
    on_run_end(success=False)

A skipped step gets ``on_step_skip`` instead of start/end; a step whose
result was carried over from an earlier run (resume) gets ``on_step_reused``;
a failed attempt that will be retried gets ``on_step_retry`` once that
attempt's own rollback has run (without rollback events).

Errors raised by a listener: in ``on_step_start``/``on_step_end``/
``on_rollback_data``/``on_progress`` they count as the running step's failure
(a journal that cannot record a step must not let the run go on
unrecorded); in rollback and run-end events they are collected into
``context.errors`` and never stop the remaining rollbacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .context import BaseStepContext
from .result import StepResult


@dataclass(frozen=True, slots=True)
class StepInfo:
    """A step as the run plans it."""

    index: int
    name: str
    weight: float


@dataclass(frozen=True, slots=True)
class RunSummary:
    """How a run ended, as listeners see it."""

    success: bool
    steps_executed: int
    steps_skipped: int
    steps_reused: int
    steps_total: int
    failed_step: str | None = None
    error: BaseException | None = None
    rollback_errors: tuple[str, ...] = ()
    cancelled: bool = False

    @property
    def interrupted(self) -> bool:
        """True when the run stopped on KeyboardInterrupt/SystemExit rather than a step error."""
        return self.error is not None and not isinstance(self.error, Exception)


class RunListener:
    """Receives a run's lifecycle events; override the ones you need."""

    def on_run_start(self, context: BaseStepContext, steps: Sequence[StepInfo]) -> None: ...

    def on_step_start(self, context: BaseStepContext, step: StepInfo) -> None: ...

    def on_step_end(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        """The step finished (``result.success`` says how); rollback data is final here."""

    def on_step_skip(
        self, context: BaseStepContext, step: StepInfo, result: StepResult
    ) -> None: ...

    def on_step_reused(
        self, context: BaseStepContext, step: StepInfo, result: StepResult
    ) -> None: ...

    def on_rollback_data(
        self,
        context: BaseStepContext,
        step: StepInfo,
        values: dict[str, Any],
        append_to: str | None,
    ) -> None:
        """Partial rollback data recorded mid-step.

        ``append_to`` is None for ``record_rollback(**values)``; otherwise it is
        the key ``append_rollback(key, item)`` appended ``values[key]`` to.
        """

    def on_progress(self, context: BaseStepContext, current: int, total: int) -> None: ...

    def on_step_retry(
        self,
        context: BaseStepContext,
        step: StepInfo,
        attempt: int,
        result: StepResult,
        delay: float,
    ) -> None:
        """Attempt ``attempt`` failed (``result``) and its partial work was rolled back;
        the step runs again after ``delay`` seconds."""

    def on_step_overdue(self, context: BaseStepContext, step: StepInfo, limit: float) -> None:
        """The step ran past its timeout and could not be stopped in its thread (blocked in
        C code). Called from a timer thread; only the process's owner can end it now."""

    def on_step_progress(self, context: BaseStepContext, step: StepInfo, fraction: float) -> None:
        """The running step reported its own progress (0.0..1.0)."""

    def on_rollback_start(
        self, context: BaseStepContext, step: StepInfo, result: StepResult
    ) -> None: ...

    def on_rollback_end(
        self, context: BaseStepContext, step: StepInfo, error: BaseException | None
    ) -> None: ...

    def on_run_end(self, context: BaseStepContext, summary: RunSummary) -> None: ...
