"""The embedded database: an SQLite file in WAL mode with a busy timeout.

Several processes share one file: every write transaction takes the write lock
at its start (``BEGIN IMMEDIATE``) and waits up to the busy timeout for it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NoReturn

from ._base import Params, Row, Schema, prepare

__all__ = ['SQLiteConnection', 'SQLiteDatabase']

BUSY_TIMEOUT_S = 30.0
_REMEDY = 'point SYNAPSE_HOME elsewhere or move the file aside'


class SQLiteDatabase:
    """An SQLite file holding ``schema``.

    ``durable=False``: ``synchronous=NORMAL``, a commit survives the process
    being killed (SIGKILL, OOM); only a power loss or OS crash can lose the last
    few commits, never corrupt the file. ``durable=True``: ``synchronous=FULL``,
    an fsync per commit, for that too.
    """

    kind = 'an SQLite database'
    IntegrityError: type[Exception] = sqlite3.IntegrityError

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Schema,
        *,
        durable: bool = False,
        remedy: str = _REMEDY,
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        self.durable = durable
        self.remedy = remedy
        self._ready_in = 0  # the process in which the schema was last made ready

    def __repr__(self) -> str:
        return f'{type(self).__name__}({str(self.path)!r})'

    def describe(self) -> str:
        return str(self.path)

    def connect(self) -> SQLiteConnection:
        first = self._ready_in != os.getpid()
        if first:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(
            self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False
        )
        connection = SQLiteConnection(raw, self)
        try:
            connection.execute(f'PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}')
            if first:
                _enter_wal(connection)
            connection.execute(f'PRAGMA synchronous = {"FULL" if self.durable else "NORMAL"}')
            connection.execute('PRAGMA foreign_keys = ON')
            if first:
                prepare(connection, self)
                self._ready_in = os.getpid()
        except BaseException:
            connection.close()
            raise
        return connection

    def version(self) -> int:
        """The schema's version in the file (0: no file, or not set); opens it read-only."""
        if not self.path.exists():
            return 0
        raw = sqlite3.connect(
            f'{self.path.resolve().as_uri()}?mode=ro', uri=True, timeout=BUSY_TIMEOUT_S
        )
        try:
            return SQLiteConnection(raw, self).schema_version(self.schema.name)
        finally:
            raw.close()

    def refuse(self, error: sqlite3.DatabaseError) -> None:
        """Raise the schema's error if ``error`` says the file is not, or no longer, a
        database; the one place where SQLite's errors become the callers' own."""
        code = (getattr(error, 'sqlite_errorcode', None) or 0) & 0xFF  # primary code
        if code == sqlite3.SQLITE_NOTADB:
            raise self.schema.unusable_error(
                f'{self.path} is not an SQLite database ({error}); {self.remedy}'
            ) from error
        if code == sqlite3.SQLITE_CORRUPT:
            self.damaged(str(error), error)

    def damaged(self, cause: str, error: BaseException | None = None) -> NoReturn:
        raise self.schema.damaged_error(
            f'{self.path} is damaged ({cause}); to start a new {self.schema.name},'
            f' {self.remedy}; `sqlite3 {self.path} .recover` prints what can still be read,'
            ' as SQL'
        ) from error


class SQLiteConnection:
    """A ``Connection`` (see ``base``) over one ``sqlite3`` connection in autocommit mode."""

    dialect = 'sqlite'

    def __init__(self, raw: sqlite3.Connection, database: SQLiteDatabase) -> None:
        self._raw = raw
        self._database = database

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        try:
            return self._raw.execute(sql, params)
        except sqlite3.DatabaseError as error:
            self._database.refuse(error)
            raise

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        try:
            self._raw.executemany(sql, rows)
        except sqlite3.DatabaseError as error:
            self._database.refuse(error)
            raise

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        try:
            row: Row | None = self._raw.execute(sql, params).fetchone()
        except sqlite3.DatabaseError as error:
            self._database.refuse(error)
            raise
        return row

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return self._raw.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as error:
            self._database.refuse(error)
            raise

    @contextmanager
    def transaction(self) -> Iterator[SQLiteConnection]:
        self.execute('BEGIN IMMEDIATE')
        try:
            yield self
            self.execute('COMMIT')
        except BaseException:
            with suppress(sqlite3.Error):  # SQLite may have rolled back already
                self._raw.execute('ROLLBACK')
            raise

    def check(self) -> None:
        problems = self.fetchall('PRAGMA quick_check')
        if problems != [('ok',)]:
            first = ' '.join(str(problems[0][0]).split()) if problems else 'no answer'
            self._database.damaged(f'quick_check: {first}')

    def schema_version(self, name: str) -> int:
        """SQLite's ``user_version``: one schema per file, so ``name`` is not needed."""
        row = self.fetchone('PRAGMA user_version')
        return 0 if row is None else int(row[0])

    def set_schema_version(self, name: str, version: int) -> None:
        self.execute(f'PRAGMA user_version = {int(version)}')

    def tables(self) -> set[str]:
        return {
            str(row[0])
            for row in self.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        }

    def close(self) -> None:
        self._raw.close()


def _enter_wal(connection: SQLiteConnection) -> None:
    """Switch to WAL; that needs a moment alone with the file and ignores the busy timeout,
    so wait while another process is creating the same database."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            row = connection.fetchone('PRAGMA journal_mode')
            if row is None or str(row[0]).lower() != 'wal':
                connection.execute('PRAGMA journal_mode = WAL')
            return
        except sqlite3.OperationalError as error:
            if 'locked' not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)
