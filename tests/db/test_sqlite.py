"""``synapse_sdk.db._sqlite``: the database code the journal and the storage index share."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from synapse_sdk.db import Schema, SQLiteConnection, SQLiteDatabase


class NotOurs(Exception):
    pass


class Broken(Exception):
    pass


TABLES = """
CREATE TABLE parents (id INTEGER PRIMARY KEY);
CREATE TABLE children (
    id        INTEGER PRIMARY KEY,
    parent_id INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED
)
"""


def schema(version: int = 1, migrations: dict[int, str] | None = None) -> Schema:
    return Schema(
        name='test store',
        version=version,
        tables={'sqlite': TABLES},
        migrations={'sqlite': migrations or {}},
        unusable_error=NotOurs,
        damaged_error=Broken,
    )


@pytest.fixture
def database(tmp_path: Path) -> SQLiteDatabase:
    return SQLiteDatabase(tmp_path / 'deep' / 'test.db', schema())


@pytest.fixture
def connection(database: SQLiteDatabase) -> Iterator[SQLiteConnection]:
    conn = database.connect()
    yield conn
    conn.close()


def test_the_first_connection_creates_the_file_and_the_schema(
    database: SQLiteDatabase, connection: SQLiteConnection
) -> None:
    assert database.path.is_file()
    assert connection.tables() == {'parents', 'children'}
    assert connection.schema_version('test store') == 1
    assert connection.fetchone('PRAGMA journal_mode') == ('wal',)
    assert connection.fetchone('PRAGMA foreign_keys') == (1,)
    assert connection.fetchone('PRAGMA synchronous') == (1,)  # NORMAL
    assert database.describe() == str(database.path)


def test_durable_means_synchronous_full(tmp_path: Path) -> None:
    conn = SQLiteDatabase(tmp_path / 'd.db', schema(), durable=True).connect()
    try:
        assert conn.fetchone('PRAGMA synchronous') == (2,)
    finally:
        conn.close()


def test_a_failed_transaction_leaves_nothing_and_the_connection_usable(
    connection: SQLiteConnection,
) -> None:
    with pytest.raises(RuntimeError, match='midway'), connection.transaction():
        connection.execute('INSERT INTO parents (id) VALUES (1)')
        raise RuntimeError('midway')
    assert connection.fetchall('SELECT id FROM parents') == []
    with connection.transaction() as tx:
        tx.execute('INSERT INTO parents (id) VALUES (2)')
    assert connection.fetchall('SELECT id FROM parents') == [(2,)]


def test_a_commit_that_fails_is_rolled_back_not_left_open(connection: SQLiteConnection) -> None:
    """A deferred foreign key is checked at COMMIT; SQLite then keeps the transaction
    open, which would make the connection's next BEGIN fail."""
    with pytest.raises(sqlite3.IntegrityError, match='FOREIGN KEY'), connection.transaction():
        connection.execute('INSERT INTO children (id, parent_id) VALUES (1, 99)')
    assert connection.fetchall('SELECT id FROM children') == []
    with connection.transaction():
        connection.execute('INSERT INTO parents (id) VALUES (99)')
        connection.execute('INSERT INTO children (id, parent_id) VALUES (1, 99)')
    assert connection.fetchall('SELECT id, parent_id FROM children') == [(1, 99)]


def test_other_errors_are_the_drivers_own(connection: SQLiteConnection) -> None:
    connection.execute('INSERT INTO parents (id) VALUES (1)')
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute('INSERT INTO parents (id) VALUES (1)')
    with pytest.raises(sqlite3.OperationalError, match='no such table'):
        connection.fetchall('SELECT * FROM missing')


def test_a_migration_runs_once_and_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / 'm.db'
    SQLiteDatabase(path, schema()).connect().close()

    upgraded = SQLiteDatabase(path, schema(2, {1: 'ALTER TABLE parents ADD COLUMN name TEXT'}))
    conn = upgraded.connect()
    try:
        assert conn.schema_version('test store') == 2
        conn.execute("INSERT INTO parents (id, name) VALUES (1, 'a')")
    finally:
        conn.close()

    with pytest.raises(
        NotOurs, match=r'newer synapse-sdk \(test store schema 2; this one reads up to 1\)'
    ):
        SQLiteDatabase(path, schema()).connect()


def test_a_file_that_is_not_a_database_is_refused_with_the_schemas_error(tmp_path: Path) -> None:
    path = tmp_path / 'x.db'
    path.write_bytes(b'\x00\x01 nothing like a database ' * 200)
    with pytest.raises(NotOurs, match='is not an SQLite database') as caught:
        SQLiteDatabase(path, schema()).connect()
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert str(path) in str(caught.value)


def test_check_finds_damage_that_opening_does_not(database: SQLiteDatabase) -> None:
    conn = database.connect()
    conn.executemany('INSERT INTO parents (id) VALUES (?)', [(i,) for i in range(5000)])
    conn.check()  # sound
    conn.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    conn.close()
    data = bytearray(database.path.read_bytes())
    size = 4096
    middle = len(data) // size // 2
    data[middle * size : (middle + 1) * size] = b'\xa5' * size
    database.path.write_bytes(bytes(data))

    fresh = SQLiteDatabase(database.path, schema())
    conn = fresh.connect()  # the header and the schema are fine
    try:
        with pytest.raises(Broken, match=f'{database.path} is damaged'):
            conn.check()
    finally:
        conn.close()


def test_a_database_pickles_without_a_connection(database: SQLiteDatabase) -> None:
    database.connect().close()
    copy = pickle.loads(pickle.dumps(database))
    conn = copy.connect()
    try:
        assert conn.tables() == {'parents', 'children'}
    finally:
        conn.close()
