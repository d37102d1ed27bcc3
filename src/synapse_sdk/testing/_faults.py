"""Fault injection: make a step fail on chosen attempts, or cancel a run at a step."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Sequence
from typing import Any

from synapse_sdk.plugins.steps import (
    BaseStep,
    RunEvent,
    RunListener,
    StepResult,
    StepStarted,
    StepWrapper,
)
from synapse_sdk.runtime import RuntimeContext


class FaultyStep(StepWrapper[Any]):
    """Wraps a step so that it fails on the given attempts (1-based), otherwise runs it.

    ``error`` is raised (default ``ConnectionError``); with ``as_result=True``
    a ``StepResult(success=False)`` is returned instead. ``after_execute``
    runs the inner step first and fails afterwards (its work is done, as in a
    crash just before the step could report).
    """

    def __init__(
        self,
        step: BaseStep[Any],
        *,
        fail_on_attempts: Sequence[int] = (1,),
        error: Exception | None = None,
        as_result: bool = False,
        after_execute: bool = False,
    ) -> None:
        super().__init__(step)
        self.fail_on_attempts = set(fail_on_attempts)
        self.error = error
        self.as_result = as_result
        self.after_execute = after_execute
        self.attempts = 0

    def execute(self, context: Any) -> StepResult:
        self.attempts += 1
        failing = self.attempts in self.fail_on_attempts
        if failing and not self.after_execute:
            return self._fail()
        result = self.inner.execute(context)
        if failing and inspect.isawaitable(result):
            return self._fail_after(result)  # type: ignore[return-value]
        return self._fail() if failing else result

    async def _fail_after(self, pending: Awaitable[StepResult]) -> StepResult:
        await pending
        return self._fail()

    def _fail(self) -> StepResult:
        error = self.error or ConnectionError(
            f"step '{self.name}' failed on attempt {self.attempts} (injected)"
        )
        if self.as_result:
            return StepResult(success=False, error=str(error))
        raise error


class CancelAt(RunListener):
    """Cancels the run (through ``runtime.cancel``) when ``step`` starts."""

    listens_to = (StepStarted,)

    def __init__(self, runtime: RuntimeContext, step: str, reason: str = 'cancelled by test'):
        self.runtime = runtime
        self.step = step
        self.reason = reason

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, StepStarted) and event.step.name == self.step:
            self.runtime.cancel(self.reason)
