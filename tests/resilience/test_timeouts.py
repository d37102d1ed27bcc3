"""``timeout = seconds`` on a step: asked to stop, then stopped, and the run rolled back."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    LoggingStep,
    RetryPolicy,
    RunCancelledError,
    StepExecutionError,
    StepRegistry,
    StepResult,
    StepTimeoutError,
)
from synapse_sdk.testing import FakeClock, RecordingRuntime, assert_rolled_back, run_workflow

from .conftest import Events, FnStep, orchestrate

TIMEOUT_MESSAGE = "Step 'x' failed: StepTimeoutError: step 'x' exceeded its timeout of 0.2s"


class Cooperative(BaseStep[BaseStepContext]):
    """Works in a loop for up to 5 s, checking for a stop request the way it is told to."""

    name = 'x'
    progress_weight = 1.0
    timeout = 0.2

    def __init__(self, check: str) -> None:
        self.check = check
        self.saw_cancelled = False
        self.rolled_back: list[StepResult] = []

    def execute(self, context: BaseStepContext) -> StepResult:
        end = time.monotonic() + 5.0
        i = 0
        while time.monotonic() < end:
            i += 1
            time.sleep(0.005)
            if self.check == 'set_progress':
                context.set_progress(i % 100, 100)
            else:
                self.saw_cancelled = self.saw_cancelled or context.cancelled
                context.raise_if_cancelled()
        return StepResult()

    def rollback(self, context: BaseStepContext, result: StepResult) -> None:
        self.rolled_back.append(result)


@pytest.mark.parametrize('check', ['set_progress', 'raise_if_cancelled'])
def test_a_cooperative_step_fails_soon_after_its_timeout(check: str) -> None:
    step = Cooperative(check)
    before = FnStep('before')
    events = Events()

    started = time.perf_counter()
    run = run_workflow([before, step], listeners=[events])
    elapsed = time.perf_counter() - started

    assert 0.2 <= elapsed < 1.0, elapsed
    error = run.error
    assert isinstance(error, StepExecutionError) and not isinstance(error, RunCancelledError)
    assert str(error) == TIMEOUT_MESSAGE
    assert error.step_name == 'x'
    cause = error.__cause__
    assert isinstance(cause, StepTimeoutError) and isinstance(cause, TimeoutError)
    assert (cause.step, cause.limit) == ('x', 0.2)
    assert_rolled_back(run, ['x', 'before'])
    assert len(step.rolled_back) == 1 and not step.rolled_back[0].success
    assert events.summary is not None and not events.summary.cancelled
    if check == 'raise_if_cancelled':
        assert step.saw_cancelled  # context.cancelled is true once the step is out of time


def test_a_step_ignoring_its_timeout_is_stopped_after_the_grace_period() -> None:
    rolled_back: list[str] = []

    def busy(context: BaseStepContext) -> StepResult:
        end = time.perf_counter() + 5.0
        n = 0
        while time.perf_counter() < end:  # pure Python, never asks whether to stop
            n += 1
        return StepResult(data={'n': n})

    step = FnStep('x', execute=busy, timeout=0.2, rollback=lambda c, r: rolled_back.append(r.error))
    orchestrator, runtime, _ = orchestrate([FnStep('before'), step])
    orchestrator.timeout_grace = 0.2

    started = time.perf_counter()
    with pytest.raises(StepExecutionError) as caught:
        orchestrator.execute()
    elapsed = time.perf_counter() - started

    assert 0.4 <= elapsed < 1.5, elapsed  # limit + grace, far below the default 2 s grace
    assert str(caught.value) == TIMEOUT_MESSAGE
    assert isinstance(caught.value.__cause__, StepTimeoutError)
    assert rolled_back == ["StepTimeoutError: step 'x' exceeded its timeout of 0.2s"]
    assert_rolled_back(runtime.memory, ['x', 'before'])


def test_a_step_returning_after_its_timeout_still_fails() -> None:
    def late(context: BaseStepContext) -> StepResult:
        time.sleep(0.4)  # ignores the request, returns before the (default, 2 s) grace is over
        return StepResult(data={'late': True})

    calls: list[tuple[str, str]] = []
    step = FnStep('x', execute=late, timeout=0.2, calls=calls)
    after = FnStep('after', calls=calls)
    run = run_workflow([step, after])

    assert str(run.error) == TIMEOUT_MESSAGE
    assert calls == [('execute', 'x'), ('rollback', 'x')]  # 'after' never ran
    (result,) = run.context.step_results
    assert not result.success and result.data == {}  # the late result was not taken


def test_a_late_result_is_not_trusted_but_its_rollback_data_is_used() -> None:
    def late(context: BaseStepContext) -> StepResult:
        time.sleep(0.4)
        return StepResult(rollback_data={'stored_ids': [1, 2, 3]})

    step = FnStep('x', execute=late, timeout=0.2)
    run = run_workflow([step])

    assert isinstance(run.error, StepExecutionError)
    # The step did its work: what it says must be undone is undone, even though it was late.
    assert step.rollback_results[-1].rollback_data == {'stored_ids': [1, 2, 3]}


def test_the_deadline_ends_with_the_step() -> None:
    def quick(context: BaseStepContext) -> StepResult:
        return StepResult()

    def slow_but_unlimited(context: BaseStepContext) -> StepResult:
        for i in range(1, 21):
            time.sleep(0.01)  # well past the quick step's limit: its timer must be gone
            context.set_progress(i, 20)
        return StepResult()

    run = run_workflow(
        [FnStep('quick', execute=quick, timeout=0.05), FnStep('slow', execute=slow_but_unlimited)]
    )
    assert run.succeeded, run.error


def test_a_timed_out_attempt_is_retried() -> None:
    attempts = [0]

    def execute(context: BaseStepContext) -> StepResult:
        attempts[0] += 1
        if attempts[0] == 1:
            for i in range(1000):  # hangs, but cooperatively
                time.sleep(0.005)
                context.set_progress(i % 100, 100)
        return StepResult(data={'attempt': attempts[0]})

    events, clock = Events(), FakeClock()
    step = FnStep(
        'x',
        execute=execute,
        timeout=0.2,
        retry=RetryPolicy(max_attempts=2, initial_delay=0.5, jitter=0, retry_on=(TimeoutError,)),
    )
    orchestrator, _, _ = orchestrate([step], listeners=[events], sleep=clock.sleep)

    started = time.perf_counter()
    orchestrator.execute()
    assert time.perf_counter() - started < 1.5

    result = orchestrator.context.step_results[-1]
    assert result.success and result.attempts == 2 and result.data == {'attempt': 2}
    ((name, attempt, failed, delay),) = events.retries
    assert (name, attempt, delay) == ('x', 1, 0.5)
    assert failed.error == "StepTimeoutError: step 'x' exceeded its timeout of 0.2s"
    assert isinstance(failed.exception, StepTimeoutError)
    assert step.calls == [('execute', 'x'), ('rollback', 'x'), ('execute', 'x')]
    assert clock.sleeps == [0.5]


def test_a_timeout_is_not_retried_when_the_policy_does_not_cover_it() -> None:
    def hang(context: BaseStepContext) -> StepResult:
        while True:
            time.sleep(0.005)
            context.raise_if_cancelled()

    step = FnStep(
        'x',
        execute=hang,
        timeout=0.2,
        retry=RetryPolicy(max_attempts=3, jitter=0, retry_on=(ConnectionError,)),
    )
    orchestrator, _, _ = orchestrate([step], sleep=FakeClock().sleep)
    with pytest.raises(StepExecutionError, match='exceeded its timeout of 0.2s'):
        orchestrator.execute()
    assert step.calls.count(('execute', 'x')) == 1


def test_the_timeout_applies_to_each_attempt() -> None:
    attempts = [0]

    def execute(context: BaseStepContext) -> StepResult:
        attempts[0] += 1
        for _ in range(15):
            time.sleep(0.01)  # 0.15 s per attempt: together well over the limit
            context.raise_if_cancelled()
        if attempts[0] < 3:
            raise ConnectionError('flaky')
        return StepResult()

    step = FnStep(
        'x', execute=execute, timeout=0.3, retry=RetryPolicy(max_attempts=3, initial_delay=0)
    )
    run = run_workflow([step])
    assert run.succeeded, run.error
    assert run.context.step_results[-1].attempts == 3


# --------------------------------------------------------------- registry checks


@pytest.mark.parametrize(
    'timeout', [0, 0.0, -1, -0.5, math.nan, math.inf, 10**400, '5', True, [1.0], object()]
)
def test_the_registry_rejects_a_bad_timeout(timeout: Any) -> None:
    registry: StepRegistry[Any] = StepRegistry()
    with pytest.raises(ValueError, match=r"step 'x': timeout must be a number of seconds > 0"):
        registry.register(FnStep('x', timeout=timeout))
    assert len(registry) == 0


@pytest.mark.parametrize('retry', [3, {'max_attempts': 3}, 'yes', RetryPolicy])
def test_the_registry_rejects_a_retry_that_is_not_a_policy(retry: Any) -> None:
    registry: StepRegistry[Any] = StepRegistry()
    with pytest.raises(ValueError, match=r"step 'x': retry must be a RetryPolicy"):
        registry.register(FnStep('x', retry=retry))


def test_the_registry_accepts_good_policies_and_checks_wrapped_steps() -> None:
    registry: StepRegistry[Any] = StepRegistry()
    registry.register(FnStep('a', timeout=1))
    registry.register(FnStep('b', timeout=0.001, retry=RetryPolicy()))
    registry.register(FnStep('c'))
    wrapped = LoggingStep(FnStep('d', timeout=2.5, retry=RetryPolicy(max_attempts=1)))
    assert (wrapped.timeout, wrapped.retry) == (2.5, RetryPolicy(max_attempts=1))
    registry.register(wrapped)
    with pytest.raises(ValueError, match="step 'e': timeout"):
        registry.register(LoggingStep(FnStep('e', timeout=-1)))
    assert registry.names == ['a', 'b', 'c', 'd']


# --------------------------------------------------------------- async steps


class SleepsTooLong(BaseStep[BaseStepContext]):
    name = 'x'
    progress_weight = 1.0
    timeout = 0.2

    def __init__(self) -> None:
        self.cancelled_inside = False
        self.loop: asyncio.AbstractEventLoop | None = None

    async def execute(self, context: BaseStepContext) -> StepResult:
        self.loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            self.cancelled_inside = True
            raise
        return StepResult()


def test_an_async_step_is_cancelled_at_its_timeout() -> None:
    step = SleepsTooLong()
    started = time.perf_counter()
    run = run_workflow([FnStep('before'), step])
    elapsed = time.perf_counter() - started

    assert 0.2 <= elapsed < 1.0, elapsed
    assert str(run.error) == TIMEOUT_MESSAGE
    assert isinstance(run.error.__cause__, StepTimeoutError)
    assert step.cancelled_inside  # asyncio cancelled the coroutine: no thread left running
    assert_rolled_back(run, ['x', 'before'])


def test_an_async_step_is_cancelled_at_its_timeout_on_the_callers_loop() -> None:
    step = SleepsTooLong()
    orchestrator, runtime, _ = orchestrate([FnStep('before'), step])

    async def main() -> asyncio.AbstractEventLoop:
        with pytest.raises(StepExecutionError) as caught:
            await orchestrator.execute_async()
        assert str(caught.value) == TIMEOUT_MESSAGE
        return asyncio.get_running_loop()

    started = time.perf_counter()
    loop = asyncio.run(main())
    assert time.perf_counter() - started < 1.0
    assert step.loop is loop and step.cancelled_inside
    assert_rolled_back(runtime.memory, ['x', 'before'])


def test_an_async_step_within_its_timeout_succeeds() -> None:
    class Quick(BaseStep[BaseStepContext]):
        name = 'quick'
        progress_weight = 1.0
        timeout = 1.0

        async def execute(self, context: BaseStepContext) -> StepResult:
            await asyncio.sleep(0.01)
            return StepResult(data={'ok': True})

    run = run_workflow([Quick()], runtime=RecordingRuntime())
    assert run.succeeded and run.context.step_results[0].data == {'ok': True}
