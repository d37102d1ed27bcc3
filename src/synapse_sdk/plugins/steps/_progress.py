"""Weighted progress, worked out once per workflow so that a run pays a compare per step."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate

EPSILON = 1e-9  # absorbs float error so that 0.2 + 0.6 of 1.0 reads 80, not 79


class ProgressPlan:
    """Where the overall percentage goes up, for one list of step weights.

    ``starts[i]`` is the weight done before step ``i``; ``scale`` turns done
    weight into a percentage. ``mark_steps``/``mark_percents`` list the
    few steps (at most 99) after which the percentage first reaches a new
    value, in step order; the last step's 100 is left to the end of the run.
    All weights zero: every step weighs the same. Once step ``i`` is
    ``fraction`` done, the overall figure is
    ``int((starts[i] + weights[i] * fraction) * scale + EPSILON)``, capped at 99.
    """

    __slots__ = ('mark_percents', 'mark_steps', 'scale', 'starts', 'weights')

    def __init__(self, step_weights: Sequence[float]) -> None:
        weights = list(step_weights)
        total = _total(weights)
        if total <= 0:  # all weights zero: progress by step count
            weights = [1.0] * len(weights)
            total = float(len(weights)) or 1.0
        elif not (math.isfinite(total) and math.isfinite(100.0 / total)):
            peak = max(weights)  # extreme magnitudes: relative to the largest, same shares
            weights = [w / peak for w in weights]
            total = math.fsum(weights)
        self.weights = weights
        self.scale = 100.0 / total
        # summed left to right, as a running total would be
        self.starts = list(accumulate(weights, initial=0.0))
        marks = _progress_marks(self.starts, self.scale)
        marks.pop(len(weights) - 1, None)
        self.mark_steps = list(marks)
        self.mark_percents = list(marks.values())


def _progress_marks(starts: list[float], scale: float) -> dict[int, int]:
    """``{step index: percentage}`` for the steps after which the run first reaches a new one.

    ``starts[i + 1]`` is the weight done after step ``i``; its percentage is
    ``int(done * scale + EPSILON)``, capped at 99. Weights are >= 0, so
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
        position = bisect_left(starts, (target - EPSILON) / scale, position)
        while position > 1 and int(starts[position - 1] * scale + EPSILON) >= target:
            position -= 1
        while position < end and int(starts[position] * scale + EPSILON) < target:
            position += 1
        if position == end:
            break
        reached = int(starts[position] * scale + EPSILON)
        marks[position - 1] = min(reached, 99)
        target = reached + 1
    return marks


def _total(weights: list[float]) -> float:
    try:
        return math.fsum(weights)
    except OverflowError:
        return math.inf
