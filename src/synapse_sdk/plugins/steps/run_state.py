"""Per-run state the context talks to while a step runs: progress, rollback data, stop requests."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from .cancellation import StepInterrupted
from .context import BaseStepContext
from .listeners import RunListener, StepInfo

ProgressCallback = Callable[[int, int], None]

_EPSILON = 1e-9  # absorbs float error so that 0.2 + 0.6 of 1.0 reads 80, not 79


def _progress_marks(starts: list[float], scale: float) -> dict[int, int]:
    """``{step index: percentage}`` for the steps after which the run first reaches a new one.

    ``starts[i + 1]`` is the weight done after step ``i``; its percentage is
    ``int(done * scale + _EPSILON)``, capped at 99. Weights are >= 0, so
    both only ever grow: bisect for the step that reaches each percentage,
    then settle the float rounding of that inverse with the forward formula,
    so the marks are exactly what summing step by step would report. At most
    99 bisections, however many steps there are.
    """
    end = len(starts)
    marks: dict[int, int] = {}
    position = 1  # in ``starts``: the step before it is done
    target = 1
    while target < 100:
        position = bisect_left(starts, (target - _EPSILON) / scale, position)
        while position > 1 and int(starts[position - 1] * scale + _EPSILON) >= target:
            position -= 1
        while position < end and int(starts[position] * scale + _EPSILON) < target:
            position += 1
        if position == end:
            break
        reached = int(starts[position] * scale + _EPSILON)
        marks[position - 1] = min(reached, 99)
        target = reached + 1
    return marks


def _total(weights: list[float]) -> float:
    try:
        return math.fsum(weights)
    except OverflowError:
        return math.inf


class ActiveRun:
    """Per-run state the context talks to while a step runs: progress and partial rollback data.

    Progress is planned once, before the first step: ``starts[i]`` is the
    weight done before step ``i`` and ``marks`` maps the few step indices
    after which the overall percentage goes up (at most 99 of them) to that
    percentage, so the per-step cost is a single dict lookup.
    """

    __slots__ = (
        '_infos',
        'attempt',
        'callback',
        'context',
        'index',
        'last_percent',
        'listeners',
        'marks',
        'names',
        'partial',
        'scale',
        'starts',
        'step_weights',
        'stop',
        'weights',
    )

    def __init__(
        self,
        context: BaseStepContext,
        names: list[str],
        step_weights: list[float],
        callback: ProgressCallback | None,
        listeners: list[RunListener],
    ) -> None:
        weights = step_weights
        total = _total(weights)
        if total <= 0:  # all weights zero: progress by step count
            weights = [1.0] * len(weights)
            total = float(len(weights)) or 1.0
        elif not (math.isfinite(total) and math.isfinite(100.0 / total)):
            peak = max(weights)  # extreme magnitudes: relative to the largest, same shares
            weights = [w / peak for w in weights]
            total = math.fsum(weights)
        scale = 100.0 / total
        # summed left to right, as a running total would be
        starts = list(accumulate(weights, initial=0.0))

        marks = _progress_marks(starts, scale)
        marks.pop(len(weights) - 1, None)  # the last step's 100 is reported when the run ends

        self.names = names
        self.step_weights = step_weights  # as declared; ``weights`` is what progress uses
        self.weights = weights
        self.scale = scale
        self.starts = starts
        self.marks = marks
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
        self._infos: list[StepInfo] | None = None

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

    # progress ---------------------------------------------------------
    def step_progress(self, fraction: float) -> None:
        if self.stop is not None:
            raise self.stop
        index = self.index
        if index is None:
            return
        if self.listeners:
            step = self.info(index)
            for listener in self.listeners:
                listener.on_step_progress(self.context, step, fraction)
        done_weight = self.starts[index] + self.weights[index] * fraction
        percent = int(done_weight * self.scale + _EPSILON)
        if percent > self.last_percent:
            self.emit(min(percent, 99))

    def emit(self, percent: int) -> None:
        # Capped at 99 until the run has finished: a bar at 100 means done.
        if percent <= self.last_percent:
            return
        self.last_percent = percent
        if self.callback is not None:
            self.callback(percent, 100)
        for listener in self.listeners:
            listener.on_progress(self.context, percent, 100)

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
            step = self.info(index)
            for listener in self.listeners:
                listener.on_rollback_data(self.context, step, values, append_to)
