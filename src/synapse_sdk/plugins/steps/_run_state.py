"""One run in progress: its state, and every change to it."""

from __future__ import annotations

from collections.abc import Callable
from time import time
from typing import Any

from ._cancellation import CancelToken, StepCancelled, StepInterrupted
from ._context import BaseStepContext, context_state, run_id_of
from ._events import (
    Progress,
    RollbackData,
    RunEvent,
    RunSummary,
    StepEnded,
    StepEvent,
    StepInfo,
    StepProgress,
    StepReused,
    StepSkipped,
)
from ._listeners import RunListener
from ._progress import EPSILON
from ._registry import RunPlan
from ._result import StepResult, describe_exception

ProgressCallback = Callable[[int, int], None]


class ActiveRun:
    """One run in progress: the orchestrator moves it from step to step, the context talks
    to it while a step runs (progress, rollback data, stop requests).

    Every change of the run's state is a method here, but for the three per-step
    fields the orchestrator's loop sets on a plain step's path, where a call per step
    would cost too much: ``index`` (the step executing now), ``result`` (the current
    step's, once it has one) and ``outcomes`` (by index, the result of each step that
    ran or was reused: what a failure undoes). ``progress`` is the workflow's
    :class:`ProgressPlan`, worked out before the first step, so the per-step cost of
    progress is one compare.

    On a timed run ``read`` is the run's clock, ``last`` the moment the current step
    began and ``excluded`` adds up the time listeners and the progress callback take,
    which is not the step's.
    """

    __slots__ = (
        '_hearers',
        '_infos',
        'attempt',
        'callback',
        'context',
        'excluded',
        'index',
        'last',
        'last_percent',
        'listeners',
        'names',
        'outcomes',
        'partial',
        'plan',
        'progress',
        'read',
        'record',
        'result',
        'reused',
        'run_id',
        'skipped',
        'step_weights',
        'stop',
    )

    def __init__(
        self,
        context: BaseStepContext,
        plan: RunPlan[Any],
        callback: ProgressCallback | None,
        listeners: list[RunListener],
        read: Callable[[], float] | None = None,
    ) -> None:
        self.plan = plan
        self.names = plan.names
        self.step_weights = plan.weights  # as declared; ``progress`` may have evened them out
        self.progress = plan.progress
        self.last_percent = 0
        self.callback = callback
        self.listeners = listeners
        self.context = context
        self.record = context.step_results.append
        self.run_id = run_id_of(context)
        self.outcomes: list[StepResult | None] = [None] * len(plan.steps)
        self.skipped = 0
        self.reused = 0
        self.index: int | None = None  # the step executing now, if any
        self.result: StepResult | None = None
        self.partial: dict[str, Any] = {}
        # set (from any thread) when the running step must stop: raised at its next
        # set_progress() or raise_if_cancelled()
        self.stop: StepInterrupted | None = None
        self.attempt = 1  # of the running step, for its failed result
        self.read = read
        self.last = 0.0
        self.excluded = 0.0
        self._infos: list[StepInfo] | None = None
        self._hearers: dict[type[RunEvent], list[RunListener]] = {}

    # the run as a whole ------------------------------------------------
    def open(self, token: CancelToken) -> None:
        """The run begins: the context talks to it, a cancel reaches it, its clock runs."""
        token.subscribe(self.interrupt_cancelled)
        self.context._active_run = self
        self._restart_timer()

    def close(self, token: CancelToken) -> None:
        token.unsubscribe(self.interrupt_cancelled)
        self.context._active_run = None
        self.context.current_step = None

    def interrupt(self, reason: StepInterrupted) -> None:
        """Ask the running step to stop (from any thread): it raises ``reason`` at its next
        ``set_progress()`` or ``raise_if_cancelled()``; no further step starts."""
        self.stop = reason

    def interrupt_cancelled(self, reason: str) -> None:
        self.interrupt(StepCancelled(reason))

    def summary(
        self,
        failed: int | None = None,
        error: BaseException | None = None,
        rollback_errors: tuple[str, ...] = (),
    ) -> RunSummary:
        """How the run ended: all done, or failed at step ``failed``."""
        outcomes = self.outcomes
        if failed is None:  # every step ran, was skipped or was reused
            executed = len(outcomes) - self.skipped - self.reused
        else:  # the steps up to the failed one that ran or were reused, less the reused
            executed = sum(1 for i in range(failed + 1) if outcomes[i] is not None) - self.reused
        return RunSummary(
            failed is None,
            executed,
            self.skipped,
            self.reused,
            len(outcomes),
            failed_step=None if failed is None else self.names[failed],
            error=error,
            rollback_errors=rollback_errors,
            cancelled=isinstance(error, StepCancelled),
        )

    # the steps, as the orchestrator goes through them -------------------
    def time_step(self, result: StepResult) -> None:
        """The executed step's duration on the run's clock, without the time listeners and
        the progress callback took; the next step's time starts now."""
        assert self.read is not None
        ended = self.read()
        result.duration_seconds = ended - self.last - self.excluded
        self.excluded = 0.0
        self.last = ended

    def take_partial(self, result: StepResult) -> None:
        """The rollback data recorded while the step ran goes into its result (what the
        step returned wins on a clash)."""
        result.rollback_data = {**self.partial, **result.rollback_data}
        self.partial = {}

    def skip(self, index: int, reason: object) -> None:
        """Step ``index`` is skipped (``reason``: what ``can_skip()`` returned, a string
        saying why or just true): it did nothing, and nothing of it is undone."""
        result = self.result = StepResult(skipped=True, step_name=self.names[index])
        self.record(result)
        self.skipped += 1
        if self.listeners:
            self.tell(StepSkipped, index, result, reason if isinstance(reason, str) else None)
        self._restart_timer()

    def reuse(self, index: int, result: StepResult) -> None:
        """Step ``index`` stands with ``result`` from an earlier run (it is not executed)."""
        self.result = self.outcomes[index] = result
        self.reused += 1
        if self.listeners:
            self.tell(StepReused, index, result)
        self._restart_timer()

    def _restart_timer(self) -> None:
        if self.read is not None:
            self.last = self.read()
            self.excluded = 0.0

    def keep_rollback_data(self, result: StepResult) -> None:
        """What a step that ran out of time says to undo (its result is not trusted)."""
        self.partial = {**self.partial, **result.rollback_data}

    def failed_attempt(self, index: int, error: BaseException) -> StepResult:
        """Step ``index``'s failed result for the running attempt, with the rollback data
        it recorded."""
        failed = StepResult.from_exception(error, rollback_data=dict(self.partial))
        failed.step_name = self.names[index]
        failed.attempts = self.attempt
        return failed

    def next_attempt(self) -> None:
        """The failed attempt was undone: the next one starts clean."""
        self.partial = {}
        self.stop = None
        self.attempt += 1

    def attempts_done(self, result: StepResult) -> StepResult:
        """The attempt that worked: ``result`` says how many it took; the next step starts at 1."""
        result.attempts = self.attempt
        self.attempt = 1
        return result

    def raised(self, index: int, error: BaseException, began: bool) -> StepResult:
        """Step ``index`` raised ``error`` (or was stopped) before it had a result: its failed
        result, with what it recorded to undo, recorded; timed if it ``began``."""
        result = self.failed_attempt(index, error)
        read = self.read
        if read is not None and began:
            result.duration_seconds = read() - self.last - self.excluded
        self.record(result)
        return result

    def unstand(self, index: int) -> None:
        """Step ``index`` finished, but reporting it failed: it no longer counts as done."""
        self.outcomes[index] = None

    def abandon(self) -> None:
        """A step failed: nothing of it is running any more."""
        self.partial = {}
        self.index = None
        self.stop = None
        self.attempt = 1

    # telling the listeners --------------------------------------------
    def infos(self) -> list[StepInfo]:
        """The steps as listeners see them, built on first need (never, without listeners)."""
        if self._infos is None:
            self._infos = [
                StepInfo(index, name, weight, undoes)
                for index, (name, weight, undoes) in enumerate(
                    zip(self.names, self.step_weights, self.plan.undoes, strict=True)
                )
            ]
        return self._infos

    def info(self, index: int) -> StepInfo:
        return self.infos()[index]

    def hearers(self, kind: type[RunEvent]) -> list[RunListener]:
        """The listeners that take events of ``kind`` (see ``RunListener.listens_to``), worked
        out on the first event of the kind."""
        found = self._hearers.get(kind)
        if found is None:
            found = [each for each in self.listeners if issubclass(kind, each.listens_to)]
            self._hearers[kind] = found
        return found

    def ended(self, index: int, result: StepResult) -> StepEnded:
        """The ``StepEnded`` event of step ``index``, with the context's state as it is now."""
        context = self.context
        state = context_state(context)
        return StepEnded(
            self.run_id, time(), self.info(index), result, state, type(context).__name__
        )

    def tell(self, kind: type[StepEvent], index: int, *fields: object) -> None:
        """Step ``index``'s event of type ``kind`` (``fields`` are its own, after the step)
        for the listeners that take it; one that raises fails the step. Not even made
        when none does."""
        hearers = self.hearers(kind)
        if hearers:
            event = kind(self.run_id, time(), self.infos()[index], *fields)
            self._deliver(event, hearers)

    def tell_ended(self, index: int, result: StepResult) -> None:
        """``StepEnded`` of step ``index`` (the context's state is read only if someone
        takes it); a listener that raises fails the step."""
        hearers = self.hearers(StepEnded)
        if hearers:
            self._deliver(self.ended(index, result), hearers)

    def deliver(self, event: RunEvent) -> None:
        """``event`` for the listeners that take it; one that raises fails the step."""
        self._deliver(event, self.hearers(type(event)))

    def _deliver(self, event: RunEvent, hearers: list[RunListener]) -> None:
        """On a timed run, the time this takes is not the running step's (a hot path with
        listeners: every ``set_progress``, so written out rather than through ``_aside``)."""
        read = self.read
        began = read() if read is not None else 0.0
        try:
            for listener in hearers:
                listener.on_event(event)
        finally:
            if read is not None:
                self.excluded += read() - began

    def deliver_safely(self, event: RunEvent, errors: list[str] | None = None) -> None:
        """``event`` for the listeners that take it; what one raises is noted in
        ``context.errors`` (and ``errors``), and stops nothing."""
        for listener in self.hearers(type(event)):
            try:
                listener.on_event(event)
            except Exception as exc:
                message = f'listener {type(listener).__name__} failed: {describe_exception(exc)}'
                self.context.errors.append(message)
                if errors is not None:
                    errors.append(message)

    def _aside(self, call: Callable[..., object], *args: object) -> None:
        """``call(*args)``; on a timed run, its time is not the running step's."""
        read = self.read
        if read is None:
            call(*args)
            return
        began = read()
        try:
            call(*args)
        finally:
            self.excluded += read() - began

    # progress ---------------------------------------------------------
    def reach_100(self) -> bool:
        """The run is done: the overall figure is 100 now; False if it already was."""
        if self.last_percent >= 100:
            return False
        self.last_percent = 100
        return True

    def step_progress(self, fraction: float) -> None:
        if self.stop is not None:
            raise self.stop
        index = self.index
        if index is None:
            return
        if self.listeners:
            self.tell(StepProgress, index, fraction)
        plan = self.progress  # the figure as ProgressPlan defines it; inline: a hot path
        percent = int((plan.starts[index] + plan.weights[index] * fraction) * plan.scale + EPSILON)
        if percent > self.last_percent:
            self.emit(percent if percent < 99 else 99)

    def emit(self, percent: int) -> None:
        # Capped at 99 until the run has finished: a bar at 100 means done.
        if percent <= self.last_percent:
            return
        self.last_percent = percent
        self._aside(self._report, percent)

    def _report(self, percent: int) -> None:
        if self.callback is not None:
            self.callback(percent, 100)
        if self.listeners and (hearers := self.hearers(Progress)):
            event = Progress(self.run_id, time(), percent, 100)
            for listener in hearers:
                listener.on_event(event)

    # partial rollback data -------------------------------------------
    def record_rollback(self, values: dict[str, Any]) -> None:
        self.partial.update(values)
        self._notify_rollback_data(values, None)

    def append_rollback(self, key: str, item: Any) -> None:
        bucket = self.partial.setdefault(key, [])
        if not isinstance(bucket, list):
            raise TypeError(
                f'append_rollback({key!r}): rollback_data[{key!r}] holds a '
                f'{type(bucket).__name__}, not a list'
            )
        bucket.append(item)
        self._notify_rollback_data({key: item}, key)

    def _notify_rollback_data(self, values: dict[str, Any], append_to: str | None) -> None:
        index = self.index
        if index is None:
            raise RuntimeError('rollback data can only be recorded while a step is executing')
        if self.listeners:
            self.tell(RollbackData, index, values, append_to)
