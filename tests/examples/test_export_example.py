"""The export example: manifest and copies of the stored files, skip and rollback."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from synapse_sdk.clients import FileInfo, LocalBackendClient
from synapse_sdk.plugins.actions import BaseAction, ExportContext, ParamsValidationError
from synapse_sdk.plugins.steps import RunEvent, RunListener, StepEnded
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / 'examples' / 'export'

SOURCES = {
    'labels/a.json': b'{"label": "cat"}\n',
    'labels/b.json': b'{"label": "dog"}\n',
    'images/img.ppm': b'P6\n1 1\n255\n\x00\x7f\xff',
    'other/a.json': b'{"label": "same name, other file"}\n',  # names need not be unique
}


@pytest.fixture
def export_action(load_example: Any) -> type[BaseAction[Any]]:
    return load_example('export', 'export')


def upload_sources(client: LocalBackendClient, root: Path) -> list[FileInfo]:
    for relative, content in SOURCES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        client.upload_file(path)
    return client.list_files()


@pytest.fixture
def stored(client: LocalBackendClient, tmp_path: Path) -> list[FileInfo]:
    return upload_sources(client, tmp_path / 'sources')


class StateCapture(RunListener):
    """Keeps the context's state as the last step left it, so a test can read it."""

    state: Mapping[str, Any] | None = None

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, StepEnded) and event.result.success:
            assert event.context_type == ExportContext.__name__
            self.state = event.context_state


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The manifest's rows with the types of the JSON lines form (CSV holds only text)."""
    text = path.read_text(encoding='utf-8')
    if path.suffix == '.jsonl':
        return [json.loads(line) for line in text.splitlines()]
    rows = list(csv.DictReader(text.splitlines()))
    for row in rows:
        row['id'] = int(row['id'])
        row['size'] = int(row['size'])
        row['exported_path'] = row['exported_path'] or None
    return rows


def identity(files: Sequence[FileInfo | dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(f['id'], f['name'], f['size'], f['checksum']) for f in files]


@pytest.mark.parametrize('fmt', ['jsonl', 'csv'])
def test_exports_a_manifest_and_identical_copies(
    export_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    memory_logger: MemoryLogger,
    stored: list[FileInfo],
    tmp_path: Path,
    fmt: str,
) -> None:
    out = tmp_path / 'out'
    capture = StateCapture()

    result = export_action.dispatch(
        {'output_dir': str(out), 'format': fmt}, runtime, listeners=[capture]
    )

    assert result['success'] is True
    assert result['steps']['write_manifest'] == {
        'manifest': str(out / f'manifest.{fmt}'),
        'format': fmt,
        'exported_count': len(stored),
    }
    rows = read_manifest(out / f'manifest.{fmt}')
    assert list(rows[0]) == ['id', 'name', 'size', 'checksum', 'exported_path']
    assert identity(rows) == identity(stored)
    sources = list(SOURCES.values())
    for row, info, source in zip(rows, stored, sources, strict=True):
        copy = out / row['exported_path']
        assert copy.parent == out / 'files'
        assert copy.read_bytes() == Path(info['path']).read_bytes() == source
    assert len({row['exported_path'] for row in rows}) == len(rows)  # a.json twice, no clash
    assert sorted(p.name for p in out.iterdir()) == ['files', f'manifest.{fmt}']
    assert len(list((out / 'files').iterdir())) == len(stored)

    assert capture.state is not None
    assert capture.state['exported_count'] == len(stored)
    assert len(capture.state['written_files']) == len(stored) + 1  # the copies and the manifest
    export_progress = memory_logger.progress_of('export')
    assert export_progress == [100.0 * i / len(stored) for i in range(1, len(stored) + 1)]
    assert memory_logger.progress_of('overall')[-1] == 100.0


def test_include_files_false_skips_the_copy(
    export_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    memory_logger: MemoryLogger,
    stored: list[FileInfo],
    tmp_path: Path,
) -> None:
    out = tmp_path / 'out'

    result = export_action.dispatch({'output_dir': str(out), 'include_files': False}, runtime)

    assert result['steps_skipped'] == 1
    assert 'copy_files' not in result['steps']
    assert ('step_skip', 'copy_files') in memory_logger.lifecycle
    assert sorted(p.name for p in out.iterdir()) == ['manifest.jsonl']
    rows = read_manifest(out / 'manifest.jsonl')
    assert identity(rows) == identity(stored)
    assert all(row['exported_path'] is None for row in rows)
    assert memory_logger.progress_of('overall')[-1] == 100.0


def test_name_pattern_selects_by_stored_name(
    export_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    stored: list[FileInfo],
    tmp_path: Path,
) -> None:
    out = tmp_path / 'out'

    result = export_action.dispatch(
        {'output_dir': str(out), 'format': 'csv', 'name_pattern': '*.json'}, runtime
    )

    assert result['steps']['fetch_results'] == {'matched': 3, 'stored': 4}
    rows = read_manifest(out / 'manifest.csv')
    assert identity(rows) == identity([f for f in stored if f['name'].endswith('.json')])
    assert len(list((out / 'files').iterdir())) == 3


@pytest.mark.parametrize(
    ('with_files', 'message'),
    [
        (True, "no stored file matches name_pattern '*.xyz' (4 file(s) in the backend)"),
        (False, 'the backend holds no files to export'),
    ],
)
def test_nothing_to_export_fails_clearly(
    export_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    client: LocalBackendClient,
    tmp_path: Path,
    with_files: bool,
    message: str,
) -> None:
    if with_files:
        upload_sources(client, tmp_path / 'sources')
    out = tmp_path / 'out'

    with pytest.raises(RuntimeError) as raised:
        export_action.dispatch({'output_dir': str(out), 'name_pattern': '*.xyz'}, runtime)

    assert str(raised.value) == f"Step 'fetch_results' failed: {message}"

    assert not out.exists()


def test_a_manifest_path_taken_by_a_folder_rolls_back_the_copies(
    export_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    memory_logger: MemoryLogger,
    stored: list[FileInfo],
    tmp_path: Path,
) -> None:
    out = tmp_path / 'out'
    (out / 'manifest.jsonl').mkdir(parents=True)

    with pytest.raises(RuntimeError, match=r"^Step 'write_manifest' failed: .* is not a file"):
        export_action.dispatch({'output_dir': str(out)}, runtime)

    assert sorted(p.name for p in out.iterdir()) == ['manifest.jsonl']  # files/ is gone
    assert list((out / 'manifest.jsonl').iterdir()) == []
    rollbacks = [name for event, name in memory_logger.lifecycle if event == 'rollback_start']
    assert rollbacks == ['write_manifest', 'copy_files', 'fetch_results']


def test_a_failure_while_writing_the_manifest_leaves_nothing_behind(
    export_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    stored: list[FileInfo],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class FullDisk:
        def __init__(self, handle: Any, fieldnames: Sequence[str]) -> None:
            self.handle = handle

        def writeheader(self) -> None:
            self.handle.write('id,name,size,checksum,exported_path\n')

        def writerows(self, rows: Any) -> None:
            raise OSError(28, 'No space left on device')

    module = sys.modules[export_action.__module__]
    monkeypatch.setattr(module, 'csv', SimpleNamespace(DictWriter=FullDisk))
    out = tmp_path / 'deep' / 'out'

    with pytest.raises(RuntimeError, match=r"^Step 'write_manifest' failed: OSError: .*No space"):
        export_action.dispatch({'output_dir': str(out), 'format': 'csv'}, runtime)

    assert not (tmp_path / 'deep').exists()  # copies, temp manifest and created folders: all gone


def test_a_failure_half_way_through_the_copy_removes_the_copies_made(
    export_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    client: LocalBackendClient,
    stored: list[FileInfo],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    download = client.download_file
    calls: list[int] = []

    def flaky_download(file_id: int, dest: Any) -> Path:
        calls.append(file_id)
        if len(calls) == 3:
            raise ConnectionError('backend went away')
        return download(file_id, dest)

    monkeypatch.setattr(client, 'download_file', flaky_download)
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'notes.txt').write_text('the user was here')

    with pytest.raises(RuntimeError, match=r"^Step 'copy_files' failed: ConnectionError"):
        export_action.dispatch({'output_dir': str(out)}, runtime)

    assert len(calls) == 3
    assert sorted(p.name for p in out.iterdir()) == ['notes.txt']


@pytest.mark.parametrize(
    ('params', 'fields'),
    [
        ({}, {'output_dir'}),
        (
            {'output_dir': 'x', 'format': 'xml', 'include_files': 'maybe'},
            {'format', 'include_files'},
        ),
    ],
)
def test_invalid_params_are_refused(
    export_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    params: dict[str, Any],
    fields: set[str],
) -> None:
    with pytest.raises(ParamsValidationError) as raised:
        export_action.dispatch(params, runtime)

    assert {where for where, _ in raised.value.problems} == fields


def test_the_cli_runs_the_example(run_cli: Any, synapse_home: Path, tmp_path: Path) -> None:
    stored = upload_sources(LocalBackendClient(synapse_home / 'storage'), tmp_path / 'sources')
    out = tmp_path / 'cli-out'
    params = json.dumps({'output_dir': str(out), 'format': 'csv'})

    proc = run_cli('plugin', 'run', 'export', '--path', str(EXAMPLE_DIR), '--params', params)

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result['success'] is True
    assert result['steps']['write_manifest']['exported_count'] == len(stored)
    assert identity(read_manifest(out / 'manifest.csv')) == identity(stored)
