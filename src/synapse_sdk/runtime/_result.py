"""A run's outcome in one shape: what ``synapse plugin run`` prints, success or not.

:class:`ResultRecorder` is a logger that watches the run's lifecycle events and
builds the :class:`RunResult`. The actions layer uses one for what a run returns
(``dispatch``, ``run_action``); the CLI puts one among the runtime's loggers to
report a run that raised, locally or on Ray (whose events reach the driver's loggers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from synapse_sdk.plugins.steps import (
    ErrorKind,
    RollbackEnded,
    RunEnded,
    RunEvent,
    RunStarted,
    RunSummary,
    StepEnded,
    StepExecutionError,
    StepReused,
    StepSkipped,
    SynapseError,
)
from synapse_sdk.plugins.steps.support import describe_exception

from .loggers import Logger


@dataclass(frozen=True, slots=True)
class RollbackOutcome:
    """What a failed run's rollback did: ``status`` ``'rolled_back'`` (every rollback it
    needed undid its work) or ``'rollback_failed'``; ``rolled_back`` names the steps whose
    ``rollback()`` undid their work, newest first (a step without one is not named);
    ``errors`` says what could not be undone."""

    status: str
    rolled_back: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            'status': self.status,
            'rolled_back': list(self.rolled_back),
            'errors': list(self.errors),
        }


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended, as ``plugin run`` prints it (``to_dict()``) and ``dispatch`` returns it.

    ``status``: ``'succeeded'``, ``'failed'`` or ``'cancelled'``. ``steps`` holds each
    executed step's data (a successful run's; empty for a failed one, whose work was
    rolled back); ``executed`` names the steps that ran and succeeded, ``skipped`` maps
    each skipped step to the reason its ``can_skip()`` gave (None: it gave none),
    ``reused`` names the steps a resumed run carried over. ``output``: what a plain-mode
    action's ``execute()`` returned (None in step mode).
    """

    success: bool
    status: str
    run_id: str | None
    steps_total: int = 0
    steps_executed: int = 0
    steps_skipped: int = 0
    steps_reused: int = 0
    executed: tuple[str, ...] = ()
    skipped: Mapping[str, str | None] = field(default_factory=dict)
    reused: tuple[str, ...] = ()
    failed_step: str | None = None
    error: str | None = None
    rollback: RollbackOutcome | None = None
    steps: Mapping[str, Any] = field(default_factory=dict)
    output: Mapping[str, Any] | None = None

    @classmethod
    def plain(cls, output: Mapping[str, Any], run_id: str | None) -> RunResult:
        """A plain-mode run (no steps) that returned ``output``."""
        return cls(True, 'succeeded', run_id, output=dict(output))

    def to_dict(self) -> dict[str, Any]:
        return {
            'success': self.success,
            'status': self.status,
            'run_id': self.run_id,
            'error': self.error,
            'failed_step': self.failed_step,
            'steps_total': self.steps_total,
            'steps_executed': self.steps_executed,
            'steps_skipped': self.steps_skipped,
            'steps_reused': self.steps_reused,
            'executed': list(self.executed),
            'skipped': dict(self.skipped),
            'reused': list(self.reused),
            'rollback': None if self.rollback is None else self.rollback.to_dict(),
            'steps': dict(self.steps),
            'output': None if self.output is None else dict(self.output),
        }


class ResultRecorder(Logger):
    """Builds the run's :class:`RunResult` from its lifecycle events.

    Starts afresh at each ``RunStarted``; rollback events before it (a resume undoing
    the partial work it found) count until then, so a resume that fails there still
    reports what it undid.
    """

    listens_to = (RunStarted, StepEnded, StepSkipped, StepReused, RollbackEnded, RunEnded)

    def __init__(self) -> None:
        self.started = False  # a run of steps began (a plain-mode run sends no events)
        self._reset(0)

    def _reset(self, total: int) -> None:
        self.total = total
        self.executed: list[str] = []
        self.skipped: dict[str, str | None] = {}
        self.reused: list[str] = []
        self.rolled_back: list[str] = []
        self.rollback_errors: list[str] = []
        self.rollback_ran = False
        self.summary: RunSummary | None = None

    def on_event(self, event: RunEvent) -> None:
        match event:
            case RunStarted(steps=steps):
                self.started = True
                self._reset(len(steps))
            case StepEnded(step=step, result=result) if result.success:
                self.executed.append(step.name)
            case StepSkipped(step=step, reason=reason):
                self.skipped[step.name] = reason
            case StepReused(step=step):
                self.reused.append(step.name)
            case RollbackEnded(step=step, error=error):
                self.rollback_ran = True
                if error is not None:
                    self.rollback_errors.append(
                        f"rollback of step '{step.name}' failed: {describe_exception(error)}"
                    )
                elif step.can_rollback:
                    self.rolled_back.append(step.name)
            case RunEnded(summary=summary):
                self.summary = summary

    def returned(self, value: Mapping[str, Any], run_id: str | None) -> dict[str, Any]:
        """What a run that returned ``value`` reports: a run of steps returns its result
        already (``dispatch``, ``run_action``); a plain-mode run returned its ``execute()``
        dict, which goes under ``output``."""
        if self.started:
            return dict(value)
        return RunResult.plain(value, run_id).to_dict()

    def result(
        self,
        run_id: str | None,
        *,
        steps: Mapping[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> RunResult:
        """The run's result; ``error``: what the run raised, if it did (it says what the
        events could not: a run that never started, a Ray worker that died)."""
        summary = self.summary
        if error is None and summary is not None and summary.success:
            return RunResult(
                success=True,
                status='succeeded',
                run_id=run_id,
                steps_total=summary.steps_total,
                steps_executed=summary.steps_executed,
                steps_skipped=summary.steps_skipped,
                steps_reused=summary.steps_reused,
                executed=tuple(self.executed),
                skipped=dict(self.skipped),
                reused=tuple(self.reused),
                steps=dict(steps or {}),
            )
        return self._failure(run_id, summary, error)

    def _failure(
        self, run_id: str | None, summary: RunSummary | None, error: BaseException | None
    ) -> RunResult:
        failed_step = summary.failed_step if summary is not None else None
        if failed_step is None and isinstance(error, StepExecutionError):
            failed_step = error.step_name
        return RunResult(
            success=False,
            status='cancelled' if _cancelled(summary, error) else 'failed',
            run_id=run_id,
            steps_total=summary.steps_total if summary is not None else self.total,
            steps_executed=len(self.executed) if summary is None else summary.steps_executed,
            steps_skipped=len(self.skipped) if summary is None else summary.steps_skipped,
            steps_reused=len(self.reused) if summary is None else summary.steps_reused,
            executed=tuple(self.executed),
            skipped=dict(self.skipped),
            reused=tuple(self.reused),
            failed_step=failed_step,
            error=_error_text(summary, error),
            rollback=self._rollback(summary, error),
        )

    def _rollback(
        self, summary: RunSummary | None, error: BaseException | None
    ) -> RollbackOutcome | None:
        """What the rollback did, from its events (or, where none reached us, from the error
        that reports it); None when no rollback ran."""
        errors = list(summary.rollback_errors) if summary is not None else self.rollback_errors
        rolled_back = self.rolled_back
        if not self.rollback_ran and isinstance(error, StepExecutionError):
            errors = errors or error.rollback_errors
            rolled_back = error.rolled_back or []
        elif not self.rollback_ran and (summary is None or summary.success):
            return None
        status = 'rollback_failed' if errors else 'rolled_back'
        return RollbackOutcome(status, tuple(rolled_back), tuple(errors))


def _cancelled(summary: RunSummary | None, error: BaseException | None) -> bool:
    if summary is not None and (summary.cancelled or summary.interrupted):
        return True
    if isinstance(error, SynapseError):
        return error.kind is ErrorKind.CANCELLED
    return isinstance(error, KeyboardInterrupt | SystemExit)


def _error_text(summary: RunSummary | None, error: BaseException | None) -> str | None:
    """The cause, as ``'Type: message'``: a failed step's own error, not the wrapper's."""
    if isinstance(error, StepExecutionError):
        return error.result.error
    if error is not None:
        return describe_exception(error)
    if summary is not None and summary.error is not None:
        return describe_exception(summary.error)
    return None
