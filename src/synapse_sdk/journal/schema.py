"""The journal's tables, and what to do with a database of another version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .errors import JournalVersionError

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    entrypoint   TEXT NOT NULL,
    action       TEXT,
    plugin_path  TEXT,
    params       TEXT NOT NULL,
    status       TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    progress     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    pid_started  TEXT,
    attempts     INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX runs_by_status ON runs (status);
CREATE TABLE steps (
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    weight        REAL NOT NULL,
    status        TEXT NOT NULL,
    started_at    TEXT,
    ended_at      TEXT,
    duration      REAL,
    data          TEXT,
    rollback_data TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    snapshot      TEXT,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE rollback_items (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   TEXT NOT NULL,
    idx      INTEGER NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    append   INTEGER NOT NULL
);
CREATE INDEX rollback_items_by_step ON rollback_items (run_id, idx);
"""

# version -> SQL that brings a database of that version to the next one
MIGRATIONS: dict[int, str] = {}


def prepare(connection: sqlite3.Connection, path: Path) -> None:
    """Create the tables in a new database, migrate an older one, refuse anything else."""
    connection.execute('BEGIN IMMEDIATE')
    try:
        version = connection.execute('PRAGMA user_version').fetchone()[0]
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if version == 0 and not tables:
            for statement in TABLES.split(';'):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f'PRAGMA user_version = {SCHEMA_VERSION}')
        elif version == 0:
            raise JournalVersionError(
                f'{path} is an SQLite database but not a run journal; '
                'point SYNAPSE_HOME elsewhere or move the file aside'
            )
        elif version > SCHEMA_VERSION:
            raise JournalVersionError(
                f'{path} was written by a newer synapse-sdk (journal schema {version}; this one '
                f'reads up to {SCHEMA_VERSION}); upgrade synapse-sdk, or move the file aside '
                'to start a new journal'
            )
        else:
            while version < SCHEMA_VERSION:
                if version not in MIGRATIONS:
                    raise JournalVersionError(
                        f'{path} has journal schema {version}, which cannot be migrated to '
                        f'{SCHEMA_VERSION}; move the file aside to start a new journal'
                    )
                for statement in MIGRATIONS[version].split(';'):
                    if statement.strip():
                        connection.execute(statement)
                version += 1
                connection.execute(f'PRAGMA user_version = {version}')
        connection.execute('COMMIT')
    except BaseException:
        connection.execute('ROLLBACK')
        raise
