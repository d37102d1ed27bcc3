"""Orchestrator: runs steps in order and reports what it did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Orchestrator,
    StepExecutionError,
    StepRegistry,
    StepResult,
)

from .conftest import Recorder, RecordingRuntime, Step, make_registry, raising, returning, run


def test_runs_steps_in_order(context: BaseStepContext, journal: list[str]) -> None:
    steps = [Step(n, journal=journal) for n in ('a', 'b', 'c')]
    result = run(context, *steps)
    assert [e for e in journal if e.startswith('execute')] == [
        'execute:a',
        'execute:b',
        'execute:c',
    ]
    assert journal == [
        'can_skip:a',
        'execute:a',
        'can_skip:b',
        'execute:b',
        'can_skip:c',
        'execute:c',
    ]
    assert result == {
        'success': True,
        'steps_executed': 3,
        'steps_total': 3,
        'steps_skipped': 0,
        'steps_reused': 0,
    }


def test_constructor_signature(context: BaseStepContext, recorder: Recorder) -> None:
    registry = make_registry(Step('a'))
    orchestrator = Orchestrator(registry, context, recorder)
    assert orchestrator.registry is registry
    assert orchestrator.context is context
    assert orchestrator.progress_callback is recorder
    assert Orchestrator(registry, context).progress_callback is None
    orchestrator.execute()
    assert recorder.calls[-1] == (100, 100)


def test_skipped_steps_are_counted_but_not_executed(
    context: BaseStepContext, journal: list[str]
) -> None:
    steps = [
        Step('a', journal=journal),
        Step('b', journal=journal, skip=True),
        Step('c', journal=journal, skip=lambda ctx: True),
        Step('d', journal=journal),
    ]
    result = run(context, *steps)
    assert 'execute:b' not in journal
    assert 'execute:c' not in journal
    assert [e for e in journal if e.startswith('execute')] == ['execute:a', 'execute:d']
    assert result == {
        'success': True,
        'steps_executed': 2,
        'steps_total': 4,
        'steps_skipped': 2,
        'steps_reused': 0,
    }


def test_step_results_are_collected_in_order(context: BaseStepContext) -> None:
    returned = StepResult(data={'rows': 7})
    run(
        context,
        Step('a', action=returning(returned)),
        Step('b', skip=True),
        Step('c'),
    )
    assert [r.step_name for r in context.step_results] == ['a', 'b', 'c']
    assert context.step_results[0] is returned
    assert context.step_results[0].data == {'rows': 7}
    skipped = context.step_results[1]
    assert skipped.skipped is True
    assert skipped.success is True
    assert [r.skipped for r in context.step_results] == [False, True, False]
    assert context.errors == []


def test_each_step_gets_the_shared_context(runtime: RecordingRuntime) -> None:
    @dataclass
    class UploadContext(BaseStepContext):
        bucket: str
        uploaded: list[str] = field(default_factory=list)

    ctx = UploadContext(runtime_ctx=runtime, bucket='b1')
    seen: list[Any] = []

    def produce(c: UploadContext) -> StepResult:
        seen.append(c)
        c.uploaded.append(f'{c.bucket}/file.txt')
        return StepResult()

    def consume(c: UploadContext) -> StepResult:
        seen.append(c)
        return StepResult(data={'count': len(c.uploaded)})

    run(ctx, Step('produce', action=produce), Step('consume', action=consume))
    assert seen[0] is ctx
    assert seen[1] is ctx
    assert ctx.uploaded == ['b1/file.txt']
    assert ctx.step_results[1].data == {'count': 1}


def test_empty_registry(context: BaseStepContext, recorder: Recorder) -> None:
    result = Orchestrator(StepRegistry(), context, recorder).execute()
    assert result == {
        'success': True,
        'steps_executed': 0,
        'steps_total': 0,
        'steps_skipped': 0,
        'steps_reused': 0,
    }
    assert recorder.calls == [(100, 100)]


def test_all_skipped(context: BaseStepContext, recorder: Recorder) -> None:
    result = run(context, Step('a', skip=True), Step('b', skip=True), callback=recorder)
    assert result['steps_executed'] == 0
    assert result['steps_skipped'] == 2
    assert recorder.values[-1] == 100


def test_execute_twice_is_a_clear_error(context: BaseStepContext, journal: list[str]) -> None:
    orchestrator = Orchestrator(make_registry(Step('a', journal=journal)), context)
    orchestrator.execute()
    journal.clear()
    results_before = list(context.step_results)
    with pytest.raises(RuntimeError, match='already run'):
        orchestrator.execute()
    assert journal == []
    assert context.step_results == results_before


def test_execute_again_after_a_failed_run_is_a_clear_error(
    context: BaseStepContext, journal: list[str]
) -> None:
    orchestrator = Orchestrator(
        make_registry(Step('a', journal=journal, action=raising(ValueError('x')))), context
    )
    with pytest.raises(StepExecutionError):
        orchestrator.execute()
    journal.clear()
    with pytest.raises(RuntimeError, match='already run') as info:
        orchestrator.execute()
    assert not isinstance(info.value, StepExecutionError)
    assert journal == []


def test_steps_registered_before_execute_are_run(context: BaseStepContext) -> None:
    registry = make_registry(Step('a'))
    orchestrator = Orchestrator(registry, context)
    registry.register(Step('b'))
    assert orchestrator.execute()['steps_total'] == 2


def test_result_is_a_fresh_dict(context: BaseStepContext) -> None:
    result = run(context, Step('a'))
    assert result is not run(BaseStepContext(runtime_ctx=RecordingRuntime()), Step('a'))


def test_current_step_and_active_run_are_cleared_after_success(
    context: BaseStepContext,
) -> None:
    run(context, Step('a'), Step('b'))
    assert context.current_step is None
    with pytest.raises(RuntimeError):
        context.record_rollback(x=1)
