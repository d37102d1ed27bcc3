"""The storage index: which files a storage holds, in a database (``synapse_sdk.db``).

One row per stored file: its name, the blob holding it, size, SHA-256 and
optional idempotency key. Several stores can share one index (``store``: the
storage URL, '' for a folder whose index lives inside it); keys and blobs are
unique per store. Rows are written only after their blob was stored and
verified, so a row never points at nothing (unless the blob was removed by
hand: downloads check).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from synapse_sdk.db import Connection, Database, Schema

from .errors import StorageIndexError

__all__ = ['COLUMNS', 'StorageIndex', 'index_schema', 'key_value']

VERSION = 2
_FILES = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 0),
    checksum TEXT NOT NULL,
    created_at TEXT NOT NULL,
    key TEXT,
    UNIQUE (store, key),
    UNIQUE (store, blob)
)
"""
# version -> SQL bringing an index of that version to the next (SQLite)
MIGRATIONS = {
    # 1 -> 2: the store column (one index, several storages); ids keep counting from
    # where they were, so an id of a deleted file is never given to another
    1: _FILES.replace('CREATE TABLE files', 'CREATE TABLE files_2')
    + """;
INSERT INTO files_2 (id, store, name, blob, size, checksum, created_at, key)
    SELECT id, '', name, blob, size, checksum, created_at, key FROM files;
DELETE FROM sqlite_sequence WHERE name = 'files_2';
INSERT INTO sqlite_sequence (name, seq) SELECT 'files_2', seq FROM sqlite_sequence
    WHERE name = 'files';
DROP TABLE files;
ALTER TABLE files_2 RENAME TO files
""",
}
COLUMNS = 'id, name, blob, size, checksum, created_at'


def index_schema() -> Schema:
    return Schema(
        name='storage index',
        version=VERSION,
        tables={'sqlite': _FILES},
        migrations={'sqlite': MIGRATIONS},
        unusable_error=StorageIndexError,
        damaged_error=StorageIndexError,
    )


Row = tuple[int, str, str, int, str, str]


class StorageIndex:
    """The rows of one store (``namespace``) in an index database.

    Each thread keeps its own connection (made again in a forked child): opening one
    per call would cost a connection's set-up, and with SQLite, when the last one
    closes, a checkpoint of the write-ahead log, for every upload.
    """

    def __init__(self, database: Database, namespace: str) -> None:
        self.database = database
        self.namespace = namespace
        self._local = threading.local()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        held: tuple[int, Connection] | None = getattr(self._local, 'held', None)
        if held is None or held[0] != os.getpid():
            held = (os.getpid(), self.database.connect())
            self._local.held = held
        yield held[1]

    def check(self) -> None:
        """Read all of it: a damaged index is refused before anything is written."""
        with self.connect() as conn:
            conn.check()

    def find(self, key: str) -> int | None:
        with self.connect() as conn:
            row = conn.fetchone(
                'SELECT id FROM files WHERE store = ? AND key = ?', (self.namespace, key_value(key))
            )
        return None if row is None else int(row[0])

    def insert_many(
        self, rows: Iterable[tuple[str, str, int, str, str | None]]
    ) -> list[tuple[int, bool]]:
        """Rows for stored objects, in one transaction (one commit, one fsync, for all).

        Each is ``(id, True)`` for a new row, or ``(id, False)`` if a file was stored under
        its key meanwhile (by another upload): then no row is added, and ``id`` is that
        file's."""
        with self.connect() as conn, conn.transaction():
            return [self._insert(conn, row) for row in rows]

    def _insert(
        self, conn: Connection, row: tuple[str, str, int, str, str | None]
    ) -> tuple[int, bool]:
        name, blob, size, checksum, key = row
        if key is not None:
            found = conn.fetchone(
                'SELECT id FROM files WHERE store = ? AND key = ?', (self.namespace, key_value(key))
            )
            if found is not None:  # stored meanwhile by another upload
                return int(found[0]), False
        created_at = datetime.now(UTC).isoformat(timespec='microseconds')
        cursor = conn.execute(
            'INSERT INTO files (store, name, blob, size, checksum, created_at, key)'
            ' VALUES (?, ?, ?, ?, ?, ?, ?)',
            (self.namespace, name, blob, size, checksum, created_at, key_value(key)),
        )
        if cursor.lastrowid is None:  # pragma: no cover - every driver sets it for INSERT
            raise StorageIndexError(f'{self.database.describe()} returned no id for a new row')
        return int(cursor.lastrowid), True

    def get(self, file_id: int) -> Row | None:
        with self.connect() as conn:
            row = conn.fetchone(
                f'SELECT {COLUMNS} FROM files WHERE store = ? AND id = ?', (self.namespace, file_id)
            )
        return None if row is None else _row(row)

    def all(self) -> list[Row]:
        with self.connect() as conn:
            rows = conn.fetchall(
                f'SELECT {COLUMNS} FROM files WHERE store = ? ORDER BY id', (self.namespace,)
            )
        return [_row(row) for row in rows]

    def remove(self, file_id: int) -> str | None:
        """Delete the row; its blob id (None if there was no such row)."""
        with self.connect() as conn, conn.transaction():
            row = conn.fetchone(
                'SELECT blob FROM files WHERE store = ? AND id = ?', (self.namespace, file_id)
            )
            if row is None:
                return None
            conn.execute('DELETE FROM files WHERE id = ?', (file_id,))
        return str(row[0])

    def indexed(self, blobs: list[str]) -> set[str]:
        """Which of ``blobs`` have a row."""
        found: set[str] = set()
        with self.connect() as conn:
            for start in range(0, len(blobs), 500):
                batch = blobs[start : start + 500]
                marks = ', '.join('?' * len(batch))
                rows = conn.fetchall(
                    f'SELECT blob FROM files WHERE store = ? AND blob IN ({marks})',
                    (self.namespace, *batch),
                )
                found.update(str(row[0]) for row in rows)
        return found


def _row(row: Any) -> Row:
    file_id, name, blob, size, checksum, created_at = row
    return int(file_id), str(name), str(blob), int(size), str(checksum), str(created_at)


def key_value(key: str | None) -> str | bytes | None:
    """How ``key`` is stored and looked up in the index's ``key`` column.

    A key built from a non-UTF-8 path holds lone surrogates, which SQLite text
    cannot; it is stored as a BLOB of its surrogate-preserving UTF-8 bytes. That
    mapping is one-to-one and a BLOB never equals a TEXT value, so such a key
    can never be mistaken for another.
    """
    if key is None:
        return None
    try:
        key.encode('utf-8')
    except UnicodeEncodeError:
        return key.encode('utf-8', 'surrogatepass')
    return key
