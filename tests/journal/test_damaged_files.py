"""A journal or storage index whose header is valid but whose pages are damaged.

SQLite opens such a file and fails only when a damaged page is read
(``database disk image is malformed``). Every command says so in one line
naming the file and what to do, and leaves the file as it is.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from synapse_sdk.clients import ClientError, LocalBackendClient, StorageIndexError
from synapse_sdk.errors import ErrorKind
from synapse_sdk.journal import Journal, JournalDamagedError, JournalError

from .conftest import EXAMPLE, connect, make_files, one_line_error, run_cli

TARGET = 'the-damaged-run'
HEADER = b'SQLite format 3\x00'


def damage_pages_holding(path: Path, needle: bytes) -> list[int]:
    """Overwrite every page of the SQLite file at ``path`` that holds ``needle``, but the
    first (the header and the table definitions stay valid). Returns the page numbers."""
    conn = connect(path)
    try:
        conn.execute('PRAGMA wal_checkpoint(TRUNCATE)')  # everything into the main file
        (size,) = conn.execute('PRAGMA page_size').fetchone()
    finally:
        conn.close()
    data = bytearray(path.read_bytes())
    pages = [n for n in range(1, len(data) // size) if needle in data[n * size : (n + 1) * size]]
    assert pages, f'{needle!r} is on no page after the first'
    for n in pages:
        data[n * size : (n + 1) * size] = b'\xa5' * size
    path.write_bytes(bytes(data))
    assert path.read_bytes()[: len(HEADER)] == HEADER
    return [n + 1 for n in pages]


def assert_refused_as_damaged(line: str, path: Path) -> None:
    assert f'{path} is damaged (database disk image is malformed)' in line
    assert 'move the file aside' in line
    assert f'sqlite3 {path} .recover' in line


@pytest.fixture
def damaged_journal(home: Path) -> Path:
    """``runs.db`` with 120 finished runs; the pages holding run ``TARGET`` are damaged."""
    path = home / 'runs.db'
    journal = Journal(path)
    for i in range(120):
        run_id = TARGET if i == 60 else f'run-{i:03d}'
        journal.start_run(run_id, entrypoint='tests:x', params={'pad': 'x' * 200})
        journal.set_run_status(run_id, 'failed', 'boom')
    journal.close()
    damage_pages_holding(path, TARGET.encode())
    with pytest.raises(sqlite3.DatabaseError, match='malformed'):  # SQLite's own view
        sqlite3.connect(path).execute('SELECT * FROM runs').fetchall()
    return path


@pytest.mark.parametrize(
    'command',
    [
        ('runs', 'list'),
        ('runs', 'list', '--json'),
        ('runs', 'show', TARGET),
        ('runs', 'rollback', TARGET),
        ('runs', 'resume', TARGET),
    ],
    ids=' '.join,
)
def test_runs_commands_refuse_a_damaged_journal_in_one_line(
    home: Path, damaged_journal: Path, command: tuple[str, ...]
) -> None:
    before = damaged_journal.read_bytes()
    done = run_cli(home, *command)
    assert_refused_as_damaged(one_line_error(done), damaged_journal)
    assert done.stdout == ''
    assert damaged_journal.read_bytes() == before


def test_plugin_run_refuses_a_damaged_journal_before_running_anything(
    home: Path, tmp_path: Path, damaged_journal: Path
) -> None:
    before = damaged_journal.read_bytes()
    make_files(tmp_path / 'source', 2, seed=1)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    done = run_cli(home, 'plugin', 'run', 'upload', '--path', EXAMPLE, '--params', params)
    line = one_line_error(done)  # and no 'run <id> (journal: ...)' line before it
    assert_refused_as_damaged(line, damaged_journal)
    assert done.stdout == ''
    assert not (home / 'storage').exists()  # nothing was uploaded
    assert damaged_journal.read_bytes() == before


def test_the_journal_api_raises_its_own_error_chained_to_sqlites(damaged_journal: Path) -> None:
    before = damaged_journal.read_bytes()
    journal = Journal(damaged_journal)
    try:
        journal.db  # noqa: B018 - the header and the schema are fine: it opens
        with pytest.raises(JournalDamagedError) as caught:
            journal.get_run(TARGET)
        assert isinstance(caught.value, JournalError)
        assert caught.value.kind is ErrorKind.BAD_INPUT  # the file is at fault: exit 2
        assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
        assert_refused_as_damaged(str(caught.value), damaged_journal)
        with pytest.raises(JournalDamagedError):
            journal.check()
    finally:
        journal.close()
    assert damaged_journal.read_bytes() == before


def test_check_passes_on_a_sound_journal(journal: Journal) -> None:
    journal.start_run('fine', entrypoint='tests:x', params={})
    journal.check()
    assert journal.get_run('fine').status == 'running'


# --------------------------------------------------------------- the storage index


@pytest.fixture
def damaged_index(home: Path, tmp_path: Path) -> Path:
    """``storage/index.db`` with 150 files; the pages holding one file's key are damaged."""
    client = LocalBackendClient(home / 'storage')
    source = make_files(tmp_path / 'stored', 150, seed=7)
    for i, name in enumerate(sorted(source)):
        key = TARGET if i == 75 else f'key-{i:03d}-' + 'k' * 100
        client.upload_file(tmp_path / 'stored' / name, key=key)
    path = home / 'storage' / 'index.db'
    damage_pages_holding(path, TARGET.encode())
    return path


def test_a_damaged_index_is_refused_before_anything_is_written(
    home: Path, tmp_path: Path, damaged_index: Path
) -> None:
    before = damaged_index.read_bytes()
    blobs = sorted((home / 'storage' / 'blobs').iterdir())
    (new,) = make_files(tmp_path / 'new', 1, seed=8)
    client = LocalBackendClient(home / 'storage')  # a new process would start like this
    with pytest.raises(StorageIndexError) as caught:
        client.upload_file(tmp_path / 'new' / new)
    assert isinstance(caught.value, ClientError)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert_refused_as_damaged(str(caught.value), damaged_index)
    with pytest.raises(StorageIndexError, match='is damaged'):
        client.find_file('key-000-' + 'k' * 100)
    assert damaged_index.read_bytes() == before
    assert sorted((home / 'storage' / 'blobs').iterdir()) == blobs  # no new blob


def test_plugin_run_with_a_damaged_index_fails_its_step_and_names_the_file(
    home: Path, tmp_path: Path, damaged_index: Path
) -> None:
    """The index is reached only by a step's code: the run fails (exit 1) with the
    index's one-line reason, and the index is left as it is."""
    before = damaged_index.read_bytes()
    make_files(tmp_path / 'source', 2, seed=1)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    done = run_cli(home, 'plugin', 'run', 'upload', '--path', EXAMPLE, '--params', params)
    assert done.returncode == 1, done.stderr
    assert 'Traceback' not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1
    assert "Step 'upload_files' failed: StorageIndexError" in errors[0]
    assert_refused_as_damaged(errors[0], damaged_index)
    assert damaged_index.read_bytes() == before
