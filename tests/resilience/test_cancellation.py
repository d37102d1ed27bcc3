"""Stopping a run from outside: ``Orchestrator.cancel()``, ``runtime.cancel()``, interrupts."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from synapse_sdk.journal import Journal
from synapse_sdk.plugins.steps import (
    BaseStepContext,
    CancelToken,
    RetryPolicy,
    RunCancelledError,
    StepCancelled,
    StepExecutionError,
    StepInterrupted,
    StepResult,
)
from synapse_sdk.testing import (
    CancelAt,
    FakeClock,
    RecordingRuntime,
    assert_rolled_back,
    assert_run_status,
    assert_steps_ran,
    run_workflow,
)

from .conftest import Events, FnStep, journaled, orchestrate


class LoopingStep(FnStep):
    """Reports progress every 5 ms for up to 5 s; ``working`` is set at the first report."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, execute=self._loop, **options)
        self.working = threading.Event()
        self.reports = 0

    def _loop(self, context: BaseStepContext) -> StepResult:
        for i in range(1, 1001):
            context.set_progress(i, 1000)
            self.reports += 1
            self.working.set()
            time.sleep(0.005)
        return StepResult()


def cancel_when(event: threading.Event, cancel: Any, reason: str) -> threading.Thread:
    def run() -> None:
        if event.wait(5.0):
            cancel(reason)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize('guarded', [False, True], ids=['plain', 'with-retry-and-timeout'])
def test_cancel_from_another_thread_stops_the_running_step(journal: Journal, guarded: bool) -> None:
    calls: list[tuple[str, str]] = []
    options: dict[str, Any] = {'calls': calls}
    if guarded:  # the slow path: a cancelled step is not retried, and is no timeout either
        options.update(retry=RetryPolicy(max_attempts=5, initial_delay=0), timeout=30.0)
    looping = LoopingStep('b', **options)
    events = Events()
    steps = [FnStep('a', calls=calls), looping, FnStep('c', calls=calls)]
    orchestrator, runtime, progress = orchestrate(
        steps, listeners=[events, journaled(journal, 'run-c')], sleep=FakeClock().sleep
    )
    thread = cancel_when(looping.working, orchestrator.cancel, 'user pressed stop')

    started = time.perf_counter()
    with pytest.raises(RunCancelledError) as caught:
        orchestrator.execute()
    thread.join()
    assert time.perf_counter() - started < 2.0

    error = caught.value
    assert isinstance(error, StepExecutionError) and isinstance(error, RuntimeError)
    assert error.reason == 'user pressed stop'
    assert error.step_name == 'b'
    assert str(error) == "Step 'b' failed: StepCancelled: the run was cancelled (user pressed stop)"
    assert isinstance(error.__cause__, StepCancelled) and not error.__cause__.before_step
    assert looping.reports < 1000
    assert calls == [('execute', 'a'), ('execute', 'b'), ('rollback', 'b'), ('rollback', 'a')]
    assert_rolled_back(runtime.memory, ['b', 'a'])
    summary = events.summary
    assert summary is not None
    assert summary.cancelled and not summary.success and not summary.interrupted
    assert summary.failed_step == 'b' and summary.error is error.__cause__
    assert events.retries == []
    assert progress and progress[-1] < 100
    assert_run_status(journal, 'run-c', 'cancelled')
    assert journal.get_run('run-c').error == 'cancelled: the run was cancelled (user pressed stop)'
    statuses = {record.name: record.status for record in journal.steps('run-c')}
    assert statuses == {'a': 'rolled_back', 'b': 'rolled_back', 'c': 'pending'}


def test_cancel_between_steps_never_starts_the_next_step(journal: Journal) -> None:
    calls: list[tuple[str, str]] = []
    runtime = RecordingRuntime()
    events = Events()
    steps = [FnStep('a', calls=calls), FnStep('b', calls=calls), FnStep('c', calls=calls)]
    # 'b' never checks: it finishes, and the run stops before 'c'
    run = run_workflow(
        steps,
        runtime=runtime,
        listeners=[CancelAt(runtime, 'b', 'enough'), events, journaled(journal, 'run-b')],
    )

    error = run.error
    assert isinstance(error, RunCancelledError)
    assert error.reason == 'enough' and error.step_name == 'c'
    assert isinstance(error.__cause__, StepCancelled) and error.__cause__.before_step
    assert calls == [('execute', 'a'), ('execute', 'b'), ('rollback', 'b'), ('rollback', 'a')]
    assert_steps_ran(run, ['a', 'b'])
    assert_rolled_back(run, ['b', 'a'])  # 'c' never began, so it is not rolled back
    assert ('step_end', 'c', False) not in events.events
    assert events.summary is not None and events.summary.cancelled
    assert_run_status(journal, 'run-b', 'cancelled')
    statuses = [record.status for record in journal.steps('run-b')]
    assert statuses == ['rolled_back', 'rolled_back', 'pending']


def test_cancel_before_the_run_starts_runs_nothing() -> None:
    calls: list[tuple[str, str]] = []
    runtime = RecordingRuntime()
    runtime.cancel('not today')
    run = run_workflow([FnStep('a', calls=calls), FnStep('b', calls=calls)], runtime=runtime)

    assert isinstance(run.error, RunCancelledError)
    assert run.error.reason == 'not today' and run.error.step_name == 'a'
    assert calls == []
    assert_rolled_back(run, [])


def test_cancel_at_a_step_that_checks_stops_that_step() -> None:
    runtime = RecordingRuntime()
    looping = LoopingStep('b')
    run = run_workflow(
        [FnStep('a'), looping, FnStep('c')], runtime=runtime, listeners=[CancelAt(runtime, 'b')]
    )
    assert isinstance(run.error, RunCancelledError) and run.error.step_name == 'b'
    assert looping.reports == 0  # its very first set_progress raised
    assert_rolled_back(run, ['b', 'a'])


def test_context_cancelled_and_raise_if_cancelled() -> None:
    runtime = RecordingRuntime()
    context = BaseStepContext(runtime_ctx=runtime)
    assert context.cancelled is False
    context.raise_if_cancelled()  # outside a run: nothing to stop

    seen: dict[str, Any] = {}

    def before(ctx: BaseStepContext) -> StepResult:
        seen['before'] = ctx.cancelled
        ctx.raise_if_cancelled()
        return StepResult()

    def checking(ctx: BaseStepContext) -> StepResult:
        seen['checking'] = ctx.cancelled
        try:
            ctx.raise_if_cancelled()
        except StepCancelled as stop:
            seen['raised'] = stop
            raise
        return StepResult()

    run = run_workflow(
        [FnStep('before', execute=before), FnStep('checking', execute=checking)],
        context,
        runtime=runtime,
        listeners=[CancelAt(runtime, 'checking', 'stop here')],
    )

    assert seen['before'] is False and seen['checking'] is True
    raised = seen['raised']
    assert isinstance(raised, StepInterrupted)
    assert raised.reason == 'stop here' and str(raised) == 'the run was cancelled (stop here)'
    assert isinstance(run.error, RunCancelledError) and run.error.__cause__ is raised
    assert context.cancelled is False  # the run is over


@pytest.mark.parametrize('interrupt', [KeyboardInterrupt(), SystemExit(3)], ids=repr)
def test_an_interrupt_inside_a_step_rolls_back_then_is_reraised(
    journal: Journal, interrupt: BaseException
) -> None:
    calls: list[tuple[str, str]] = []

    def interrupted(context: BaseStepContext) -> StepResult:
        context.append_rollback('ids', 1)
        raise interrupt

    events = Events()
    steps = [
        FnStep('a', calls=calls),
        FnStep('b', execute=interrupted, calls=calls),
        FnStep('c', calls=calls),
    ]
    with pytest.raises(type(interrupt)) as caught:
        run_workflow(steps, listeners=[events, journaled(journal, 'run-k')])

    assert caught.value is interrupt  # the very same exception, not a wrapper
    assert calls == [('execute', 'a'), ('execute', 'b'), ('rollback', 'b'), ('rollback', 'a')]
    assert steps[1].rollback_results[0].rollback_data == {'ids': [1]}
    summary = events.summary
    assert summary is not None
    assert summary.interrupted and not summary.cancelled and summary.error is interrupt
    assert_run_status(journal, 'run-k', 'cancelled')
    assert journal.get_run('run-k').error == f'interrupted by {type(interrupt).__name__}'


# --------------------------------------------------------------- the token itself


def test_cancel_token_keeps_the_first_reason_and_wakes_waiters() -> None:
    token = CancelToken()
    heard: list[str] = []
    token.subscribe(heard.append)
    assert not token.cancelled and token.reason is None
    assert token.wait(0.01) is False

    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: waited.append(token.wait(5.0)))
    waiter.start()
    token.cancel('first')
    token.cancel('second')
    waiter.join(2.0)

    assert waited == [True]
    assert token.cancelled and token.reason == 'first'
    assert heard == ['first']
    late: list[str] = []
    token.subscribe(late.append)  # subscribing after the fact still hears it
    assert late == ['first']


def test_cancel_token_unsubscribe() -> None:
    token = CancelToken()
    heard: list[str] = []
    token.subscribe(heard.append)
    token.unsubscribe(heard.append)
    token.unsubscribe(heard.append)  # harmless twice
    token.cancel()
    assert heard == [] and token.reason == 'cancelled'


def test_cancel_from_many_threads_at_once_keeps_one_reason() -> None:
    token = CancelToken()
    heard: list[str] = []
    token.subscribe(heard.append)
    barrier = threading.Barrier(8)

    def cancel(i: int) -> None:
        barrier.wait()
        token.cancel(f'thread {i}')

    threads = [threading.Thread(target=cancel, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(heard) == 1 and heard[0] == token.reason
