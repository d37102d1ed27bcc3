"""The interface the run journal and the storage index see their databases through.

Narrow on purpose, so that a second database is a new module beside
``sqlite.py``, not edits across the journal:

- SQL is written with SQLite's placeholders, ``?`` positional and ``:name``
  named; a driver with another style translates them.
- A ``Schema`` holds what differs per dialect (table definitions, migrations),
  keyed by the connection's ``dialect``.
- A file that is not a database, or is damaged, is refused with the schema's
  own error classes (the journal's, the storage index's: each in the SDK's
  error tree), in one place per driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    'Connection',
    'Cursor',
    'Database',
    'Params',
    'Row',
    'Schema',
    'prepare',
    'upgrade',
]

Params = Sequence[Any] | Mapping[str, Any]
Row = tuple[Any, ...]


@dataclass(frozen=True)
class Schema:
    """What a database holds, and the errors that refuse one that does not hold it.

    ``tables`` and ``migrations`` are keyed by dialect (``'sqlite'``);
    ``migrations[dialect][n]`` brings a database of version ``n`` to ``n + 1``.
    Statements are separated by ``;``. ``unusable_error``: raised for a
    database that is not one, another program's, or of a version this code
    cannot read; ``damaged_error``: for damaged pages; ``unavailable_error``
    (default: ``unusable_error``): for a server that cannot be reached or
    logged in to, a malformed URL, a connection lost. Each gets one message.
    """

    name: str  # in messages: 'run journal', 'storage index'
    version: int
    tables: Mapping[str, str]
    unusable_error: type[Exception]
    damaged_error: type[Exception]
    migrations: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    unavailable_error: type[Exception] | None = None


class Cursor(Protocol):
    """What ``Connection.execute`` returns (both sqlite3's and psycopg's cursors fit)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """One connection, in autocommit mode outside ``transaction()``.

    Reads go through ``fetchone``/``fetchall``, which read every row before
    returning, so a damaged page is refused there and not while iterating.
    """

    @property
    def dialect(self) -> str: ...

    def execute(self, sql: str, params: Params = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    def transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction; SQLite takes the write lock at its start (``BEGIN
        IMMEDIATE``), so concurrent writers wait instead of failing midway."""
        ...

    def check(self) -> None:
        """Read the whole database; raise the schema's ``damaged_error`` if any of it is damaged."""
        ...

    def schema_version(self, name: str) -> int:
        """The version of schema ``name`` here; 0 if it was never set."""
        ...

    def set_schema_version(self, name: str, version: int) -> None: ...

    def tables(self) -> set[str]:
        """The tables already here (for SQLite: in the file)."""
        ...

    def close(self) -> None: ...


class Database(Protocol):
    """Where a schema lives; holds no connection, so it pickles and survives ``fork``."""

    @property
    def schema(self) -> Schema: ...

    @property
    def kind(self) -> str:
        """In messages: 'an SQLite database'."""
        ...

    @property
    def remedy(self) -> str:
        """What a user does about a database that cannot be used: 'move the file aside'."""
        ...

    @property
    def IntegrityError(self) -> type[Exception]:  # named as DB-API modules name it
        """The driver's exception for a broken constraint (a duplicate key)."""
        ...

    def connect(self) -> Connection:
        """A new connection; the first one in a process also creates or migrates the
        schema (``prepare``), or refuses the database."""
        ...

    def version(self) -> int:
        """The schema's version in the database as it is (0: not there); changes nothing."""
        ...

    def describe(self) -> str:
        """The database for messages: a path, or a URL without its password."""
        ...


def prepare(connection: Connection, database: Database) -> None:
    """Create the schema in a new database, migrate an older one, refuse anything else.

    One write transaction: a failed migration leaves the database as it was,
    and processes that open a new database at once create it once.
    """
    schema, where = database.schema, database.describe()
    with connection.transaction():
        version = connection.schema_version(schema.name)
        if version == 0 and not connection.tables():
            _run_script(connection, schema.tables[connection.dialect])
            connection.set_schema_version(schema.name, schema.version)
        elif version == 0:
            raise schema.unusable_error(
                f'{where} is {database.kind} but not a {schema.name}; {database.remedy}'
            )
        elif version > schema.version:
            raise schema.unusable_error(
                f'{where} was written by a newer synapse-sdk ({schema.name} schema {version};'
                f' this one reads up to {schema.version}); upgrade synapse-sdk, or to start'
                f' a new {schema.name}, {database.remedy}'
            )
        else:
            _migrate(connection, database, version)


def upgrade(database: Database) -> tuple[int, int]:
    """Create or migrate the schema now, as the first use would: ``(version before,
    version after)``; a newer or foreign database is refused (``unusable_error``)."""
    before = database.version()
    database.connect().close()
    return before, database.schema.version


def _migrate(connection: Connection, database: Database, version: int) -> None:
    schema = database.schema
    migrations = schema.migrations.get(connection.dialect, {})
    while version < schema.version:
        if version not in migrations:
            raise schema.unusable_error(
                f'{database.describe()} has {schema.name} schema {version}, which cannot be'
                f' migrated to {schema.version}; to start a new {schema.name},'
                f' {database.remedy}'
            )
        _run_script(connection, migrations[version])
        version += 1
        connection.set_schema_version(schema.name, version)


def _run_script(connection: Connection, script: str) -> None:
    for statement in script.split(';'):
        if statement.strip():
            connection.execute(statement)
