"""The benchmarks still run against the current API (tiny sizes; no figure is judged here).

Timing targets live in ``benchmarks/`` and are read by people, never asserted:
these tests only keep the scripts from rotting as the code under them changes.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / 'benchmarks'


@pytest.fixture
def bench() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module('_common')
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_orchestrator_overhead_measures_all_three_paths(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = importlib.import_module('orchestrator_overhead')
    monkeypatch.setattr(module, 'STEPS_PER_SAMPLE', 200)
    figures = module.measure(100, 1)
    assert len(figures) == 3 and all(f > 0 for f in figures)


def test_orchestrator_overhead_floor_keeps_what_the_orchestrator_keeps(bench: ModuleType) -> None:
    module = importlib.import_module('orchestrator_overhead')
    steps = [bench.NoOpStep(i) for i in range(5)]
    floor_context, orchestrated_context = module._new_context(), module._new_context()
    module._run_floor(steps, floor_context)
    registry = module.StepRegistry()
    for step in steps:
        registry.register(step)
    module._run_orchestrator(registry, orchestrated_context)
    assert len(floor_context.step_results) == len(orchestrated_context.step_results) == 5


def test_journal_overhead_runs_with_and_without_the_journal(
    bench: ModuleType, tmp_path: Path
) -> None:
    module = importlib.import_module('journal_overhead')
    registry = module._registry([bench.NoOpStep(i) for i in range(20)])
    assert module.best_of(1, registry, tmp_path, journaled=False) > 0
    assert module.best_of(1, registry, tmp_path, journaled=True) > 0
    assert module.commit_floor(tmp_path, 1, commits=10) > 0
    assert module.raw_sqlite(tmp_path, 1, count=10) > 0


def test_journal_overhead_on_postgresql_and_with_concurrent_writers(
    bench: ModuleType, tmp_path: Path, postgres_db: Any
) -> None:
    module = importlib.import_module('journal_overhead')
    registry = module._registry([bench.NoOpStep(i) for i in range(20)])
    assert module.best_of(1, registry, tmp_path, journaled=True, database=postgres_db.url) > 0
    assert module.raw_postgres(postgres_db.url, 1, count=10) > 0
    assert module.writers_throughput(postgres_db.url, writers=2, steps=5) > 0


def test_cancel_latency_cancels_a_run_and_measures_the_log_lines(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = importlib.import_module('cancel_latency')
    from synapse_sdk.journal import Journal

    interrupted, ended = module.cancel_once(Journal(tmp_path / 'runs.db'))
    assert 0 < interrupted <= ended < 10
    monkeypatch.setattr(module, 'STEPS', 10)
    monkeypatch.setattr(module, 'LOGS', 10)
    module.overhead(tmp_path, 1)


def test_console_progress_runs_with_and_without_reports(bench: ModuleType) -> None:
    module = importlib.import_module('console_progress')
    assert module.run_once(50, False, 0.1) > 0
    assert module.run_once(50, True, 0.1) > 0


def test_otel_overhead_runs_bare_idle_and_traced(bench: ModuleType) -> None:
    pytest.importorskip('opentelemetry.sdk', reason="the 'otel' extra is not installed")
    module = importlib.import_module('otel_overhead')
    provider, exporter = module.batch_provider()
    steps = module.registry(20)
    assert all(module.best_of(1, steps, mode, provider) > 0 for mode in ('bare', 'idle', 'otel'))
    assert exporter.spans == 21  # the run's span and one per step, none dropped
    provider.shutdown()


def test_report_render_measures_a_run_with_retries_and_rollbacks(
    bench: ModuleType, tmp_path: Path
) -> None:
    module = importlib.import_module('report_render')
    figures = module.measure(30, 1, tmp_path)
    assert figures['spans'] == 30 + 2 + 30  # 30 steps, 2 of them retried, all rolled back
    assert all(figures[name] > 0 for name in ('journal rows', 'load_run', 'render_report'))


def test_ui_latency_times_the_list_and_finds_the_delays(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    module = importlib.import_module('ui_latency')
    monkeypatch.setattr(module, 'MANY', 300)
    monkeypatch.setattr(module, 'PAGES', {'newest 50': '/', 'failed': '/?status=failed'})
    module.list_times('SQLite', str(tmp_path / 'runs.db'), 1)
    printed = capsys.readouterr().out
    assert printed.count('target < 200 ms') == 2 and 'server' in printed
    log = tmp_path / 'run.jsonl'
    lines = [
        {
            'type': 'progress',
            'category': 'overall',
            'percent': p,
            'ts': f'2026-01-01T00:00:0{s}+00:00',
        }
        for p, s in ((10, 1), (40, 2), (100, 3))
    ]
    log.write_text(''.join(json.dumps(x) + '\n' for x in lines), encoding='utf-8')
    start = 1767225600.0  # 2026-01-01T00:00:00Z
    seen = [[10, start + 1.3], [40, start + 2.25]]
    assert [round(d, 2) for d in module.delays(log, seen, start)] == [0.3, 0.25]
    assert module.delays(log, seen, start + 1.5) == [pytest.approx(0.25)]  # after opening


def test_object_storage_runs_the_sdk_and_raw_obstore_against_moto(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.services._common import require_module

    require_module('obstore', 'obstore')
    require_module('moto.server', 'moto[server]')
    module = importlib.import_module('object_storage')
    argv = ['--small', '12', '--large', '1', '--large-mib', '9', '--latency-files', '5']
    assert module.main(argv) == 0
    out = capsys.readouterr().out
    assert '12 x 4 KiB, concurrency 16:' in out
    assert '5 x 4 KiB with 20 ms added per request' in out
    assert '1 x 9 MiB, one after another:' in out
    assert out.count('MET') >= 5  # a verdict for each target (MET or NOT MET)


def test_detach_benchmark_plugin_has_its_steps_and_the_report_its_ratio(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module('detach')
    folder = tmp_path / 'steps100'
    folder.mkdir()
    (folder / 'steps100.py').write_text(module.PLUGIN.replace('STEPS', '100'), encoding='utf-8')
    sys.path.insert(0, str(folder))
    try:
        plugin = importlib.import_module('steps100')
        registry = plugin.StepRegistry()
        plugin.Action.setup_steps(None, registry)
        assert len(registry) == module.STEPS == 100
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop('steps100', None)
    runs = {'return': 1.0, 'first step': 3.0, 'run end': 4.0}
    module.report({'foreground': [{**runs, 'run end': 2.0}], 'detached': [runs]}, 1)
    assert "detached / foreground, to the run's end: 2.00x (+2.00 s)" in capsys.readouterr().out
