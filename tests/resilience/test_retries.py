"""A step with ``retry = RetryPolicy(...)`` in a run: attempts, waits, undoing failed attempts."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.journal import Journal
from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    RetryPolicy,
    RunCancelledError,
    RunEvent,
    StepExecutionError,
    StepResult,
    StepRetrying,
)
from synapse_sdk.testing import (
    FakeClock,
    FaultyStep,
    RecordingRuntime,
    assert_progress_monotonic,
    assert_rolled_back,
    assert_steps_ran,
    run_workflow,
)

from .conftest import Events, FnStep, journaled, orchestrate, peek

NO_JITTER = {'initial_delay': 0.5, 'backoff': 2.0, 'jitter': 0.0}


def flaky(failures: int, error: type[Exception] = ConnectionError) -> Any:
    """An execute function that raises on its first ``failures`` calls."""
    count = [0]

    def execute(context: BaseStepContext) -> StepResult:
        count[0] += 1
        if count[0] <= failures:
            raise error(f'attempt {count[0]} failed')
        return StepResult(data={'attempt': count[0]})

    return execute


# --------------------------------------------------------------- retry, then success


def test_retry_then_success_records_attempts_events_and_waits() -> None:
    events, clock = Events(), FakeClock()
    step = FnStep(
        'upload', execute=flaky(2), retry=RetryPolicy(max_attempts=3, max_delay=10, **NO_JITTER)
    )
    orchestrator, _, progress = orchestrate([step], listeners=[events], sleep=clock.sleep)

    summary = orchestrator.execute()

    assert summary['success'] is True
    result = orchestrator.context.step_results[-1]
    assert result.success and result.attempts == 3 and result.data == {'attempt': 3}
    assert [(name, attempt, delay) for name, attempt, _, delay in events.retries] == [
        ('upload', 1, 0.5),
        ('upload', 2, 1.0),
    ]
    failed = [result for _, _, result, _ in events.retries]
    assert [(r.success, r.error, r.attempts) for r in failed] == [
        (False, 'ConnectionError: attempt 1 failed', 1),
        (False, 'ConnectionError: attempt 2 failed', 2),
    ]
    assert isinstance(failed[0].exception, ConnectionError)
    assert clock.sleeps == [0.5, 1.0]
    assert events.events == [
        ('step_start', 'upload'),
        ('step_retry', 'upload', 1),
        ('step_retry', 'upload', 2),
        ('step_end', 'upload', True),
        ('run_end', True),
    ]
    assert progress == [100]


def test_retry_with_the_testing_kit() -> None:
    clock = FakeClock()
    inner = FnStep('upload', retry=RetryPolicy(max_attempts=4, **NO_JITTER))
    faulty = FaultyStep(inner, fail_on_attempts=[1, 2, 3])
    run = run_workflow([faulty], runtime=RecordingRuntime(sleep=clock.sleep))

    assert run.succeeded, run.error
    assert faulty.attempts == 4
    assert run.context.step_results[-1].attempts == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert clock.now == 3.5
    assert_steps_ran(run, ['upload'])  # one step start however many attempts
    assert_rolled_back(run, [])
    # FaultyStep fails attempts 1-3 before the inner step runs; each failed attempt is
    # still rolled back (through the wrapper) before the next one
    assert inner.calls == [('rollback', 'upload')] * 3 + [('execute', 'upload')]


def test_jittered_delays_come_from_the_orchestrators_random() -> None:
    policy = RetryPolicy(max_attempts=4, initial_delay=1.0, backoff=2.0, jitter=0.3)
    events, clock = Events(), FakeClock()
    step = FnStep('s', execute=flaky(3), retry=policy)
    orchestrator, _, _ = orchestrate(
        [step], listeners=[events], sleep=clock.sleep, rng=random.Random(1234)
    )
    orchestrator.execute()

    expected_rng = random.Random(1234)
    expected = [policy.delay(n, expected_rng) for n in (1, 2, 3)]
    assert clock.sleeps == expected
    assert [delay for *_, delay in events.retries] == expected
    for attempt, delay in enumerate(clock.sleeps, 1):
        base = 2.0 ** (attempt - 1)
        assert base * 0.7 <= delay <= base * 1.3


def test_a_failed_attempts_partial_rollback_data_is_undone_before_the_next_attempt() -> None:
    order: list[Any] = []
    attempt = [0]

    def execute(context: BaseStepContext) -> StepResult:
        attempt[0] += 1
        order.append(('execute', attempt[0]))
        for i in range(3):
            context.append_rollback('ids', f'a{attempt[0]}-{i}')
            if attempt[0] == 1 and i == 1:
                raise ConnectionError('connection reset')
        context.record_rollback(marker=attempt[0])
        return StepResult(rollback_data={'final': True})

    def rollback(context: BaseStepContext, result: StepResult) -> None:
        order.append(('rollback', dict(result.rollback_data), result.attempts, result.success))

    step = FnStep('upload', execute=execute, rollback=rollback, retry=RetryPolicy(**NO_JITTER))
    orchestrator, _, _ = orchestrate([step], sleep=FakeClock().sleep)
    orchestrator.execute()

    assert order == [
        ('execute', 1),
        ('rollback', {'ids': ['a1-0', 'a1-1']}, 1, False),
        ('execute', 2),
    ]
    final = orchestrator.context.step_results[-1]
    assert final.rollback_data == {'ids': ['a2-0', 'a2-1', 'a2-2'], 'marker': 2, 'final': True}


def test_progress_of_a_failed_attempt_never_makes_the_overall_figure_go_back() -> None:
    attempt = [0]

    def execute(context: BaseStepContext) -> StepResult:
        attempt[0] += 1
        for i in range(1, 11):
            if attempt[0] == 1 and i == 9:
                raise ConnectionError('dropped at 80%')
            context.set_progress(i, 10)
        return StepResult()

    first = FnStep('first')
    second = FnStep('second', execute=execute, retry=RetryPolicy(**NO_JITTER))
    run = run_workflow([first, second], runtime=RecordingRuntime(sleep=FakeClock().sleep))

    assert run.succeeded, run.error
    assert run.progress == sorted(set(run.progress)), run.progress
    assert run.progress[-1] == 100
    assert 90 in run.progress  # attempt 1 got to 50 + 0.8 * 50 before it failed
    assert all(value > 90 for value in run.progress[run.progress.index(90) + 1 :])
    assert_progress_monotonic(run)


def test_a_returned_failure_is_not_retried() -> None:
    clock = FakeClock()
    faulty = FaultyStep(
        FnStep('s', retry=RetryPolicy(max_attempts=5, **NO_JITTER)),
        fail_on_attempts=[1],
        as_result=True,
    )
    events = Events()
    run = run_workflow([faulty], runtime=RecordingRuntime(sleep=clock.sleep), listeners=[events])

    assert isinstance(run.error, StepExecutionError)
    assert "Step 's' failed: step 's' failed on attempt 1 (injected)" in str(run.error)
    assert faulty.attempts == 1
    assert events.retries == [] and clock.sleeps == []


# --------------------------------------------------------------- retries exhausted


def test_exhausted_retries_fail_with_the_last_error_and_roll_back_the_run() -> None:
    calls: list[tuple[str, str]] = []
    events, clock = Events(), FakeClock()
    steps = [
        FnStep('first', calls=calls),
        FnStep(
            'second',
            execute=flaky(99),
            retry=RetryPolicy(max_attempts=3, **NO_JITTER),
            calls=calls,
        ),
        FnStep('third', calls=calls),
    ]
    orchestrator, _, _ = orchestrate(steps, listeners=[events], sleep=clock.sleep)

    with pytest.raises(StepExecutionError) as caught:
        orchestrator.execute()

    error = caught.value
    assert not isinstance(error, RunCancelledError)
    assert error.step_name == 'second'
    assert str(error) == "Step 'second' failed: ConnectionError: attempt 3 failed"
    assert isinstance(error.__cause__, ConnectionError)
    assert str(error.__cause__) == 'attempt 3 failed'
    assert error.rollback_errors == []
    assert clock.sleeps == [0.5, 1.0]  # no wait after the last attempt
    assert [attempt for _, attempt, _, _ in events.retries] == [1, 2]
    # each failed attempt is undone before the next; the final failure once, then the earlier step
    assert calls == [
        ('execute', 'first'),
        ('execute', 'second'),
        ('rollback', 'second'),
        ('execute', 'second'),
        ('rollback', 'second'),
        ('execute', 'second'),
        ('rollback', 'second'),
        ('rollback', 'first'),
    ]
    assert events.of('rollback_start') == [
        ('rollback_start', 'second'),
        ('rollback_start', 'first'),
    ]
    assert events.summary is not None
    assert events.summary.failed_step == 'second' and not events.summary.cancelled


def test_exhausted_retries_report_how_many_attempts_were_made() -> None:
    step = FnStep('s', execute=flaky(99), retry=RetryPolicy(max_attempts=3, **NO_JITTER))
    orchestrator, _, _ = orchestrate([step], sleep=FakeClock().sleep)

    with pytest.raises(StepExecutionError) as caught:
        orchestrator.execute()

    # three attempts were made: the failed result says so, as a successful one would
    assert caught.value.result.attempts == 3
    assert step.rollback_results[-1].attempts == 3


def test_a_failing_attempt_rollback_stops_the_retries() -> None:
    undo_calls = [0]

    def rollback(context: BaseStepContext, result: StepResult) -> None:
        undo_calls[0] += 1
        if undo_calls[0] == 1:
            raise OSError('cannot undo attempt 1')

    clock, events = FakeClock(), Events()
    step = FnStep(
        'upload',
        execute=flaky(99),
        rollback=rollback,
        retry=RetryPolicy(max_attempts=5, **NO_JITTER),
    )
    orchestrator, _, _ = orchestrate([step], listeners=[events], sleep=clock.sleep)

    with pytest.raises(StepExecutionError) as caught:
        orchestrator.execute()

    assert caught.value.step_name == 'upload'
    assert step.calls.count(('execute', 'upload')) == 1  # never tried again
    assert clock.sleeps == []
    assert events.summary is not None and not events.summary.success


def test_after_a_failing_attempt_rollback_the_run_rollback_still_gets_that_attempts_data() -> None:
    undo_calls = [0]

    def execute(context: BaseStepContext) -> StepResult:
        context.append_rollback('ids', 7)
        raise ConnectionError('dropped')

    def rollback(context: BaseStepContext, result: StepResult) -> None:
        undo_calls[0] += 1
        if undo_calls[0] == 1:
            raise OSError('storage busy')

    step = FnStep(
        'upload', execute=execute, rollback=rollback, retry=RetryPolicy(max_attempts=3, **NO_JITTER)
    )
    orchestrator, _, _ = orchestrate([step], sleep=FakeClock().sleep)

    with pytest.raises(StepExecutionError):
        orchestrator.execute()

    # The attempt's work (file 7) was NOT undone: the run's rollback must get another go at it.
    assert [r.rollback_data for r in step.rollback_results] == [{'ids': [7]}, {'ids': [7]}]


def test_a_non_matching_exception_is_not_retried() -> None:
    clock, events = FakeClock(), Events()
    step = FnStep(
        's',
        execute=flaky(1, error=ValueError),
        retry=RetryPolicy(max_attempts=5, retry_on=(ConnectionError,), **NO_JITTER),
    )
    orchestrator, _, _ = orchestrate([step], listeners=[events], sleep=clock.sleep)

    with pytest.raises(StepExecutionError, match="Step 's' failed: ValueError: attempt 1 failed"):
        orchestrator.execute()
    assert step.calls == [('execute', 's'), ('rollback', 's')]
    assert events.retries == [] and clock.sleeps == []


def test_a_predicate_can_refuse_a_retry() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=5, predicate=lambda e: 'transient' in str(e), **NO_JITTER)
    messages = iter(['transient glitch', 'permanent failure', 'never reached'])

    def execute(context: BaseStepContext) -> StepResult:
        raise ConnectionError(next(messages))

    step = FnStep('s', execute=execute, retry=policy)
    orchestrator, _, _ = orchestrate([step], sleep=clock.sleep)
    with pytest.raises(StepExecutionError, match='permanent failure'):
        orchestrator.execute()
    assert step.calls.count(('execute', 's')) == 2
    assert clock.sleeps == [0.5]


def test_retry_declared_as_a_class_attribute() -> None:
    attempts = [0]

    class Flaky(BaseStep[BaseStepContext]):
        name = 'flaky'
        progress_weight = 1.0
        retry = RetryPolicy(max_attempts=2, initial_delay=3.0, jitter=0)

        def execute(self, context: BaseStepContext) -> StepResult:
            attempts[0] += 1
            if attempts[0] == 1:
                raise TimeoutError('slow server')
            return StepResult()

    clock = FakeClock()
    run = run_workflow([Flaky()], runtime=RecordingRuntime(sleep=clock.sleep))
    assert run.succeeded and attempts == [2] and clock.sleeps == [3.0]


def test_cancel_during_the_wait_between_attempts_stops_at_once() -> None:
    class CancelOnRetry(Events):
        def on_event(self, event: RunEvent) -> None:
            super().on_event(event)
            if isinstance(event, StepRetrying):
                threading.Timer(0.05, orchestrator.cancel, args=('stop waiting',)).start()

    step = FnStep('s', execute=flaky(99), retry=RetryPolicy(max_attempts=3, initial_delay=30.0))
    events = CancelOnRetry()
    orchestrator, _, _ = orchestrate([step], listeners=[events])  # real, cancellable waits

    started = time.perf_counter()
    with pytest.raises(RunCancelledError) as caught:
        orchestrator.execute()
    assert time.perf_counter() - started < 5.0
    assert caught.value.reason == 'stop waiting'
    assert step.calls.count(('execute', 's')) == 1
    assert events.summary is not None and events.summary.cancelled


# --------------------------------------------------------------- with the run journal


def test_journal_counts_every_attempt_and_clears_a_failed_attempts_items(
    journal: Journal,
) -> None:
    db: Path = journal.path
    seen_at_start: list[list[tuple[Any, ...]]] = []
    attempt = [0]

    def execute(context: BaseStepContext) -> StepResult:
        attempt[0] += 1
        seen_at_start.append(peek(db, 'SELECT key, value FROM rollback_items WHERE idx = 1'))
        context.append_rollback('ids', f'a{attempt[0]}-0')
        context.append_rollback('ids', f'a{attempt[0]}-1')
        if attempt[0] < 3:
            raise ConnectionError(f'attempt {attempt[0]} failed')
        return StepResult(data={'ok': True})

    steps = [FnStep('prepare'), FnStep('upload', execute=execute, retry=RetryPolicy(**NO_JITTER))]
    orchestrator, _, _ = orchestrate(
        steps, listeners=[journaled(journal, 'run-1')], sleep=FakeClock().sleep
    )
    orchestrator.execute()

    # each attempt started with nothing left over from the one before
    assert seen_at_start == [[], [], []]
    records = {record.name: record for record in journal.steps('run-1')}
    upload = records['upload']
    assert upload.attempts == 3
    assert upload.status == 'succeeded' and upload.error is None
    assert upload.rollback_data == {'ids': ['a3-0', 'a3-1']}
    assert records['prepare'].attempts == 1
    assert peek(db, 'SELECT COUNT(*) FROM rollback_items') == [(0,)]
    assert journal.get_run('run-1').status == 'succeeded'


def test_journal_of_exhausted_retries(journal: Journal) -> None:
    def execute(context: BaseStepContext) -> StepResult:
        context.append_rollback('ids', 1)
        raise ConnectionError('down')

    step = FnStep('upload', execute=execute, retry=RetryPolicy(max_attempts=2, **NO_JITTER))
    orchestrator, _, _ = orchestrate(
        [step], listeners=[journaled(journal, 'run-2')], sleep=FakeClock().sleep
    )
    with pytest.raises(StepExecutionError):
        orchestrator.execute()

    (upload,) = journal.steps('run-2')
    assert upload.attempts == 2
    assert upload.status == 'rolled_back'
    assert upload.error == 'ConnectionError: down'
    assert upload.rollback_data == {'ids': [1]}  # the last attempt's, rolled back at the end
    run = journal.get_run('run-2')
    assert run.status == 'rolled_back'
    assert run.error == "Step 'upload' failed: ConnectionError: down"


def test_journal_keeps_what_a_failed_attempt_rollback_left_undone(journal: Journal) -> None:
    def execute(context: BaseStepContext) -> StepResult:
        context.append_rollback('ids', 42)
        raise ConnectionError('dropped')

    def rollback(context: BaseStepContext, result: StepResult) -> None:
        raise OSError('storage unreachable')

    step = FnStep(
        'upload', execute=execute, rollback=rollback, retry=RetryPolicy(max_attempts=3, **NO_JITTER)
    )
    orchestrator, _, _ = orchestrate(
        [step], listeners=[journaled(journal, 'run-3')], sleep=FakeClock().sleep
    )
    with pytest.raises(StepExecutionError):
        orchestrator.execute()

    # File 42 is still stored: `synapse runs rollback` can only remove it if the journal
    # still knows about it.
    (upload,) = journal.steps('run-3')
    assert journal.rollback_data_of('run-3', upload) == {'ids': [42]}
