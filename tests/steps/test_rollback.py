"""Failure handling: stop, roll back in reverse, raise a StepExecutionError (or re-raise)."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Orchestrator,
    StepExecutionError,
    StepResult,
)

from .conftest import RecordingListener, Step, make_registry, raising, returning, run


def rollbacks(journal: list[str]) -> list[str]:
    return [e for e in journal if e.startswith('rollback:')]


def executed(journal: list[str]) -> list[str]:
    return [e for e in journal if e.startswith('execute:')]


def three_steps_failing_at_b(journal: list[str], action: Any) -> list[Step]:
    return [
        Step('a', journal=journal),
        Step('b', journal=journal, action=action),
        Step('c', journal=journal),
    ]


# ------------------------------------------------------------------ the three ways a step fails


def test_returned_failure_stops_and_rolls_back(
    context: BaseStepContext, journal: list[str]
) -> None:
    failed = StepResult(success=False, error='disk full')
    steps = three_steps_failing_at_b(journal, returning(failed))
    with pytest.raises(StepExecutionError) as info:
        run(context, *steps)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert str(err) == "Step 'b' failed: disk full"
    assert err.__cause__ is None
    assert err.step_name == 'b'
    assert err.result is failed
    assert executed(journal) == ['execute:a', 'execute:b']
    assert 'can_skip:c' not in journal
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']
    assert steps[1].rollback_results == [failed]
    assert context.step_results[-1] is failed
    assert failed.step_name == 'b'


def test_returned_failure_without_message(context: BaseStepContext, journal: list[str]) -> None:
    steps = three_steps_failing_at_b(journal, returning(StepResult(success=False)))
    with pytest.raises(StepExecutionError) as info:
        run(context, *steps)
    message = str(info.value)
    assert message.startswith("Step 'b' failed: ")
    assert message != "Step 'b' failed: None"
    assert len(message) > len("Step 'b' failed: ")
    assert context.step_results[-1].error == message.removeprefix("Step 'b' failed: ")


def test_raising_step_stops_and_rolls_back(context: BaseStepContext, journal: list[str]) -> None:
    exc = ValueError('bad row 7')
    steps = three_steps_failing_at_b(journal, raising(exc))
    with pytest.raises(RuntimeError) as info:
        run(context, *steps)
    err = info.value
    assert isinstance(err, StepExecutionError)
    assert str(err) == "Step 'b' failed: ValueError: bad row 7"
    assert err.__cause__ is exc
    assert executed(journal) == ['execute:a', 'execute:b']
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']
    failed = context.step_results[-1]
    assert failed.success is False
    assert failed.step_name == 'b'
    assert failed.exception is exc
    assert failed.error == 'ValueError: bad row 7'
    assert steps[1].rollback_results == [failed]
    assert [r.step_name for r in context.step_results] == ['a', 'b']


@pytest.mark.parametrize(
    ('value', 'type_name'),
    [({'ok': True}, 'dict'), (None, 'NoneType'), (True, 'bool'), ('done', 'str')],
)
def test_non_step_result_is_a_failure(
    context: BaseStepContext, journal: list[str], value: Any, type_name: str
) -> None:
    steps = three_steps_failing_at_b(journal, returning(value))
    with pytest.raises(StepExecutionError) as info:
        run(context, *steps)
    err = info.value
    assert str(err).startswith("Step 'b' failed: TypeError: ")
    failed = context.step_results[-1]
    assert failed.success is False
    assert failed.error is not None
    assert "'b'" in failed.error
    assert type_name in failed.error
    assert isinstance(err.__cause__, TypeError)
    assert failed.exception is err.__cause__
    assert executed(journal) == ['execute:a', 'execute:b']
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']


def test_first_step_failing_rolls_back_only_itself(
    context: BaseStepContext, journal: list[str]
) -> None:
    steps = [Step('a', journal=journal, action=raising(OSError('x'))), Step('b', journal=journal)]
    with pytest.raises(StepExecutionError) as info:
        run(context, *steps)
    assert str(info.value) == "Step 'a' failed: OSError: x"
    assert rollbacks(journal) == ['rollback:a']
    assert executed(journal) == ['execute:a']


# ------------------------------------------------------------------ rollback order and data


def test_rollback_runs_in_reverse_and_skips_skipped_steps(
    context: BaseStepContext, journal: list[str]
) -> None:
    steps = [
        Step('a', journal=journal),
        Step('s1', journal=journal, skip=True),
        Step('b', journal=journal),
        Step('s2', journal=journal, skip=True),
        Step('c', journal=journal),
        Step('d', journal=journal, action=raising(ValueError('x'))),
        Step('e', journal=journal),
    ]
    with pytest.raises(StepExecutionError):
        run(context, *steps)
    assert rollbacks(journal) == ['rollback:d', 'rollback:c', 'rollback:b', 'rollback:a']
    assert journal[-4:] == rollbacks(journal)  # after all execution
    assert 'can_skip:e' not in journal


def test_rollback_gets_each_steps_own_result(context: BaseStepContext) -> None:
    result_a = StepResult(data={'a': 1}, rollback_data={'created': ['x']})
    result_b = StepResult(rollback_data={'created': ['y']})
    a = Step('a', action=returning(result_a))
    b = Step('b', action=returning(result_b))
    c = Step('c', action=raising(ValueError('x')))
    with pytest.raises(StepExecutionError):
        run(context, a, b, c)
    assert a.rollback_results == [result_a]
    assert b.rollback_results == [result_b]
    assert a.rollback_results[0].rollback_data == {'created': ['x']}


def test_partial_rollback_data_reaches_the_rollback_of_a_raising_step(
    context: BaseStepContext,
) -> None:
    def upload(ctx: BaseStepContext) -> StepResult:
        ctx.record_rollback(tmp_dir='/tmp/up')
        ctx.append_rollback('files', 'f1')
        ctx.append_rollback('files', 'f2')
        raise ConnectionError('lost')

    step = Step('upload', action=upload)
    with pytest.raises(StepExecutionError) as info:
        run(context, Step('a'), step)
    assert step.rollback_results[0].rollback_data == {'tmp_dir': '/tmp/up', 'files': ['f1', 'f2']}
    assert context.step_results[-1].rollback_data == {'tmp_dir': '/tmp/up', 'files': ['f1', 'f2']}
    assert str(info.value) == "Step 'upload' failed: ConnectionError: lost"


def test_partial_rollback_data_is_merged_into_a_successful_result(
    context: BaseStepContext,
) -> None:
    def upload(ctx: BaseStepContext) -> StepResult:
        ctx.append_rollback('files', 'f1')
        ctx.record_rollback(session='s1', kept='recorded')
        return StepResult(rollback_data={'remote': 'r1', 'kept': 'returned'})

    step = Step('upload', action=upload)
    after = Step('after')
    run(context, step, after)
    assert step.returned[0].rollback_data == {
        'files': ['f1'],
        'session': 's1',
        'remote': 'r1',
        'kept': 'returned',  # what the step returned wins over what it recorded
    }
    assert context.step_results[1].rollback_data == {}  # nothing leaks into the next step


def test_partial_rollback_data_is_merged_into_a_returned_failure(
    context: BaseStepContext,
) -> None:
    def upload(ctx: BaseStepContext) -> StepResult:
        ctx.append_rollback('files', 'f1')
        return StepResult(success=False, error='quota')

    step = Step('upload', action=upload)
    with pytest.raises(StepExecutionError) as info:
        run(context, step)
    assert str(info.value) == "Step 'upload' failed: quota"
    assert step.rollback_results[0].rollback_data == {'files': ['f1']}


def test_rollback_data_of_earlier_steps_is_not_mixed(context: BaseStepContext) -> None:
    def first(ctx: BaseStepContext) -> StepResult:
        ctx.append_rollback('files', 'a1')
        return StepResult()

    def second(ctx: BaseStepContext) -> StepResult:
        ctx.append_rollback('files', 'b1')
        raise ValueError('x')

    a = Step('a', action=first)
    b = Step('b', action=second)
    with pytest.raises(StepExecutionError):
        run(context, a, b)
    assert b.rollback_results[0].rollback_data == {'files': ['b1']}
    assert a.rollback_results[0].rollback_data == {'files': ['a1']}


def test_append_rollback_onto_a_non_list_fails_the_step(context: BaseStepContext) -> None:
    def bad(ctx: BaseStepContext) -> StepResult:
        ctx.record_rollback(files='not a list')
        ctx.append_rollback('files', 'f1')
        return StepResult()

    with pytest.raises(StepExecutionError) as info:
        run(context, Step('bad', action=bad))
    assert isinstance(info.value.__cause__, TypeError)
    assert "'files'" in str(info.value)


# ------------------------------------------------------------------ can_skip raising


def test_can_skip_raising_is_the_steps_failure(
    context: BaseStepContext, journal: list[str]
) -> None:
    exc = LookupError('no manifest')
    steps = [
        Step('a', journal=journal),
        Step('b', journal=journal),
        Step('c', journal=journal, skip=raising(exc)),
        Step('d', journal=journal),
    ]
    with pytest.raises(StepExecutionError) as info:
        run(context, *steps)
    err = info.value
    assert str(err) == "Step 'c' failed: LookupError: no manifest"
    assert err.__cause__ is exc
    assert 'execute:c' not in journal
    assert 'can_skip:d' not in journal
    assert rollbacks(journal) == ['rollback:c', 'rollback:b', 'rollback:a']
    assert context.step_results[-1].step_name == 'c'
    assert context.step_results[-1].exception is exc


# ------------------------------------------------------------------ rollback raising


def test_rollback_raising_does_not_stop_other_rollbacks(
    context: BaseStepContext, journal: list[str]
) -> None:
    original = ValueError('boom')
    steps = [
        Step('a', journal=journal),
        Step('b', journal=journal, on_rollback=raising(OSError('locked'))),
        Step('c', journal=journal, action=raising(original)),
    ]
    with pytest.raises(StepExecutionError) as info:
        run(context, *steps)
    err = info.value
    message = "rollback of step 'b' failed: OSError: locked"
    assert rollbacks(journal) == ['rollback:c', 'rollback:b', 'rollback:a']
    assert str(err) == "Step 'c' failed: ValueError: boom"
    assert err.__cause__ is original
    assert context.errors == [message]
    assert err.rollback_errors == [message]
    assert message in err.__notes__


def test_several_rollback_failures_are_all_reported(
    context: BaseStepContext, journal: list[str]
) -> None:
    steps = [
        Step('a', journal=journal, on_rollback=raising(RuntimeError('a stuck'))),
        Step('b', journal=journal),
        Step('c', journal=journal, on_rollback=raising(KeyError('k'))),
        Step('d', journal=journal, action=returning(StepResult(success=False, error='nope'))),
    ]
    with pytest.raises(StepExecutionError) as info:
        run(context, *steps)
    expected = [
        "rollback of step 'c' failed: KeyError: 'k'",
        "rollback of step 'a' failed: RuntimeError: a stuck",
    ]
    assert rollbacks(journal) == ['rollback:d', 'rollback:c', 'rollback:b', 'rollback:a']
    assert context.errors == expected
    assert info.value.rollback_errors == expected
    notes = info.value.__notes__
    assert [n for n in notes if n.startswith('rollback of')] == expected
    assert str(info.value) == "Step 'd' failed: nope"


def test_failed_steps_own_rollback_raising(context: BaseStepContext, journal: list[str]) -> None:
    steps = [
        Step('a', journal=journal),
        Step(
            'b',
            journal=journal,
            action=raising(ValueError('x')),
            on_rollback=raising(ValueError('y')),
        ),
    ]
    with pytest.raises(StepExecutionError) as info:
        run(context, *steps)
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']
    assert info.value.rollback_errors == ["rollback of step 'b' failed: ValueError: y"]
    assert str(info.value) == "Step 'b' failed: ValueError: x"


def test_clean_rollback_has_no_rollback_errors(context: BaseStepContext) -> None:
    with pytest.raises(StepExecutionError) as info:
        run(context, Step('a'), Step('b', action=raising(ValueError('x'))))
    assert info.value.rollback_errors == []
    assert context.errors == []
    assert not any(n.startswith('rollback of') for n in getattr(info.value, '__notes__', []))


# ------------------------------------------------------------------ interrupts


@pytest.mark.parametrize('exc', [KeyboardInterrupt(), SystemExit(3)])
def test_interrupt_rolls_back_and_reraises_the_same_object(
    context: BaseStepContext, journal: list[str], exc: BaseException
) -> None:
    steps = three_steps_failing_at_b(journal, raising(exc))
    with pytest.raises(type(exc)) as info:
        run(context, *steps)
    assert info.value is exc
    assert executed(journal) == ['execute:a', 'execute:b']
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']
    failed = context.step_results[-1]
    assert failed.success is False
    assert failed.exception is exc
    assert failed.error == type(exc).__name__ + (': 3' if isinstance(exc, SystemExit) else '')
    assert context.current_step is None


def test_interrupt_with_failing_rollback_still_reraises(
    context: BaseStepContext, journal: list[str]
) -> None:
    interrupt = KeyboardInterrupt()
    steps = [
        Step('a', journal=journal, on_rollback=raising(OSError('gone'))),
        Step('b', journal=journal, action=raising(interrupt)),
    ]
    with pytest.raises(KeyboardInterrupt) as info:
        run(context, *steps)
    assert info.value is interrupt
    assert rollbacks(journal) == ['rollback:b', 'rollback:a']
    assert context.errors == ["rollback of step 'a' failed: OSError: gone"]


def test_interrupt_in_can_skip_rolls_back(context: BaseStepContext, journal: list[str]) -> None:
    interrupt = KeyboardInterrupt()
    steps = [Step('a', journal=journal), Step('b', journal=journal, skip=raising(interrupt))]
    with pytest.raises(KeyboardInterrupt) as info:
        run(context, *steps)
    assert info.value is interrupt
    assert 'rollback:a' in journal


# ------------------------------------------------------------------ state after a failure


def test_state_after_failure(context: BaseStepContext) -> None:
    with pytest.raises(StepExecutionError):
        run(context, Step('a'), Step('b', action=raising(ValueError('x'))))
    assert context.current_step is None
    with pytest.raises(RuntimeError):
        context.append_rollback('files', 'f')
    assert [(r.step_name, r.success) for r in context.step_results] == [
        ('a', True),
        ('b', False),
    ]


# ------------------------------------------------------------ Orchestrator.rollback (recovery)


def test_recovery_rollback_runs_named_steps_newest_first(
    context: BaseStepContext, journal: list[str]
) -> None:
    a, b, c = (Step(n, journal=journal) for n in ('a', 'b', 'c'))
    result_a = StepResult(rollback_data={'files': ['x']})
    result_c = StepResult(rollback_data={'files': ['y']})
    orchestrator = Orchestrator(make_registry(a, b, c), context)
    errors = orchestrator.rollback({'a': result_a, 'c': result_c})
    assert errors == []
    assert journal == ['rollback:c', 'rollback:a']
    assert a.rollback_results == [result_a]
    assert c.rollback_results == [result_c]
    assert b.rollback_results == []
    assert c.current_step_seen == {'rollback': 'c'}
    assert context.current_step is None


def test_recovery_rollback_unknown_step(context: BaseStepContext, journal: list[str]) -> None:
    orchestrator = Orchestrator(make_registry(Step('a', journal=journal)), context)
    with pytest.raises(ValueError, match='gone'):
        orchestrator.rollback({'a': StepResult(), 'gone': StepResult()})
    assert journal == []


def test_recovery_rollback_errors_do_not_stop_the_others(
    context: BaseStepContext, journal: list[str]
) -> None:
    steps = [
        Step('a', journal=journal),
        Step('b', journal=journal, on_rollback=raising(OSError('locked'))),
    ]
    listener = RecordingListener()
    orchestrator = Orchestrator(make_registry(*steps), context, listeners=[listener])
    errors = orchestrator.rollback({'a': StepResult(), 'b': StepResult()})
    message = "rollback of step 'b' failed: OSError: locked"
    assert errors == [message]
    assert context.errors == [message]
    assert journal == ['rollback:b', 'rollback:a']
    assert [e[:2] for e in listener.events] == [
        ('rollback_start', 'b'),
        ('rollback_end', 'b'),
        ('rollback_start', 'a'),
        ('rollback_end', 'a'),
    ]
