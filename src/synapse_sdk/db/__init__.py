"""Database access shared by the run journal and the storage index.

Both talk to a ``Database`` and its ``Connection`` (``base``); ``sqlite`` is
the embedded implementation, ``postgres`` the shared one (psycopg 3, imported
on first use), and ``open_database`` picks one for a path or a URL. Imports
only the standard library.
"""

from ._base import (
    Connection,
    Cursor,
    Database,
    Params,
    Row,
    Schema,
    prepare,
    upgrade,
)
from ._postgres import PostgresConnection, PostgresDatabase, PostgresURL, is_postgres_url
from ._sqlite import SQLiteConnection, SQLiteDatabase
from ._url import is_url, open_database

__all__ = [
    'Connection',
    'Cursor',
    'Database',
    'Params',
    'PostgresConnection',
    'PostgresDatabase',
    'PostgresURL',
    'Row',
    'SQLiteConnection',
    'SQLiteDatabase',
    'Schema',
    'is_postgres_url',
    'is_url',
    'open_database',
    'prepare',
    'upgrade',
]
