"""What the benchmarks share: a no-op step, and timing with the garbage collector off."""

from __future__ import annotations

import gc
from collections.abc import Callable
from time import perf_counter
from typing import Any

from synapse_sdk.plugins.pipelines.steps import BaseStep, StepResult


class NoOpStep(BaseStep[Any]):
    """A step that does nothing, with the spec's property-style name and weight."""

    def __init__(self, index: int) -> None:
        self._name = f'step_{index}'

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return 1.0

    def can_skip(self, context: Any) -> bool:
        return False

    def execute(self, context: Any) -> StepResult:
        return StepResult(success=True)


def timed(run: Callable[[], object]) -> float:
    """Seconds ``run()`` takes, collected garbage first and the collector off meanwhile."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        started = perf_counter()
        run()
        return perf_counter() - started
    finally:
        if was_enabled:
            gc.enable()
