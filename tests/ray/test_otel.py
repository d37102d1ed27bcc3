"""A run on Ray is one trace: the driver makes the spans from the worker's relayed events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip('opentelemetry.sdk', reason="the 'otel' extra is not installed")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402

from synapse_sdk.execution import RayExecutor  # noqa: E402
from synapse_sdk.journal import Journal  # noqa: E402
from synapse_sdk.otel import OtelListener  # noqa: E402
from synapse_sdk.plugins.steps import StepExecutionError  # noqa: E402
from synapse_sdk.runtime import RuntimeContext  # noqa: E402

PLUGIN = """\
import os

from pydantic import BaseModel

from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult


class Params(BaseModel):
    fail: bool = False


class Where(BaseStep):
    name = 'where'
    progress_weight = 1.0

    def execute(self, context):
        from opentelemetry import trace

        current = trace.get_current_span().get_span_context()  # what the step's code sees
        return StepResult(
            data={
                'pid': os.getpid(),
                'trace_id': f'{current.trace_id:032x}',
                'span_id': f'{current.span_id:016x}',
            }
        )

    def rollback(self, context, result):
        pass


class Charge(BaseStep):
    name = 'charge'
    progress_weight = 2.0

    def execute(self, context):
        if context.params['fail']:
            raise ValueError('card declined')
        return StepResult()

    def rollback(self, context, result):
        pass


class Action(BaseUploadAction[Params]):
    def setup_steps(self, registry: StepRegistry) -> None:
        registry.register(Where())
        registry.register(Charge())
"""


def traced_run(
    plugin_factory: Any, store: Any, tmp_path: Path, fail: bool
) -> tuple[InMemorySpanExporter, dict[str, Any] | BaseException]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plugin = plugin_factory('traced', PLUGIN)
    runtime = RuntimeContext(
        logger=[OtelListener(tracer_provider=provider, plugin='traced', action='run')],
        client=store,
    )
    runner = RayExecutor(journal=Journal(tmp_path / 'runs.db'), console=False)
    try:
        outcome: dict[str, Any] | BaseException = runner.run(
            plugin.action, {'fail': fail}, ctx=runtime, origin=plugin.origin
        )
    except StepExecutionError as error:
        outcome = error
    return exporter, outcome


def test_a_run_on_ray_is_one_trace(plugin_factory: Any, store: Any, tmp_path: Path) -> None:
    exporter, result = traced_run(plugin_factory, store, tmp_path, fail=False)
    assert isinstance(result, dict)
    assert result['steps']['where']['pid'] != __import__('os').getpid()  # ran in a worker
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert sorted(spans) == ['run run', 'step charge', 'step where']
    root = spans['run run']
    assert {s.context.trace_id for s in spans.values()} == {root.context.trace_id}
    assert spans['step where'].parent.span_id == root.context.span_id
    assert root.attributes['synapse.run_id'] == result['run_id']
    assert root.attributes['synapse.plugin'] == 'traced'
    assert root.attributes['synapse.steps.total'] == 2
    # the trace context reached the worker: code in a step there sees the run's span
    seen = result['steps']['where']
    assert seen['trace_id'] == f'{root.context.trace_id:032x}'
    assert seen['span_id'] == f'{root.context.span_id:016x}'
    # the worker's times: the steps lie inside the run, in order
    assert root.start_time <= spans['step where'].start_time <= spans['step where'].end_time
    assert spans['step where'].end_time <= spans['step charge'].start_time
    assert spans['step charge'].end_time <= root.end_time


def test_a_failed_run_on_ray_records_the_workers_exception(
    plugin_factory: Any, store: Any, tmp_path: Path
) -> None:
    exporter, error = traced_run(plugin_factory, store, tmp_path, fail=True)
    assert isinstance(error, StepExecutionError)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert sorted(spans) == [
        'rollback charge',
        'rollback where',
        'run run',
        'step charge',
        'step where',
    ]
    charge = spans['step charge']
    assert charge.status.status_code is StatusCode.ERROR
    assert 'card declined' in charge.status.description
    root = spans['run run']
    assert root.status.status_code is StatusCode.ERROR
    assert root.events[0].attributes['exception.message'] == 'card declined'
