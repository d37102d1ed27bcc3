"""A logger that keeps everything in lists, for tests and notebooks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from synapse_sdk.plugins.steps import BaseStepContext, RunSummary, StepInfo, StepResult

from .base import Logger


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    event: str
    data: dict[str, Any]
    file: str | None
    level: str


class MemoryLogger(Logger):
    """Records events, progress, metrics and lifecycle calls for inspection."""

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []
        self.progress_updates: list[tuple[float, float, str]] = []
        self.metric_updates: list[tuple[dict[str, Any], str]] = []
        self.lifecycle: list[tuple[str, str | None]] = []
        self.closed = False

    def log(self, event: str, data: dict[str, Any], file: str | None, level: str) -> None:
        self.events.append(LoggedEvent(event, dict(data), file, level))

    def progress(self, current: float, total: float, category: str) -> None:
        self.progress_updates.append((current, total, category))

    def metrics(self, value: dict[str, Any], category: str) -> None:
        self.metric_updates.append((dict(value), category))

    def close(self) -> None:
        self.closed = True

    def event_names(self) -> list[str]:
        return [e.event for e in self.events]

    def progress_of(self, category: str) -> list[float]:
        """Percentages reported under ``category`` (``'overall'`` for the run's figure)."""
        return [100.0 * c / t for c, t, cat in self.progress_updates if cat == category]

    # lifecycle ---------------------------------------------------------
    def on_run_start(self, context: BaseStepContext, steps: Sequence[StepInfo]) -> None:
        self.lifecycle.append(('run_start', None))

    def on_step_start(self, context: BaseStepContext, step: StepInfo) -> None:
        self.lifecycle.append(('step_start', step.name))

    def on_step_end(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        self.lifecycle.append(('step_end' if result.success else 'step_failed', step.name))

    def on_step_retry(
        self,
        context: BaseStepContext,
        step: StepInfo,
        attempt: int,
        result: StepResult,
        delay: float,
    ) -> None:
        self.lifecycle.append(('step_retry', step.name))

    def on_step_skip(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        self.lifecycle.append(('step_skip', step.name))

    def on_rollback_start(
        self, context: BaseStepContext, step: StepInfo, result: StepResult
    ) -> None:
        self.lifecycle.append(('rollback_start', step.name))

    def on_rollback_end(
        self, context: BaseStepContext, step: StepInfo, error: BaseException | None
    ) -> None:
        self.lifecycle.append(('rollback_end' if error is None else 'rollback_failed', step.name))

    def on_run_end(self, context: BaseStepContext, summary: RunSummary) -> None:
        self.lifecycle.append(('run_end', 'succeeded' if summary.success else 'failed'))
