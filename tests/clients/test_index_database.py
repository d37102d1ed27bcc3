"""The storage index is a versioned schema (``synapse_sdk.db``): a file that is not
an index, or an index of a newer version, is refused in one line and left alone."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import pytest

from synapse_sdk.clients import ClientError, LocalBackendClient, StorageIndexError
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


def test_a_new_index_gets_version_2_in_wal_mode(root: Path, tmp_path: Path) -> None:
    file_id = LocalBackendClient(root).upload_file(source(tmp_path))
    assert peek(index_of(root), 'PRAGMA user_version') == [(2,)]
    assert peek(index_of(root), 'PRAGMA journal_mode') == [('wal',)]
    assert LocalBackendClient(root).get_file(file_id)['name'] == 'a.txt'  # opened again


def test_an_index_of_a_newer_version_is_refused(root: Path, tmp_path: Path) -> None:
    LocalBackendClient(root).upload_file(source(tmp_path))
    peek(index_of(root), 'PRAGMA user_version = 7')

    with pytest.raises(StorageIndexError) as caught:
        LocalBackendClient(root).list_files()
    message = str(caught.value)
    assert str(index_of(root)) in message
    assert 'newer synapse-sdk (storage index schema 7; this one reads up to 2)' in message
    assert 'upgrade synapse-sdk' in message
    assert isinstance(caught.value, ClientError)
    assert caught.value.kind is ErrorKind.BAD_INPUT  # the file is at fault
    assert peek(index_of(root), 'PRAGMA user_version') == [(7,)]


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
"""


def test_an_index_of_version_1_is_migrated_keeping_its_files_and_ids(
    root: Path, tmp_path: Path
) -> None:
    """Version 2 adds the store column (one index, several storages). The files of a
    version-1 index stay, and a deleted file's id is never given to a new one."""
    import hashlib

    (root / 'blobs').mkdir(parents=True)
    blob = 'a' * 32
    (root / 'blobs' / blob).write_bytes(b'abc')
    conn = sqlite3.connect(index_of(root))
    conn.executescript(VERSION_1)
    conn.execute(
        'INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)',
        (3, 'a.txt', blob, 3, hashlib.sha256(b'abc').hexdigest(), '2024-01-01T00:00:00', 'k'),
    )
    conn.execute("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'files'")  # 4..9 deleted
    conn.execute('PRAGMA user_version = 1')
    conn.commit()
    conn.close()

    client = LocalBackendClient(root)
    assert [(f['id'], f['name']) for f in client.list_files()] == [(3, 'a.txt')]
    assert client.find_file('k') == 3
    assert client.download_file(3, tmp_path / 'back.txt').read_bytes() == b'abc'
    assert client.upload_file(source(tmp_path)) == 10
    assert peek(index_of(root), 'PRAGMA user_version') == [(2,)]
    assert peek(index_of(root), "SELECT seq FROM sqlite_sequence WHERE name = 'files'") == [(10,)]
