"""A run's lifecycle events: one small frozen value per thing that happened.

The orchestrator hands each event to the ``on_event`` of every listener that
takes its kind (see :mod:`.listeners`). An event carries what a listener needs (the run id, the
step, its result, a timestamp) and never the context object, so it pickles
as it is: the Ray relay ships events to the driver unchanged, and adding a
field later breaks no listener. Modelled on Temporal's interceptor inputs
(one dataclass per hook) and Hamilton's lifecycle hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._result import StepResult

RELAYED = 'relayed'
"""Field metadata key: ``False`` marks a field that matters only in the run's own process
(the context's state); a relay to another process leaves it empty."""


@dataclass(frozen=True, slots=True)
class StepInfo:
    """A step as the run plans it; ``can_rollback``: whether its ``rollback()`` undoes
    anything (``BaseStep.can_rollback``, read at registration)."""

    index: int
    name: str
    weight: float
    can_rollback: bool = True


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


@dataclass(frozen=True, slots=True)
class RunEvent:
    """What every event carries: the run's id (None when the runtime names none) and when
    it happened (``time.time()``, seconds since the epoch)."""

    run_id: str | None
    at: float


@dataclass(frozen=True, slots=True)
class StepEvent(RunEvent):
    """An event about one step."""

    step: StepInfo


@dataclass(frozen=True, slots=True)
class RunStarted(RunEvent):
    """Before the first step; ``steps`` is the whole plan."""

    steps: tuple[StepInfo, ...]


@dataclass(frozen=True, slots=True)
class StepStarted(StepEvent):
    """Before the step's ``execute()`` (after ``can_skip()`` said no)."""


@dataclass(frozen=True, slots=True)
class RollbackData(StepEvent):
    """Rollback data recorded while the step runs.

    ``append_to`` is None for ``record_rollback(**values)``; otherwise it is the
    key ``append_rollback(key, item)`` appended ``values[key]`` to.
    """

    values: Mapping[str, Any]
    append_to: str | None


@dataclass(frozen=True, slots=True)
class StepProgress(StepEvent):
    """The running step reported its own progress, ``fraction`` of it done (0.0..1.0)."""

    fraction: float


@dataclass(frozen=True, slots=True)
class Progress(RunEvent):
    """The overall figure moved: ``current`` of ``total`` (always 100), as the callback gets it."""

    current: int
    total: int


@dataclass(frozen=True, slots=True)
class StepEnded(StepEvent):
    """The step finished (``result.success`` says how); ``result.rollback_data`` is final.

    ``context_state`` holds the context's own fields as the step left them (the
    values themselves, not copies: read them during the call), those marked
    ``field(metadata={'snapshot': False})`` left out; ``context_type`` names the
    context's class. The run journal snapshots them.
    """

    result: StepResult
    context_state: Mapping[str, Any] = field(metadata={RELAYED: False})
    context_type: str


@dataclass(frozen=True, slots=True)
class StepSkipped(StepEvent):
    """Instead of start and end: ``can_skip()`` said yes; ``reason`` is the string it
    returned to say why (None when it returned True)."""

    result: StepResult
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StepReused(StepEvent):
    """Instead of start and end: the step's result was carried over from an earlier run."""

    result: StepResult


@dataclass(frozen=True, slots=True)
class StepRetrying(StepEvent):
    """Attempt ``attempt`` failed (``result``) and its partial work was rolled back;
    the step runs again after ``delay`` seconds."""

    attempt: int
    result: StepResult
    delay: float


@dataclass(frozen=True, slots=True)
class StepOverdue(StepEvent):
    """The step ran past its timeout (``limit`` seconds) and could not be stopped in its
    thread (blocked in C code). Sent from a timer thread; only the process's owner can
    end it now."""

    limit: float


@dataclass(frozen=True, slots=True)
class RollbackStarted(StepEvent):
    """Before the step's ``rollback()``, which receives ``result``."""

    result: StepResult


@dataclass(frozen=True, slots=True)
class RollbackEnded(StepEvent):
    """After the step's ``rollback()``; ``error`` is what it raised, if anything."""

    error: BaseException | None


@dataclass(frozen=True, slots=True)
class RunEnded(RunEvent):
    """Last: how the run ended."""

    summary: RunSummary


LIFECYCLE_EVENTS: tuple[type[RunEvent], ...] = (
    RunStarted,
    StepStarted,
    StepEnded,
    StepSkipped,
    StepReused,
    StepRetrying,
    StepOverdue,
    RollbackStarted,
    RollbackEnded,
    RunEnded,
)
"""The run's course, step by step: what loggers show (as a ``listens_to``)."""

IN_STEP_EVENTS: tuple[type[RunEvent], ...] = (StepProgress, Progress, RollbackData)
"""Sent while a step runs, as often as it reports: what only some listeners need."""
