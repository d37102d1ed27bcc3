"""``synapse runs list`` and ``synapse runs show``: filters and JSON shapes."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.journal import RUN_STATUSES

from .conftest import (
    RUN_COLUMNS,
    STEP_COLUMNS,
    cli_json,
    journal_run_ids,
    make_files,
    one_line_error,
    run_cli,
)


@pytest.fixture
def two_runs(home: Path, plugin_dir: Path, tmp_path: Path) -> dict[str, str]:
    """A succeeded run, then a run killed (SIGKILL) in its ``store`` step."""
    make_files(tmp_path / 'source', 4, seed=3)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    ok = run_cli(home, 'plugin', 'run', 'store', '--path', plugin_dir, '--params', params)
    assert ok.returncode == 0, ok.stderr
    (succeeded,) = journal_run_ids(home)
    killed = run_cli(
        home,
        'plugin',
        'run',
        'store',
        '--path',
        plugin_dir,
        '--params',
        params,
        JT_CRASH_AFTER='2',
    )
    assert killed.returncode == -signal.SIGKILL
    (crashed,) = set(journal_run_ids(home)) - {succeeded}
    return {'succeeded': succeeded, 'crashed': crashed}


def test_list_json_shapes_and_status_filter(
    home: Path, plugin_dir: Path, tmp_path: Path, two_runs: dict[str, str]
) -> None:
    runs = cli_json(home, 'runs', 'list', '--json')
    assert [r['id'] for r in runs] == [two_runs['crashed'], two_runs['succeeded']]  # newest first
    for run in runs:
        assert set(run) == RUN_COLUMNS
        assert run['entrypoint'] == 'journal_test_plugin:StoreAction'
        assert run['action'] == 'store'
        assert run['plugin_path'] == str(plugin_dir)
        assert run['params'] == {'source_path': str(tmp_path / 'source'), 'trace_path': None}
        assert isinstance(run['pid'], int) and isinstance(run['progress'], int)
        assert run['attempts'] == 1
        assert run['ended_at'] is not None

    crashed = cli_json(home, 'runs', 'list', '--status', 'crashed', '--json')
    assert [r['id'] for r in crashed] == [two_runs['crashed']]
    assert crashed[0]['status'] == 'crashed'
    assert crashed[0]['error'] == 'the process running it died'
    assert 0 < crashed[0]['progress'] < 100  # it got somewhere before it was killed

    succeeded = cli_json(home, 'runs', 'list', '--status', 'succeeded', '--json')
    assert [(r['id'], r['progress'], r['error']) for r in succeeded] == [
        (two_runs['succeeded'], 100, None)
    ]
    assert cli_json(home, 'runs', 'list', '--status', 'running', '--json') == []
    assert [r['id'] for r in cli_json(home, 'runs', 'list', '--limit', '1', '--json')] == [
        two_runs['crashed']
    ]

    table = run_cli(home, 'runs', 'list')
    assert table.returncode == 0, table.stderr
    assert two_runs['crashed'] in table.stdout and 'crashed' in table.stdout


def test_show_json_shape(home: Path, two_runs: dict[str, str]) -> None:
    shown: dict[str, Any] = cli_json(home, 'runs', 'show', two_runs['crashed'], '--json')
    story = {'steps', 'duration', 'log_path', 'metrics', 'attempt_history', 'timeline'}
    assert set(shown) == RUN_COLUMNS | story
    assert shown['id'] == two_runs['crashed']
    assert shown['status'] == 'crashed'
    steps = shown['steps']
    assert [s['name'] for s in steps] == ['prepare', 'store', 'finalize']
    for index, step in enumerate(steps):
        assert set(step) == STEP_COLUMNS | {'start_offset', 'skip_reason', 'rollback'}
        assert step['index'] == index
    # the log tells how it ended: its one attempt has no end, the store step was cut off
    assert [(a['number'], a['outcome']) for a in shown['attempt_history']] == [(1, 'died')]
    assert [(s['step'], s['status']) for s in shown['timeline']] == [
        ('prepare', 'succeeded'),
        ('store', 'interrupted'),
    ]
    assert shown['log_path'].endswith(f'{two_runs["crashed"]}.jsonl')
    prepare, store, finalize = steps
    assert (prepare['status'], prepare['data'], prepare['has_snapshot']) == (
        'succeeded',
        {'count': 4},
        True,
    )
    assert prepare['weight'] == 1.0 and prepare['duration'] >= 0
    assert (store['status'], store['attempts'], store['ended_at'], store['data']) == (
        'started',
        1,
        None,
        None,
    )
    assert (finalize['status'], finalize['attempts'], finalize['started_at']) == (
        'pending',
        0,
        None,
    )

    done = cli_json(home, 'runs', 'show', two_runs['succeeded'], '--json')
    assert {s['status'] for s in done['steps']} == {'succeeded'}
    assert done['steps'][1]['rollback_data']['ids'] and done['steps'][1]['data'] == {'stored': 4}

    text = run_cli(home, 'runs', 'show', two_runs['crashed'])
    assert text.returncode == 0, text.stderr
    assert 'crashed' in text.stdout and 'store' in text.stdout


def test_an_unknown_status_is_one_line_exit_2(home: Path) -> None:
    line = one_line_error(run_cli(home, 'runs', 'list', '--status', 'bogus'))
    assert "'bogus'" in line
    for status in RUN_STATUSES:
        assert status in line  # says which statuses there are


def test_an_empty_journal_lists_nothing(home: Path) -> None:
    assert cli_json(home, 'runs', 'list', '--json') == []
    assert cli_json(home, 'runs', 'list', '--status', 'crashed', '--json') == []
