"""The OpenTelemetry listener: a run's events as one trace (SDK in-memory exporter)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from synapse_sdk.otel import OtelListener
from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Orchestrator,
    RetryPolicy,
    RunEnded,
    StepRegistry,
    StepResult,
)
from synapse_sdk.testing import FunctionStep, RecordingRuntime, run_workflow

from .conftest import Traces


def listener(traces: Traces, **names: Any) -> OtelListener:
    return OtelListener(tracer_provider=traces.provider, **names)


def fail(error: BaseException) -> Any:
    def raise_it(*args: Any) -> None:
        raise error

    return raise_it


def test_a_run_is_one_trace_with_a_span_per_step(traces: Traces) -> None:
    steps = [
        FunctionStep('fetch', 2.0),
        FunctionStep('cache', 1.0, skip=lambda context: True),
        FunctionStep('upload', 3.0),
    ]
    run = run_workflow(steps, listeners=[listener(traces, plugin='demo', action='upload')])
    assert run.succeeded
    root = traces.one('run upload')
    assert [s.name for s in traces.spans] == [
        'run upload',
        'step fetch',
        'step cache',
        'step upload',
    ]
    assert {s.context.trace_id for s in traces.spans} == {root.context.trace_id}
    assert root.parent is None
    assert all(s.parent.span_id == root.context.span_id for s in traces.spans if s is not root)
    assert root.attributes['synapse.plugin'] == 'demo'
    assert root.attributes['synapse.action'] == 'upload'
    assert root.attributes['synapse.run_id'] == 'test-run'
    assert root.attributes['synapse.run.success'] is True
    assert root.status.status_code is StatusCode.UNSET
    fetch = dict(traces.one('step fetch').attributes)
    # the run's names are on the run's span: each step's span says what is its own
    assert fetch == {'synapse.step': 'fetch', 'synapse.step.weight': 2.0, 'synapse.step.attempt': 1}
    cache = traces.one('step cache')
    assert cache.attributes['synapse.step.skipped'] is True
    assert cache.attributes['synapse.step.reused'] is False
    assert cache.start_time == cache.end_time
    # the run's span spans its steps: times come from the events
    assert root.start_time <= traces.one('step fetch').start_time
    assert traces.one('step upload').end_time <= root.end_time


def test_each_attempt_of_a_retried_step_is_a_span(traces: Traces) -> None:
    calls: list[int] = []

    def flaky(context: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError('the server is down')

    step = FunctionStep('sync', execute=flaky, retry=RetryPolicy(max_attempts=2, initial_delay=0))
    assert run_workflow([step], listeners=[listener(traces)]).succeeded
    first, second = traces.named('step sync')
    assert first.attributes['synapse.step.attempt'] == 1
    assert second.attributes['synapse.step.attempt'] == 2
    assert first.status.status_code is StatusCode.ERROR
    assert 'ConnectionError: the server is down' in first.status.description
    [exception] = first.events
    assert exception.name == 'exception'
    assert exception.attributes['exception.type'] == 'ConnectionError'
    assert second.status.status_code is StatusCode.UNSET
    assert first.end_time <= second.start_time
    assert traces.one('run').name == 'run'  # no action named: the run's span says 'run'


def test_a_failed_run_has_its_error_and_a_span_per_rollback(traces: Traces) -> None:
    steps = [
        FunctionStep('reserve', rollback=fail(OSError('disk gone'))),
        FunctionStep('charge', execute=fail(ValueError('card declined'))),
    ]
    run = run_workflow(steps, listeners=[listener(traces, action='buy')])
    assert not run.succeeded
    charge = traces.one('step charge')
    assert charge.status.status_code is StatusCode.ERROR
    assert charge.events[0].attributes['exception.type'] == 'ValueError'
    assert charge.events[0].attributes['exception.message'] == 'card declined'
    names = [s.name for s in traces.spans]
    assert names.index('rollback charge') < names.index('rollback reserve')
    assert traces.one('rollback charge').status.status_code is StatusCode.UNSET
    broken = traces.one('rollback reserve')
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.events[0].attributes['exception.type'] == 'OSError'
    root = traces.one('run buy')
    assert root.status.status_code is StatusCode.ERROR
    assert "step 'charge'" in root.status.description
    assert root.attributes['synapse.run.failed_step'] == 'charge'
    assert root.attributes['synapse.run.success'] is False
    assert all(s.parent.span_id == root.context.span_id for s in traces.spans if s is not root)


def test_reused_steps_are_marked(traces: Traces) -> None:
    registry: StepRegistry[Any] = StepRegistry()
    for name in ('a', 'b'):
        registry.register(FunctionStep(name))
    context = BaseStepContext(runtime_ctx=RecordingRuntime())
    Orchestrator(
        registry, context, listeners=[listener(traces)], completed={'a': StepResult()}
    ).execute()
    assert traces.one('step a').attributes['synapse.step.reused'] is True
    assert 'synapse.step.reused' not in traces.one('step b').attributes


def test_a_run_that_never_reports_its_end_is_closed_as_an_error(traces: Traces) -> None:
    """A Ray worker that died: the driver's listener got no RunEnded, only its close()."""
    otel = listener(traces)

    class DropEnd(OtelListener):
        def on_event(self, event: Any) -> None:
            if not isinstance(event, RunEnded):
                otel.on_event(event)

    hang = FunctionStep('hang', execute=fail(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_workflow([hang], listeners=[DropEnd(tracer_provider=traces.provider)])
    assert [s.name for s in traces.spans] == ['step hang', 'rollback hang']  # not the run
    otel.close()
    root = traces.one('run')
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == 'the run did not report its end'


def test_the_run_joins_the_trace_named_by_traceparent(
    traces: Traces, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_id, parent_id = '4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7'
    monkeypatch.setenv('TRACEPARENT', f'00-{trace_id}-{parent_id}-01')
    run_workflow([FunctionStep('a')], listeners=[listener(traces)])
    root = traces.one('run')
    assert f'{root.context.trace_id:032x}' == trace_id
    assert f'{root.parent.span_id:016x}' == parent_id
    assert traces.one('step a').context.trace_id == root.context.trace_id


def test_listens_to_no_per_item_event() -> None:
    from synapse_sdk.plugins.steps import IN_STEP_EVENTS

    assert not set(OtelListener.listens_to) & set(IN_STEP_EVENTS)


def test_a_tracing_error_never_fails_the_run(traces: Traces) -> None:
    class Broken(OtelListener):
        def _step_started(self, event: Any) -> None:
            raise RuntimeError('the tracer is gone')

    with pytest.warns(RuntimeWarning, match='the trace of run test-run stops here, StepStarted'):
        run = run_workflow(
            [FunctionStep('a'), FunctionStep('b')],
            listeners=[Broken(tracer_provider=traces.provider)],
        )
    assert run.succeeded
    assert [s.name for s in traces.spans] == []  # the run's span stays open: never exported


def test_another_process_joins_the_run_opened_early(traces: Traces) -> None:
    """What the Ray executor does: open the run's span, hand its context to the worker."""
    from opentelemetry import trace

    from synapse_sdk.otel import joined_trace

    otel = listener(traces, action='buy')
    carrier = otel.open_run()
    assert carrier['traceparent'].startswith('00-')
    seen: list[Any] = []

    def look(context: Any) -> None:
        seen.append(trace.get_current_span().get_span_context())

    with joined_trace(carrier):
        run_workflow([FunctionStep('a', execute=look)], listeners=[otel])
    assert trace.get_current_span().get_span_context().is_valid is False  # detached after
    root = traces.one('run buy')  # one run span: the events went on with the one opened
    assert seen[0].trace_id == root.context.trace_id
    assert seen[0].span_id == root.context.span_id
    assert root.attributes['synapse.run_id'] == 'test-run'
    assert traces.one('step a').parent.span_id == root.context.span_id
    with joined_trace({}):  # no carrier: nothing changes
        assert trace.get_current_span().get_span_context().is_valid is False


def test_a_run_opened_early_that_never_starts_says_so(traces: Traces) -> None:
    otel = listener(traces)
    otel.open_run()
    otel.close()  # e.g. the action's setup code raised: no event came
    root = traces.one('run')
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == 'the run ended before its first step'
