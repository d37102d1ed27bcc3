"""When traces are on: the OTEL_* variables (the OpenTelemetry specification's rule) or --otel."""

from __future__ import annotations

import pytest

from synapse_sdk.execution import default_runtime
from synapse_sdk.otel import otel_requested


@pytest.mark.parametrize(
    ('env', 'wanted'),
    [
        ({}, False),
        ({'OTEL_SERVICE_NAME': 'shop'}, False),  # describes traces, does not ask for them
        ({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:4318'}, True),
        ({'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT': 'http://127.0.0.1:4318/v1/traces'}, True),
        ({'OTEL_EXPORTER_OTLP_ENDPOINT': '  '}, False),
        ({'OTEL_TRACES_EXPORTER': 'otlp'}, True),
        ({'OTEL_TRACES_EXPORTER': 'console'}, True),
        ({'OTEL_TRACES_EXPORTER': 'none'}, False),
        ({'OTEL_TRACES_EXPORTER': 'None, '}, False),
        ({'OTEL_TRACES_EXPORTER': 'none', 'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://x'}, False),
        ({'OTEL_SDK_DISABLED': 'true', 'OTEL_TRACES_EXPORTER': 'otlp'}, False),
        ({'OTEL_SDK_DISABLED': 'false', 'OTEL_TRACES_EXPORTER': 'otlp'}, True),
    ],
)
def test_the_environment_asks_for_traces(env: dict[str, str], wanted: bool) -> None:
    assert otel_requested(env) is wanted


def tracers(otel: bool | None) -> list[object]:
    pytest.importorskip('opentelemetry.sdk', reason="the 'otel' extra is not installed")
    from synapse_sdk.otel import OtelListener

    runtime = default_runtime(console=False, otel=otel, action='a')
    return [logger for logger in runtime.loggers if isinstance(logger, OtelListener)]


@pytest.fixture
def home(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('SYNAPSE_HOME', str(tmp_path))
    for name in ('OTEL_TRACES_EXPORTER', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_SDK_DISABLED'):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures('home')
def test_the_default_runtime_attaches_the_listener_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv('OTEL_TRACES_EXPORTER', 'none')  # a provider that exports nowhere
    assert tracers(None) == []  # 'none': not asked
    assert len(tracers(True)) == 1  # the flag wins
    monkeypatch.setenv('OTEL_TRACES_EXPORTER', 'console')
    assert len(tracers(None)) == 1
    assert tracers(False) == []  # --no-otel wins too
