"""One clock per run: read for durations, spent by the wait between retry attempts."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Clock,
    Orchestrator,
    RetryPolicy,
    RunCancelledError,
    StepResult,
)
from synapse_sdk.testing import FakeClock

from .conftest import Step, make_registry


def flaky(clock: FakeClock, failures: int, seconds: float = 1.0) -> Step:
    """A step that spends ``seconds`` on the clock per attempt, failing the first ``failures``."""
    calls: list[int] = []

    def action(context: Any) -> StepResult:
        calls.append(1)
        clock.sleep(seconds)
        if len(calls) <= failures:
            raise ConnectionError('down')
        return StepResult()

    step = Step('s', action=action)
    step.retry = RetryPolicy(max_attempts=failures + 1, initial_delay=2.0, backoff=2.0, jitter=0)
    return step


def test_a_fake_clock_is_read_and_spent(context: BaseStepContext) -> None:
    clock = FakeClock()
    orchestrator = Orchestrator(make_registry(flaky(clock, 2)), context, clock=clock, timing=True)
    assert isinstance(orchestrator.clock, Clock)
    orchestrator.execute()
    # the waits went to the clock (no real waiting), and the duration counts them
    assert clock.sleeps == [1.0, 2.0, 1.0, 4.0, 1.0]
    [result] = context.step_results
    assert result.attempts == 3
    assert result.duration_seconds == 1.0 + 2.0 + 1.0 + 4.0 + 1.0


def test_sleep_replaces_only_the_waits(context: BaseStepContext) -> None:
    clock, waits = FakeClock(), FakeClock()
    Orchestrator(
        make_registry(flaky(clock, 1)), context, clock=clock, sleep=waits.sleep, timing=True
    ).execute()
    assert waits.sleeps == [2.0]
    assert clock.sleeps == [1.0, 1.0]  # the steps' own time only
    assert context.step_results[0].duration_seconds == 2.0  # the wait did not pass on clock


def test_a_plain_callable_clock_is_read_and_the_waits_are_real(context: BaseStepContext) -> None:
    ticks = iter(range(100))
    step = Step('s', action=lambda c: StepResult())
    orchestrator = Orchestrator(
        make_registry(step), context, clock=lambda: float(next(ticks)), timing=True
    )
    orchestrator.execute()
    assert context.step_results[0].duration_seconds == 1.0  # two readings, one apart
    started = time.perf_counter()
    orchestrator.clock.sleep(0.05)
    assert time.perf_counter() - started >= 0.05


def test_the_default_wait_is_cut_short_by_a_cancel(context: BaseStepContext) -> None:
    clock = FakeClock()
    step = flaky(clock, 1)
    step.retry = RetryPolicy(max_attempts=2, initial_delay=30.0, jitter=0)
    orchestrator = Orchestrator(make_registry(step), context)  # the system clock's waits
    threading.Timer(0.1, orchestrator.cancel, args=('enough',)).start()
    started = time.perf_counter()
    with pytest.raises(RunCancelledError, match='enough'):
        orchestrator.execute()
    assert time.perf_counter() - started < 10
