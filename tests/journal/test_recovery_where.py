"""Recovery acts where the run acted, whatever the caller's directory (#11 items 1, 2).

The test plugin's ``export`` action is what a plugin author writes: params with
paths relative to where the run is started (``source_path='src'``,
``output_dir='out8'``); ``shard`` writes a shard per source file into
``out8`` and records each relative path before writing it; ``store`` uploads
the shards by key. The run is started in folder ``a/``; recovery is run from
other folders. It must undo (or finish) the run's work in ``a/``, and be
``rolled_back`` only if every rollback it needed succeeded.
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.execution import RecoveryError, rollback_run
from synapse_sdk.journal import Journal
from synapse_sdk.runtime import RuntimeContext

from .conftest import (
    assert_storage_holds_only_indexed_files,
    journal_run_ids,
    make_files,
    one_line_error,
    pre_store,
    run_cli,
    sha256,
    storage_snapshot,
    stored,
)

SHARDS = 4


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Folder ``a/``, holding the source files; the runs start here."""
    folder = tmp_path / 'a'
    make_files(folder / 'src', SHARDS, seed=3)
    return folder


@pytest.fixture
def before(home: Path, tmp_path: Path) -> dict[str, str]:
    """The storage, holding three unrelated files, byte for byte."""
    pre_store(home, tmp_path)
    return storage_snapshot(home)


def elsewhere(tmp_path: Path, name: str = 'elsewhere') -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return folder


def export(home: Path, workdir: Path, **env: str) -> tuple[int, str]:
    """``synapse plugin run export`` started in ``workdir`` (plugin given relatively)."""
    params = json.dumps({'source_path': 'src', 'output_dir': 'out8'})
    done = run_cli(
        home, 'plugin', 'run', 'export', '--path', '../plugin', '--params', params,
        cwd=workdir, **env,
    )  # fmt: skip
    (run_id,) = journal_run_ids(home)
    return done.returncode, run_id


def crashed_export(home: Path, workdir: Path, **env: str) -> str:
    code, run_id = export(home, workdir, **env)
    assert code == -signal.SIGKILL
    return run_id


def shards(workdir: Path) -> dict[str, str]:
    out = workdir / 'out8'
    return {p.name: sha256(p) for p in sorted(out.iterdir())} if out.exists() else {}


def expected_shards(workdir: Path) -> dict[str, str]:
    sources = sorted((workdir / 'src').iterdir())
    return {f'shard-{i:03d}.bin': sha256(p) for i, p in enumerate(sources)}


def run_state(home: Path, run_id: str) -> tuple[Any, dict[str, str]]:
    journal = Journal(home / 'runs.db')
    try:
        return journal.get_run(run_id), {s.name: s.status for s in journal.steps(run_id)}
    finally:
        journal.close()


def recover(home: Path, folder: Path, *args: str, **env: str) -> Any:
    done = run_cli(home, 'runs', *args, cwd=folder, **env)
    return done


def assert_undone(home: Path, workdir: Path, before: dict[str, str]) -> None:
    assert shards(workdir) == {}, 'shards left behind'
    assert not (workdir / 'out8').exists()
    assert storage_snapshot(home) == before


# ------------------------------------------------------------------ item 1


def test_the_journal_records_where_the_run_ran(
    home: Path, plugin_dir: Path, workdir: Path, before: dict[str, str]
) -> None:
    code, run_id = export(home, workdir)
    assert code == 0
    run, _ = run_state(home, run_id)
    assert run.cwd == str(workdir)
    assert run.plugin_path == str(plugin_dir)  # given as ../plugin: recorded absolute
    assert run.plugin == 'journal_test_plugin'  # the code in config.yaml
    assert run.storage == (home / 'storage').as_uri()  # a URL, no credentials to hide here
    assert run.host == socket.gethostname()


def test_rollback_from_another_folder_undoes_the_work_in_the_runs_folder(
    home: Path, plugin_dir: Path, workdir: Path, tmp_path: Path, before: dict[str, str]
) -> None:
    run_id = crashed_export(home, workdir, JT_CRASH_IN='finalize')
    assert shards(workdir) == expected_shards(workdir)
    assert len(stored(home)) == 3 + SHARDS

    done = recover(home, tmp_path, 'rollback', run_id)  # from the folder above a/
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report['status'] == 'rolled_back'
    assert report['errors'] == []
    assert_undone(home, workdir, before)
    assert run_state(home, run_id)[0].status == 'rolled_back'


def test_resume_from_another_folder_finishes_the_run_in_its_folder(
    home: Path, plugin_dir: Path, workdir: Path, tmp_path: Path, before: dict[str, str]
) -> None:
    run_id = crashed_export(home, workdir, JT_CRASH_AFTER='2')  # two shards stored

    done = recover(home, elsewhere(tmp_path), 'resume', run_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['success'] is True
    assert shards(workdir) == expected_shards(workdir)
    assert not (elsewhere(tmp_path) / 'out8').exists()
    names = sorted(name for _, name, _ in stored(home)[3:])
    assert names == sorted(expected_shards(workdir))  # each shard stored once
    assert_storage_holds_only_indexed_files(home)
    assert run_state(home, run_id)[0].status == 'succeeded'


@pytest.mark.parametrize('command', ['rollback', 'resume'])
def test_a_run_whose_folder_is_gone_is_refused_in_one_line_and_left_as_it_is(
    home: Path,
    plugin_dir: Path,
    workdir: Path,
    tmp_path: Path,
    before: dict[str, str],
    command: str,
) -> None:
    run_id = crashed_export(home, workdir, JT_CRASH_IN='finalize')
    journaled = run_state(home, run_id)
    storage = storage_snapshot(home)
    moved = workdir.rename(tmp_path / 'a-moved')

    line = one_line_error(recover(home, tmp_path, command, run_id))
    assert f'working directory {workdir} is gone' in line
    assert 'nothing was changed' in line
    assert run_state(home, run_id) == journaled  # not even claimed
    assert storage_snapshot(home) == storage
    assert shards(moved) == expected_shards(moved)

    moved.rename(workdir)  # back: now it can be undone
    done = recover(home, tmp_path, 'rollback', run_id)
    assert done.returncode == 0, done.stderr
    assert_undone(home, workdir, before)


def test_recovery_from_python_runs_in_the_runs_folder_and_comes_back(
    home: Path,
    plugin_dir: Path,
    workdir: Path,
    tmp_path: Path,
    before: dict[str, str],
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id = crashed_export(home, workdir, JT_CRASH_IN='finalize')
    here = elsewhere(tmp_path)
    monkeypatch.chdir(here)

    other = RuntimeContext(logger=[], client=LocalBackendClient(tmp_path / 'other-storage'))
    with pytest.raises(RecoveryError, match='ran on the storage .* but this one is'):
        rollback_run(journal, run_id, other)  # another storage: refused, unchanged
    assert journal.get_run(run_id).status == 'crashed'
    assert shards(workdir) == expected_shards(workdir)

    report = rollback_run(journal, run_id, RuntimeContext(logger=[]))
    assert report['status'] == 'rolled_back'
    assert_undone(home, workdir, before)
    assert Path.cwd() == here  # the caller's directory is back


# ------------------------------------------------------------------ item 2


def test_a_rollback_that_fails_from_another_folder_stays_retryable(
    home: Path, plugin_dir: Path, workdir: Path, tmp_path: Path, before: dict[str, str]
) -> None:
    run_id = crashed_export(home, workdir, JT_CRASH_IN='finalize')

    failed = recover(home, elsewhere(tmp_path), 'rollback', run_id, JT_FAIL_IN='store.rollback')
    assert failed.returncode == 1
    report = json.loads(failed.stdout)
    assert report['status'] == 'rollback_failed'
    assert report['errors'] == [
        "rollback of step 'store' failed: RuntimeError: store.rollback failed on purpose"
    ]
    run, steps = run_state(home, run_id)
    assert run.status == 'rollback_failed'
    assert steps['store'] == 'rollback_failed'
    assert shards(workdir) == {}  # the other rollbacks did their work, in a/
    assert len(stored(home)) == 3 + SHARDS

    again = recover(home, elsewhere(tmp_path, 'third'), 'rollback', run_id)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)['rolled_back'] == ['store']  # exactly what was left
    assert_undone(home, workdir, before)
    assert run_state(home, run_id)[0].status == 'rolled_back'


def test_a_resume_whose_undoing_of_the_cut_off_step_fails_stays_retryable(
    home: Path, plugin_dir: Path, workdir: Path, tmp_path: Path, before: dict[str, str]
) -> None:
    run_id = crashed_export(home, workdir, JT_CRASH_AFTER='2')

    failed = recover(home, elsewhere(tmp_path), 'resume', run_id, JT_FAIL_IN='store.rollback')
    assert failed.returncode == 1
    assert 'cannot resume' in failed.stderr
    assert 'Rollback completed' not in failed.stderr
    run, steps = run_state(home, run_id)
    assert run.status == 'rollback_failed'
    assert steps['store'] == 'rollback_failed'

    done = recover(home, elsewhere(tmp_path, 'third'), 'rollback', run_id)
    assert done.returncode == 0, done.stderr
    assert_undone(home, workdir, before)
    assert run_state(home, run_id)[0].status == 'rolled_back'


def test_a_resume_whose_rerun_fails_and_whose_rollback_fails_stays_retryable(
    home: Path, plugin_dir: Path, workdir: Path, tmp_path: Path, before: dict[str, str]
) -> None:
    """Resumed at ``finalize``, which fails; undoing the reused ``shard`` fails too."""
    run_id = crashed_export(home, workdir, JT_CRASH_IN='finalize')

    failed = recover(
        home, elsewhere(tmp_path), 'resume', run_id, JT_FAIL_IN='finalize,shard.rollback'
    )
    assert failed.returncode == 1
    assert 'Rollback completed' not in failed.stderr
    run, steps = run_state(home, run_id)
    assert run.status == 'rollback_failed'
    assert steps['shard'] == 'rollback_failed'
    assert shards(workdir) == expected_shards(workdir)  # what could not be undone stands
    assert len(stored(home)) == 3  # the reused 'store' was undone, in the right storage

    done = recover(home, elsewhere(tmp_path, 'third'), 'rollback', run_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['rolled_back'] == ['shard']
    assert_undone(home, workdir, before)
    assert run_state(home, run_id)[0].status == 'rolled_back'


REPORTED = (
    "rollback of step 'store' did not undo everything: the backend refused to delete the files"
)


def test_a_rollback_that_says_it_could_not_undo_its_work_leaves_the_run_rollback_failed(
    home: Path, plugin_dir: Path, workdir: Path, tmp_path: Path, before: dict[str, str]
) -> None:
    """The spec's pattern: a rollback that cannot undo something appends to
    ``context.errors`` and returns. In the run itself, and in a recovery."""
    code, run_id = export(home, workdir, JT_FAIL_IN='finalize', JT_REPORT_IN='store.rollback')
    assert code == 1
    run, steps = run_state(home, run_id)
    assert run.status == 'rollback_failed'
    assert run.error is not None and "Step 'finalize' failed" in run.error  # the cause stays
    assert steps['store'] == 'rollback_failed'
    assert len(stored(home)) == 3 + SHARDS  # not undone, as it said

    failed = recover(home, elsewhere(tmp_path), 'rollback', run_id, JT_REPORT_IN='store.rollback')
    assert failed.returncode == 1
    assert json.loads(failed.stdout)['errors'] == [REPORTED]
    assert run_state(home, run_id)[0].status == 'rollback_failed'
    assert run_state(home, run_id)[1]['store'] == 'rollback_failed'

    done = recover(home, elsewhere(tmp_path), 'rollback', run_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['rolled_back'] == ['store']
    assert_undone(home, workdir, before)
    assert run_state(home, run_id)[0].status == 'rolled_back'
