"""Per-run state the context talks to while a step runs: progress, rollback data, stop requests."""

from __future__ import annotations

from collections.abc import Callable
from time import time
from typing import Any

from .cancellation import StepInterrupted
from .context import BaseStepContext, run_id_of
from .events import Progress, RollbackData, RunEvent, StepEvent, StepInfo, StepProgress
from .listeners import RunListener
from .progress import EPSILON
from .registry import RunPlan

ProgressCallback = Callable[[int, int], None]


class ActiveRun:
    """Per-run state the context talks to while a step runs: progress and partial rollback data.

    ``progress`` is the workflow's :class:`ProgressPlan`, worked out before
    the first step, so the per-step cost of progress is one compare.

    When the run is timed, ``clock`` is its clock and ``excluded`` adds up
    the time listeners and the progress callback take, which the
    orchestrator takes off the running step's duration.
    """

    __slots__ = (
        '_infos',
        'attempt',
        'callback',
        'clock',
        'context',
        'excluded',
        'index',
        'last_percent',
        'listeners',
        'names',
        'partial',
        'progress',
        'run_id',
        'step_weights',
        'stop',
    )

    def __init__(
        self,
        context: BaseStepContext,
        plan: RunPlan[Any],
        callback: ProgressCallback | None,
        listeners: list[RunListener],
    ) -> None:
        self.names = plan.names
        self.step_weights = plan.weights  # as declared; ``progress`` may have evened them out
        self.progress = plan.progress
        self.last_percent = 0
        self.callback = callback
        self.listeners = listeners
        self.context = context
        self.index: int | None = None  # the step executing now, if any
        self.partial: dict[str, Any] = {}
        # set (from any thread) when the running step must stop: raised at its next
        # set_progress() or raise_if_cancelled()
        self.stop: StepInterrupted | None = None
        self.attempt = 1  # of the running step, for its failed result
        self.clock: Callable[[], float] | None = None
        self.excluded = 0.0
        self._infos: list[StepInfo] | None = None
        self.run_id = run_id_of(context)

    def infos(self) -> list[StepInfo]:
        """The steps as listeners see them, built on first need (never, without listeners)."""
        if self._infos is None:
            self._infos = [
                StepInfo(index, name, weight)
                for index, (name, weight) in enumerate(
                    zip(self.names, self.step_weights, strict=True)
                )
            ]
        return self._infos

    def info(self, index: int) -> StepInfo:
        return self.infos()[index]

    def tell(self, kind: Callable[..., StepEvent], index: int, *fields: object) -> None:
        """Step ``index``'s event of type ``kind`` for every listener; one that raises fails
        the step. ``fields`` are the event's own, after the step."""
        self.deliver(kind(self.run_id, time(), self.infos()[index], *fields))

    def deliver(self, event: RunEvent) -> None:
        """``event`` for every listener; one that raises fails the step.

        On a timed run, the time it takes is not the running step's (a hot path with
        listeners: every ``set_progress``, so written out rather than through ``_aside``).
        """
        clock = self.clock
        began = clock() if clock is not None else 0.0
        try:
            for listener in self.listeners:
                listener.on_event(event)
        finally:
            if clock is not None:
                self.excluded += clock() - began

    def _aside(self, call: Callable[..., object], *args: object) -> None:
        """``call(*args)``; on a timed run, its time is not the running step's."""
        clock = self.clock
        if clock is None:
            call(*args)
            return
        began = clock()
        try:
            call(*args)
        finally:
            self.excluded += clock() - began

    # progress ---------------------------------------------------------
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
        if self.listeners:
            event = Progress(self.run_id, time(), percent, 100)
            for listener in self.listeners:
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
