"""A logger that keeps everything in lists, for tests and notebooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synapse_sdk.plugins.steps import (
    LIFECYCLE_EVENTS,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunStarted,
    StepEnded,
    StepRetrying,
    StepSkipped,
    StepStarted,
)

from ._base import Logger


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    event: str
    data: dict[str, Any]
    file: str | None
    level: str


class MemoryLogger(Logger):
    """Records events, progress, metrics and lifecycle calls for inspection."""

    listens_to = LIFECYCLE_EVENTS

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
    def on_event(self, event: RunEvent) -> None:
        entry = _entry_of(event)
        if entry is not None:
            self.lifecycle.append(entry)


def _entry_of(event: RunEvent) -> tuple[str, str | None] | None:
    """``(what, step name)`` for the lifecycle list; None for events it leaves out."""
    match event:
        case RunStarted():
            return ('run_start', None)
        case StepStarted(step=step):
            return ('step_start', step.name)
        case StepEnded(step=step, result=result):
            return ('step_end' if result.success else 'step_failed', step.name)
        case StepRetrying(step=step):
            return ('step_retry', step.name)
        case StepSkipped(step=step):
            return ('step_skip', step.name)
        case RollbackStarted(step=step):
            return ('rollback_start', step.name)
        case RollbackEnded(step=step, error=error):
            return ('rollback_end' if error is None else 'rollback_failed', step.name)
        case RunEnded(summary=summary):
            return ('run_end', 'succeeded' if summary.success else 'failed')
    return None
