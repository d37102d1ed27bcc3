"""The storage index is a versioned schema (``synapse_sdk.db``): a file that is not
an index, or an index of a newer version, is refused in one line and left alone."""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
from pathlib import Path

import pytest

from synapse_sdk.clients import ClientError, LocalBackendClient, StorageIndexError
from synapse_sdk.clients._index import index_schema
from synapse_sdk.db import Schema, open_database
from synapse_sdk.errors import ErrorKind


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / 'storage'


def index_of(root: Path) -> Path:
    return root / 'index.db'


def source(tmp_path: Path) -> Path:
    path = tmp_path / 'a.txt'
    path.write_bytes(b'abc')
    return path


def peek(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_new_index_gets_version_3_in_wal_mode(root: Path, tmp_path: Path) -> None:
    file_id = LocalBackendClient(root).upload_file(source(tmp_path))
    assert peek(index_of(root), 'PRAGMA user_version') == [(3,)]
    assert peek(index_of(root), 'PRAGMA journal_mode') == [('wal',)]
    assert LocalBackendClient(root).get_file(file_id)['name'] == 'a.txt'  # opened again


def test_an_index_of_a_newer_version_is_refused(root: Path, tmp_path: Path) -> None:
    LocalBackendClient(root).upload_file(source(tmp_path))
    peek(index_of(root), 'PRAGMA user_version = 7')

    with pytest.raises(StorageIndexError) as caught:
        LocalBackendClient(root).list_files()
    message = str(caught.value)
    assert str(index_of(root)) in message
    assert 'newer synapse-sdk (storage index schema 7; this one reads up to 3)' in message
    assert 'upgrade synapse-sdk' in message
    assert isinstance(caught.value, ClientError)
    assert caught.value.kind is ErrorKind.BAD_INPUT  # the file is at fault
    assert peek(index_of(root), 'PRAGMA user_version') == [(7,)]


VERSION_1 = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    blob TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL CHECK (size >= 0),
    checksum TEXT NOT NULL,
    created_at TEXT NOT NULL,
    key TEXT UNIQUE
);
INSERT INTO files (id, name, blob, size, checksum, created_at, key)
    VALUES (3, 'old.txt', '0123456789abcdef0123456789abcdef', 3, 'x', '2024-01-01', 'k');
UPDATE sqlite_sequence SET seq = 9 WHERE name = 'files';
PRAGMA user_version = 1;
"""


def test_an_index_of_version_1_is_migrated_and_keeps_its_files(root: Path, tmp_path: Path) -> None:
    root.mkdir()
    conn = sqlite3.connect(index_of(root))
    conn.executescript(VERSION_1)
    conn.close()

    client = LocalBackendClient(root)
    assert [(f['id'], f['name']) for f in client.list_files()] == [(3, 'old.txt')]
    assert client.find_file('k') == 3
    assert peek(index_of(root), 'PRAGMA user_version') == [(3,)]
    assert peek(index_of(root), 'SELECT count(*) FROM partial') == [(0,)]
    assert client.for_run('r').discard_partial('r') == []
    assert client.upload_file(source(tmp_path)) == 10  # ids 4..9 were deleted: never again


def test_a_foreign_sqlite_database_is_refused_and_left_alone(root: Path, tmp_path: Path) -> None:
    root.mkdir()
    conn = sqlite3.connect(index_of(root))
    conn.execute('CREATE TABLE recipes (name TEXT)')
    conn.commit()
    conn.close()

    with pytest.raises(StorageIndexError, match='is an SQLite database but not a storage index'):
        LocalBackendClient(root).upload_file(source(tmp_path))
    assert peek(index_of(root), "SELECT name FROM sqlite_master WHERE type = 'table'") == [
        ('recipes',)
    ]
    assert not any((root / 'blobs').iterdir())  # refused before a blob was written


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(
    root: Path, tmp_path: Path
) -> None:
    root.mkdir()
    garbage = b'not an index at all\n' * 300
    index_of(root).write_bytes(garbage)

    with pytest.raises(StorageIndexError) as caught:
        LocalBackendClient(root).upload_file(source(tmp_path))
    assert f'{index_of(root)} is not an SQLite database' in str(caught.value)
    assert 'move the file aside' in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert index_of(root).read_bytes() == garbage


def test_the_refusal_crosses_process_boundaries(root: Path) -> None:
    root.mkdir()
    index_of(root).write_bytes(b'garbage' * 1000)
    with pytest.raises(StorageIndexError) as caught:
        LocalBackendClient(root).list_files()
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is StorageIndexError
    assert str(copy) == str(caught.value)


# what version 2 (#11) created, on each database
VERSION_2 = {
    'sqlite': """
CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    blob TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL CHECK (size >= 0),
    checksum TEXT NOT NULL,
    created_at TEXT NOT NULL,
    key TEXT UNIQUE
)""",
    'postgresql': """
CREATE TABLE files (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    blob TEXT NOT NULL UNIQUE,
    size BIGINT NOT NULL CHECK (size >= 0),
    checksum TEXT NOT NULL,
    created_at TEXT NOT NULL,
    key BYTEA UNIQUE
)""",
}
PARTIAL_2 = """;
CREATE TABLE partial (
    token TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE INDEX partial_by_run ON partial (run_id)
"""


def test_an_index_of_version_2_is_migrated_keeping_files_and_announcements(
    index_database: str, root: Path, tmp_path: Path
) -> None:
    """Version 3 adds the store column (one index, several storages), on SQLite and on
    PostgreSQL; the files stay, and so do a killed run's announcements."""
    dialect = 'sqlite' if index_database == 'sqlite' else 'postgresql'
    version_2 = Schema(
        name='storage index',
        version=2,
        tables={dialect: VERSION_2[dialect] + PARTIAL_2},
        unusable_error=StorageIndexError,
        damaged_error=StorageIndexError,
    )
    root.mkdir()
    where = index_of(root) if dialect == 'sqlite' else index_database
    old = open_database(where, version_2).connect()
    blob, killed = 'a' * 32, 'b' * 32
    key = 'k' if dialect == 'sqlite' else b'k'  # as version 2 kept keys
    with old.transaction():
        old.execute(
            'INSERT INTO files (id, name, blob, size, checksum, created_at, key)'
            ' VALUES (?, ?, ?, ?, ?, ?, ?)',
            (3, 'a.txt', blob, 3, hashlib.sha256(b'abc').hexdigest(), '2024-01-01', key),
        )
        old.execute("INSERT INTO partial VALUES (?, 'r', '2024-01-01')", (killed,))
    old.close()
    (root / 'blobs').mkdir()
    (root / 'blobs' / blob).write_bytes(b'abc')
    (root / 'blobs' / killed).write_bytes(b'stored by r, never indexed')

    client = LocalBackendClient(root)
    assert [(f['id'], f['name']) for f in client.list_files()] == [(3, 'a.txt')]
    assert client.find_file('k') == 3
    assert client.download_file(3, tmp_path / 'back.txt').read_bytes() == b'abc'
    assert client.for_run('r').discard_partial('r') == ['blobs/' + killed]
    assert sorted(p.name for p in (root / 'blobs').iterdir()) == [blob]
    assert open_database(where, index_schema()).version() == 3
