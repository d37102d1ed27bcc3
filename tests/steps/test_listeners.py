"""RunListener: event order, failures inside listeners, and resuming with ``completed``."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Orchestrator,
    Progress,
    RunEvent,
    RunListener,
    RunSummary,
    StepExecutionError,
    StepInfo,
    StepResult,
)

from .conftest import (
    Action,
    Recorder,
    RecordingListener,
    Step,
    make_registry,
    raising,
    returning,
    run,
)

LISTENER_ERROR = 'listener RecordingListener failed: RuntimeError: listener broke in {}'


def rollbacks(journal: list[str]) -> list[str]:
    return [e for e in journal if e.startswith('rollback:')]


def journaled(journal: list[str], *names: str, **actions: Action) -> list[Step]:
    """Steps called ``names`` that write into ``journal``; ``actions``: by step name."""
    return [Step(name, journal=journal, action=actions.get(name)) for name in names]


def run_failing(context: BaseStepContext, *steps: Step, **kwargs: Any) -> StepExecutionError:
    """Run ``steps``, which must fail; the error."""
    with pytest.raises(StepExecutionError) as info:
        run(context, *steps, **kwargs)
    return info.value


def listen(
    context: BaseStepContext, *steps: Step, fails: bool = False, **kwargs: Any
) -> RecordingListener:
    """Run ``steps`` (which must fail if ``fails``) with a new RecordingListener; the listener."""
    listener = RecordingListener()
    (run_failing if fails else run)(context, *steps, listeners=[listener], **kwargs)
    return listener


# b fails after a succeeded: what a listener sees from b's start on
B_FAILS_AFTER_A = [
    ('step_start', 'b'),
    ('step_end', 'b', False),
    ('rollback_start', 'b'),
    ('rollback_end', 'b', None),
    ('rollback_start', 'a'),
    ('rollback_end', 'a', None),
    ('run_end', False),
]


# ------------------------------------------------------------------ event order


def test_success_event_order(context: BaseStepContext) -> None:
    listener = listen(context, Step('a'), Step('b'))
    assert listener.lifecycle() == [
        ('run_start', ['a', 'b']),
        ('step_start', 'a'),
        ('step_end', 'a', True),
        ('step_start', 'b'),
        ('step_end', 'b', True),
        ('run_end', True),
    ]


def test_progress_events_sit_between_step_events(context: BaseStepContext) -> None:
    listener = listen(context, Step('a'), Step('b'))
    events = listener.events
    assert events[:4] == [
        ('run_start', ['a', 'b']),
        ('step_start', 'a'),
        ('step_end', 'a', True),
        ('progress', 50, 100),
    ]
    assert events[4] == ('step_start', 'b')
    assert events[-2:] == [('progress', 100, 100), ('run_end', True)]


def test_skip_event_order(context: BaseStepContext) -> None:
    listener = listen(context, Step('a', skip=True), Step('b'), Step('c', skip=True))
    assert listener.lifecycle() == [
        ('run_start', ['a', 'b', 'c']),
        ('step_skip', 'a'),
        ('step_start', 'b'),
        ('step_end', 'b', True),
        ('step_skip', 'c'),
        ('run_end', True),
    ]


def test_failure_event_order(context: BaseStepContext) -> None:
    listener = listen(
        context,
        Step('a'),
        Step('s', skip=True),
        Step('b', action=raising(ValueError('x'))),
        Step('c'),
        fails=True,
    )
    assert listener.lifecycle() == [
        ('run_start', ['a', 's', 'b', 'c']),
        ('step_start', 'a'),
        ('step_end', 'a', True),
        ('step_skip', 's'),
        *B_FAILS_AFTER_A,
    ]


def test_returned_failure_event_order(context: BaseStepContext) -> None:
    listener = listen(
        context,
        Step('a'),
        Step('b', action=returning(StepResult(success=False, error='no'))),
        fails=True,
    )
    assert listener.lifecycle()[3:] == B_FAILS_AFTER_A


def test_rollback_end_receives_the_rollback_error(context: BaseStepContext) -> None:
    error = OSError('locked')
    listener = listen(
        context,
        Step('a', on_rollback=raising(error)),
        Step('b', action=raising(ValueError('x'))),
        fails=True,
    )
    assert ('rollback_end', 'a', error) in listener.events
    assert ('rollback_end', 'b', None) in listener.events


def test_run_start_gets_step_infos(context: BaseStepContext) -> None:
    listener = listen(context, Step('a', 1), Step('b', 3), Step('c', 0))
    assert listener.infos == [StepInfo(0, 'a', 1.0), StepInfo(1, 'b', 3.0), StepInfo(2, 'c', 0.0)]
    assert all(isinstance(info.weight, float) for info in listener.infos)


def test_listener_defaults_are_no_ops(context: BaseStepContext) -> None:
    result = run(
        context,
        Step('a'),
        Step('s', skip=True),
        listeners=[RunListener()],
        completed={},
    )
    assert result['success'] is True
    run_failing(
        BaseStepContext(runtime_ctx=context.runtime_ctx),
        Step('a'),
        Step('b', action=raising(ValueError('x'))),
        listeners=[RunListener()],
    )


def test_add_listener(context: BaseStepContext) -> None:
    listener = RecordingListener()
    orchestrator = Orchestrator(make_registry(Step('a')), context)
    orchestrator.add_listener(listener)
    orchestrator.execute()
    assert listener.lifecycle() == [
        ('run_start', ['a']),
        ('step_start', 'a'),
        ('step_end', 'a', True),
        ('run_end', True),
    ]


def test_every_listener_gets_every_event(context: BaseStepContext) -> None:
    first, second = RecordingListener(), RecordingListener()
    run(context, Step('a'), Step('b', skip=True), listeners=[first, second])
    assert first.events == second.events
    assert len(first.events) > 4


# ------------------------------------------------------------------ summaries


def test_success_summary(context: BaseStepContext) -> None:
    listener = listen(
        context,
        Step('a'),
        Step('b', skip=True),
        Step('c'),
        Step('d'),
        completed={'d': StepResult()},
    )
    assert listener.summary == RunSummary(
        success=True, steps_executed=2, steps_skipped=1, steps_reused=1, steps_total=4
    )
    assert listener.summary.interrupted is False


def test_failure_summary(context: BaseStepContext) -> None:
    exc = ValueError('x')
    listener = listen(
        context,
        Step('a', on_rollback=raising(OSError('stuck'))),
        Step('s', skip=True),
        Step('c', action=raising(exc)),
        Step('d'),
        fails=True,
    )
    assert listener.summary == RunSummary(
        success=False,
        steps_executed=1,
        steps_skipped=1,
        steps_reused=0,
        steps_total=4,
        failed_step='c',
        error=exc,
        rollback_errors=("rollback of step 'a' failed: OSError: stuck",),
    )
    assert listener.summary.interrupted is False


def test_interrupted_summary(context: BaseStepContext) -> None:
    interrupt = KeyboardInterrupt()
    listener = RecordingListener()
    with pytest.raises(KeyboardInterrupt):
        run(context, Step('a'), Step('b', action=raising(interrupt)), listeners=[listener])
    assert listener.summary is not None
    assert listener.summary.error is interrupt
    assert listener.summary.interrupted is True
    assert listener.summary.failed_step == 'b'
    assert listener.lifecycle()[-1] == ('run_end', False)


# ------------------------------------------------------------------ progress and rollback data


def test_progress_events_mirror_the_callback(context: BaseStepContext, recorder: Recorder) -> None:
    def action(ctx: BaseStepContext) -> StepResult:
        for i in range(1, 5):
            ctx.set_progress(i, 4)
        return StepResult()

    listener = listen(
        context,
        Step('a', 1),
        Step('b', 2, action=action),
        Step('c', 1, skip=True),
        Step('d', 3),
        callback=recorder,
    )
    progress = [(e[1], e[2]) for e in listener.events if e[0] == 'progress']
    assert progress == recorder.calls
    assert progress[-1] == (100, 100)
    assert len(progress) >= 5


def test_step_progress_event_gets_the_fraction(context: BaseStepContext) -> None:
    def action(ctx: BaseStepContext) -> StepResult:
        ctx.set_progress(1, 4)
        ctx.set_progress(3, 4, 'files')
        return StepResult()

    listener = listen(context, Step('a', action=action))
    assert [e for e in listener.events if e[0] == 'step_progress'] == [
        ('step_progress', 'a', 0.25),
        ('step_progress', 'a', 0.75),
    ]


def test_rollback_data_events_receive_record_and_append(context: BaseStepContext) -> None:
    def action(ctx: BaseStepContext) -> StepResult:
        ctx.record_rollback(tmp='/t', session=7)
        ctx.append_rollback('files', 'f1')
        ctx.append_rollback('files', 'f2')
        return StepResult()

    listener = listen(context, Step('a', action=action))
    assert listener.lifecycle()[1:6] == [
        ('step_start', 'a'),
        ('rollback_data', 'a', {'tmp': '/t', 'session': 7}, None),
        ('rollback_data', 'a', {'files': 'f1'}, 'files'),
        ('rollback_data', 'a', {'files': 'f2'}, 'files'),
        ('step_end', 'a', True),
    ]


# ------------------------------------------------------------------ listeners that raise


def appending_rollback(ctx: BaseStepContext) -> StepResult:
    ctx.append_rollback('files', 'f1')
    return StepResult()


def reporting_progress(ctx: BaseStepContext) -> StepResult:
    ctx.set_progress(1, 2)
    return StepResult()


@pytest.mark.parametrize(
    ('event', 'action'),
    [
        pytest.param('rollback_data', appending_rollback, id='RollbackData'),
        pytest.param('step_progress', reporting_progress, id='StepProgress'),
    ],
)
def test_listener_raising_in_an_event_of_a_running_step_fails_the_step(
    context: BaseStepContext, journal: list[str], event: str, action: Action
) -> None:
    listener = RecordingListener(fail_on=[event])
    err = run_failing(context, *journaled(journal, 'a', 'b', 'c', b=action), listeners=[listener])
    assert str(err) == f"Step 'b' failed: RuntimeError: listener broke in {event}"
    assert 'execute:c' not in journal
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']


def test_listener_raising_on_step_started_fails_that_step(
    context: BaseStepContext, journal: list[str]
) -> None:
    listener = RecordingListener(fail_on=['step_start'], fail_for='b')
    err = run_failing(context, *journaled(journal, 'a', 'b', 'c'), listeners=[listener])
    assert str(err) == "Step 'b' failed: RuntimeError: listener broke in step_start"
    assert isinstance(err.__cause__, RuntimeError)
    assert 'execute:b' not in journal
    assert 'can_skip:c' not in journal
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']
    assert context.step_results[-1].step_name == 'b'
    assert context.step_results[-1].success is False
    assert listener.lifecycle()[-1] == ('run_end', False)


def test_listener_raising_on_step_ended_fails_that_step(
    context: BaseStepContext, journal: list[str]
) -> None:
    listener = RecordingListener(fail_on=['step_end'], fail_for='b')
    a, b, c = journaled(journal, 'a', 'b', 'c')
    err = run_failing(context, a, b, c, listeners=[listener])
    assert str(err) == "Step 'b' failed: RuntimeError: listener broke in step_end"
    assert isinstance(err.__cause__, RuntimeError)
    assert 'can_skip:c' not in journal
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']  # b once, not twice
    failed = context.step_results[-1]
    assert failed is b.returned[0]
    assert failed.success is False
    assert failed.exception is err.__cause__
    assert listener.summary is not None
    assert listener.summary.steps_executed == 1
    assert listener.summary.failed_step == 'b'


def test_listener_raising_in_rollback_events_does_not_stop_rollback(
    context: BaseStepContext, journal: list[str]
) -> None:
    broken = RecordingListener(fail_on=['rollback_start', 'rollback_end'], fail_for='b')
    healthy = RecordingListener()
    steps = journaled(journal, 'a', 'b', 'c', c=raising(ValueError('x')))
    err = run_failing(context, *steps, listeners=[broken, healthy])
    expected = [LISTENER_ERROR.format('rollback_start'), LISTENER_ERROR.format('rollback_end')]
    assert rollbacks(journal) == ['rollback:c', 'rollback:b', 'rollback:a']
    assert context.errors == expected
    assert err.rollback_errors == expected
    assert str(err) == "Step 'c' failed: ValueError: x"
    assert [e[:2] for e in healthy.lifecycle() if e[0].startswith('rollback')] == [
        ('rollback_start', 'c'),
        ('rollback_end', 'c'),
        ('rollback_start', 'b'),
        ('rollback_end', 'b'),
        ('rollback_start', 'a'),
        ('rollback_end', 'a'),
    ]


def test_listener_raising_on_run_ended_after_a_failure(
    context: BaseStepContext, journal: list[str]
) -> None:
    broken = RecordingListener(fail_on=['run_end'])
    healthy = RecordingListener()
    exc = ValueError('x')
    err = run_failing(
        context, *journaled(journal, 'a', 'b', b=raising(exc)), listeners=[broken, healthy]
    )
    assert str(err) == "Step 'b' failed: ValueError: x"
    assert err.__cause__ is exc
    assert context.errors == [LISTENER_ERROR.format('run_end')]
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']
    assert healthy.lifecycle()[-1] == ('run_end', False)


def test_listener_raising_on_run_ended_after_success(context: BaseStepContext) -> None:
    broken = RecordingListener(fail_on=['run_end'])
    healthy = RecordingListener()
    result = run(context, Step('a'), Step('b'), listeners=[broken, healthy])
    assert result['success'] is True
    assert context.errors == [LISTENER_ERROR.format('run_end')]
    assert healthy.lifecycle()[-1] == ('run_end', True)


# ------------------------------------------------------------------ resume: completed


def test_completed_steps_are_reused_not_executed(
    context: BaseStepContext, journal: list[str]
) -> None:
    listener = RecordingListener()
    old = StepResult(data={'rows': 3}, step_name='a')
    result = run(context, *journaled(journal, 'a', 'b'), listeners=[listener], completed={'a': old})
    assert journal == ['can_skip:b', 'execute:b']
    assert result == {
        'success': True,
        'steps_executed': 1,
        'steps_total': 2,
        'steps_skipped': 0,
        'steps_reused': 1,
    }
    assert listener.lifecycle() == [
        ('run_start', ['a', 'b']),
        ('step_reused', 'a'),
        ('step_start', 'b'),
        ('step_end', 'b', True),
        ('run_end', True),
    ]


def test_completed_steps_count_as_done_for_progress(
    context: BaseStepContext, recorder: Recorder
) -> None:
    seen: list[Any] = []

    def look(ctx: BaseStepContext) -> StepResult:
        seen.append(list(recorder.values))
        return StepResult()

    run(
        context,
        Step('a', 1),
        Step('b', 1),
        Step('c', 2, action=look),
        callback=recorder,
        completed={'a': StepResult()},
    )
    assert seen == [[25, 50]]
    assert recorder.values[-1] == 100


def test_completed_steps_are_rolled_back_with_their_old_result(
    context: BaseStepContext, journal: list[str]
) -> None:
    old = StepResult(rollback_data={'files': ['x']})
    a, b, c = journaled(journal, 'a', 'b', 'c', c=raising(ValueError('x')))
    run_failing(context, a, b, c, completed={'a': old})
    assert 'execute:a' not in journal
    assert rollbacks(journal) == ['rollback:c', 'rollback:b', 'rollback:a']
    assert a.rollback_results == [old]
    assert a.rollback_results[0] is old


def test_completed_name_not_in_registry_is_ignored(
    context: BaseStepContext, journal: list[str]
) -> None:
    result = run(
        context, Step('a', journal=journal), completed={'gone': StepResult(step_name='gone')}
    )
    assert journal == ['can_skip:a', 'execute:a']
    assert result['steps_reused'] == 0
    assert result['steps_executed'] == 1


def test_listener_raising_on_progress_fails_the_step_that_moved_it(
    context: BaseStepContext, journal: list[str]
) -> None:
    listener = RecordingListener(fail_on=['progress'])
    err = run_failing(context, *journaled(journal, 'a', 'b'), listeners=[listener])
    assert str(err) == "Step 'a' failed: RuntimeError: listener broke in progress"
    assert 'execute:b' not in journal
    assert rollbacks(journal) == ['rollback:a']
    assert listener.summary is not None
    assert listener.summary.steps_executed == 0


class FailsAt100(RunListener):
    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, Progress) and event.current == 100:
            raise RuntimeError('cannot record 100')


def test_listener_raising_on_the_final_100_is_handled(
    context: BaseStepContext, journal: list[str]
) -> None:
    """The final report is outside every step, but the run is not over: no raw escape.

    Either policy is coherent: fail the run (rolled back, StepExecutionError) or
    report it like a run-end event (in ``context.errors``); both tell listeners
    how the run ended.
    """
    healthy = RecordingListener()
    try:
        run(context, *journaled(journal, 'a', 'b'), listeners=[FailsAt100(), healthy])
    except StepExecutionError:
        assert rollbacks(journal) == ['rollback:b', 'rollback:a']
        assert healthy.lifecycle()[-1] == ('run_end', False)
    else:
        assert context.errors == ['listener FailsAt100 failed: RuntimeError: cannot record 100']
        assert healthy.lifecycle()[-1] == ('run_end', True)


def test_progress_callback_raising_on_the_final_100_is_handled(
    context: BaseStepContext, journal: list[str]
) -> None:
    def callback(current: int, total: int) -> None:
        if current == 100:
            raise OSError('progress bar gone')

    healthy = RecordingListener()
    try:
        run(context, *journaled(journal, 'a', 'b'), callback=callback, listeners=[healthy])
    except StepExecutionError as err:
        assert isinstance(err.__cause__, OSError)
        assert rollbacks(journal) == ['rollback:b', 'rollback:a']
        assert healthy.lifecycle()[-1] == ('run_end', False)
    else:
        assert any('progress bar gone' in e for e in context.errors)
        assert healthy.lifecycle()[-1] == ('run_end', True)


def test_progress_callback_raising_mid_run_fails_the_step(
    context: BaseStepContext, journal: list[str]
) -> None:
    def callback(current: int, total: int) -> None:
        raise OSError('progress bar gone')

    err = run_failing(context, *journaled(journal, 'a', 'b'), callback=callback)
    assert str(err) == "Step 'a' failed: OSError: progress bar gone"
    assert rollbacks(journal) == ['rollback:a']
    assert 'execute:b' not in journal
