"""The edges of a run: what happens around a step rather than in it.

Counts after resumes, skips and failures; listeners and callbacks raising around
skipped and reused steps; interrupts and cancels outside a step's own code (the
final report, a cancel the last step ignores); async steps; registry changes
during a run; policies and weights read at registration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    CancelToken,
    Orchestrator,
    Progress,
    RetryPolicy,
    RunCancelledError,
    RunEvent,
    RunListener,
    StepExecutionError,
    StepResult,
    StepReused,
    StepStarted,
    StepTimeoutError,
)
from synapse_sdk.testing import FakeClock

from .conftest import (
    Recorder,
    RecordingListener,
    RecordingRuntime,
    Step,
    make_registry,
    raising,
    run,
)


def rollbacks(journal: list[str]) -> list[str]:
    return [e for e in journal if e.startswith('rollback:')]


def executed(journal: list[str]) -> list[str]:
    return [e for e in journal if e.startswith('execute:')]


def taking(clock: FakeClock, seconds: float) -> Callable[[BaseStepContext], StepResult]:
    """An action that spends ``seconds`` on the clock and succeeds."""

    def action(context: BaseStepContext) -> StepResult:
        clock.sleep(seconds)
        return StepResult()

    return action


class AsyncStep(BaseStep[BaseStepContext]):
    """``async def`` can_skip/execute/rollback; each can be told to raise or to take time."""

    def __init__(
        self,
        name: str,
        journal: list[str],
        *,
        clock: FakeClock | None = None,
        skip_error: BaseException | None = None,
        error: BaseException | None = None,
        returns: Any = None,
    ) -> None:
        self._name = name
        self.journal = journal
        self.clock = clock
        self.skip_error = skip_error
        self.error = error
        self.returns = returns

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return 1.0

    async def can_skip(self, context: BaseStepContext) -> bool:  # type: ignore[override]
        await asyncio.sleep(0)
        if self.clock is not None:
            self.clock.sleep(1.0)
        if self.skip_error is not None:
            raise self.skip_error
        return False

    async def execute(self, context: BaseStepContext) -> Any:  # type: ignore[override]
        await asyncio.sleep(0)
        self.journal.append(f'execute:{self._name}')
        if self.clock is not None:
            self.clock.sleep(2.0)
        if self.error is not None:
            raise self.error
        return StepResult() if self.returns is None else self.returns

    async def rollback(  # type: ignore[override]
        self, context: BaseStepContext, result: StepResult
    ) -> None:
        await asyncio.sleep(0)
        self.journal.append(f'rollback:{self._name}')


def execute_in(mode: str, orchestrator: Orchestrator[Any]) -> dict[str, Any]:
    """``execute()``, or ``execute_async()`` awaited on a loop of the test's own."""
    if mode == 'execute':
        return orchestrator.execute()

    async def main() -> dict[str, Any]:
        return await orchestrator.execute_async()

    return asyncio.run(main())


# ------------------------------------------------------------ counts: resume, skip, failure


def test_success_counts_with_reused_skipped_and_executed_steps(
    context: BaseStepContext, journal: list[str]
) -> None:
    listener = RecordingListener()
    result = run(
        context,
        Step('r1', journal=journal),
        Step('s', journal=journal, skip=True),
        Step('e1', journal=journal),
        Step('r2', journal=journal),
        Step('e2', journal=journal),
        listeners=[listener],
        completed={'r1': StepResult(), 'r2': StepResult()},
    )
    assert result == {
        'success': True,
        'steps_executed': 2,
        'steps_total': 5,
        'steps_skipped': 1,
        'steps_reused': 2,
    }
    assert listener.summary is not None
    assert (
        listener.summary.steps_executed,
        listener.summary.steps_skipped,
        listener.summary.steps_reused,
        listener.summary.steps_total,
    ) == (2, 1, 2, 5)
    assert executed(journal) == ['execute:e1', 'execute:e2']


def test_failure_summary_after_reused_skipped_and_executed_steps(
    context: BaseStepContext, journal: list[str]
) -> None:
    old = StepResult(rollback_data={'ids': [1]})
    r = Step('r', journal=journal)
    listener = RecordingListener()
    exc = ValueError('x')
    with pytest.raises(StepExecutionError) as info:
        run(
            context,
            r,
            Step('s', journal=journal, skip=True),
            Step('e', journal=journal),
            Step('f', journal=journal, action=raising(exc)),
            Step('z', journal=journal),
            listeners=[listener],
            completed={'r': old},
        )
    assert info.value.__cause__ is exc
    assert rollbacks(journal) == ['rollback:f', 'rollback:e', 'rollback:r']
    assert r.rollback_results == [old]
    assert 'can_skip:z' not in journal
    summary = listener.summary
    assert summary is not None
    assert (summary.steps_executed, summary.steps_skipped, summary.steps_reused) == (1, 1, 1)
    assert summary.steps_total == 5
    assert summary.failed_step == 'f'


def test_cancel_between_steps_summary_counts_reused_skipped_and_executed(
    context: BaseStepContext, journal: list[str]
) -> None:
    """A step that ignores the cancel finishes; the next never starts; counts are right."""
    listener = RecordingListener()
    holder: list[Orchestrator[Any]] = []

    def cancel_and_carry_on(ctx: BaseStepContext) -> StepResult:
        holder[0].cancel('stop')
        return StepResult()

    registry = make_registry(
        Step('r', journal=journal),
        Step('s', journal=journal, skip=True),
        Step('e', journal=journal, action=cancel_and_carry_on),
        Step('z', journal=journal),
    )
    orchestrator = Orchestrator(
        registry, context, listeners=[listener], completed={'r': StepResult()}
    )
    holder.append(orchestrator)
    with pytest.raises(RunCancelledError) as info:
        orchestrator.execute()
    assert info.value.step_name == 'z'
    assert 'can_skip:z' not in journal
    assert rollbacks(journal) == ['rollback:e', 'rollback:r']  # z never began
    summary = listener.summary
    assert summary is not None and summary.cancelled
    assert (summary.steps_executed, summary.steps_skipped, summary.steps_reused) == (1, 1, 1)
    assert summary.failed_step == 'z'


# ------------------------------------------------------------ listeners raising: skip, reused


def test_listener_raising_on_step_skipped_fails_the_run(
    context: BaseStepContext, journal: list[str]
) -> None:
    listener = RecordingListener(fail_on=['step_skip'], fail_for='s')
    with pytest.raises(StepExecutionError) as info:
        run(
            context,
            Step('a', journal=journal),
            Step('s', journal=journal, skip=True),
            Step('c', journal=journal),
            listeners=[listener],
        )
    assert str(info.value) == "Step 's' failed: RuntimeError: listener broke in step_skip"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert 'can_skip:c' not in journal
    assert 'execute:s' not in journal
    assert 'rollback:a' in journal
    assert listener.summary is not None
    assert listener.summary.failed_step == 's'
    assert listener.summary.steps_executed == 1
    assert listener.lifecycle()[-1] == ('run_end', False)


class FailsAt(RunListener):
    """Raises on ``Progress`` once the overall figure reaches ``percent``."""

    def __init__(self, percent: int) -> None:
        self.percent = percent

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, Progress) and event.current >= self.percent:
            raise RuntimeError('cannot record progress')


@pytest.mark.parametrize('trigger', ['StepSkipped', 'Progress', 'progress_callback'])
def test_a_skipped_step_is_never_rolled_back_even_when_its_report_fails(
    context: BaseStepContext, journal: list[str], trigger: str
) -> None:
    """Also when the failure comes from reporting the skip (a listener of ``StepSkipped``,
    or the progress mark the skipped step reaches: ``Progress`` or the callback)."""
    kwargs: dict[str, Any] = {}
    if trigger == 'StepSkipped':
        kwargs['listeners'] = [RecordingListener(fail_on=['step_skip'], fail_for='s')]
    elif trigger == 'Progress':
        kwargs['listeners'] = [FailsAt(50)]
    else:

        def callback(current: int, total: int) -> None:
            if current >= 50:
                raise OSError('progress bar gone')

        kwargs['callback'] = callback
    s = Step('s', 1, journal=journal, skip=True)
    with pytest.raises(StepExecutionError):
        run(
            context,
            Step('a', 1, journal=journal),
            s,
            Step('c', 2, journal=journal),
            **kwargs,
        )
    assert 'can_skip:c' not in journal
    assert 'rollback:a' in journal
    assert s.rollback_results == []
    assert rollbacks(journal) == ['rollback:a']


def test_listener_raising_on_step_reused_fails_the_run(
    context: BaseStepContext, journal: list[str]
) -> None:
    old = StepResult(data={'rows': 3}, rollback_data={'ids': [7]})
    r = Step('r', journal=journal)
    listener = RecordingListener(fail_on=['step_reused'], fail_for='r')
    with pytest.raises(StepExecutionError) as info:
        run(
            context,
            Step('a', journal=journal),
            r,
            Step('c', journal=journal),
            listeners=[listener],
            completed={'r': old},
        )
    assert str(info.value) == "Step 'r' failed: RuntimeError: listener broke in step_reused"
    assert 'execute:r' not in journal
    assert 'can_skip:c' not in journal
    # the reused step did its work in the earlier run: it is undone, then the one before it
    assert rollbacks(journal) == ['rollback:r', 'rollback:a']
    assert [result.rollback_data for result in r.rollback_results] == [{'ids': [7]}]
    assert listener.summary is not None
    assert listener.summary.failed_step == 'r'
    assert listener.summary.steps_executed == 1


def test_a_failing_report_of_a_reused_step_leaves_the_callers_result_alone(
    context: BaseStepContext, journal: list[str]
) -> None:
    """The result handed in through ``completed`` is the caller's (e.g. read from the
    journal): a failing report of the reused step does not rewrite it, and the step is
    rolled back with it as it was; the failure gets a result of its own."""
    old = StepResult(data={'rows': 3}, rollback_data={'ids': [7]})
    r = Step('r', journal=journal)
    listener = RecordingListener(fail_on=['step_reused'], fail_for='r')
    with pytest.raises(StepExecutionError):
        run(
            context,
            Step('a', journal=journal),
            r,
            listeners=[listener],
            completed={'r': old},
        )
    assert rollbacks(journal) == ['rollback:r', 'rollback:a']
    assert (old.success, old.error, old.exception) == (True, None, None)
    [rolled_back] = r.rollback_results
    assert rolled_back.success is True
    assert rolled_back.rollback_data == {'ids': [7]}


# ------------------------------------------------------------ interrupts outside the step


@pytest.mark.parametrize(
    ('at', 'failed_step', 'ran', 'undone'),
    [
        pytest.param(50, 'a', ['execute:a'], ['rollback:a'], id='mid-run'),
        # the final (100, 100): rolled back like anywhere else, execute() raises only
        # after rolling back, and listeners hear how the run ended
        pytest.param(
            100, 'b', ['execute:a', 'execute:b'], ['rollback:b', 'rollback:a'], id='final-report'
        ),
    ],
)
def test_keyboard_interrupt_from_the_progress_callback_rolls_back_and_is_reraised(
    context: BaseStepContext,
    journal: list[str],
    at: int,
    failed_step: str,
    ran: list[str],
    undone: list[str],
) -> None:
    interrupt = KeyboardInterrupt()

    def callback(current: int, total: int) -> None:
        if current == at:
            raise interrupt

    listener = RecordingListener()
    with pytest.raises(KeyboardInterrupt) as info:
        run(
            context,
            Step('a', journal=journal),
            Step('b', journal=journal),
            callback=callback,
            listeners=[listener],
        )
    assert info.value is interrupt
    assert executed(journal) == ran
    assert rollbacks(journal) == undone
    assert listener.summary is not None
    assert listener.summary.interrupted and listener.summary.failed_step == failed_step
    assert listener.summary.steps_executed == len(ran) - 1
    assert listener.lifecycle()[-1][0] == 'run_end'
    assert context.current_step is None


def test_an_error_in_the_final_report_is_noted_and_the_run_stands(
    context: BaseStepContext, journal: list[str]
) -> None:
    """Every step succeeded: a broken progress bar at 100 is not worth undoing the work."""

    def callback(current: int, total: int) -> None:
        if current == 100:
            raise OSError('progress bar gone')

    outcome = run(context, Step('a', journal=journal), callback=callback)
    assert outcome['success'] is True
    assert rollbacks(journal) == []
    assert context.errors == ['progress callback failed: OSError: progress bar gone']


def test_a_cancel_the_last_step_ignores_still_cancels_the_run(
    context: BaseStepContext, journal: list[str]
) -> None:
    """As between two steps: the run stops (here: after the last one) and rolls back."""
    holder: list[Orchestrator[Any]] = []

    def deaf(ctx: BaseStepContext) -> StepResult:
        holder[0].cancel('user pressed Ctrl-C')
        return StepResult(data={'done': True})  # never looks at ctx.cancelled

    listener = RecordingListener()
    orchestrator: Orchestrator[Any] = Orchestrator(
        make_registry(Step('a', journal=journal), Step('b', journal=journal, action=deaf)),
        context,
        listeners=[listener],
    )
    holder.append(orchestrator)
    with pytest.raises(RunCancelledError) as info:
        orchestrator.execute()
    assert info.value.step_name == 'b'
    assert info.value.reason == 'user pressed Ctrl-C'
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']
    assert listener.summary is not None and listener.summary.cancelled
    assert not context.step_results[-1].success


def test_a_cancel_after_the_run_has_finished_changes_nothing(
    context: BaseStepContext, journal: list[str]
) -> None:
    orchestrator: Orchestrator[Any] = Orchestrator(
        make_registry(Step('a', journal=journal)), context
    )
    assert orchestrator.execute()['success'] is True
    orchestrator.cancel('too late')
    assert rollbacks(journal) == []


def test_an_empty_workflow_succeeds_at_100(context: BaseStepContext, recorder: Recorder) -> None:
    listener = RecordingListener()
    outcome = run(context, callback=recorder, listeners=[listener])
    assert outcome['steps_total'] == 0 and outcome['success'] is True
    assert recorder.values == [100]
    assert listener.lifecycle() == [('run_start', []), ('run_end', True)]


def test_an_interrupt_in_an_empty_workflows_report_still_ends_the_run(
    context: BaseStepContext,
) -> None:
    def callback(current: int, total: int) -> None:
        raise KeyboardInterrupt

    listener = RecordingListener()
    with pytest.raises(KeyboardInterrupt):
        run(context, callback=callback, listeners=[listener])
    assert listener.summary is not None and listener.summary.interrupted


def test_a_listener_may_record_rollback_data_when_a_step_starts(
    context: BaseStepContext,
) -> None:
    """``StepStarted`` is inside the step: what its listener records is the step's to undo."""

    class Reserving(RunListener):
        def __init__(self, context: BaseStepContext) -> None:
            self.context = context

        def on_event(self, event: RunEvent) -> None:
            if isinstance(event, StepStarted):
                self.context.record_rollback(reservation=f'r-{event.step.name}')

    a = Step('a')
    with pytest.raises(StepExecutionError):
        listeners = [Reserving(context)]
        run(context, a, Step('b', action=raising(OSError('no'))), listeners=listeners)
    [undone] = a.rollback_results
    assert undone.rollback_data == {'reservation': 'r-a'}


# ------------------------------------------------------------ async steps


@pytest.mark.parametrize('mode', ['execute', 'execute_async'])
def test_an_async_can_skip_that_raises_is_the_steps_failure(
    context: BaseStepContext, journal: list[str], mode: str
) -> None:
    exc = ValueError('cannot tell')
    steps = [
        AsyncStep('a', journal),
        AsyncStep('b', journal, skip_error=exc),
        AsyncStep('c', journal),
    ]
    with pytest.raises(StepExecutionError) as info:
        execute_in(mode, Orchestrator(make_registry(*steps), context))
    assert str(info.value) == "Step 'b' failed: ValueError: cannot tell"
    assert info.value.__cause__ is exc
    assert journal == ['execute:a', 'rollback:b', 'rollback:a']


@pytest.mark.parametrize('mode', ['execute', 'execute_async'])
def test_an_async_step_returning_a_non_result_fails_naming_the_step(
    context: BaseStepContext, journal: list[str], mode: str
) -> None:
    steps = [AsyncStep('a', journal), AsyncStep('b', journal, returns={'rows': 1})]
    with pytest.raises(StepExecutionError) as info:
        execute_in(mode, Orchestrator(make_registry(*steps), context))
    assert str(info.value) == (
        "Step 'b' failed: TypeError: step 'b' returned dict, expected a StepResult"
    )
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']


@pytest.mark.parametrize('mode', ['execute', 'execute_async'])
@pytest.mark.parametrize('interrupt', [KeyboardInterrupt(), SystemExit(4)], ids=repr)
def test_an_interrupt_in_an_async_step_rolls_back_async_steps_then_is_reraised(
    context: BaseStepContext, journal: list[str], mode: str, interrupt: BaseException
) -> None:
    steps = [AsyncStep('a', journal), AsyncStep('b', journal, error=interrupt)]
    with pytest.raises(type(interrupt)) as info:
        execute_in(mode, Orchestrator(make_registry(*steps), context))
    assert info.value is interrupt
    assert journal == ['execute:a', 'execute:b', 'rollback:b', 'rollback:a']
    assert context.step_results[-1].exception is interrupt


@pytest.mark.parametrize('mode', ['execute', 'execute_async'])
def test_an_async_steps_awaited_time_is_its_duration(
    context: BaseStepContext, journal: list[str], mode: str
) -> None:
    clock = FakeClock()
    steps = [AsyncStep('a', journal, clock=clock), Step('b', action=taking(clock, 0.5))]
    execute_in(mode, Orchestrator(make_registry(*steps), context, timing=True, clock=clock))
    # async can_skip 1.0 + async execute 2.0, both awaited
    assert [(r.step_name, r.duration_seconds) for r in context.step_results] == [
        ('a', 3.0),
        ('b', 0.5),
    ]


# ------------------------------------------------------------ progress


def test_all_zero_weights_in_step_progress_moves_by_step_count(
    context: BaseStepContext, recorder: Recorder
) -> None:
    def half_then_all(ctx: BaseStepContext) -> StepResult:
        ctx.set_progress(1, 2)
        ctx.set_progress(2, 2)
        return StepResult()

    run(
        context,
        Step('a', 0, action=half_then_all),
        Step('b', 0, action=half_then_all),
        callback=recorder,
    )
    assert recorder.values == [25, 50, 75, 99, 100]  # 100 only once the run is over


def test_in_step_progress_after_reused_and_skipped_steps(
    context: BaseStepContext, recorder: Recorder
) -> None:
    def quarter(ctx: BaseStepContext) -> StepResult:
        ctx.set_progress(1, 4)
        return StepResult()

    run(
        context,
        Step('r', 1),
        Step('s', 1, skip=True),
        Step('c', 2, action=quarter),
        callback=recorder,
        completed={'r': StepResult()},
    )
    # r done: 25, s skipped: 50, c a quarter through: 50 + 50/4 = 62, end: 100
    assert recorder.values == [25, 50, 62, 100]


# ------------------------------------------------------------ the registry a run reads


def test_a_registry_changed_during_a_run_changes_only_the_next_run(journal: list[str]) -> None:
    registry = make_registry()

    def grow(ctx: BaseStepContext) -> StepResult:
        if 'late' not in registry:
            registry.insert_after('a', Step('late', 2, journal=journal))
            registry.unregister('b')
        return StepResult()

    registry.register(Step('a', 1, journal=journal, action=grow))
    registry.register(Step('b', 1, journal=journal))
    first = Recorder()
    result = Orchestrator(
        registry, BaseStepContext(runtime_ctx=RecordingRuntime()), first
    ).execute()
    assert executed(journal) == ['execute:a', 'execute:b']
    assert result['steps_total'] == 2 and result['steps_executed'] == 2
    assert first.values == [50, 100]

    journal.clear()
    second = Recorder()
    result = Orchestrator(
        registry, BaseStepContext(runtime_ctx=RecordingRuntime()), second
    ).execute()
    assert executed(journal) == ['execute:a', 'execute:late']
    assert result['steps_total'] == 2
    assert second.values == [33, 100]


def test_a_timeout_set_after_registration_is_not_applied(context: BaseStepContext) -> None:
    def slow(ctx: BaseStepContext) -> StepResult:
        time.sleep(0.05)
        return StepResult()

    step = Step('a', action=slow)
    registry = make_registry(step)
    step.timeout = 0.005  # too late: already registered (applied, the late result would fail)
    result = Orchestrator(registry, context).execute()
    assert result['success'] is True
    assert context.step_results[0].attempts == 1


def test_a_retry_removed_after_registration_still_applies(context: BaseStepContext) -> None:
    calls: list[int] = []

    def flaky(ctx: BaseStepContext) -> StepResult:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError('down')
        return StepResult()

    step = Step('a', action=flaky)
    step.retry = RetryPolicy(max_attempts=3, initial_delay=0, jitter=0)
    registry = make_registry(step)
    step.retry = None  # the registry keeps what it read
    Orchestrator(registry, context, sleep=FakeClock().sleep).execute()
    assert len(calls) == 3
    assert context.step_results[0].attempts == 3


def test_a_timeout_read_at_registration_is_enforced(context: BaseStepContext) -> None:
    def slow(ctx: BaseStepContext) -> StepResult:
        for _ in range(200):
            ctx.raise_if_cancelled()
            time.sleep(0.005)
        return StepResult()

    step = Step('a', action=slow)
    step.timeout = 0.05
    registry = make_registry(step)
    step.timeout = None  # too late to lift it
    with pytest.raises(StepExecutionError) as info:
        Orchestrator(registry, context).execute()
    assert isinstance(info.value.__cause__, StepTimeoutError)


def test_a_weight_too_large_for_a_float_is_a_value_error_naming_the_step() -> None:
    """An int beyond float range is as infinite as ``math.inf``: a ValueError naming the
    step, not an OverflowError."""
    registry = make_registry()
    with pytest.raises(ValueError, match="step 'huge'"):
        registry.register(Step('huge', 10**400))
    assert len(registry) == 0


# ------------------------------------------------------------ resumed runs cancelled early


def test_a_resumed_run_cancelled_before_its_reused_steps_undoes_them(
    context: BaseStepContext, journal: list[str]
) -> None:
    """The earlier run's work stands whether or not this run got to reuse it: a cancel
    before the first step rolls it all back, newest first, each with its old result."""
    token = CancelToken()
    token.cancel('Ctrl-C')
    old_a = StepResult(rollback_data={'ids': [1]})
    old_b = StepResult(rollback_data={'ids': [2]})
    a, b = Step('a', journal=journal), Step('b', journal=journal)
    listener = RecordingListener()
    with pytest.raises(RunCancelledError) as info:
        run(
            context,
            a,
            b,
            Step('c', journal=journal),
            completed={'a': old_a, 'b': old_b},
            cancel_token=token,
            listeners=[listener],
        )
    assert info.value.step_name == 'a'
    assert executed(journal) == []
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']
    assert a.rollback_results == [old_a] and b.rollback_results == [old_b]
    assert listener.summary is not None and listener.summary.steps_reused == 0


def test_a_resumed_run_cancelled_between_reused_steps_undoes_all_of_them(
    context: BaseStepContext, journal: list[str]
) -> None:
    holder: list[Orchestrator[Any]] = []

    class CancelOnReuse(RunListener):
        def on_event(self, event: RunEvent) -> None:
            if isinstance(event, StepReused) and event.step.name == 'a':
                holder[0].cancel('stop')

    orchestrator: Orchestrator[Any] = Orchestrator(
        make_registry(*(Step(n, journal=journal) for n in 'abc')),
        context,
        completed={'a': StepResult(), 'b': StepResult()},
        listeners=[CancelOnReuse()],
    )
    holder.append(orchestrator)
    with pytest.raises(RunCancelledError):
        orchestrator.execute()
    assert executed(journal) == []
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']
