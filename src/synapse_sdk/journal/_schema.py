"""The journal's tables, and what to do with a database of another version."""

from __future__ import annotations

from synapse_sdk.db import Schema

from ._errors import JournalDamagedError, JournalUnavailableError, JournalVersionError

SCHEMA_VERSION = 3

# A run's last log lines (``journal/_log_lines.py``): ``seq`` counts the run's lines from 1,
# so the lines dropped to keep the table bounded are the ones before the first kept.
SQLITE_LOG_LINES = """
CREATE TABLE log_lines (
    run_id   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    at       TEXT NOT NULL,
    level    TEXT NOT NULL,
    step     TEXT,
    message  TEXT NOT NULL,
    record   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""
# The runs list's plugin and action filters (``synapse ui``, ``runs list``) come from an
# index in start order, like the unfiltered list: a filter that matches few runs, or none,
# does not read the whole table (SQLite appends rowid to every index entry).
SQLITE_RUN_FILTERS = """
CREATE INDEX runs_by_plugin ON runs (plugin, started_at);
CREATE INDEX runs_by_action ON runs (action, started_at);
"""
POSTGRES_RUN_FILTERS = """
CREATE INDEX runs_by_plugin ON runs (plugin, started_at, seq);
CREATE INDEX runs_by_action ON runs (action, started_at, seq);
"""
POSTGRES_LOG_LINES = """
CREATE TABLE log_lines (
    run_id   TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    at       TEXT COLLATE "C" NOT NULL,
    level    TEXT NOT NULL,
    step     TEXT,
    message  TEXT NOT NULL,
    record   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""

TABLES = (
    """
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
    attempts     INTEGER NOT NULL DEFAULT 1,
    cwd          TEXT,
    plugin       TEXT,
    storage      TEXT,
    lease_owner  TEXT,
    lease_until  REAL,
    recoverer    TEXT,
    recoverer_until REAL,
    cancel_requested_at TEXT,
    cancel_requested_by TEXT,
    ray_job_id   TEXT,
    ray_address  TEXT
);
CREATE INDEX runs_by_status ON runs (status);
CREATE INDEX runs_by_started ON runs (started_at);
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
    + SQLITE_LOG_LINES
    + SQLITE_RUN_FILTERS
)

# version -> SQL that brings a database of that version to the next one (SQLite)
MIGRATIONS: dict[int, str] = {
    # 1 -> 2: where a run ran (working directory, plugin, storage URL without credentials),
    # the lease its process renews, and who holds its recovery (issues #11, #13)
    1: """
ALTER TABLE runs ADD COLUMN cwd TEXT;
ALTER TABLE runs ADD COLUMN plugin TEXT;
ALTER TABLE runs ADD COLUMN storage TEXT;
ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until REAL;
ALTER TABLE runs ADD COLUMN recoverer TEXT;
ALTER TABLE runs ADD COLUMN recoverer_until REAL;
CREATE INDEX runs_by_started ON runs (started_at);
""",
    # 2 -> 3: a cancel request any machine can make (the run's heartbeat reads it), and
    # the run's last log lines, for a watcher on another machine, and the Ray job of a
    # detached run (its id, its job server without credentials) (issue #14); the runs
    # list's plugin and action filters from an index (issue #16)
    2: """
ALTER TABLE runs ADD COLUMN cancel_requested_at TEXT;
ALTER TABLE runs ADD COLUMN cancel_requested_by TEXT;
ALTER TABLE runs ADD COLUMN ray_job_id TEXT;
ALTER TABLE runs ADD COLUMN ray_address TEXT;
"""
    + SQLITE_LOG_LINES
    + SQLITE_RUN_FILTERS,
}

# PostgreSQL (from schema 2 on; there never was a version 1 there). Times are ISO 8601
# text as in SQLite, compared byte by byte (COLLATE "C") whatever the database's locale;
# ``seq`` orders runs as they were inserted (SQLite's rowid), and runs_by_started holds it
# so that the newest runs come from the index, in order, however many there are. A step's
# row is written three times (pending, started, ended): half of each page of ``steps`` is
# kept free so that the new versions stay on their page (HOT updates, no index writes),
# which makes the per-step write about three times cheaper.
POSTGRES_TABLES = (
    """
CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    entrypoint   TEXT NOT NULL,
    action       TEXT,
    plugin_path  TEXT,
    params       TEXT NOT NULL,
    status       TEXT NOT NULL,
    started_at   TEXT COLLATE "C" NOT NULL,
    ended_at     TEXT COLLATE "C",
    progress     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    pid_started  TEXT,
    attempts     INTEGER NOT NULL DEFAULT 1,
    cwd          TEXT,
    plugin       TEXT,
    storage      TEXT,
    lease_owner  TEXT,
    lease_until  DOUBLE PRECISION,
    recoverer    TEXT,
    recoverer_until DOUBLE PRECISION,
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    cancel_requested_at TEXT COLLATE "C",
    cancel_requested_by TEXT,
    ray_job_id   TEXT,
    ray_address  TEXT
);
CREATE INDEX runs_by_status ON runs (status);
CREATE INDEX runs_by_started ON runs (started_at, seq);
CREATE TABLE steps (
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    weight        DOUBLE PRECISION NOT NULL,
    status        TEXT NOT NULL,
    started_at    TEXT COLLATE "C",
    ended_at      TEXT COLLATE "C",
    duration      DOUBLE PRECISION,
    data          TEXT,
    rollback_data TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    snapshot      TEXT,
    PRIMARY KEY (run_id, idx)
) WITH (fillfactor = 50);
CREATE TABLE rollback_items (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id   TEXT NOT NULL,
    idx      INTEGER NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    append   BOOLEAN NOT NULL
);
CREATE INDEX rollback_items_by_step ON rollback_items (run_id, idx);
"""
    + POSTGRES_LOG_LINES
    + POSTGRES_RUN_FILTERS
)

# version -> SQL that brings a PostgreSQL database of that version to the next one
POSTGRES_MIGRATIONS: dict[int, str] = {
    2: """
ALTER TABLE runs ADD COLUMN cancel_requested_at TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN cancel_requested_by TEXT;
ALTER TABLE runs ADD COLUMN ray_job_id TEXT;
ALTER TABLE runs ADD COLUMN ray_address TEXT;
"""
    + POSTGRES_LOG_LINES
    + POSTGRES_RUN_FILTERS,
}

# dialect -> what orders rows as they were inserted (runs started in the same clock tick)
INSERTION_ORDER = {'sqlite': 'rowid', 'postgresql': 'seq'}


def journal_schema() -> Schema:
    """The journal's schema as this module says now (tests pretend other versions)."""
    return Schema(
        name='run journal',
        version=SCHEMA_VERSION,
        tables={'sqlite': TABLES, 'postgresql': POSTGRES_TABLES},
        migrations={'sqlite': MIGRATIONS, 'postgresql': POSTGRES_MIGRATIONS},
        unusable_error=JournalVersionError,
        damaged_error=JournalDamagedError,
        unavailable_error=JournalUnavailableError,
    )
