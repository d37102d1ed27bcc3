"""The journal records where a run stored its files (a URL without credentials), and
recovery acts on that storage whatever the caller's SYNAPSE_STORAGE says."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from synapse_sdk.clients import open_storage
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.steps import StepResult
from synapse_sdk.testing import FakeBackend, FunctionStep

from .conftest import dispatch, journal_run_ids, make_action, make_files, run_cli


def store_then_fail(source: Path) -> type[Any]:
    def store(context: Any) -> StepResult:
        key = f'{context.runtime_ctx.run_id}:a'
        context.append_rollback('keys', key)
        context.client.upload_file(source, key=key)
        return StepResult()

    def undo(context: Any, result: StepResult) -> None:
        for key in result.rollback_data.get('keys', []):
            file_id = context.client.find_file(key)
            if file_id is not None:
                context.client.delete_file(file_id)

    def fail(context: Any) -> StepResult:
        raise RuntimeError('later step failed')

    return make_action(
        FunctionStep('store', execute=store, rollback=undo), FunctionStep('fail', execute=fail)
    )


def test_a_run_records_its_storage_url(journal: Journal, tmp_path: Path) -> None:
    source = tmp_path / 'a.txt'
    source.write_text('a')
    url = f'memory://{secrets.token_hex(4)}/runs'
    done = dispatch(store_then_fail(source), journal, client=open_storage(url))
    assert isinstance(done.error, RuntimeError)
    assert journal.get_run(done.run_id).storage == url
    fake = dispatch(store_then_fail(source), journal, client=FakeBackend())
    assert journal.get_run(fake.run_id).storage is None  # a client that names no storage


def test_recovery_acts_on_the_runs_storage_not_the_callers(
    home: Path, plugin_dir: Path, tmp_path: Path
) -> None:
    """Killed after storing two files in folder A; rolled back from a shell whose
    SYNAPSE_STORAGE names folder B: A is emptied (its partial uploads too), B untouched."""
    source = tmp_path / 'source'
    make_files(source, 4, seed=5)
    ran_in, other = tmp_path / 'A', tmp_path / 'B'
    params = json.dumps({'source_path': str(source)})
    killed = run_cli(
        home, 'plugin', 'run', 'store', '--path', plugin_dir, '--params', params,
        '--storage', str(ran_in), JT_CRASH_AFTER='2',
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    (run_id,) = journal_run_ids(home)
    assert Journal(home / 'runs.db').get_run(run_id).storage == f'file://{ran_in}'
    # as if killed between storing and indexing: announced, stored, never indexed
    open_storage(ran_in)._idx.announce('c' * 32, run_id)
    (ran_in / 'blobs' / ('c' * 32)).write_bytes(b'half-written')
    assert len(open_storage(ran_in).list_files()) == 2

    done = run_cli(home, 'runs', 'rollback', run_id, SYNAPSE_STORAGE=str(other))
    assert done.returncode == 0, done.stderr
    assert open_storage(ran_in).list_files() == []
    assert list((ran_in / 'blobs').iterdir()) == []  # the leftover went with the rest
    assert not other.exists()
