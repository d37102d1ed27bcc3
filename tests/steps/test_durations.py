"""duration_seconds: a step's own time, from can_skip() to the end of execute().

A FakeClock is the run's clock, and steps "take time" by sleeping on it, so
every duration is exact.
"""

from __future__ import annotations

from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStepContext,
    RetryPolicy,
    StepExecutionError,
    StepResult,
)
from synapse_sdk.testing import FakeClock

from .conftest import RecordingListener, Step, run


def taking(clock: FakeClock, seconds: float, value: Any = None) -> Any:
    """An action (or skip hook) that spends ``seconds`` on the clock."""

    def action(*args: Any) -> Any:
        clock.sleep(seconds)
        return StepResult() if value is None else value

    return action


class SlowListener(RecordingListener):
    """Spends time on the clock in every event it handles."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self.clock = clock
        self.seconds = seconds

    def on_step_start(self, context: BaseStepContext, step: Any) -> None:
        self.clock.sleep(self.seconds)

    def on_step_end(self, context: BaseStepContext, step: Any, result: StepResult) -> None:
        self.clock.sleep(self.seconds)

    def on_step_skip(self, context: BaseStepContext, step: Any, result: StepResult) -> None:
        self.clock.sleep(self.seconds)

    def on_progress(self, context: BaseStepContext, current: int, total: int) -> None:
        self.clock.sleep(self.seconds)


def durations(context: BaseStepContext) -> dict[str, float | None]:
    return {r.step_name or '?': r.duration_seconds for r in context.step_results}


def test_each_executed_step_gets_its_own_duration(context: BaseStepContext) -> None:
    clock = FakeClock()
    run(
        context,
        Step('a', action=taking(clock, 2.0)),
        Step('b', action=taking(clock, 0.5)),
        timing=True,
        clock=clock,
    )
    assert durations(context) == {'a': 2.0, 'b': 0.5}


def test_can_skip_time_belongs_to_the_step(context: BaseStepContext) -> None:
    clock = FakeClock()
    run(
        context,
        Step('a', skip=taking(clock, 1.0, False), action=taking(clock, 2.0)),
        timing=True,
        clock=clock,
    )
    assert durations(context) == {'a': 3.0}


def test_a_skipped_steps_time_is_not_counted_in_the_next(context: BaseStepContext) -> None:
    clock = FakeClock()
    run(
        context,
        Step('a', skip=taking(clock, 5.0, True)),
        Step('b', action=taking(clock, 1.0)),
        timing=True,
        clock=clock,
    )
    assert durations(context) == {'a': None, 'b': 1.0}


def test_listener_and_progress_callback_time_is_not_counted(context: BaseStepContext) -> None:
    clock = FakeClock()
    listener = SlowListener(clock, 10.0)

    def slow_callback(current: int, total: int) -> None:
        clock.sleep(100.0)

    run(
        context,
        Step('a', action=taking(clock, 1.0)),
        Step('b', action=taking(clock, 2.0)),
        Step('c', action=taking(clock, 3.0)),
        callback=slow_callback,
        listeners=[listener],
        clock=clock,
    )
    assert durations(context) == {'a': 1.0, 'b': 2.0, 'c': 3.0}
    assert clock.now > 300  # the callback and the listener did take their time


def test_retries_and_their_waits_count(context: BaseStepContext) -> None:
    clock = FakeClock()
    attempts: list[int] = []

    def flaky(ctx: BaseStepContext) -> StepResult:
        clock.sleep(1.0)
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError('try again')
        return StepResult()

    step = Step('a', action=flaky)
    step.retry = RetryPolicy(max_attempts=3, initial_delay=4.0, jitter=0)
    run(context, step, timing=True, clock=clock, sleep=clock.sleep)
    [result] = context.step_results
    assert result.attempts == 2
    assert result.duration_seconds == 1.0 + 4.0 + 1.0


def test_a_run_with_listeners_is_timed_by_default(context: BaseStepContext) -> None:
    clock = FakeClock()
    run(context, Step('a', action=taking(clock, 1.5)), listeners=[RecordingListener()], clock=clock)
    assert durations(context) == {'a': 1.5}


def test_a_bare_run_is_not_timed_unless_asked(context: BaseStepContext) -> None:
    run(context, Step('a'), Step('b'))
    assert durations(context) == {'a': None, 'b': None}


def test_timing_can_be_turned_off_with_listeners(context: BaseStepContext) -> None:
    clock = FakeClock()
    run(
        context,
        Step('a', action=taking(clock, 1.0)),
        listeners=[RecordingListener()],
        timing=False,
        clock=clock,
    )
    assert durations(context) == {'a': None}


def test_the_real_clock_measures_real_time(context: BaseStepContext) -> None:
    import time

    run(context, Step('a', action=lambda ctx: (time.sleep(0.02), StepResult())[1]), timing=True)
    [result] = context.step_results
    assert result.duration_seconds is not None
    assert 0.02 <= result.duration_seconds < 5


def test_a_failed_step_keeps_the_durations_of_those_before(context: BaseStepContext) -> None:
    clock = FakeClock()

    def failing(ctx: BaseStepContext) -> StepResult:
        clock.sleep(1.0)
        return StepResult(success=False, error='no')

    with pytest.raises(StepExecutionError):
        run(
            context,
            Step('a', action=taking(clock, 2.0)),
            Step('b', action=failing),
            timing=True,
            clock=clock,
        )
    assert durations(context) == {'a': 2.0, 'b': 1.0}
