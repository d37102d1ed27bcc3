"""``synapse_sdk.db._postgres``: the database code the journal and the storage index share,
against a real PostgreSQL server (``postgres_db``; skipped here without one, never in CI)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.services.postgres import PostgresDSN, PostgresServer

from synapse_sdk.db import (
    PostgresConnection,
    PostgresDatabase,
    PostgresURL,
    Schema,
    open_database,
    upgrade,
)
from synapse_sdk.db._postgres import translate

SRC = Path(__file__).resolve().parents[2] / 'src'


class NotOurs(Exception):
    pass


class Broken(Exception):
    pass


class Unreachable(Exception):
    pass


TABLES = """
CREATE TABLE parents (id INTEGER PRIMARY KEY, note TEXT);
CREATE TABLE children (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent_id INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED
)
"""


def schema(
    version: int = 1, migrations: dict[int, str] | None = None, name: str = 'test store'
) -> Schema:
    return Schema(
        name=name,
        version=version,
        tables={'postgresql': TABLES},
        migrations={'postgresql': migrations or {}},
        unusable_error=NotOurs,
        damaged_error=Broken,
        unavailable_error=Unreachable,
    )


@pytest.fixture
def database(postgres_db: PostgresDSN) -> PostgresDatabase:
    return PostgresDatabase(postgres_db.url, schema())


@pytest.fixture
def connection(database: PostgresDatabase) -> Iterator[PostgresConnection]:
    conn = database.connect()
    yield conn
    conn.close()


def raw(dsn: PostgresDSN, sql: str) -> list[tuple[Any, ...]]:
    """A statement through psycopg itself, not through the code under test."""
    import psycopg

    with psycopg.connect(dsn.url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


# ------------------------------------------------------------------ SQL as SQLite writes it


@pytest.mark.parametrize(
    ('sqlite', 'psycopg'),
    [
        ('SELECT * FROM t WHERE a = ? AND b = ?', 'SELECT * FROM t WHERE a = %s AND b = %s'),
        ('UPDATE t SET a = :a WHERE id = :run', 'UPDATE t SET a = %(a)s WHERE id = %(run)s'),
        ("SELECT '?', ':x', 'it''s ?' FROM t WHERE a = ?",
         "SELECT '?', ':x', 'it''s ?' FROM t WHERE a = %s"),
        ('SELECT a % 2, \'50%\' FROM t', "SELECT a %% 2, '50%%' FROM t"),
        ('SELECT a::text, "col?" FROM t WHERE b = ?', 'SELECT a::text, "col?" FROM t WHERE b = %s'),
        ('SELECT 1 -- what? :x 5%\nFROM t WHERE a = ?',
         'SELECT 1 -- what? :x 5%%\nFROM t WHERE a = %s'),
        ('CASE idx WHEN :index THEN 1 END', 'CASE idx WHEN %(index)s THEN 1 END'),
    ],
)  # fmt: skip
def test_placeholders_are_translated_outside_quotes(sqlite: str, psycopg: str) -> None:
    assert translate(sqlite) == psycopg


def test_the_translated_sql_runs(connection: PostgresConnection) -> None:
    connection.execute("INSERT INTO parents (id, note) VALUES (?, 'it''s 100%')", (1,))
    connection.execute('INSERT INTO parents (id, note) VALUES (:id, :note)', {'id': 2, 'note': '?'})
    rows = connection.fetchall(
        "SELECT id % 2, note, '?' FROM parents WHERE id >= ? ORDER BY id", (1,)
    )
    assert rows == [(1, "it's 100%", '?'), (0, '?', '?')]


# ------------------------------------------------------------------ the URL


def test_a_url_is_described_without_its_password() -> None:
    url = PostgresURL.parse('postgresql://ann:s3cr%40t@db.example:6432/runs', NotOurs)
    assert (url.user, url.password, url.host, url.port, url.dbname) == (
        'ann',
        's3cr@t',
        'db.example',
        6432,
        'runs',
    )
    assert url.describe() == 'postgresql://ann@db.example:6432/runs'
    assert 's3cr' not in repr(url)
    assert url.scrub('a s3cr@t and s3cr%40t') == 'a *** and ***'
    in_query = PostgresURL.parse('postgresql://ann@db/runs?sslmode=require&password=pw1', NotOurs)
    assert in_query.password == 'pw1' and in_query.describe() == 'postgresql://ann@db/runs'


@pytest.mark.parametrize(
    ('url', 'why'),
    [
        ('postgresql://ann:hunter2@db:port/runs', 'Port could not be cast'),
        ('postgresql://ann:hunter2@db:5432', 'names no database'),
        ('postgresql://ann:hunter2@db:5432/', 'names no database'),
        ('postgresql://ann:hunter2@[::1/runs', 'Invalid IPv6 URL'),
        ('mysql://ann:hunter2@db/runs', "the scheme is 'mysql'"),
        ('ann:hunter2@db/runs', 'not a URL'),
        ('postgresql://ann:hunt@er2@db:x/runs', 'Port could not be cast'),
        ('postgresql://ann@db:x/runs?password=hunter2', 'Port could not be cast'),
    ],
)
def test_a_malformed_url_is_refused_in_one_line_without_the_password(url: str, why: str) -> None:
    with pytest.raises(Unreachable) as caught:
        PostgresDatabase(url, schema()) if '://' in url else open_database(
            url, schema(), require_url=True
        )
    message = str(caught.value)
    assert why in message
    assert 'hunter2' not in message and 'er2' not in message
    assert '\n' not in message
    assert 'postgresql://user:password@host:port/database' in message


def test_another_url_scheme_is_refused_and_a_path_is_an_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(Unreachable, match="scheme 'mysql' is not supported"):
        open_database('mysql://ann:hunter2@db/runs', schema())
    assert type(open_database(tmp_path / 'x.db', schema())).__name__ == 'SQLiteDatabase'
    assert type(open_database('postgres://db/x', schema())) is PostgresDatabase


# ------------------------------------------------------------------ creating and versions


def test_the_first_connection_creates_the_schema_and_records_its_version(
    database: PostgresDatabase, connection: PostgresConnection, postgres_db: PostgresDSN
) -> None:
    assert connection.dialect == 'postgresql'
    assert connection.tables() == {'parents', 'children'}
    assert connection.schema_version('test store') == 1
    assert raw(postgres_db, 'SELECT name, version FROM synapse_schema') == [('test store', 1)]
    assert database.version() == 1
    assert database.describe() == (
        f'postgresql://{postgres_db.user}@{postgres_db.host}:{postgres_db.port}/{postgres_db.dbname}'
    )
    assert postgres_db.password not in repr(database)


def test_two_schemas_share_a_database_each_with_its_version(postgres_db: PostgresDSN) -> None:
    other = Schema(
        name='other store',
        version=3,
        tables={'postgresql': 'CREATE TABLE others (id INTEGER)'},
        unusable_error=NotOurs,
        damaged_error=Broken,
    )
    PostgresDatabase(postgres_db.url, schema()).connect().close()
    conn = PostgresDatabase(
        postgres_db.url, other
    ).connect()  # not refused: its tables are not there
    try:
        assert conn.tables() == {'others'}  # its own only
        assert conn.schema_version('other store') == 3
        assert conn.schema_version('test store') == 1
    finally:
        conn.close()


def test_a_database_holding_a_table_of_the_schemas_name_is_refused_and_left_alone(
    postgres_db: PostgresDSN,
) -> None:
    raw(postgres_db, 'CREATE TABLE parents (recipe TEXT)')
    with pytest.raises(NotOurs) as caught:
        PostgresDatabase(postgres_db.url, schema()).connect()
    assert 'is a PostgreSQL database but not a test store' in str(caught.value)
    assert postgres_db.dbname in str(caught.value)
    assert raw(
        postgres_db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    ) == [('parents',)]


def test_an_older_schema_is_migrated_once_and_a_newer_one_refused(postgres_db: PostgresDSN) -> None:
    PostgresDatabase(postgres_db.url, schema()).connect().close()
    newer = schema(2, {1: 'ALTER TABLE parents ADD COLUMN name TEXT'})
    assert PostgresDatabase(postgres_db.url, newer).version() == 1
    assert upgrade(PostgresDatabase(postgres_db.url, newer)) == (1, 2)
    conn = PostgresDatabase(postgres_db.url, newer).connect()
    try:
        assert conn.schema_version('test store') == 2
        conn.execute("INSERT INTO parents (id, name) VALUES (1, 'a')")
    finally:
        conn.close()
    assert upgrade(PostgresDatabase(postgres_db.url, newer)) == (2, 2)

    with pytest.raises(NotOurs) as caught:
        PostgresDatabase(postgres_db.url, schema()).connect()
    assert 'newer synapse-sdk (test store schema 2; this one reads up to 1)' in str(caught.value)
    assert '\n' not in str(caught.value)


def test_a_failed_migration_leaves_the_database_as_it_was(postgres_db: PostgresDSN) -> None:
    PostgresDatabase(postgres_db.url, schema()).connect().close()
    broken = schema(
        2, {1: 'ALTER TABLE parents ADD COLUMN name TEXT; ALTER TABLE nowhere ADD x INT'}
    )
    with pytest.raises(Exception, match='nowhere'):
        PostgresDatabase(postgres_db.url, broken).connect()
    assert raw(postgres_db, "SELECT version FROM synapse_schema WHERE name = 'test store'") == [
        (1,)
    ]
    columns = raw(
        postgres_db,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'parents'",
    )
    assert sorted(c for (c,) in columns) == ['id', 'note']


CREATE_AT_ONCE = f"""
import sys, time
from synapse_sdk.db import PostgresDatabase, Schema
schema = Schema('test store', 1, {{'postgresql': {TABLES!r}}}, RuntimeError, RuntimeError)
start = float(sys.argv[2])
while time.time() < start:
    pass
conn = PostgresDatabase(sys.argv[1], schema).connect()
print(conn.schema_version('test store'))
conn.close()
"""


def test_processes_that_open_a_new_database_at_once_create_it_once(
    postgres_db: PostgresDSN,
) -> None:
    import time

    env = {**os.environ, 'PYTHONPATH': str(SRC)}
    start = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, '-c', CREATE_AT_ONCE, postgres_db.url, start],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(6)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [(proc.returncode, out.strip()) for proc, (out, _) in zip(procs, outputs)] == [
        (0, '1')
    ] * 6, [err for _, err in outputs]
    assert raw(postgres_db, 'SELECT name, version FROM synapse_schema') == [('test store', 1)]


# ------------------------------------------------------------------ statements, transactions


def test_a_failed_transaction_leaves_nothing_and_the_connection_usable(
    connection: PostgresConnection,
) -> None:
    with pytest.raises(RuntimeError, match='midway'), connection.transaction():
        connection.execute('INSERT INTO parents (id) VALUES (1)')
        raise RuntimeError('midway')
    assert connection.fetchall('SELECT id FROM parents') == []
    with connection.transaction() as tx:
        tx.execute('INSERT INTO parents (id) VALUES (2)')
        with tx.transaction():  # nested: a savepoint
            tx.execute('INSERT INTO parents (id) VALUES (3)')
    assert connection.fetchall('SELECT id FROM parents ORDER BY id') == [(2,), (3,)]


def test_a_commit_that_fails_is_rolled_back_not_left_open(
    connection: PostgresConnection, database: PostgresDatabase
) -> None:
    with pytest.raises(database.IntegrityError, match='foreign key'), connection.transaction():
        connection.execute('INSERT INTO children (parent_id) VALUES (99)')
    assert connection.fetchall('SELECT id FROM children') == []
    with connection.transaction():
        connection.execute('INSERT INTO parents (id) VALUES (99)')
        connection.execute('INSERT INTO children (parent_id) VALUES (99)')
    assert connection.fetchall('SELECT parent_id FROM children') == [(99,)]


def test_other_errors_are_the_drivers_own_and_the_connection_stays(
    connection: PostgresConnection, database: PostgresDatabase
) -> None:
    import psycopg

    connection.execute('INSERT INTO parents (id) VALUES (1)')
    with pytest.raises(database.IntegrityError):
        connection.execute('INSERT INTO parents (id) VALUES (1)')
    with pytest.raises(psycopg.errors.UndefinedTable):
        connection.fetchall('SELECT * FROM missing')
    assert connection.fetchone('SELECT count(*) FROM parents') == (1,)


def test_lastrowid_and_rowcount_as_sqlite3_gives_them(connection: PostgresConnection) -> None:
    connection.execute('INSERT INTO parents (id) VALUES (7)')
    first = connection.execute('INSERT INTO children (parent_id) VALUES (7)').lastrowid
    second = connection.execute('INSERT INTO children (parent_id) VALUES (7)').lastrowid
    assert first is not None and second == first + 1
    updated = connection.execute('UPDATE children SET parent_id = 7')
    assert updated.rowcount == 2 and updated.lastrowid is None
    connection.executemany('INSERT INTO parents (id) VALUES (?)', [(i,) for i in range(10, 20)])
    assert connection.fetchone('SELECT count(*) FROM parents') == (11,)


def test_many_rows_go_in_one_statement_in_order_or_one_by_one(
    connection: PostgresConnection,
) -> None:
    connection.execute(
        'CREATE TABLE items (seq BIGINT GENERATED ALWAYS AS IDENTITY, k TEXT, w DOUBLE PRECISION,'
        ' b BOOLEAN, n INTEGER)'
    )
    insert = 'INSERT INTO items (k, w, b, n) VALUES (?, ?, ?, ?)'
    bulk = [
        (f'k{i:02d}', i if i % 2 else i + 0.5, i % 3 == 0, None if i % 4 else i) for i in range(40)
    ]
    connection.executemany(insert, bulk)  # arrays: ints and floats, NULLs among ints
    connection.executemany(insert, [('x', 1.0, True, None)] * 20)  # a column all NULL: row by row
    connection.executemany(insert, [('few', 2.0, False, 1)] * 3)
    rows = connection.fetchall('SELECT k, w, b, n FROM items ORDER BY seq')
    assert (
        rows
        == [(k, float(w), b, n) for k, w, b, n in bulk]
        + [('x', 1.0, True, None)] * 20
        + [('few', 2.0, False, 1)] * 3
    )


def test_threads_sharing_a_connection_each_read_their_own_rows(
    connection: PostgresConnection,
) -> None:
    import threading

    wrong: list[tuple[int, Any]] = []

    def work(base: int) -> None:
        for i in range(base, base + 200):
            row = connection.fetchone('SELECT ?::int', (i,))
            if row != (i,):
                wrong.append((i, row))

    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as can be
    try:
        for thread in threads:
            thread.start()
        work(9000)  # and the thread that made the connection
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert wrong == []


def test_write_transactions_take_turns(database: PostgresDatabase) -> None:
    """A read-then-write transaction sees no other writer commit in between (as with
    SQLite's BEGIN IMMEDIATE): the second one waits for the first to end."""
    import threading

    first, second = database.connect(), database.connect()
    order: list[str] = []
    try:
        with first.transaction():
            first.execute('INSERT INTO parents (id) VALUES (1)')

            def other() -> None:
                with second.transaction():
                    order.append('second began')
                    seen = second.fetchone('SELECT count(*) FROM parents')
                    order.append(f'second saw {seen[0] if seen else None}')

            thread = threading.Thread(target=other)
            thread.start()
            thread.join(0.5)
            assert thread.is_alive()  # waiting for the first to end
            order.append('first commits')
        thread.join(10)
        assert order == ['first commits', 'second began', 'second saw 1']
    finally:
        first.close()
        second.close()


# ------------------------------------------------------------------ a small pool


def backend_pid(conn: PostgresConnection) -> int:
    row = conn.fetchone('SELECT pg_backend_pid()')
    assert row is not None
    return int(row[0])


def test_a_closed_connection_is_reused_and_a_fork_child_makes_its_own(
    database: PostgresDatabase,
) -> None:
    conn = database.connect()
    pid = backend_pid(conn)
    conn.close()
    again = database.connect()
    assert backend_pid(again) == pid  # from the pool: no new login
    again.close()

    ctx = multiprocessing.get_context('fork')
    queue = ctx.SimpleQueue()
    child = ctx.Process(target=_child_pid, args=(database, queue))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert queue.get() != pid  # the parent's connection is never shared
    last = database.connect()
    assert backend_pid(last) == pid  # and still the parent's, unharmed
    last.close()


def _child_pid(database: PostgresDatabase, queue: Any) -> None:
    conn = database.connect()
    queue.put(backend_pid(conn))
    conn.close()


def test_a_database_pickles_without_a_connection(database: PostgresDatabase) -> None:
    database.connect().close()
    copy = pickle.loads(pickle.dumps(database))
    conn = copy.connect()
    try:
        assert conn.tables() == {'parents', 'children'}
    finally:
        conn.close()


# ------------------------------------------------------------------ cannot connect, or lost


def unreachable_message(url: str, password: str) -> str:
    with pytest.raises(Unreachable) as caught:
        PostgresDatabase(url, schema()).connect()
    message = str(caught.value)
    assert password not in message
    assert '\n' not in message
    cause = caught.value.__cause__
    assert cause is None or password not in str(cause)
    return message


def test_a_wrong_password_is_one_line_naming_host_and_database(postgres_db: PostgresDSN) -> None:
    wrong = PostgresDSN(
        postgres_db.host, postgres_db.port, postgres_db.user, 'not-it-at-all', postgres_db.dbname
    )
    message = unreachable_message(wrong.url, 'not-it-at-all')
    assert f'{postgres_db.host}:{postgres_db.port}/{postgres_db.dbname}' in message
    assert 'password authentication failed' in message
    assert 'check the user name and password' in message


def test_a_missing_database_is_one_line_saying_how_to_create_it(postgres_db: PostgresDSN) -> None:
    missing = postgres_db.with_dbname('no_such_db')
    message = unreachable_message(missing.url, postgres_db.password)
    assert '/no_such_db' in message
    assert 'database "no_such_db" does not exist' in message
    assert f'createdb -h {postgres_db.host} -p {postgres_db.port}' in message


def test_a_server_that_does_not_answer_is_one_line(postgres_db: PostgresDSN) -> None:
    from tests.services._common import free_port

    nowhere = PostgresDSN(
        postgres_db.host, free_port(), postgres_db.user, postgres_db.password, 'runs'
    )
    message = unreachable_message(nowhere.url, postgres_db.password)
    assert f'{postgres_db.host}:{nowhere.port}/runs' in message
    assert 'Connection refused' in message
    assert 'check that the server runs' in message


def test_a_lost_connection_fails_one_statement_then_reconnects(
    postgres_server: PostgresServer, database: PostgresDatabase
) -> None:
    conn = database.connect()
    try:
        conn.execute('INSERT INTO parents (id) VALUES (1)')
        postgres_server.restart()
        with pytest.raises(Unreachable) as caught:
            conn.execute('INSERT INTO parents (id) VALUES (2)')
        assert f'lost the connection to the test store database {database.describe()}' in str(
            caught.value
        )
        assert conn.fetchall('SELECT id FROM parents') == [(1,)]  # a new connection
    finally:
        conn.close()


def test_a_lost_connection_inside_a_transaction_fails_it(
    postgres_server: PostgresServer, database: PostgresDatabase
) -> None:
    conn = database.connect()
    try:
        with pytest.raises(Unreachable), conn.transaction():
            conn.execute('INSERT INTO parents (id) VALUES (1)')
            postgres_server.restart()
            conn.execute('INSERT INTO parents (id) VALUES (2)')
        assert conn.fetchall('SELECT id FROM parents') == []  # nothing half-written
    finally:
        conn.close()


def test_without_psycopg_the_error_names_the_extra(
    postgres_db: PostgresDSN, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, 'psycopg', None)  # as if it were not installed
    with pytest.raises(Unreachable) as caught:
        PostgresDatabase(postgres_db.url, schema()).connect()
    assert "pip install 'synapse-sdk[postgres]'" in str(caught.value)
    assert '\n' not in str(caught.value)
