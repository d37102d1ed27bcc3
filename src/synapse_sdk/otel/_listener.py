"""The OpenTelemetry listener: a run's lifecycle events as spans of one trace.

Spans are made from the events' own timestamps, so a run on Ray, whose events
the driver replays from the worker, is one trace on the driver with the times
the worker saw. Params never become attributes (they may hold secrets): only
the plugin, the action, the run id and the steps' names, weights, attempts and
flags do.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    from opentelemetry.trace import Span, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as error:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "OpenTelemetry traces need the 'otel' extra: pip install 'synapse-sdk[otel]'"
    ) from error

from synapse_sdk.plugins.steps import (
    LIFECYCLE_EVENTS,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunStarted,
    StepEnded,
    StepEvent,
    StepOverdue,
    StepResult,
    StepRetrying,
    StepReused,
    StepSkipped,
    StepStarted,
)
from synapse_sdk.plugins.steps.support import describe_exception
from synapse_sdk.runtime import Logger

TRACER_NAME = 'synapse_sdk'
DEFAULT_SERVICE_NAME = 'synapse-sdk'
FLUSH_TIMEOUT_MS = 5000
"""How long closing the listener waits for its spans to be exported."""

_provider_lock = threading.Lock()
_provider: trace.TracerProvider | None = None


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class OtelListener(Logger):
    """Exports a trace per run: a span for the run, one per step attempt, one per rollback.

    ``tracer_provider``: where spans go; by default the process's own SDK provider
    if the application set one, else one made from the ``OTEL_*`` variables
    (:func:`shared_tracer_provider`). ``parent``: the context the run's span
    belongs to; by default the current one, or the W3C ``TRACEPARENT`` variable
    when set (a CI job or a caller that started the trace).
    """

    listens_to = LIFECYCLE_EVENTS

    def __init__(
        self,
        *,
        plugin: str | None = None,
        action: str | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        parent: Context | None = None,
    ) -> None:
        self._provider = tracer_provider or shared_tracer_provider()
        self._tracer = self._provider.get_tracer(TRACER_NAME)
        self._parent = parent if parent is not None else _parent_from_env()
        self._names = {'synapse.plugin': plugin, 'synapse.action': action}
        self._action = action
        self._run: Span | None = None
        self._run_context: Context | None = None
        self._early = False  # the run's span was opened by open_run(), before its events
        self._steps: dict[int, Span] = {}
        self._first_attempts: dict[int, tuple[str, dict[str, Any]]] = {}
        self._rollbacks: dict[int, Span] = {}
        self._handlers: dict[type[RunEvent], Callable[[Any], None]] = {
            RunStarted: self._run_started,
            StepStarted: self._step_started,
            StepEnded: self._step_ended,
            StepRetrying: self._step_retrying,
            StepSkipped: self._step_passed,
            StepReused: self._step_passed,
            StepOverdue: self._step_overdue,
            RollbackStarted: self._rollback_started,
            RollbackEnded: self._rollback_ended,
            RunEnded: self._run_ended,
        }

    def on_event(self, event: RunEvent) -> None:
        """A trace that cannot be made must not fail the run (a listener's error in a
        step's event would): the first error is a warning, and the trace stops there."""
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        try:
            handler(event)
        except Exception as error:
            self._handlers = {}
            warnings.warn(
                f'OpenTelemetry: the trace of run {event.run_id} stops here, '
                f'{type(event).__name__} failed: {describe_exception(error)}',
                RuntimeWarning,
                stacklevel=2,
            )

    def open_run(self) -> dict[str, str]:
        """Start the run's span now, before its first event, and return its W3C trace
        context (``{'traceparent': ...}``) for another process to join: the Ray
        executor hands it to the worker, so that spans made there belong to this trace."""
        if self._run is None:
            self._open(time.time_ns(), {})
            self._early = True
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, context=self._run_context)
        return carrier

    def close(self) -> None:
        """End what the run left open (its worker died: no end came), then flush."""
        if self._run is not None:
            why = 'the run did not report its end'
            if self._early:  # opened by open_run(): the action's setup failed, or Ray
                why = 'the run ended before its first step'
            self._end_open(time.time_ns(), why)
        flush = getattr(self._provider, 'force_flush', None)
        if flush is not None:
            flush(FLUSH_TIMEOUT_MS)

    # --- the run ---------------------------------------------------------------
    def _run_started(self, event: RunStarted) -> None:
        at = _ns(event.at)
        if self._run is not None and not self._early:  # a run before it never ended
            self._end_open(at, 'the run did not report its end')
        attributes: dict[str, Any] = {'synapse.steps.total': len(event.steps)}
        if event.run_id is not None:
            attributes['synapse.run_id'] = event.run_id
        if self._run is not None:  # opened by open_run(): it goes on
            self._run.set_attributes(attributes)
        else:
            self._open(at, attributes)
        self._early = False
        self._first_attempts = {
            step.index: (
                f'step {step.name}',
                {
                    'synapse.step': step.name,
                    'synapse.step.weight': step.weight,
                    'synapse.step.attempt': 1,
                },
            )
            for step in event.steps
        }

    def _open(self, at: int, attributes: dict[str, Any]) -> None:
        attributes.update((k, v) for k, v in self._names.items() if v is not None)
        name = f'run {self._action}' if self._action else 'run'
        self._run = self._tracer.start_span(
            name, self._parent, attributes=attributes, start_time=at
        )
        self._run_context = trace.set_span_in_context(self._run)

    def _run_ended(self, event: RunEnded) -> None:
        run, at, summary = self._run, _ns(event.at), event.summary
        if run is None:
            return
        self._end_open(at, None)
        run.set_attributes(
            {
                'synapse.run.success': summary.success,
                'synapse.run.cancelled': summary.cancelled,
                'synapse.steps.executed': summary.steps_executed,
                'synapse.steps.skipped': summary.steps_skipped,
                'synapse.steps.reused': summary.steps_reused,
            }
        )
        if not summary.success:
            if summary.failed_step is not None:
                run.set_attribute('synapse.run.failed_step', summary.failed_step)
            what = 'cancelled' if summary.cancelled else 'failed'
            where = f' in step {summary.failed_step!r}' if summary.failed_step else ''
            _fail(run, summary.error, f'run {what}{where}', at)
        run.end(end_time=at)
        self._run = self._run_context = None

    def _end_open(self, at: int, why: str | None) -> None:
        """End the step and rollback spans still open and, given ``why``, the run's."""
        for span in self._steps.values():
            span.set_status(Status(StatusCode.ERROR, why or 'the step did not report its end'))
            span.end(end_time=at)
        for span in self._rollbacks.values():
            span.set_status(Status(StatusCode.ERROR, why or 'the rollback did not report its end'))
            span.end(end_time=at)
        self._steps.clear()
        self._rollbacks.clear()
        if why is not None and self._run is not None:
            self._run.set_status(Status(StatusCode.ERROR, why))
            self._run.end(end_time=at)
            self._run = self._run_context = None

    # --- steps -----------------------------------------------------------------
    def _start(self, kind: str, event: StepEvent, at: int, **extra: Any) -> Span:
        step = event.step
        attributes = {'synapse.step': step.name, 'synapse.step.weight': step.weight, **extra}
        return self._tracer.start_span(
            f'{kind} {step.name}', self._run_context, attributes=attributes, start_time=at
        )

    def _step_started(self, event: StepStarted) -> None:
        """The common path, kept short: names and attributes made once per run."""
        name, attributes = self._first_attempts[event.step.index]
        self._steps[event.step.index] = self._tracer.start_span(
            name, self._run_context, attributes=attributes, start_time=int(event.at * 1e9)
        )

    def _step_ended(self, event: StepEnded) -> None:
        span = self._steps.pop(event.step.index, None)
        if span is None:
            return
        at = int(event.at * 1e9)  # _ns() inline: the common path, once per step
        if not event.result.success:
            _fail_step(span, event.result, at)
        span.end(at)

    def _step_retrying(self, event: StepRetrying) -> None:
        """The failed attempt's span ends; the next one starts when the delay is over."""
        failed = self._steps.pop(event.step.index, None)
        at = _ns(event.at)
        if failed is not None:
            failed.set_attribute('synapse.step.retry_delay', event.delay)
            _fail_step(failed, event.result, at)
            failed.end(end_time=at)
        attempt = event.attempt + 1
        span = self._start(
            'step', event, _ns(event.at + event.delay), **{'synapse.step.attempt': attempt}
        )
        self._steps[event.step.index] = span

    def _step_passed(self, event: StepSkipped | StepReused) -> None:
        """A skipped or reused step: a span of no length that says which."""
        at = _ns(event.at)
        flags = {
            'synapse.step.skipped': isinstance(event, StepSkipped),
            'synapse.step.reused': isinstance(event, StepReused),
        }
        self._start('step', event, at, **flags).end(end_time=at)

    def _step_overdue(self, event: StepOverdue) -> None:
        span = self._steps.get(event.step.index)
        if span is not None:
            span.add_event(
                'synapse.step.overdue', {'synapse.step.timeout': event.limit}, _ns(event.at)
            )

    # --- rollbacks -------------------------------------------------------------
    def _rollback_started(self, event: RollbackStarted) -> None:
        self._rollbacks[event.step.index] = self._start('rollback', event, _ns(event.at))

    def _rollback_ended(self, event: RollbackEnded) -> None:
        span = self._rollbacks.pop(event.step.index, None)
        if span is None:
            return
        at = _ns(event.at)
        if event.error is not None:
            _fail(span, event.error, f'rollback of {event.step.name!r} failed', at)
        span.end(end_time=at)


def _fail_step(span: Span, result: StepResult, at: int) -> None:
    _fail(span, result.exception, result.error or 'the step failed', at)


def _fail(span: Span, error: BaseException | None, message: str, at: int) -> None:
    """Error status, and the exception recorded (or, when only its text travelled, its text)."""
    if error is not None:
        span.record_exception(error, timestamp=at)
        message = f'{message}: {type(error).__name__}: {error}' if str(error) else message
    else:
        span.add_event('exception', {'exception.message': message}, at)
    span.set_status(Status(StatusCode.ERROR, message))


def _parent_from_env() -> Context | None:
    """The W3C ``TRACEPARENT`` (and ``TRACESTATE``) variables as the run's parent, if set."""
    traceparent = os.environ.get('TRACEPARENT')
    if not traceparent:
        return None
    carrier = {'traceparent': traceparent, 'tracestate': os.environ.get('TRACESTATE', '')}
    return TraceContextTextMapPropagator().extract(carrier)


def shared_tracer_provider() -> trace.TracerProvider:
    """The application's SDK tracer provider if it set one; else one made once per process
    from the ``OTEL_*`` variables (batch span processor, exporters by
    ``OTEL_TRACES_EXPORTER``, default ``otlp``) and made the global provider."""
    global _provider
    with _provider_lock:
        if _provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                _provider = current
            else:
                _provider = _provider_from_env()
                trace.set_tracer_provider(_provider)
        return _provider


def _provider_from_env() -> TracerProvider:
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, '')).startswith('unknown_service'):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    names = os.environ.get('OTEL_TRACES_EXPORTER', '').strip().lower() or 'otlp'
    for name in (n.strip() for n in names.split(',')):
        if name and name != 'none':
            provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return provider


def _exporter(name: str) -> SpanExporter:
    """The exporter ``OTEL_TRACES_EXPORTER`` names; OTLP over the protocol the
    ``OTEL_EXPORTER_OTLP_*PROTOCOL`` variables say (default ``http/protobuf``)."""
    if name == 'console':
        return ConsoleSpanExporter(out=sys.stderr)  # stdout carries the run's result
    if name != 'otlp':
        raise ValueError(
            f"OTEL_TRACES_EXPORTER names {name!r}: this SDK exports 'otlp' or 'console' (or 'none')"
        )
    protocol = (
        os.environ.get('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL')
        or os.environ.get('OTEL_EXPORTER_OTLP_PROTOCOL')
        or 'http/protobuf'
    ).strip()
    if protocol == 'grpc':
        try:
            grpc = importlib.import_module('opentelemetry.exporter.otlp.proto.grpc.trace_exporter')
        except ImportError as error:
            raise ImportError(
                'OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc: pip install it, '
                'or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf'
            ) from error
        exporter: SpanExporter = grpc.OTLPSpanExporter()
        return exporter
    if protocol != 'http/protobuf':
        raise ValueError(
            f"OTLP protocol {protocol!r} is not supported here: use 'http/protobuf' or 'grpc'"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()
