"""What a plugin author relies on, end to end, across the layers.

A half-finished upload cleaned up to the last blob; idempotent keys under
threads and processes; an interrupted copy leaving nothing; plugins with
same-named modules kept apart; config and params errors that name what to fix;
plain-mode runs journaled with their cause.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from synapse_sdk.clients import LocalBackendClient, SourceFileError
from synapse_sdk.execution import run_action
from synapse_sdk.journal import Journal
from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.actions import ParamsValidationError
from synapse_sdk.plugins.actions.upload import UploadContext
from synapse_sdk.plugins.steps import (
    BaseStep,
    StepExecutionError,
    StepRegistry,
    StepResult,
)
from synapse_sdk.runtime import MemoryLogger, RuntimeContext
from synapse_sdk.testing import (
    RecordingRuntime,
)


@pytest.fixture(autouse=True)
def _isolated_synapse_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('SYNAPSE_HOME', str(tmp_path / 'synapse_home'))


class NoParams(BaseModel):
    pass


class FilesParams(BaseModel):
    paths: list[str]


class UploadAll(BaseStep[UploadContext]):
    name = 'upload_files'
    progress_weight = 1.0

    def execute(self, context: UploadContext) -> StepResult:
        paths = context.params['paths']
        for i, path in enumerate(paths, 1):
            context.append_rollback('file_ids', context.client.upload_file(path))
            context.set_progress(i, len(paths))
        return StepResult(data={'count': len(paths)})

    def rollback(self, context: UploadContext, result: StepResult) -> None:
        for file_id in result.rollback_data.get('file_ids', []):
            context.client.delete_file(file_id)


class UploadFiles(BaseUploadAction[FilesParams]):
    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(UploadAll())


def test_half_finished_upload_to_the_local_backend_is_cleaned_up(tmp_path: Path) -> None:
    """The third of four files is missing: the two stored ones are deleted, nothing is
    left under the storage root, and the error names the step, the cause and the file,
    with the SourceFileError chained and the rollback noted."""
    sources = []
    for name in ('a.txt', 'b.txt', 'missing.txt', 'd.txt'):
        path = tmp_path / 'src' / name
        sources.append(str(path))
        if name != 'missing.txt':
            path.parent.mkdir(exist_ok=True)
            path.write_text(name, encoding='utf-8')
    storage = tmp_path / 'storage'
    memory = MemoryLogger()
    runtime = RuntimeContext(logger=memory, client=LocalBackendClient(storage))
    with pytest.raises(StepExecutionError) as caught:
        UploadFiles.dispatch({'paths': sources}, runtime)
    error = caught.value
    assert str(error).startswith("Step 'upload_files' failed: SourceFileError: ")
    assert 'missing.txt' in str(error) and 'no such file' in str(error)
    assert isinstance(error.__cause__, SourceFileError)
    assert error.__notes__ == ['Rolled back: upload_files (newest first).']
    assert LocalBackendClient(storage).list_files() == []
    leftovers = {p.name for p in storage.iterdir()}
    assert leftovers <= {'blobs', 'index.db', 'index.db-wal', 'index.db-shm'}, leftovers
    assert list((storage / 'blobs').iterdir()) == []
    assert ('rollback_end', 'upload_files') in memory.lifecycle
    assert memory.progress_of('overall') == [25.0, 50.0]  # never 100 for a failed run


def test_same_key_uploaded_from_many_threads_is_stored_once(tmp_path: Path) -> None:
    source = tmp_path / 'a.bin'
    source.write_bytes(b'x' * 10_000)
    client = LocalBackendClient(tmp_path / 'storage')
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: client.upload_file(source, key='batch-1/a.bin'), range(32)))
    assert len(set(ids)) == 1
    assert [f['id'] for f in client.list_files()] == ids[:1]
    assert len(list((tmp_path / 'storage' / 'blobs').iterdir())) == 1  # losers' blobs removed
    assert [p for p in (tmp_path / 'storage').iterdir() if p.name.endswith('.tmp')] == []


def _upload_keyed(root: str, source: str) -> int:
    return LocalBackendClient(root).upload_file(source, key='shared-key')


def test_same_key_uploaded_from_many_processes_is_stored_once(tmp_path: Path) -> None:
    source = tmp_path / 'a.bin'
    source.write_bytes(b'y' * 50_000)
    root = str(tmp_path / 'storage')
    import multiprocessing

    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context('fork')) as pool:
        ids = list(pool.map(_upload_keyed, [root] * 12, [str(source)] * 12))
    assert len(set(ids)) == 1
    assert len(LocalBackendClient(root).list_files()) == 1
    assert len(list((tmp_path / 'storage' / 'blobs').iterdir())) == 1


def test_keyed_upload_returns_the_stored_id_even_when_the_source_is_gone(tmp_path: Path) -> None:
    """What makes a resumed upload step idempotent: the key is enough."""
    source = tmp_path / 'a.txt'
    source.write_text('a', encoding='utf-8')
    client = LocalBackendClient(tmp_path / 'storage')
    file_id = client.upload_file(source, key='k')
    source.unlink()
    assert client.upload_file(source, key='k') == file_id
    assert client.find_file('k') == file_id
    with pytest.raises(SourceFileError):
        client.upload_file(source, key='other')


def test_an_upload_interrupted_mid_copy_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or a step timeout's forced stop) while the blob is being written: no temp
    file, no blob, no row."""
    import synapse_sdk.clients._files as files

    source = tmp_path / 'a.bin'
    source.write_bytes(b'z' * 1000)
    client = LocalBackendClient(tmp_path / 'storage')
    client.list_files()  # the root exists

    def interrupted_copy(src: Any, out: Any) -> None:
        out.write(src.read(100))
        raise KeyboardInterrupt

    monkeypatch.setattr(files, '_copy', interrupted_copy)
    with pytest.raises(KeyboardInterrupt):
        client.upload_file(source)
    monkeypatch.undo()
    assert client.list_files() == []
    storage = tmp_path / 'storage'
    assert [p.name for p in storage.iterdir() if p.name.startswith('.upload-')] == []
    assert list((storage / 'blobs').iterdir()) == []


class PlainFails(BaseUploadAction[NoParams]):
    def execute(self) -> dict[str, Any]:
        raise ConnectionError('backend down')


class PlainWorks(BaseUploadAction[NoParams]):
    def execute(self) -> dict[str, Any]:
        return {'done': True}


def test_journaled_plain_mode_records_success_and_failure_with_cause(tmp_path: Path) -> None:
    journal = Journal(tmp_path / 'runs.db')
    ok = run_action(PlainWorks, {}, RecordingRuntime(run_id='ok'), journal=journal)
    assert ok == {'done': True}
    with pytest.raises(ConnectionError):
        run_action(PlainFails, {}, RecordingRuntime(run_id='ko'), journal=journal)
    assert journal.get_run('ok').status == 'succeeded'
    failed = journal.get_run('ko')
    assert failed.status == 'failed'
    assert failed.error == 'ConnectionError: backend down'


def test_params_errors_name_every_field_including_list_items_and_model_checks() -> None:
    class Item(BaseModel):
        size: int

    class Params(BaseModel):
        items: list[Item]
        mode: str = 'copy'

        def model_post_init(self, context: Any) -> None:
            if self.mode not in ('copy', 'move'):
                raise ValueError(f'mode must be copy or move, got {self.mode!r}')

    class Act(BaseUploadAction[Params]):
        def execute(self) -> dict[str, Any]:
            return {}

    with pytest.raises(ParamsValidationError) as caught:
        Act.validate_params({'items': [{'size': 1}, {'size': 'big'}, {}]})
    assert caught.value.problems == [
        (
            'items.1.size',
            "Input should be a valid integer, unable to parse string as an integer (got 'big')",
        ),
        ('items.2.size', 'Field required'),
    ]
    with pytest.raises(ParamsValidationError, match=r'\(params\): .*mode must be copy or move'):
        Act.validate_params({'items': [], 'mode': 'link'})
