"""PostgreSQL: a run journal and storage index that several machines and people share.

Through psycopg 3 (the ``postgres`` extra: ``pip install 'synapse-sdk[postgres]'``),
imported on the first connection, so that ``synapse_sdk.db`` itself needs only
the standard library.

- SQL arrives written for SQLite and is translated once per statement text:
  ``?`` -> ``%s``, ``:name`` -> ``%(name)s``, ``%`` -> ``%%``; placeholders in
  string literals, quoted names and comments, and ``::`` casts, are left alone.
- Schema versions live in one table, ``synapse_schema`` (name -> version): the
  journal and the storage index may share one database. ``tables()`` sees only
  the schema's own tables, so the other schema's (or an application's) are no
  reason to refuse a database.
- Creating or migrating a schema holds an advisory lock: processes that open a
  new database at once create its tables once.
- Connections are in autocommit mode; ``transaction()`` is ``BEGIN``..``COMMIT``,
  and a schema's write transactions take turns (another advisory lock), as
  SQLite's ``BEGIN IMMEDIATE`` makes them. A connection the server dropped
  fails the statement that finds it so (the schema's ``unavailable_error``;
  never retried silently: it may or may not have been applied) and is
  replaced on the next call.
- A closed connection goes back to a small pool of this process (``POOL_SIZE``
  idle ones): the storage index opens one per call, and a new one costs a TCP
  connect and a password exchange (a lookup by key: 8.3 ms so, 0.05 ms from
  the pool, against a local server).
- Many rows of one ``INSERT`` (a run's steps) go as one statement of arrays.
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ._base import Params, Row, Schema, prepare

__all__ = [
    'POOL_SIZE',
    'SCHEMES',
    'PostgresConnection',
    'PostgresDatabase',
    'PostgresURL',
    'is_postgres_url',
    'translate',
]

SCHEMES = ('postgresql', 'postgres')
POOL_SIZE = 4  # idle connections kept per database URL and process
CONNECT_TIMEOUT_S = 10
VERSIONS_TABLE = 'synapse_schema'
_LOCKS = 0x5359_4E41  # pg_advisory_xact_lock(_LOCKS, n): n = 0 while a schema is prepared,
# else a schema's write transactions (n from its name)
_REMEDY = 'give another database in SYNAPSE_DATABASE_URL (or --database)'
_FORM = 'postgresql://user:password@host:port/database'


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and location.partition('://')[0].lower() in SCHEMES


@dataclass(frozen=True)
class PostgresURL:
    """A parsed ``postgresql://`` URL; the password stays out of ``repr`` and messages."""

    url: str = field(repr=False)  # as given, password included: what psycopg connects with
    user: str | None
    password: str | None = field(repr=False)
    host: str | None
    port: int | None
    dbname: str

    @classmethod
    def parse(cls, url: str, error: type[Exception]) -> PostgresURL:
        """Refuse (``error``, one line, no password) what is not a URL naming a database."""
        try:
            parts = urlsplit(url)
            port = parts.port
            password = None if parts.password is None else unquote(parts.password)
        except ValueError as problem:
            raise error(_malformed(url, str(problem))) from None
        dbname = unquote(parts.path.lstrip('/'))
        if '://' not in url:
            raise error(_malformed(url, 'it is not a URL'))
        if parts.scheme.lower() not in SCHEMES:
            raise error(_malformed(url, f'the scheme is {parts.scheme!r}'))
        if not dbname or '/' in dbname:
            raise error(_malformed(url, 'it names no database (the path after host:port)'))
        user = None if parts.username is None else unquote(parts.username)
        host = unquote(parts.hostname) if parts.hostname else None
        given = parse_qs(parts.query).get('password')  # libpq takes it there too
        return cls(url, user, password or (given[-1] if given else None), host, port, dbname)

    def describe(self) -> str:
        user = f'{self.user}@' if self.user else ''
        port = f':{self.port}' if self.port else ''
        return f'postgresql://{user}{self.host or "localhost"}{port}/{self.dbname}'

    def scrub(self, text: str) -> str:
        """``text`` without the password, in any spelling the URL had it."""
        if self.password:
            for spelling in {self.password, quote(self.password, safe=''), quote(self.password)}:
                text = text.replace(spelling, '***')
        return text


def _malformed(url: str, why: str) -> str:
    shown = re.sub(r'([^:/@]*):[^/]*@', r'\1:***@', url)  # user:password@ -> user:***@
    shown = re.sub(r'(password=)[^&]*', r'\1***', shown)
    return f'database URL {shown!r} cannot be used: {why}; write it as {_FORM}'


class PostgresDatabase:
    """A PostgreSQL database holding ``schema`` (beside other schemas, maybe)."""

    kind = 'a PostgreSQL database'

    def __init__(self, url: str, schema: Schema, *, remedy: str = _REMEDY) -> None:
        self.schema = schema
        self.remedy = remedy
        self.target = PostgresURL.parse(url, _unavailable(schema))
        self._ready_in = 0  # the process in which the schema was last made ready
        self._tables = _table_names(schema.tables.get(PostgresConnection.dialect, ''))
        self._driver: ModuleType | None = None
        crc = zlib.crc32(schema.name.encode('utf-8')) or 1
        self.write_lock = (_LOCKS, crc - (1 << 32) if crc >= 1 << 31 else crc)  # signed int4

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, '_driver': None}  # a module does not pickle

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.describe()!r})'

    @property
    def url(self) -> str:
        return self.target.url

    @property
    def IntegrityError(self) -> type[Exception]:  # named as DB-API modules name it
        error: type[Exception] = self.driver().IntegrityError
        return error

    def describe(self) -> str:
        return self.target.describe()

    def driver(self) -> ModuleType:
        """psycopg, or the schema's ``unavailable_error`` naming the extra to install."""
        if self._driver is not None:
            return self._driver
        try:
            import psycopg
        except ImportError as error:
            raise _unavailable(self.schema)(
                f'the {self.schema.name} at {self.describe()} needs psycopg 3, which is not'
                " installed: pip install 'synapse-sdk[postgres]'"
            ) from error
        self._driver = psycopg
        return psycopg

    def connect(self) -> PostgresConnection:
        connection = PostgresConnection(_pool.take(self), self)
        if self._ready_in != os.getpid():
            try:
                with connection.transaction():  # one preparer at a time, per database
                    connection.execute('SELECT pg_advisory_xact_lock(?, 0)', (_LOCKS,))
                    prepare(connection, self)
            except BaseException:
                connection.close()
                raise
            self._ready_in = os.getpid()
        return connection

    def version(self) -> int:
        """The schema's version in ``synapse_schema`` (0: not there); changes nothing."""
        connection = PostgresConnection(_pool.take(self), self)
        try:
            return connection.schema_version(self.schema.name)
        finally:
            connection.close()

    def open_raw(self) -> Any:
        """A new psycopg connection, or the schema's ``unavailable_error`` in one line."""
        psycopg = self.driver()
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name='synapse-sdk',
            )
        except psycopg.Error as error:
            cause = self.target.scrub(_one_line(error))
            raise _unavailable(self.schema)(
                f'cannot connect to the {self.schema.name} database {self.describe()}: {cause};'
                f' {_advice(cause, self.target)}'
            ) from _chainable(error, self.target)

    def lost(self, error: Exception) -> Exception:
        """The error for a statement whose connection the server dropped."""
        cause = self.target.scrub(_one_line(error))
        return _unavailable(self.schema)(
            f'lost the connection to the {self.schema.name} database {self.describe()}'
            f' ({cause}); what was being written may not have been recorded'
        )

    def own_tables(self) -> tuple[str, ...]:
        return self._tables


class PostgresConnection:
    """A ``Connection`` (see ``base``) over one psycopg connection in autocommit mode."""

    dialect = 'postgresql'

    def __init__(self, raw: Any, database: PostgresDatabase) -> None:
        self._raw = raw
        self._database = database
        self._depth = 0  # nested transaction() blocks
        self._cursor: Any = None  # reused by the thread that made it (a cursor is not
        self._cursor_thread = 0  # thread-safe; psycopg serializes the connection itself)

    def _live(self) -> Any:
        """The connection; one the server dropped is replaced, outside a transaction."""
        raw = self._raw
        if raw.closed and self._depth == 0:
            raw = self._raw = self._database.open_raw()
        return raw

    def _run(self, sql: str, params: Params) -> Any:
        """The statement run on this connection's cursor (made once: a new cursor per
        statement would cost about as much as the statement's own work here)."""
        raw, me = self._live(), threading.get_ident()
        cursor = self._cursor
        if cursor is None or cursor.connection is not raw or self._cursor_thread != me:
            cursor = raw.cursor()
            if self._cursor is None or self._cursor_thread == me:
                self._cursor, self._cursor_thread = cursor, me
        return cursor.execute(translate(sql), params)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._database.driver().OperationalError as error:
            if not self._raw.closed:
                raise  # the statement failed, the connection stands (a deadlock, a cancel)
            raise self._database.lost(error) from _chainable(error, self._database.target)

    def execute(self, sql: str, params: Params = ()) -> _Cursor:
        with self._errors():
            cursor = self._run(sql, params)
            rows = None if cursor.description is None else cursor.fetchall()
        return _Cursor(self, sql, cursor.rowcount, cursor.description, rows)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Many rows of an ``INSERT ... VALUES (?, ...)`` go as one statement of arrays
        (``unnest``, in order: half the time of a pipeline of rows), so they must not
        conflict with each other (an ``ON CONFLICT DO UPDATE`` cannot touch a row twice
        in one statement); anything else goes through psycopg's ``executemany``."""
        rows = list(rows)
        with self._errors():
            bulk = _as_arrays(sql, rows) if len(rows) >= _BULK_ROWS else None
            if bulk is not None:
                self._run(*bulk)
            else:
                self._live().cursor().executemany(translate(sql), rows)

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        with self._errors():
            row: Row | None = self._run(sql, params).fetchone()
        return row

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        with self._errors():
            rows: list[Row] = self._run(sql, params).fetchall()
        return rows

    @contextmanager
    def transaction(self) -> Iterator[PostgresConnection]:
        """``BEGIN``..``COMMIT`` (a savepoint when nested); rolled back if the block raises.

        The schema's write transactions take turns, as SQLite's ``BEGIN IMMEDIATE``
        makes them: one that reads, then writes what it read (the storage index's
        check for a key, then its insert) sees no other one commit in between.
        """
        with self._errors(), self._live().transaction():
            self._depth += 1
            try:
                if self._depth == 1:
                    self.execute('SELECT pg_advisory_xact_lock(?, ?)', self._database.write_lock)
                yield self
            finally:
                self._depth -= 1

    def check(self) -> None:
        """Nothing to do: the server checks its own pages; connecting proved it answers."""

    def schema_version(self, name: str) -> int:
        row = self.fetchone('SELECT to_regclass(?) IS NOT NULL', (VERSIONS_TABLE,))
        if row is None or not row[0]:
            return 0
        row = self.fetchone(f'SELECT version FROM {VERSIONS_TABLE} WHERE name = ?', (name,))
        return 0 if row is None else int(row[0])

    def set_schema_version(self, name: str, version: int) -> None:
        self.execute(
            f'CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE}'
            ' (name TEXT PRIMARY KEY, version INTEGER NOT NULL)'
        )
        self.execute(
            f'INSERT INTO {VERSIONS_TABLE} (name, version) VALUES (?, ?)'
            ' ON CONFLICT (name) DO UPDATE SET version = excluded.version',
            (name, int(version)),
        )

    def tables(self) -> set[str]:
        """The schema's own tables that are here (in the connection's current schema)."""
        rows = self.fetchall(
            'SELECT table_name FROM information_schema.tables'
            ' WHERE table_schema = current_schema() AND table_name = ANY(?)',
            (list(self._database.own_tables()),),
        )
        return {str(row[0]) for row in rows}

    def close(self) -> None:
        _pool.give(self._database, self._raw)


class _Cursor:
    """What ``execute`` returns: the statement's rows (read at once), its ``rowcount``, and
    ``lastrowid`` as sqlite3 has it (the id an INSERT just took)."""

    __slots__ = ('_at', '_connection', '_rows', '_sql', 'description', 'rowcount')

    def __init__(
        self,
        connection: PostgresConnection,
        sql: str,
        rowcount: int,
        description: Any,
        rows: list[Any] | None,
    ) -> None:
        self._connection = connection
        self._sql = sql
        self.rowcount = rowcount
        self.description = description
        self._rows = rows or []
        self._at = 0

    @property
    def lastrowid(self) -> int | None:
        """After an INSERT into a table with an identity column: the value it took
        (``lastval()``); else None."""
        if self._sql.lstrip()[:6].upper() != 'INSERT':
            return None
        row = self._connection.fetchone('SELECT lastval()')
        return None if row is None else int(row[0])

    def fetchone(self) -> Any:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rest, self._at = self._rows[self._at :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _Pool:
    """Idle connections of this process, by URL; a forked child starts with none."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._idle: dict[str, list[Any]] = {}
        self._pid = os.getpid()

    def _mine(self) -> dict[str, list[Any]]:
        if self._pid != os.getpid():  # the parent's connections: never use nor close them
            self._idle, self._pid = {}, os.getpid()
        return self._idle

    def take(self, database: PostgresDatabase) -> Any:
        with self._lock:
            idle = self._mine().get(database.url)
            raw = idle.pop() if idle else None
        return raw if raw is not None and not raw.closed else database.open_raw()

    def give(self, database: PostgresDatabase, raw: Any) -> None:
        idle_state = database.driver().pq.TransactionStatus.IDLE
        with self._lock:
            if raw.closed or self._pid != os.getpid():
                return
            idle = self._mine().setdefault(database.url, [])
            if len(idle) < self.size and raw.info.transaction_status == idle_state:
                idle.append(raw)
                return
        raw.close()


_pool = _Pool(POOL_SIZE)


_BULK_ROWS = 16
_INSERT_VALUES = re.compile(
    r'\s*(INSERT\s+INTO\s+\w+\s*\([\w\s,]+\))\s*VALUES\s*\(\s*\?(?:\s*,\s*\?)*\s*\)(.*)',
    re.IGNORECASE | re.DOTALL,
)


def _as_arrays(sql: str, rows: list[Params]) -> tuple[str, list[list[Any]]] | None:
    """``INSERT INTO t (a, b) VALUES (?, ?) [tail]`` with ``rows`` as one statement,
    ``INSERT INTO t (a, b) SELECT .. FROM unnest(?::text[], ?::bigint[]) .. [tail]``, when
    every column holds one kind of value (else None: the rows go one by one)."""
    match = _INSERT_VALUES.fullmatch(sql)
    if match is None or not all(isinstance(row, tuple | list) for row in rows):
        return None
    columns = [list(column) for column in zip(*rows, strict=True)]
    types = [_array_type(column) for column in columns]
    if not columns or None in types:
        return None
    for column, kind in zip(columns, types, strict=True):
        if kind == 'float8[]':
            column[:] = [None if v is None else float(v) for v in column]
    arrays = ', '.join(f'?::{kind}' for kind in types)
    names = ', '.join(f'c{i}' for i in range(len(types)))
    select = f'SELECT {names} FROM unnest({arrays}) WITH ORDINALITY AS u({names}, n) ORDER BY n'
    return f'{match[1]} {select}{match[2]}', columns


def _array_type(column: list[Any]) -> str | None:
    kinds = {type(value) for value in column if value is not None}
    if kinds == {str}:
        return 'text[]'
    if kinds == {bool}:
        return 'boolean[]'
    if kinds == {int}:
        return 'bigint[]'
    if kinds and kinds <= {int, float}:
        return 'float8[]'
    return None  # mixed, bytes, all NULL (its column's type is not known here)


def _unavailable(schema: Schema) -> type[Exception]:
    return schema.unavailable_error or schema.unusable_error


def _table_names(ddl: str) -> tuple[str, ...]:
    return tuple(re.findall(r'CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)', ddl, re.I))


def _one_line(error: BaseException) -> str:
    """The server's or libpq's reason, without the 'connection to server ... failed:' lead."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = text.rpartition(' failed: ')[2] or text
    return ' '.join(text.replace('FATAL:', '').split())


def _advice(cause: str, target: PostgresURL) -> str:
    if 'password' in cause or 'authentication' in cause or 'role' in cause:
        return 'check the user name and password in the URL'
    if 'does not exist' in cause and 'database' in cause:
        return (
            f'create it (createdb -h {target.host or "localhost"} -p {target.port or 5432}'
            f' -U {target.user or "USER"} {target.dbname}) or give another database'
        )
    return 'check that the server runs and that this machine can reach it'


def _chainable(error: BaseException, target: PostgresURL) -> BaseException | None:
    """The driver's error to chain, unless its text holds the password."""
    if target.password and target.scrub(str(error)) != str(error):
        return None
    return error


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite-style placeholders to psycopg's: ``?`` -> ``%s``, ``:name`` -> ``%(name)s``,
    and every ``%`` -> ``%%`` (quoted or not: psycopg reads them all); ``?`` and ``:x``
    in quoted text and comments, and ``::`` casts, are kept."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in ("'", '"'):
            end = sql.find(char, i + 1)
            end = n - 1 if end < 0 else end
            out.append(sql[i : end + 1].replace('%', '%%'))  # psycopg reads % even there
            i = end + 1
        elif sql.startswith('--', i):
            end = sql.find('\n', i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace('%', '%%'))
            i = end
        elif char == '?':
            out.append('%s')
            i += 1
        elif char == '%':
            out.append('%%')
            i += 1
        elif sql.startswith('::', i):
            out.append('::')
            i += 2
        elif char == ':' and (name := _NAME.match(sql, i + 1)) is not None:
            out.append(f'%({name.group()})s')
            i = name.end()
        else:
            out.append(char)
            i += 1
    return ''.join(out)


_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')
