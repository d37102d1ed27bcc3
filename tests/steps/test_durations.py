"""duration_seconds: a step's own time, from can_skip() to the end of execute().

A FakeClock is the run's clock, and steps "take time" by sleeping on it, so
every duration is exact.
"""

from __future__ import annotations

from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Orchestrator,
    Progress,
    RetryPolicy,
    RunEvent,
    RunListener,
    RunStarted,
    StepEnded,
    StepExecutionError,
    StepResult,
    StepSkipped,
    StepStarted,
)
from synapse_sdk.testing import FakeClock

from .conftest import RecordingListener, Step, make_registry, raising, run


def taking(clock: FakeClock, seconds: float, value: Any = None) -> Any:
    """An action (or skip hook) that spends ``seconds`` on the clock."""

    def action(*args: Any) -> Any:
        clock.sleep(seconds)
        return StepResult() if value is None else value

    return action


class SlowListener(RunListener):
    """Spends time on the clock at the run's start, in every step start, end and skip, and
    in every progress report."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted | StepStarted | StepEnded | StepSkipped | Progress):
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


def test_a_reused_step_keeps_its_old_duration(context: BaseStepContext) -> None:
    clock = FakeClock()
    old = StepResult(duration_seconds=7.0)
    run(
        context,
        Step('a'),
        Step('b', action=taking(clock, 1.5)),
        completed={'a': old},
        listeners=[RecordingListener()],
        clock=clock,
    )
    assert old.duration_seconds == 7.0
    assert [(r.step_name, r.duration_seconds) for r in context.step_results] == [('b', 1.5)]


def test_a_bare_timed_run_does_not_count_the_progress_callback(context: BaseStepContext) -> None:
    """Without listeners the clock is read less often: the callback still does not count."""
    clock = FakeClock()

    def slow_callback(current: int, total: int) -> None:
        clock.sleep(100.0)

    run(
        context,
        Step('a', action=taking(clock, 1.0)),
        Step('s', skip=True),
        Step('b', action=taking(clock, 2.0)),
        Step('c', action=taking(clock, 3.0)),
        callback=slow_callback,
        timing=True,
        clock=clock,
    )
    assert [(r.step_name, r.duration_seconds) for r in context.step_results] == [
        ('a', 1.0),
        ('s', None),
        ('b', 2.0),
        ('c', 3.0),
    ]
    assert clock.now > 300


def test_a_listener_added_before_execute_turns_timing_on(context: BaseStepContext) -> None:
    clock = FakeClock()
    orchestrator = Orchestrator(
        make_registry(Step('a', action=taking(clock, 1.25))), context, clock=clock
    )
    orchestrator.add_listener(RecordingListener())
    orchestrator.execute()
    assert context.step_results[0].duration_seconds == 1.25


class SlowInStep(RunListener):
    """Spends time on the clock in one kind of in-step event."""

    def __init__(self, clock: FakeClock, event: str) -> None:
        self.clock = clock
        self.event = event

    def on_event(self, event: RunEvent) -> None:
        if type(event).__name__ == self.event:
            self.clock.sleep(100.0)


@pytest.mark.parametrize(
    'event',
    ['progress_callback', 'Progress', 'StepProgress', 'RollbackData', 'StepRetrying'],
)
def test_listener_and_callback_time_inside_a_step_is_not_counted(
    context: BaseStepContext, event: str
) -> None:
    """Nor when the step itself causes the report: ``context.set_progress`` (progress
    callback, ``Progress``, ``StepProgress``), ``record_rollback``/
    ``append_rollback`` (``RollbackData``: the run journal writes there, per item)
    and ``StepRetrying`` between attempts."""
    clock = FakeClock()
    attempts: list[int] = []

    def work(ctx: BaseStepContext) -> StepResult:
        attempts.append(1)
        clock.sleep(1.0)
        ctx.set_progress(1, 2)
        ctx.append_rollback('ids', len(attempts))
        clock.sleep(1.0)
        if len(attempts) == 1:
            raise ConnectionError('try again')
        return StepResult()

    def callback(current: int, total: int) -> None:
        if event == 'progress_callback':
            clock.sleep(100.0)

    step = Step('a', action=work)
    step.retry = RetryPolicy(max_attempts=2, initial_delay=3.0, jitter=0)
    run(
        context,
        step,
        Step('b', action=taking(clock, 0.5)),
        callback=callback,
        listeners=[SlowInStep(clock, event)],
        clock=clock,
        sleep=clock.sleep,
    )
    assert clock.now > 100  # the report did take its time
    a, b = context.step_results
    assert a.attempts == 2
    # two attempts of 2 s each and the 3 s wait between them
    assert a.duration_seconds == 2.0 + 3.0 + 2.0
    assert b.duration_seconds == 0.5


@pytest.mark.parametrize('how', ['returns success=False', 'raises'])
def test_a_failed_step_has_its_duration_and_those_before_keep_theirs(
    context: BaseStepContext, how: str
) -> None:
    clock = FakeClock()

    def failing(ctx: BaseStepContext) -> StepResult:
        clock.sleep(1.5)
        if how == 'raises':
            raise OSError('disk full')
        return StepResult(success=False, error='no')

    with pytest.raises(StepExecutionError):
        run(
            context,
            Step('a', action=taking(clock, 2.0)),
            Step('b', action=failing),
            timing=True,
            clock=clock,
        )
    assert durations(context) == {'a': 2.0, 'b': 1.5}


def test_a_cancel_before_a_step_gives_it_no_duration(context: BaseStepContext) -> None:
    clock = FakeClock()
    orchestrator: Orchestrator[Any] = Orchestrator(
        make_registry(
            Step('a', action=lambda ctx: orchestrator.cancel('enough') or StepResult()),
            Step('b', action=raising(AssertionError('never runs'))),
        ),
        context,
        timing=True,
        clock=clock,
    )
    with pytest.raises(StepExecutionError):
        orchestrator.execute()
    assert [r.step_name for r in context.step_results] == ['a', 'b']
    assert context.step_results[1].duration_seconds is None
