"""Database access shared by the run journal and the storage index.

Both talk to a ``Database`` and its ``Connection`` (``base``); ``sqlite`` is
the embedded implementation. Imports only the standard library.
"""

from .base import (
    Connection,
    Cursor,
    DamagedDatabaseError,
    Database,
    Params,
    Row,
    Schema,
    UnusableDatabaseError,
    prepare,
)
from .sqlite import SQLiteConnection, SQLiteDatabase

__all__ = [
    'Connection',
    'Cursor',
    'DamagedDatabaseError',
    'Database',
    'Params',
    'Row',
    'SQLiteConnection',
    'SQLiteDatabase',
    'Schema',
    'UnusableDatabaseError',
    'prepare',
]
