"""``synapse runs rollback`` / ``synapse runs resume`` as subprocesses, after real SIGKILLs.

The test plugin (``tests/journal/plugin``) kills its own process where the
environment says (``JT_CRASH_AFTER=N`` files into ``store``, ``JT_CRASH_IN=step``).
On SQLite, and on PostgreSQL (journal and storage index).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.journal import Journal

from .conftest import (
    assert_storage_holds_only_indexed_files,
    cli_json,
    default_location,
    journal_run_ids,
    make_files,
    one_line_error,
    pre_store,
    run_cli,
    storage_snapshot,
    stored,
    subprocess_env,
)

FILES = 12
pytestmark = pytest.mark.both_databases


@pytest.fixture
def source(tmp_path: Path) -> dict[str, str]:
    return make_files(tmp_path / 'source', FILES, seed=7)


@pytest.fixture
def before(home: Path, tmp_path: Path) -> list[tuple[int, str, str]]:
    """Three files already in the storage, unrelated to any run."""
    return pre_store(home, tmp_path)


def params(tmp_path: Path) -> str:
    return json.dumps(
        {'source_path': str(tmp_path / 'source'), 'trace_path': str(tmp_path / 'trace.txt')}
    )


def trace(tmp_path: Path) -> list[str]:
    path = tmp_path / 'trace.txt'
    return path.read_text().split() if path.exists() else []


def start_run(
    home: Path, plugin: Path, tmp_path: Path, action: str = 'store', **env: str
) -> tuple[int, str]:
    """``synapse plugin run`` with the crash switches in ``env``; (exit code, run id)."""
    done = run_cli(
        home, 'plugin', 'run', action, '--path', plugin, '--params', params(tmp_path), **env
    )
    ids = journal_run_ids(home)
    assert len(ids) == 1, (ids, done.stderr)
    return done.returncode, ids[0]


def crashed_run(home: Path, plugin: Path, tmp_path: Path, action: str = 'store', **env: str) -> str:
    code, run_id = start_run(home, plugin, tmp_path, action, **env)
    assert code == -signal.SIGKILL
    return run_id


def journal_state(home: Path, run_id: str) -> tuple[Any, dict[str, tuple[str, int]]]:
    journal = Journal(default_location(home))
    try:
        run = journal.get_run(run_id)
        steps = {s.name: (s.status, s.attempts) for s in journal.steps(run_id)}
    finally:
        journal.close()
    return run, steps


def assert_stored_once(
    home: Path, before: list[tuple[int, str, str]], source: dict[str, str]
) -> None:
    now = stored(home)
    assert now[: len(before)] == before  # the unrelated files are untouched, ids and all
    added = Counter((name, checksum) for _, name, checksum in now[len(before) :])
    assert added == Counter(source.items())  # every source file exactly once


# ------------------------------------------------------------------ rollback


def test_rollback_of_a_crashed_run_restores_the_storage_exactly(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    run_id = crashed_run(home, plugin_dir, tmp_path, JT_CRASH_AFTER='5')
    assert len(stored(home)) == len(before) + 5  # the crash left five files behind
    crash = journal_state(home, run_id)[0].error
    assert crash and 'died' in crash

    report = cli_json(home, 'runs', 'rollback', run_id)
    assert report == {
        'run_id': run_id,
        'status': 'rolled_back',
        'rolled_back': ['store', 'prepare'],
        'errors': [],
    }
    assert stored(home) == before
    run, steps = journal_state(home, run_id)
    assert run.status == 'rolled_back'
    assert run.ended_at is not None
    assert run.error == crash  # why it was undone is still on record
    assert steps == {
        'prepare': ('rolled_back', 1),
        'store': ('rolled_back', 1),
        'finalize': ('pending', 0),
    }

    # twice does no harm: exit 0, nothing rolled back, nothing changed
    again = cli_json(home, 'runs', 'rollback', run_id)
    assert again['rolled_back'] == []
    assert again['errors'] == []
    assert again['status'] == 'rolled_back'
    assert stored(home) == before
    assert journal_state(home, run_id)[0].status == 'rolled_back'


def test_rollback_of_a_run_killed_between_steps(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    run_id = crashed_run(home, plugin_dir, tmp_path, JT_CRASH_IN='finalize')
    assert len(stored(home)) == len(before) + FILES
    report = cli_json(home, 'runs', 'rollback', run_id)
    assert report['rolled_back'] == ['finalize', 'store', 'prepare']
    assert stored(home) == before
    assert journal_state(home, run_id)[0].status == 'rolled_back'


def test_rollback_of_a_crashed_run_whose_steps_never_started(
    home: Path, plugin_dir: Path, tmp_path: Path, before: list[Any]
) -> None:
    """Killed in the first step's can_skip(), before it executed.

    The journal announces a step as started ahead of its can_skip() (in the
    same commit as the previous step's end), so the first step reads
    ``started`` and the others ``pending``; its rollback runs with nothing
    recorded and undoes nothing. The run must not stay ``crashed`` (listed
    among the runs that need attention) forever.
    """
    run_id = crashed_run(home, plugin_dir, tmp_path, JT_CRASH_IN='prepare.can_skip')
    run, steps = journal_state(home, run_id)
    assert run.status == 'crashed'
    assert steps.pop('prepare') == ('started', 1)
    assert set(steps.values()) == {('pending', 0)}

    report = cli_json(home, 'runs', 'rollback', run_id)
    assert report['rolled_back'] == ['prepare']
    assert stored(home) == before
    assert report['status'] == 'rolled_back'
    assert journal_state(home, run_id)[0].status == 'rolled_back'


# ------------------------------------------------------------------ resume


def test_resume_runs_again_from_the_step_that_did_not_finish(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    run_id = crashed_run(home, plugin_dir, tmp_path, JT_CRASH_AFTER='5')
    assert trace(tmp_path) == ['prepare', 'store']

    result = cli_json(home, 'runs', 'resume', run_id)
    assert result['success'] is True
    assert result['run_id'] == run_id
    assert result['resumed_from'] == 'store'
    assert result['steps_reused'] == 1
    assert result['steps_executed'] == 2
    # 'prepare' ran once, in the first process: its file list came from the snapshot
    assert trace(tmp_path) == ['prepare', 'store', 'store', 'finalize']
    assert_stored_once(home, before, source)

    run, steps = journal_state(home, run_id)
    assert run.status == 'succeeded'
    assert run.progress == 100
    assert run.attempts == 2
    assert steps == {
        'prepare': ('reused', 1),
        'store': ('succeeded', 2),
        'finalize': ('succeeded', 1),
    }


def test_resume_after_a_kill_between_steps_reuses_all_finished_steps(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    run_id = crashed_run(home, plugin_dir, tmp_path, JT_CRASH_IN='finalize')
    result = cli_json(home, 'runs', 'resume', run_id)
    assert result['resumed_from'] == 'finalize'
    assert result['steps_reused'] == 2
    assert result['steps']['finalize'] == {'files': FILES}  # stored ids came from the snapshot
    assert trace(tmp_path) == ['prepare', 'store', 'finalize', 'finalize']
    assert_stored_once(home, before, source)
    run, steps = journal_state(home, run_id)
    assert run.status == 'succeeded'
    assert steps == {
        'prepare': ('reused', 1),
        'store': ('reused', 1),
        'finalize': ('succeeded', 2),
    }


def test_a_step_that_is_not_resumable_is_run_again_with_all_after_it(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    run_id = crashed_run(home, plugin_dir, tmp_path, 'store_volatile', JT_CRASH_AFTER='5')
    result = cli_json(home, 'runs', 'resume', run_id)
    assert result['resumed_from'] == 'prepare'
    assert result['steps_reused'] == 0
    assert trace(tmp_path) == ['prepare', 'store', 'prepare', 'store', 'finalize']
    assert_stored_once(home, before, source)
    run, steps = journal_state(home, run_id)
    assert run.status == 'succeeded'
    assert steps == {
        'prepare': ('succeeded', 2),
        'store': ('succeeded', 2),
        'finalize': ('succeeded', 1),
    }


def test_resume_of_a_failed_and_rolled_back_run(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    code, run_id = start_run(home, plugin_dir, tmp_path, JT_FAIL_IN='finalize')
    assert code == 1
    assert stored(home) == before  # the failure rolled everything back
    assert journal_state(home, run_id)[0].status == 'rolled_back'

    result = cli_json(home, 'runs', 'resume', run_id)
    assert result['success'] is True
    assert result['resumed_from'] == 'prepare'  # nothing of the first attempt stands
    assert_stored_once(home, before, source)
    assert journal_state(home, run_id)[0].status == 'succeeded'


KILL_ON_RUN_START = """\
import json, os, signal, sys
from synapse_sdk.execution import default_runtime, run_action
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.actions import ActionOrigin
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.plugins.steps import RunListener, RunStarted

class Kill(RunListener):
    def on_event(self, event):
        if isinstance(event, RunStarted):
            os.kill(os.getpid(), signal.SIGKILL)

folder, params = sys.argv[1], json.loads(sys.argv[2])
action = Plugin.load(folder).load_action('store')
run_action(action, params, default_runtime(console=False), journal=Journal(),
           origin=ActionOrigin(folder, 'store'), listeners=[Kill()])
"""


@pytest.mark.parametrize('command', ['resume', 'rollback'])
def test_recovery_of_a_run_killed_before_its_steps_were_journaled(
    home: Path,
    plugin_dir: Path,
    tmp_path: Path,
    source: dict[str, str],
    before: list[Any],
    command: str,
) -> None:
    """The run row is written, then (a moment later) the step rows: a kill in between.

    Here a listener ahead of the journal listener kills the process in
    ``RunStarted``. The run is ``crashed`` with no steps and nothing was
    done, so resume must simply run it, and rollback must mark it rolled back.
    """
    script = tmp_path / 'kill_on_run_start.py'
    script.write_text(KILL_ON_RUN_START, encoding='utf-8')
    done = subprocess.run(
        [sys.executable, str(script), str(plugin_dir), params(tmp_path)],
        env=subprocess_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    (run_id,) = journal_run_ids(home)
    run, steps = journal_state(home, run_id)
    assert run.status == 'crashed'
    assert steps == {}

    recovered = run_cli(home, 'runs', command, run_id)
    assert recovered.returncode == 0, recovered.stderr
    if command == 'resume':
        assert_stored_once(home, before, source)
        assert journal_state(home, run_id)[0].status == 'succeeded'
    else:
        assert stored(home) == before
        assert journal_state(home, run_id)[0].status == 'rolled_back'


# ------------------------------------------------------------------ retried steps


def test_a_retried_step_is_journaled_with_its_attempts(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    code, run_id = start_run(
        home, plugin_dir, tmp_path, 'store_retry', JT_FIRST_ATTEMPT_FAILS_AFTER='3'
    )
    assert code == 0
    assert_stored_once(home, before, source)  # the first attempt's three files were undone
    run, steps = journal_state(home, run_id)
    assert run.status == 'succeeded'
    assert steps['store'] == ('succeeded', 2)


def test_a_kill_while_a_failed_attempt_is_undone_can_still_be_rolled_back(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    """Attempt 1 of 'store' stores three files and fails; the process is killed while
    that attempt's partial work is being undone (before it is retried).

    The journal must still hold the three upload keys then: they may only be
    dropped once the attempt's rollback has finished.
    """
    run_id = crashed_run(
        home,
        plugin_dir,
        tmp_path,
        'store_retry',
        JT_FIRST_ATTEMPT_FAILS_AFTER='3',
        JT_CRASH_IN='store.rollback',
    )
    assert len(stored(home)) == len(before) + 3
    report = cli_json(home, 'runs', 'rollback', run_id)
    assert report['errors'] == []
    assert stored(home) == before, 'the first attempt left its files behind'
    assert journal_state(home, run_id)[0].status == 'rolled_back'


# ------------------------------------------------------------------ refusals


def test_an_unknown_run_id_is_one_line_exit_2(home: Path) -> None:
    for command in ('rollback', 'resume', 'show'):
        line = one_line_error(run_cli(home, 'runs', command, 'no-such-run'))
        assert "no run 'no-such-run'" in line


def test_a_succeeded_run_is_not_resumed_nor_rolled_back_without_finished(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    code, run_id = start_run(home, plugin_dir, tmp_path)
    assert code == 0
    for command in ('resume', 'rollback'):
        line = one_line_error(run_cli(home, 'runs', command, run_id))
        assert run_id in line
        assert 'succeeded' in line
    assert '--finished' in one_line_error(run_cli(home, 'runs', 'rollback', run_id))
    assert_stored_once(home, before, source)  # nothing was undone or redone
    assert trace(tmp_path) == ['prepare', 'store', 'finalize']
    assert journal_state(home, run_id)[0].status == 'succeeded'


def test_a_succeeded_run_is_rolled_back_with_finished_exactly_and_journaled(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    folder_before = storage_snapshot(home)
    code, run_id = start_run(home, plugin_dir, tmp_path)
    assert code == 0

    report = cli_json(home, 'runs', 'rollback', run_id, '--finished')
    assert report == {
        'run_id': run_id,
        'status': 'rolled_back',
        'rolled_back': ['finalize', 'store', 'prepare'],
        'errors': [],
    }
    assert storage_snapshot(home) == folder_before
    run, steps = journal_state(home, run_id)
    assert run.status == 'rolled_back'
    assert run.error == 'undone on request after it succeeded'
    assert run.attempts == 2
    assert set(steps.values()) == {('rolled_back', 1)}

    again = cli_json(home, 'runs', 'rollback', run_id, '--finished')  # harmless to repeat
    assert (again['status'], again['rolled_back']) == ('rolled_back', [])
    assert storage_snapshot(home) == folder_before


# ------------------------------------------------------------------ what recovery uses


def test_runs_show_gives_the_rollback_data_recovery_uses_for_a_step_cut_off(
    home: Path, plugin_dir: Path, tmp_path: Path, source: dict[str, str], before: list[Any]
) -> None:
    run_id = crashed_run(home, plugin_dir, tmp_path, JT_CRASH_AFTER='5')
    shown = {s['name']: s for s in cli_json(home, 'runs', 'show', run_id, '--json')['steps']}
    first_five = [f'{run_id}:{name}' for name in sorted(source)[:5]]
    assert shown['store']['status'] == 'started'
    assert shown['store']['rollback_data'] == {'keys': first_five}
    assert shown['prepare']['rollback_data'] == {}  # finished, recorded nothing
    assert shown['finalize']['rollback_data'] is None  # never ran

    cli_json(home, 'runs', 'rollback', run_id)  # and that is what undoes the five
    assert stored(home) == before


# ------------------------------------------------------------------ half-written uploads


@pytest.mark.sqlite_only  # compares the storage folder with its SQLite index file, byte for byte
@pytest.mark.parametrize('moment', ['writing', 'renamed'])
@pytest.mark.parametrize('command', ['rollback', 'resume'])
def test_an_upload_killed_halfway_leaves_nothing_after_recovery(
    home: Path,
    plugin_dir: Path,
    tmp_path: Path,
    source: dict[str, str],
    before: list[Any],
    moment: str,
    command: str,
) -> None:
    """Killed while the 4th file's temp file is half written, or once its blob is in
    place but not yet indexed: bytes no index row knows of, which recovery removes."""
    folder_before = storage_snapshot(home)
    run_id = crashed_run(home, plugin_dir, tmp_path, JT_KILL_IN_UPLOAD=f'3:{moment}')
    left = set(storage_snapshot(home)) - set(folder_before) - {'index.db:files', 'index.db:partial'}
    assert len(left) == 4, left  # three stored files and the half-written one
    assert len(stored(home)) == len(before) + 3

    cli_json(home, 'runs', command, run_id)
    if command == 'rollback':
        assert storage_snapshot(home) == folder_before
    else:
        assert_stored_once(home, before, source)
        assert_storage_holds_only_indexed_files(home)


def test_a_run_whose_process_is_alive_can_be_neither_resumed_nor_rolled_back(
    home: Path, journal: Journal
) -> None:
    # owned by this (live) test process
    journal.start_run('live-run', entrypoint='tests:nothing', params={})
    for command in ('resume', 'rollback'):
        line = one_line_error(run_cli(home, 'runs', command, 'live-run'))
        assert 'still running' in line
        assert str(journal.get_run('live-run').pid) in line
    assert journal.get_run('live-run').status == 'running'
