"""BaseStepContext: an extensible dataclass that forwards to the runtime context."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStepContext,
    RuntimeContextLike,
    StepExecutionError,
    StepResult,
)

from .conftest import RecordingRuntime, Step, raising, run

# ------------------------------------------------------------------ the dataclass


def test_defaults(runtime: RecordingRuntime) -> None:
    ctx = BaseStepContext(runtime_ctx=runtime)
    assert ctx.runtime_ctx is runtime
    assert ctx.step_results == []
    assert ctx.errors == []
    assert ctx.current_step is None


def test_lists_are_independent_per_instance(runtime: RecordingRuntime) -> None:
    first = BaseStepContext(runtime_ctx=runtime)
    second = BaseStepContext(runtime_ctx=runtime)
    first.errors.append('x')
    first.step_results.append(StepResult())
    assert second.errors == []
    assert second.step_results == []


def test_is_keyword_only(runtime: RecordingRuntime) -> None:
    with pytest.raises(TypeError):
        BaseStepContext(runtime)  # type: ignore[call-arg]


def test_current_step_is_not_an_init_argument(runtime: RecordingRuntime) -> None:
    with pytest.raises(TypeError):
        BaseStepContext(runtime_ctx=runtime, current_step='a')  # type: ignore[call-arg]


def test_runtime_ctx_is_required() -> None:
    with pytest.raises(TypeError):
        BaseStepContext()  # type: ignore[call-arg]


def test_step_results_and_errors_can_be_passed(runtime: RecordingRuntime) -> None:
    earlier = [StepResult(step_name='a')]
    ctx = BaseStepContext(runtime_ctx=runtime, step_results=earlier, errors=['old'])
    assert ctx.step_results is earlier
    assert ctx.errors == ['old']


def test_subclass_with_fields_without_defaults(runtime: RecordingRuntime) -> None:
    @dataclass
    class UploadContext(BaseStepContext):
        bucket: str
        prefix: str
        uploaded: list[str] = field(default_factory=list)

    ctx = UploadContext(runtime_ctx=runtime, bucket='b', prefix='p/')
    assert ctx.bucket == 'b'
    assert ctx.prefix == 'p/'
    assert ctx.uploaded == []
    assert ctx.runtime_ctx is runtime
    assert ctx.step_results == []
    assert ctx.current_step is None
    positional = UploadContext('b2', 'q/', runtime_ctx=runtime)
    assert (positional.bucket, positional.prefix) == ('b2', 'q/')
    assert {'bucket', 'prefix', 'uploaded', 'runtime_ctx'} <= {f.name for f in fields(ctx)}
    with pytest.raises(TypeError):
        UploadContext(runtime_ctx=runtime)  # type: ignore[call-arg]


def test_subclass_context_runs_through_the_orchestrator(runtime: RecordingRuntime) -> None:
    @dataclass
    class CountContext(BaseStepContext):
        count: int

    def bump(ctx: CountContext) -> StepResult:
        ctx.count += 1
        return StepResult()

    ctx = CountContext(runtime_ctx=runtime, count=10)
    run(ctx, Step('a', action=bump), Step('b', action=bump))
    assert ctx.count == 12


def test_recording_runtime_satisfies_the_protocol(runtime: RecordingRuntime) -> None:
    assert isinstance(runtime, RuntimeContextLike)
    assert not isinstance(object(), RuntimeContextLike)


# ------------------------------------------------------------------ forwarding


def test_log_forwards(runtime: RecordingRuntime, context: BaseStepContext) -> None:
    context.log('upload_started', {'files': 3})
    context.log('saved', {'n': 1}, file='out/report.json')
    context.log('bare')
    assert runtime.logs == [
        ('upload_started', {'files': 3}, None),
        ('saved', {'n': 1}, 'out/report.json'),
        ('bare', {}, None),
    ]


def test_set_progress_forwards(runtime: RecordingRuntime, context: BaseStepContext) -> None:
    context.set_progress(3, 10, 'upload')
    context.set_progress(1, 2)
    context.set_progress(0, 5)
    context.set_progress(0.5, 1.0, 'x')
    assert runtime.progress == [(3, 10, 'upload'), (1, 2, None), (0, 5, None), (0.5, 1.0, 'x')]


def test_set_metrics_forwards(runtime: RecordingRuntime, context: BaseStepContext) -> None:
    context.set_metrics({'rows': 5, 'failed': 0}, 'import')
    assert runtime.metrics == [({'rows': 5, 'failed': 0}, 'import')]


def test_runtime_client_is_reachable(runtime: RecordingRuntime, context: BaseStepContext) -> None:
    assert context.runtime_ctx.client is runtime.client


@pytest.mark.parametrize(
    ('current', 'total'),
    [
        (0, 0),
        (1, 0),
        (1, -5),
        (0, math.nan),
        (-1, 10),
        (11, 10),
        (10.5, 10),
        (math.nan, 10),
        (math.inf, 10),
    ],
)
def test_set_progress_rejects_bad_figures(
    runtime: RecordingRuntime, context: BaseStepContext, current: float, total: float
) -> None:
    with pytest.raises(ValueError):
        context.set_progress(current, total)
    assert runtime.progress == []


def test_set_progress_bad_figure_inside_a_step_fails_the_step(context: BaseStepContext) -> None:
    def action(ctx: BaseStepContext) -> StepResult:
        ctx.set_progress(5, 0)
        return StepResult()

    with pytest.raises(StepExecutionError) as info:
        run(context, Step('bad', action=action))
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value).startswith("Step 'bad' failed: ValueError: ")


# ------------------------------------------------------------ rollback recording outside a run


def test_record_rollback_outside_a_run(context: BaseStepContext) -> None:
    with pytest.raises(RuntimeError, match='record_rollback'):
        context.record_rollback(x=1)


def test_append_rollback_outside_a_run(context: BaseStepContext) -> None:
    with pytest.raises(RuntimeError, match='append_rollback'):
        context.append_rollback('files', 'f')


# ------------------------------------------------------------------ current_step


def test_current_step_during_execute_and_after(context: BaseStepContext) -> None:
    a, b = Step('a'), Step('b')
    assert context.current_step is None
    run(context, a, b)
    assert a.current_step_seen == {'can_skip': 'a', 'execute': 'a'}
    assert b.current_step_seen == {'can_skip': 'b', 'execute': 'b'}
    assert context.current_step is None


def test_current_step_during_rollback_and_after(context: BaseStepContext) -> None:
    a, b = Step('a'), Step('b')
    c = Step('c', action=raising(ValueError('x')))
    with pytest.raises(StepExecutionError):
        run(context, a, b, c)
    assert a.current_step_seen['rollback'] == 'a'
    assert b.current_step_seen['rollback'] == 'b'
    assert c.current_step_seen == {'can_skip': 'c', 'execute': 'c', 'rollback': 'c'}
    assert context.current_step is None


def test_current_step_seen_by_a_step_that_reads_it(context: BaseStepContext) -> None:
    seen: list[Any] = []

    def action(ctx: BaseStepContext) -> StepResult:
        seen.append(ctx.current_step)
        return StepResult()

    run(context, Step('x', action=action), Step('y', action=action))
    assert seen == ['x', 'y']


def test_client_is_the_runtime_client(runtime: RecordingRuntime, context: BaseStepContext) -> None:
    assert context.client is runtime.client


def test_set_progress_category_defaults_to_the_running_step(
    runtime: RecordingRuntime, context: BaseStepContext
) -> None:
    def action(ctx: BaseStepContext) -> StepResult:
        ctx.set_progress(1, 2)
        ctx.set_progress(2, 2, 'files')
        return StepResult()

    run(context, Step('upload', action=action))
    context.set_progress(1, 1)  # outside a run: no step name to use
    assert runtime.progress == [(1, 2, 'upload'), (2, 2, 'files'), (1, 1, None)]
