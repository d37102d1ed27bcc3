"""Choosing the database: ``--database URL`` / ``SYNAPSE_DATABASE_URL`` put the run journal
and the storage index in PostgreSQL; a URL that cannot be used is one line, exit 2, with
nothing written; ``synapse db status`` / ``synapse db upgrade``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from tests.services.postgres import PostgresDSN

from synapse_sdk.journal import SCHEMA_VERSION, Journal

from .conftest import make_files, one_line_error, run_cli
from .test_schema import V1_TABLES


def written_under(home: Path) -> list[str]:
    """What a command left under SYNAPSE_HOME (nothing, when it was refused)."""
    if not home.exists():
        return []
    return sorted(str(p.relative_to(home)) for p in home.rglob('*'))


def params(tmp_path: Path) -> str:
    make_files(tmp_path / 'source', 3, seed=5)
    return json.dumps({'source_path': str(tmp_path / 'source')})


def tables(dsn: PostgresDSN) -> set[str]:
    import psycopg

    with psycopg.connect(dsn.url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def test_database_puts_the_journal_and_the_storage_index_in_postgresql(
    home: Path, plugin_dir: Path, tmp_path: Path, postgres_db: PostgresDSN
) -> None:
    url = postgres_db.url
    done = run_cli(
        home, 'plugin', 'run', 'store', '--path', plugin_dir, '--params', params(tmp_path),
        '--database', url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    where = f'postgresql://{postgres_db.user}@{postgres_db.host}:{postgres_db.port}'
    assert f'(journal: {where}/{postgres_db.dbname})' in done.stderr
    assert postgres_db.password not in done.stderr + done.stdout
    run_id = json.loads(done.stdout)['run_id']
    assert {'runs', 'steps', 'rollback_items', 'files', 'synapse_schema'} <= tables(postgres_db)
    # nothing of the journal or the index under SYNAPSE_HOME: only the blobs and the log
    left = written_under(home)
    assert 'runs.db' not in left and 'storage/index.db' not in left
    assert len([p for p in left if p.startswith('storage/blobs/')]) == 3

    listed = run_cli(home, 'runs', 'list', '--json', '--database', url)
    assert [r['id'] for r in json.loads(listed.stdout)] == [run_id]
    shown = run_cli(home, 'runs', 'show', run_id, '--json', SYNAPSE_DATABASE_URL=url)
    assert json.loads(shown.stdout)['status'] == 'succeeded'
    # without either, the SQLite journal under SYNAPSE_HOME knows no such run
    assert 'no run' in one_line_error(run_cli(home, 'runs', 'show', run_id))


def bad_urls(postgres_db: PostgresDSN) -> dict[str, tuple[str, str, str]]:
    """case -> (URL, what the message says about it, the password it must not show)."""
    from tests.services._common import free_port

    host = f'{postgres_db.host}:{postgres_db.port}'
    wrong = PostgresDSN(postgres_db.host, postgres_db.port, postgres_db.user, 'w0rng-pw', 'x')
    port = free_port()
    down = PostgresDSN(postgres_db.host, port, postgres_db.user, postgres_db.password, 'runs')
    return {
        'malformed': (
            f'postgresql://{postgres_db.user}:{postgres_db.password}@{postgres_db.host}:port/runs',
            'cannot be used',
            postgres_db.password,
        ),
        'unreachable': (down.url, f'{postgres_db.host}:{port}/runs', postgres_db.password),
        'wrong password': (
            wrong.with_dbname(postgres_db.dbname).url,
            f'{host}/{postgres_db.dbname}: password authentication failed',
            'w0rng-pw',
        ),
        'missing database': (
            postgres_db.with_dbname('nope_db').url,
            f'{host}/nope_db: database "nope_db" does not exist',
            postgres_db.password,
        ),
    }


@pytest.mark.parametrize('case', ['malformed', 'unreachable', 'wrong password', 'missing database'])
def test_a_database_that_cannot_be_used_is_one_line_exit_2_and_nothing_is_written(
    home: Path, plugin_dir: Path, tmp_path: Path, postgres_db: PostgresDSN, case: str
) -> None:
    url, says, password = bad_urls(postgres_db)[case]
    source = params(tmp_path)
    for how in ('--database', 'SYNAPSE_DATABASE_URL'):
        args = ['plugin', 'run', 'store', '--path', plugin_dir, '--params', source]
        if how == '--database':
            done = run_cli(home, *args, '--database', url)
        else:
            done = run_cli(home, *args, SYNAPSE_DATABASE_URL=url)
        line = one_line_error(done)
        assert says in line, line
        assert postgres_db.host in line and url.rpartition('/')[2] in line  # host, database
        assert password not in done.stderr + done.stdout
        assert written_under(home) == []  # no journal, no log, no blob
    assert tables(postgres_db) == set()  # nothing created in the real database either
    if case == 'missing database':
        with pytest.raises(Exception, match='does not exist'):
            tables(postgres_db.with_dbname('nope_db'))


@pytest.mark.parametrize(
    'command',
    [('runs', 'list'), ('runs', 'show', 'r1'), ('runs', 'rollback', 'r1'), ('runs', 'resume', 'r1'),
     ('db', 'status'), ('db', 'upgrade')],
)  # fmt: skip
def test_every_command_refuses_a_wrong_password_in_one_line(
    home: Path, postgres_db: PostgresDSN, command: tuple[str, ...]
) -> None:
    url, says, password = bad_urls(postgres_db)['wrong password']
    done = run_cli(home, *command, '--database', url)
    assert says in one_line_error(done)
    assert password not in done.stderr + done.stdout
    assert written_under(home) == []


def test_a_url_that_is_not_one_is_refused_too(home: Path) -> None:
    line = one_line_error(run_cli(home, 'runs', 'list', SYNAPSE_DATABASE_URL='/tmp/runs.db'))
    assert "'/tmp/runs.db' cannot be used: it is not a URL" in line
    line = one_line_error(run_cli(home, 'runs', 'list', '--database', 'mysql://u:pw@h/db'))
    assert "scheme 'mysql' is not supported" in line and 'pw' not in line


# ------------------------------------------------------------------ schema versions


def status(home: Path, *args: str) -> list[str]:
    done = run_cli(home, 'db', 'status', *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_db_status_and_upgrade_on_postgresql(home: Path, postgres_db: PostgresDSN) -> None:
    url = postgres_db.url
    where = f'{postgres_db.host}:{postgres_db.port}/{postgres_db.dbname}'
    lines = status(home, '--database', url)
    assert lines[0].startswith(f'run journal at postgresql://{postgres_db.user}@{where}: schema 0')
    assert 'not created yet' in lines[0]
    assert lines[1].startswith('storage index at postgresql://') and 'schema 0' in lines[1]
    assert tables(postgres_db) == set()  # status changes nothing

    done = run_cli(home, 'db', 'upgrade', '--database', url)
    assert done.returncode == 0, done.stderr
    assert (
        f'run journal at postgresql://{postgres_db.user}@{where}: schema none -> {SCHEMA_VERSION}'
        in done.stdout
    )
    [index_line] = [line for line in done.stdout.splitlines() if 'storage index at' in line]
    assert index_line.endswith('schema none -> 3')
    assert postgres_db.password not in done.stdout
    assert all('up to date' in line for line in status(home, '--database', url))
    again = run_cli(home, 'db', 'upgrade', '--database', url)
    assert again.stdout.count('schema up to date') == 2

    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE synapse_schema SET version = 9 WHERE name = 'run journal'")
    assert (
        f'newer than this synapse-sdk reads ({SCHEMA_VERSION})'
        in status(home, '--database', url)[0]
    )
    for command in (('db', 'upgrade'), ('runs', 'list')):
        line = one_line_error(run_cli(home, *command, '--database', url))
        assert (
            f'newer synapse-sdk (run journal schema 9; this one reads up to {SCHEMA_VERSION})'
            in line
        )


def test_db_upgrade_migrates_an_old_sqlite_journal(home: Path) -> None:
    path = home / 'runs.db'
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.executescript(V1_TABLES)
    lines = status(home)
    assert lines[0] == f'run journal at {path}: schema 1; older: `synapse db upgrade` (or the' + (
        f' first use) migrates it to {SCHEMA_VERSION}'
    )
    done = run_cli(home, 'db', 'upgrade')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f'run journal at {path}: schema 1 -> {SCHEMA_VERSION}'
    journal = Journal(path)
    try:
        assert journal.get_run('v1-run').status == 'succeeded'
    finally:
        journal.close()
