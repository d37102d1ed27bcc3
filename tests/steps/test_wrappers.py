"""LoggingStep, TimingStep (identity-keeping wrappers) and ValidationStep."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStepContext,
    LoggingStep,
    StepExecutionError,
    StepResult,
    StepWrapper,
    TimingStep,
    ValidationStep,
)
from synapse_sdk.plugins.steps import _wrappers as wrappers_module

from .conftest import RecordingRuntime, Step, make_registry, raising, returning, run

WRAPPERS = [LoggingStep, TimingStep]


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """perf_counter in the wrappers reads 10.0, then 12.5, then 15.0, ..."""
    ticks = iter(10.0 + 2.5 * i for i in range(1000))
    monkeypatch.setattr(wrappers_module, 'perf_counter', lambda: next(ticks))
    yield


# ------------------------------------------------------------------ identity


@pytest.mark.parametrize('wrapper', WRAPPERS)
def test_wrapper_keeps_name_and_weight(wrapper: type[StepWrapper[Any]]) -> None:
    inner = Step('upload', 0.7)
    wrapped = wrapper(inner)
    assert wrapped.name == 'upload'
    assert wrapped.progress_weight == 0.7
    assert wrapped.inner is inner


@pytest.mark.parametrize('wrapper', WRAPPERS)
@pytest.mark.parametrize('skip', [True, False])
def test_wrapper_delegates_can_skip(
    wrapper: type[StepWrapper[Any]], context: BaseStepContext, skip: bool
) -> None:
    journal: list[str] = []
    wrapped = wrapper(Step('upload', journal=journal, skip=skip))
    assert wrapped.can_skip(context) is skip
    assert journal == ['can_skip:upload']


@pytest.mark.parametrize('wrapper', WRAPPERS)
def test_wrapper_delegates_rollback(
    wrapper: type[StepWrapper[Any]], context: BaseStepContext
) -> None:
    inner = Step('upload')
    result = StepResult(rollback_data={'files': ['a']})
    wrapper(inner).rollback(context, result)
    assert inner.rollback_results == [result]


@pytest.mark.parametrize('wrapper', WRAPPERS)
def test_wrapper_rollback_error_propagates(
    wrapper: type[StepWrapper[Any]], context: BaseStepContext
) -> None:
    error = OSError('locked')
    wrapped = wrapper(Step('upload', on_rollback=raising(error)))
    with pytest.raises(OSError) as info:
        wrapped.rollback(context, StepResult())
    assert info.value is error


@pytest.mark.parametrize('wrapper', WRAPPERS)
def test_registry_finds_a_wrapped_step(wrapper: type[StepWrapper[Any]]) -> None:
    registry = make_registry(Step('extract'), wrapper(Step('upload')), Step('report'))
    registry.insert_before('upload', Step('check'))
    registry.insert_after('upload', Step('verify'))
    assert registry.names == ['extract', 'check', 'upload', 'verify', 'report']
    assert 'upload' in registry
    with pytest.raises(ValueError, match="'upload'"):
        registry.register(Step('upload'))
    registry.unregister('upload')
    assert registry.names == ['extract', 'check', 'verify', 'report']


def test_nested_wrappers_keep_identity() -> None:
    inner = Step('upload', 2)
    wrapped = TimingStep(LoggingStep(inner))
    assert wrapped.name == 'upload'
    assert wrapped.progress_weight == 2
    assert wrapped.unwrap() is inner
    assert LoggingStep(inner).unwrap() is inner


@pytest.mark.parametrize('wrapper', [*WRAPPERS, StepWrapper])
@pytest.mark.parametrize('bad', [None, 'upload', object()])
def test_wrapper_rejects_non_steps(wrapper: type[StepWrapper[Any]], bad: Any) -> None:
    with pytest.raises(TypeError):
        wrapper(bad)


def test_wrapped_step_in_a_run_skips_and_rolls_back(context: BaseStepContext) -> None:
    journal: list[str] = []
    skipped = Step('skipped', journal=journal, skip=True)
    upload = Step('upload', journal=journal)
    failing = Step('fail', journal=journal, action=raising(ValueError('x')))
    with pytest.raises(StepExecutionError):
        run(context, LoggingStep(skipped), TimingStep(LoggingStep(upload)), LoggingStep(failing))
    assert 'execute:skipped' not in journal
    assert 'rollback:skipped' not in journal
    assert [e for e in journal if e.startswith('rollback')] == ['rollback:fail', 'rollback:upload']


# ------------------------------------------------------------------ LoggingStep


def test_logging_step_logs_start_and_end(
    runtime: RecordingRuntime, context: BaseStepContext, fake_clock: None
) -> None:
    result = StepResult(data={'n': 1})
    returned = LoggingStep(Step('upload', action=returning(result))).execute(context)
    assert returned is result
    assert runtime.logs == [
        ('step_start', {'step': 'upload'}, None),
        ('step_end', {'step': 'upload', 'elapsed': 2.5, 'success': True}, None),
    ]


def test_logging_step_logs_a_failed_result(
    runtime: RecordingRuntime, context: BaseStepContext, fake_clock: None
) -> None:
    failed = StepResult(success=False, error='quota')
    returned = LoggingStep(Step('upload', action=returning(failed))).execute(context)
    assert returned is failed
    assert runtime.logs[-1] == (
        'step_end',
        {'step': 'upload', 'elapsed': 2.5, 'success': False, 'error': 'quota'},
        None,
    )


@pytest.mark.parametrize(
    ('exc', 'error'),
    [(ValueError('boom'), 'ValueError: boom'), (KeyboardInterrupt(), 'KeyboardInterrupt')],
)
def test_logging_step_logs_end_and_reraises(
    runtime: RecordingRuntime,
    context: BaseStepContext,
    fake_clock: None,
    exc: BaseException,
    error: str,
) -> None:
    with pytest.raises(type(exc)) as info:
        LoggingStep(Step('upload', action=raising(exc))).execute(context)
    assert info.value is exc
    assert runtime.logs == [
        ('step_start', {'step': 'upload'}, None),
        ('step_end', {'step': 'upload', 'elapsed': 2.5, 'success': False, 'error': error}, None),
    ]


def test_logging_step_real_elapsed_is_a_small_float(
    runtime: RecordingRuntime, context: BaseStepContext
) -> None:
    LoggingStep(Step('upload')).execute(context)
    end = runtime.logs[-1][1]
    assert end is not None
    assert set(end) == {'step', 'elapsed', 'success'}
    assert isinstance(end['elapsed'], float)
    assert 0 <= end['elapsed'] < 5


def test_logging_step_in_a_run(runtime: RecordingRuntime, context: BaseStepContext) -> None:
    run(context, LoggingStep(Step('a')), LoggingStep(Step('b')))
    assert [(event, (data or {})['step']) for event, data, _ in runtime.logs] == [
        ('step_start', 'a'),
        ('step_end', 'a'),
        ('step_start', 'b'),
        ('step_end', 'b'),
    ]


# ------------------------------------------------------------------ TimingStep


def test_timing_step_adds_duration(context: BaseStepContext, fake_clock: None) -> None:
    result = StepResult(data={'rows': 3})
    returned = TimingStep(Step('upload', action=returning(result))).execute(context)
    assert returned is result
    assert returned.data == {'rows': 3, 'duration_seconds': 2.5}


def test_timing_step_adds_duration_to_a_failed_result(
    context: BaseStepContext, fake_clock: None
) -> None:
    failed = StepResult(success=False, error='quota')
    returned = TimingStep(Step('upload', action=returning(failed))).execute(context)
    assert returned is failed
    assert returned.success is False
    assert returned.error == 'quota'
    assert returned.data == {'duration_seconds': 2.5}


def test_timing_step_turns_an_exception_into_a_failed_result(
    context: BaseStepContext, fake_clock: None
) -> None:
    exc = ValueError('boom')
    returned = TimingStep(Step('upload', action=raising(exc))).execute(context)
    assert isinstance(returned, StepResult)
    assert returned.success is False
    assert returned.error == 'ValueError: boom'
    assert returned.exception is exc
    assert returned.data == {'duration_seconds': 2.5}


@pytest.mark.parametrize('exc', [KeyboardInterrupt(), SystemExit(2)])
def test_timing_step_lets_interrupts_through(context: BaseStepContext, exc: BaseException) -> None:
    with pytest.raises(type(exc)) as info:
        TimingStep(Step('upload', action=raising(exc))).execute(context)
    assert info.value is exc


def test_timing_step_real_duration(context: BaseStepContext) -> None:
    returned = TimingStep(Step('upload')).execute(context)
    duration = returned.data['duration_seconds']
    assert isinstance(duration, float)
    assert 0 <= duration < 5


def test_timing_step_failure_in_a_run(context: BaseStepContext) -> None:
    exc = ValueError('boom')
    journal: list[str] = []
    with pytest.raises(StepExecutionError) as info:
        run(
            context,
            Step('a', journal=journal),
            TimingStep(Step('b', journal=journal, action=raising(exc))),
            Step('c', journal=journal),
        )
    assert str(info.value) == "Step 'b' failed: ValueError: boom"
    failed = context.step_results[-1]
    assert failed.exception is exc
    assert 'duration_seconds' in failed.data
    assert 'execute:c' not in journal
    assert [e for e in journal if e.startswith('rollback')] == ['rollback:b', 'rollback:a']


def test_timing_step_failure_keeps_the_original_exception_as_cause(
    context: BaseStepContext,
) -> None:
    exc = ValueError('boom')
    with pytest.raises(StepExecutionError) as info:
        run(context, TimingStep(Step('b', action=raising(exc))))
    assert info.value.__cause__ is exc


# ------------------------------------------------------------------ ValidationStep


def test_validation_step_passes(context: BaseStepContext) -> None:
    step: ValidationStep[BaseStepContext] = ValidationStep(
        lambda ctx: (True, None), name='check', progress_weight=0.5
    )
    assert step.name == 'check'
    assert step.progress_weight == 0.5
    result = step.execute(context)
    assert result.success is True
    assert result.error is None


def test_validation_step_defaults() -> None:
    step: ValidationStep[BaseStepContext] = ValidationStep(lambda ctx: (True, None))
    assert step.name == 'validation'
    assert step.progress_weight == 0.0


def test_validation_step_gets_the_context(context: BaseStepContext) -> None:
    seen: list[Any] = []

    def validator(ctx: BaseStepContext) -> tuple[bool, str | None]:
        seen.append(ctx)
        return True, None

    ValidationStep(validator).execute(context)
    assert seen == [context]
    assert seen[0] is context


def test_validation_step_fails_with_the_message(context: BaseStepContext) -> None:
    step: ValidationStep[BaseStepContext] = ValidationStep(
        lambda ctx: (False, 'bucket missing'), name='check'
    )
    result = step.execute(context)
    assert result.success is False
    assert result.error == 'bucket missing'


def test_validation_step_fails_without_a_message(context: BaseStepContext) -> None:
    step: ValidationStep[BaseStepContext] = ValidationStep(lambda ctx: (False, None), name='check')
    result = step.execute(context)
    assert result.success is False
    assert isinstance(result.error, str)
    assert 'check' in result.error


def test_validation_step_validator_raising(context: BaseStepContext) -> None:
    exc = PermissionError('no access')
    result = ValidationStep(raising(exc), name='check').execute(context)
    assert result.success is False
    assert result.error == 'PermissionError: no access'
    assert result.exception is exc


@pytest.mark.parametrize('bad_return', [True, None, (True,), (True, None, 'extra')])
def test_validation_step_bad_validator_return(context: BaseStepContext, bad_return: Any) -> None:
    result = ValidationStep(returning(bad_return), name='check').execute(context)
    assert result.success is False
    assert isinstance(result.exception, (TypeError, ValueError))


@pytest.mark.parametrize('bad', [None, 'check', 42])
def test_validation_step_rejects_non_callable(bad: Any) -> None:
    with pytest.raises(TypeError):
        ValidationStep(bad)


def test_validation_step_in_a_run(context: BaseStepContext) -> None:
    journal: list[str] = []
    with pytest.raises(StepExecutionError) as info:
        run(
            context,
            Step('a', journal=journal),
            ValidationStep(lambda ctx: (False, 'bucket missing'), name='check'),
            Step('c', journal=journal),
        )
    assert str(info.value) == "Step 'check' failed: bucket missing"
    assert journal == ['can_skip:a', 'execute:a', 'rollback:a']


def test_validation_step_weight_is_checked_by_the_registry() -> None:
    with pytest.raises(ValueError, match="'check'"):
        make_registry(ValidationStep(lambda ctx: (True, None), name='check', progress_weight=-1))


@pytest.mark.parametrize('wrapper', WRAPPERS)
def test_wrapped_step_returning_a_non_result_is_reported_like_an_unwrapped_one(
    wrapper: type[StepWrapper[Any]], context: BaseStepContext
) -> None:
    with pytest.raises(StepExecutionError) as info:
        run(context, wrapper(Step('b', action=returning({'ok': True}))))
    assert str(info.value) == (
        "Step 'b' failed: TypeError: step 'b' returned dict, expected a StepResult"
    )


@pytest.mark.parametrize('wrapper', WRAPPERS)
@pytest.mark.parametrize('resumable', [True, False])
def test_wrapper_keeps_resumable(wrapper: type[StepWrapper[Any]], resumable: bool) -> None:
    class InMemory(Step):
        @property
        def resumable(self) -> bool:
            return resumable

    assert Step('plain').resumable is True
    assert wrapper(InMemory('load')).resumable is resumable
