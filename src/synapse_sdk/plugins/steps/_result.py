"""The value every step returns, and the one the orchestrator makes for a step that raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _utc_now() -> datetime:
    return datetime.now(UTC)


def describe_exception(exc: BaseException) -> str:
    """``"ValueError: bad input"``: the type is often the most useful half of the message."""
    message = str(exc)
    return f'{type(exc).__name__}: {message}' if message else type(exc).__name__


@dataclass
class StepResult:
    """Outcome of one step.

    The first six fields are the spec's. ``step_name``, ``exception``,
    ``duration_seconds`` and ``attempts`` are filled in by the orchestrator so
    that a result read later (a log, the run journal) still says where it came
    from and why it failed.
    """

    success: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    rollback_data: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    timestamp: datetime = field(default_factory=_utc_now)
    step_name: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    duration_seconds: float | None = None
    attempts: int = 1

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        data: dict[str, Any] | None = None,
        rollback_data: dict[str, Any] | None = None,
    ) -> StepResult:
        """A failed result that keeps the exception (its type, message and traceback)."""
        return cls(
            success=False,
            error=describe_exception(exc),
            exception=exc,
            data=data if data is not None else {},
            rollback_data=rollback_data if rollback_data is not None else {},
        )
