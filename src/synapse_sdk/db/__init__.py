"""Database access shared by the run journal and the storage index.

Both talk to a ``Database`` and its ``Connection`` (``base``); ``sqlite`` is
the embedded implementation. Imports only the standard library.
"""

from ._base import (
    Connection,
    Cursor,
    Database,
    Params,
    Row,
    Schema,
    prepare,
)
from ._sqlite import SQLiteConnection, SQLiteDatabase

__all__ = [
    'Connection',
    'Cursor',
    'Database',
    'Params',
    'Row',
    'SQLiteConnection',
    'SQLiteDatabase',
    'Schema',
    'prepare',
]
