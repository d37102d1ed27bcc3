"""Another process joins a run's trace: the Ray worker that runs the steps."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

from ._env import otel_requested


@contextlib.contextmanager
def joined_trace(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Within the block, the W3C trace context ``carrier`` (from ``OtelListener.open_run``)
    is the current one, so spans that the steps' own code makes (an instrumented client)
    are children of the run's span. Nothing without a carrier or without OpenTelemetry.

    Spans made here are exported by this process's tracer provider: the application's
    own, or, when the ``OTEL_*`` variables ask for traces, one made from them (flushed
    at the end of the block).
    """
    if not carrier:
        yield
        return
    try:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        yield
        return
    provider = None
    if otel_requested(os.environ):
        from ._listener import shared_tracer_provider

        provider = shared_tracer_provider()
    token = context.attach(TraceContextTextMapPropagator().extract(dict(carrier)))
    try:
        yield
    finally:
        context.detach(token)
        flush = getattr(provider, 'force_flush', None)
        if flush is not None:
            flush()
