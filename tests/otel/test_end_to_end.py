"""End to end: ``synapse plugin run`` exports its trace by OTLP/HTTP to a receiver on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .receiver import otlp_receiver

SYNAPSE = str(Path(sys.executable).parent / 'synapse')
SECRET = 's3cr3t-token-value'

CONFIG = """\
name: Shop
code: shop
version: 0.1.0
category: upload
actions:
  buy:
    entrypoint: shop:Buy
"""

PLUGIN = """\
from pydantic import BaseModel

from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.pipelines.steps import BaseStep, RetryPolicy, StepRegistry, StepResult


class Params(BaseModel):
    token: str
    fail: bool = False


class Reserve(BaseStep):
    name = 'reserve'
    progress_weight = 1.0
    retry = RetryPolicy(max_attempts=2, initial_delay=0.0, jitter=0)
    tries = 0

    def execute(self, context):
        Reserve.tries += 1
        if Reserve.tries == 1:
            raise ConnectionError('the stock service is down')
        return StepResult(rollback_data={'held': 1})

    def rollback(self, context, result):
        pass


class Charge(BaseStep):
    name = 'charge'
    progress_weight = 3.0

    def execute(self, context):
        try:
            from opentelemetry import trace
        except ImportError:
            pass  # run without the extra too
        else:
            with trace.get_tracer('shop').start_as_current_span('charge card'):
                pass  # the step's own span (an instrumented client would make one)
        if context.params['fail']:
            raise ValueError('card declined')
        return StepResult()

    def rollback(self, context, result):
        pass


class Buy(BaseUploadAction[Params]):
    def setup_steps(self, registry: StepRegistry) -> None:
        registry.register(Reserve())
        registry.register(Charge())
"""


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    folder = tmp_path / 'shop'
    folder.mkdir()
    (folder / 'config.yaml').write_text(CONFIG, encoding='utf-8')
    (folder / 'shop.py').write_text(textwrap.dedent(PLUGIN), encoding='utf-8')
    return folder


def run_cli(
    shop: Path, tmp_path: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(('OTEL_', 'TRACEPARENT'))}
    environ.update(SYNAPSE_HOME=str(tmp_path / 'home'), PYTHONDONTWRITEBYTECODE='1', **env)
    return subprocess.run(
        [SYNAPSE, 'plugin', 'run', 'buy', '--path', str(shop), *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=60,
    )


def test_a_cli_run_sends_its_trace_to_an_otlp_endpoint(shop: Path, tmp_path: Path) -> None:
    with otlp_receiver() as (endpoint, received):
        done = run_cli(
            shop,
            tmp_path,
            {'OTEL_EXPORTER_OTLP_ENDPOINT': endpoint, 'OTEL_SERVICE_NAME': 'shop-e2e'},
            '--params',
            f'{{"token": "{SECRET}", "fail": true}}',
        )
    assert done.returncode == 1, done.stderr
    assert set(received.paths) == {'/v1/traces'}
    [root] = received.named('run buy')
    names = sorted(s.name for s in received.spans)
    assert names == sorted(
        [
            'run buy',
            'step reserve',
            'step reserve',
            'step charge',
            'charge card',
            'rollback charge',
            'rollback reserve',
        ]
    )
    assert {s.trace_id for s in received.spans} == {root.trace_id}
    assert root.parent_span_id == ''
    # the step's own span joined the run's trace (its parent: the run's span)
    assert all(s.parent_span_id == root.span_id for s in received.spans if s is not root)
    assert root.resource['service.name'] == 'shop-e2e'
    assert root.attributes['synapse.plugin'] == 'shop'
    assert root.attributes['synapse.action'] == 'buy'
    assert len(root.attributes['synapse.run_id']) == 12
    assert root.attributes['synapse.run.failed_step'] == 'charge'
    assert root.status_code == 2  # STATUS_CODE_ERROR
    first, second = received.named('step reserve')
    assert (
        first.attributes['synapse.step.attempt'],
        second.attributes['synapse.step.attempt'],
    ) == (1, 2)
    assert first.events[0][1]['exception.type'] == 'ConnectionError'
    [charge] = received.named('step charge')
    assert charge.attributes['synapse.step.weight'] == 3.0
    assert charge.events[0][1]['exception.message'] == 'card declined'
    # params are not attributes: the secret is nowhere in what was sent
    values = [v for s in received.spans for v in [*s.attributes.values(), *s.resource.values()]]
    values += [v for s in received.spans for _, attributes in s.events for v in attributes.values()]
    assert not [v for v in values if SECRET in str(v)]


def test_no_otel_variable_no_trace(shop: Path, tmp_path: Path) -> None:
    with otlp_receiver() as (endpoint, received):
        done = run_cli(
            shop,
            tmp_path,
            {'OTEL_EXPORTER_OTLP_ENDPOINT': endpoint, 'OTEL_TRACES_EXPORTER': 'none'},
            '--params',
            '{"token": "x"}',
        )
    assert done.returncode == 0, done.stderr
    assert received.paths == []


def test_otel_flag_without_the_extra_is_one_line(shop: Path, tmp_path: Path) -> None:
    blocker = tmp_path / 'blocker' / 'opentelemetry'
    blocker.mkdir(parents=True)
    (blocker / '__init__.py').write_text("raise ImportError('no opentelemetry here')\n")
    env = {'PYTHONPATH': os.pathsep.join([str(blocker.parent), os.environ.get('PYTHONPATH', '')])}
    done = run_cli(shop, tmp_path, env, '--otel', '--params', '{"token": "x"}')
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: OpenTelemetry traces need the 'otel' extra: pip install 'synapse-sdk[otel]'"
    )
    # asked for by the environment only: a warning, and the run goes on
    done = run_cli(
        shop, tmp_path, {**env, 'OTEL_TRACES_EXPORTER': 'otlp'}, '--params', '{"token": "x"}'
    )
    assert done.returncode == 0, done.stderr
    assert (
        "OTEL_* variables ask for traces, but OpenTelemetry traces need the 'otel'" in done.stderr
    )


def test_an_unknown_exporter_is_bad_input(shop: Path, tmp_path: Path) -> None:
    done = run_cli(shop, tmp_path, {'OTEL_TRACES_EXPORTER': 'zipkin'}, '--params', '{"token": "x"}')
    assert done.returncode == 2, done.stderr
    assert "OTEL_TRACES_EXPORTER names 'zipkin'" in done.stderr
