"""OpenTelemetry traces of runs: a span per run, per step attempt and per rollback.

Needs the ``otel`` extra (``pip install 'synapse-sdk[otel]'``). :class:`OtelListener`
is loaded on first use, so that importing this package (and asking
:func:`otel_requested`) never needs OpenTelemetry installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._env import otel_requested
from ._join import joined_trace

if TYPE_CHECKING:
    from ._listener import OtelListener

__all__ = ['OtelListener', 'joined_trace', 'otel_requested']


def __getattr__(name: str) -> Any:
    if name == 'OtelListener':  # OpenTelemetry is an optional extra: loaded on first use
        from ._listener import OtelListener

        return OtelListener
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
