"""Schema versions: newer and foreign databases are refused; older ones are migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from synapse_sdk.journal import SCHEMA_VERSION, Journal, JournalVersionError
from synapse_sdk.journal import _schema as journal_schema

from .conftest import EXAMPLE, make_files, one_line_error, peek, run_cli


def user_version(path: Path) -> int:
    return int(peek(path, 'PRAGMA user_version')[0][0])


def columns(path: Path, table: str) -> list[str]:
    return [row[1] for row in peek(path, f'PRAGMA table_info({table})')]


@pytest.fixture
def runs_db(home: Path) -> Path:
    """``runs.db`` in ``home``, made by this version with one finished run, ``old-run``."""
    path = home / 'runs.db'
    journal = Journal(path)
    journal.start_run('old-run', entrypoint='tests:x', params={'a': 1})
    journal.set_run_status('old-run', 'succeeded')
    journal.close()
    return path


def pretend_schema(
    monkeypatch: pytest.MonkeyPatch, version: int, migrations: dict[int, str]
) -> None:
    """Make this process expect schema ``version``, reached with ``migrations``."""
    monkeypatch.setattr(journal_schema, 'SCHEMA_VERSION', version)
    monkeypatch.setattr(journal_schema, 'MIGRATIONS', migrations)


V = SCHEMA_VERSION  # the tests below pretend versions after it


def test_a_new_journal_gets_the_current_version(runs_db: Path) -> None:
    assert SCHEMA_VERSION == 3
    assert user_version(runs_db) == SCHEMA_VERSION
    assert {'runs', 'steps', 'rollback_items', 'log_lines'} <= {
        row[0] for row in peek(runs_db, "SELECT name FROM sqlite_master WHERE type='table'")
    }


def test_a_journal_of_a_newer_version_is_refused(home: Path, runs_db: Path) -> None:
    peek(runs_db, 'PRAGMA user_version = 99')

    with pytest.raises(JournalVersionError) as caught:
        Journal(runs_db).get_run('old-run')
    message = str(caught.value)
    assert str(runs_db) in message
    assert 'newer synapse-sdk' in message
    assert 'journal schema 99' in message
    assert f'reads up to {SCHEMA_VERSION}' in message
    assert 'upgrade synapse-sdk' in message
    assert user_version(runs_db) == 99  # left as it was

    line = one_line_error(run_cli(home, 'runs', 'list'))
    assert 'newer synapse-sdk' in line
    assert 'journal schema 99' in line
    for command in (('runs', 'show', 'old-run'), ('runs', 'rollback', 'old-run')):
        assert 'newer synapse-sdk' in one_line_error(run_cli(home, *command))


def test_plugin_run_refuses_a_newer_journal_before_running_anything(
    home: Path, tmp_path: Path, runs_db: Path
) -> None:
    peek(runs_db, 'PRAGMA user_version = 99')
    make_files(tmp_path / 'source', 2, seed=1)
    done = run_cli(
        home,
        'plugin',
        'run',
        'upload',
        '--path',
        EXAMPLE,
        '--params',
        f'{{"source_path": "{tmp_path / "source"}"}}',
    )
    assert 'newer synapse-sdk' in one_line_error(done)
    assert not (home / 'storage').exists()  # nothing was uploaded


def test_a_foreign_sqlite_database_is_refused_and_left_alone(home: Path) -> None:
    path = home / 'runs.db'
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE recipes (name TEXT)')
    conn.execute("INSERT INTO recipes VALUES ('soup')")
    conn.commit()
    conn.close()

    with pytest.raises(JournalVersionError, match='not a run journal'):
        Journal(path).list_runs()
    assert peek(path, 'SELECT name FROM recipes') == [('soup',)]
    assert peek(path, "SELECT name FROM sqlite_master WHERE type = 'table'") == [('recipes',)]
    assert user_version(path) == 0

    line = one_line_error(run_cli(home, 'runs', 'list', '--json'))
    assert 'not a run journal' in line
    assert str(path) in line


def test_an_older_journal_is_migrated_and_keeps_its_runs(
    runs_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert 'note' not in columns(runs_db, 'runs')

    pretend_schema(monkeypatch, V + 1, {V: 'ALTER TABLE runs ADD COLUMN note TEXT'})
    journal = Journal(runs_db)
    try:
        run = journal.get_run('old-run')
        assert (run.status, run.params) == ('succeeded', {'a': 1})
        assert user_version(runs_db) == V + 1
        assert 'note' in columns(runs_db, 'runs')
        journal.start_run('new-run', entrypoint='tests:x', params={})
        assert {r.id for r in journal.list_runs()} == {'old-run', 'new-run'}
    finally:
        journal.close()

    # opened again at the new version: nothing more to do
    again = Journal(runs_db)
    try:
        assert again.get_run('old-run').status == 'succeeded'
        assert user_version(runs_db) == V + 1
    finally:
        again.close()


def test_a_migration_runs_step_by_step_through_versions(
    runs_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend_schema(
        monkeypatch,
        V + 2,
        {
            V: 'ALTER TABLE runs ADD COLUMN note TEXT',
            V + 1: "ALTER TABLE runs ADD COLUMN tag TEXT; UPDATE runs SET tag = 'migrated'",
        },
    )
    journal = Journal(runs_db)
    try:
        assert journal.get_run('old-run').status == 'succeeded'
    finally:
        journal.close()
    assert user_version(runs_db) == V + 2
    assert peek(runs_db, 'SELECT note, tag FROM runs') == [(None, 'migrated')]


def test_a_failing_migration_leaves_the_journal_as_it_was(
    runs_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend_schema(
        monkeypatch,
        V + 1,
        {V: 'ALTER TABLE runs ADD COLUMN note TEXT; ALTER TABLE no_such_table ADD COLUMN x'},
    )
    with pytest.raises(sqlite3.OperationalError):
        Journal(runs_db).db  # noqa: B018
    assert user_version(runs_db) == V
    assert 'note' not in columns(runs_db, 'runs')
    monkeypatch.undo()
    assert Journal(runs_db).get_run('old-run').status == 'succeeded'


def test_a_version_without_a_migration_is_refused(
    runs_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend_schema(monkeypatch, V + 2, {V: 'ALTER TABLE runs ADD COLUMN note TEXT'})
    with pytest.raises(
        JournalVersionError, match=f'journal schema {V + 1}, which cannot be migrated'
    ):
        Journal(runs_db).db  # noqa: B018
    assert user_version(runs_db) == V  # all or nothing
    assert 'note' not in columns(runs_db, 'runs')


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(home: Path) -> None:
    path = home / 'runs.db'
    path.parent.mkdir(parents=True)
    garbage = b'these are not the runs you are looking for\n' * 100
    path.write_bytes(garbage)

    with pytest.raises(JournalVersionError, match='is not an SQLite database'):
        Journal(path).list_runs()
    assert path.read_bytes() == garbage

    for command in (('runs', 'list'), ('runs', 'show', 'x'), ('runs', 'rollback', 'x')):
        line = one_line_error(run_cli(home, *command))
        assert 'is not an SQLite database' in line and str(path) in line
    assert path.read_bytes() == garbage


V1_TABLES = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, entrypoint TEXT NOT NULL, action TEXT, plugin_path TEXT,
    params TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
    progress INTEGER NOT NULL DEFAULT 0, error TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_started TEXT, attempts INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX runs_by_status ON runs (status);
CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE, idx INTEGER NOT NULL,
    name TEXT NOT NULL, weight REAL NOT NULL, status TEXT NOT NULL, started_at TEXT,
    ended_at TEXT, duration REAL, data TEXT, rollback_data TEXT, error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, snapshot TEXT, PRIMARY KEY (run_id, idx)
);
CREATE TABLE rollback_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, idx INTEGER NOT NULL,
    key TEXT NOT NULL, value TEXT NOT NULL, append INTEGER NOT NULL
);
CREATE INDEX rollback_items_by_step ON rollback_items (run_id, idx);
INSERT INTO runs (id, entrypoint, params, status, started_at, ended_at, host, pid)
VALUES ('v1-run', 'tests:x', '{"a": 1}', 'succeeded', '2026-01-01T00:00:00', '2026-01-01T00:00:01',
        'host', 1);
PRAGMA user_version = 1;
"""


def test_a_version_1_journal_gains_where_runs_ran_and_their_leases(home: Path) -> None:
    """The real 1 -> 2 migration: old runs stay, new columns read as unknown."""
    path = home / 'runs.db'
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.executescript(V1_TABLES)
    journal = Journal(path)
    try:
        old = journal.get_run('v1-run')
        assert (old.status, old.params, old.cwd, old.storage, old.lease_until) == (
            'succeeded',
            {'a': 1},
            None,
            None,
            None,
        )
        journal.start_run('v2-run', entrypoint='tests:x', params={}, cwd='/w', storage='file:///s')
        new = journal.get_run('v2-run')
        assert (new.cwd, new.storage) == ('/w', 'file:///s')
    finally:
        journal.close()
    assert user_version(path) == SCHEMA_VERSION  # through 2, on to the current version
    assert {'cwd', 'plugin', 'storage', 'lease_until', 'recoverer'} <= set(columns(path, 'runs'))
