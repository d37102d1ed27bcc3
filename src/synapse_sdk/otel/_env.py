"""When the standard ``OTEL_*`` environment variables ask for traces."""

from __future__ import annotations

from collections.abc import Mapping

_ENDPOINTS = ('OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')


def otel_requested(env: Mapping[str, str]) -> bool:
    """True when ``env`` asks for traces, by the OpenTelemetry specification's variables.

    ``OTEL_SDK_DISABLED=true`` says no; else ``OTEL_TRACES_EXPORTER`` decides when
    set (anything but ``none`` says yes); else an OTLP endpoint
    (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._TRACES_ENDPOINT``) says yes. A
    service name or resource attributes alone do not: they describe traces,
    they do not ask for them.
    """
    if env.get('OTEL_SDK_DISABLED', '').strip().lower() == 'true':
        return False
    exporters = env.get('OTEL_TRACES_EXPORTER', '').strip().lower()
    if exporters:
        return any(name.strip() not in ('', 'none') for name in exporters.split(','))
    return any(env.get(name, '').strip() for name in _ENDPOINTS)
