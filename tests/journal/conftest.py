"""Helpers for the run journal tests.

Every test gets its own ``SYNAPSE_HOME`` under ``tmp_path`` (the journal is
``$SYNAPSE_HOME/runs.db``, the storage ``$SYNAPSE_HOME/storage``); nothing
touches ``~/.synapse``. Subprocesses get the same home through their
environment, and ``PYTHONDONTWRITEBYTECODE`` so that no ``__pycache__`` is
left in a plugin folder of the repository.

- ``FnStep`` / ``make_action``: in-test actions made of steps given as functions;
- ``dispatch``: run an action journaled, in this process;
- ``journal_database``: where the test's journal lives. SQLite
  (``$SYNAPSE_HOME/runs.db``) unless the test module is marked
  ``both_databases``: then each test runs twice, the second time on a fresh
  PostgreSQL database (the ``postgres_db`` fixture) that ``SYNAPSE_DATABASE_URL``
  names for this process and its subprocesses, storage index included;
- ``peek_*``: read the journal with a second, independent connection (what
  another process, or the next process, would see);
- ``cli``: the ``synapse`` console script as a subprocess;
- ``plugin_dir``: a copy of ``tests/journal/plugin`` (action ``store``: prepare,
  store, finalize; ``export``: prepare, shard, store, finalize; crash points set
  through the environment);
- ``storage_snapshot``: the storage folder, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from synapse_sdk._paths import DATABASE_URL_VARIABLE
from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.db import is_url, open_database
from synapse_sdk.execution import run_action
from synapse_sdk.journal import Journal
from synapse_sdk.journal._schema import journal_schema
from synapse_sdk.plugins.actions import ActionContext, ActionOrigin, BaseAction
from synapse_sdk.plugins.steps import BaseStep, RunListener, StepRegistry
from synapse_sdk.runtime import MemoryLogger, RuntimeContext
from synapse_sdk.testing import FunctionStep

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / 'examples' / 'file_upload'
PLUGIN_SOURCE = Path(__file__).resolve().parent / 'plugin'
SYNAPSE = str(Path(sys.executable).parent / 'synapse')

RUN_COLUMNS = {
    'id',
    'entrypoint',
    'action',
    'plugin_path',
    'params',
    'status',
    'started_at',
    'ended_at',
    'progress',
    'error',
    'host',
    'pid',
    'attempts',
    'cwd',
    'plugin',
    'storage',
    'lease_owner',
    'lease_until',
    'recoverer',
    'recoverer_until',
    'cancel_requested_at',
    'cancel_requested_by',
    'ray_job_id',
    'ray_address',
}
STEP_COLUMNS = {
    'index',
    'name',
    'weight',
    'status',
    'started_at',
    'ended_at',
    'duration',
    'data',
    'rollback_data',
    'error',
    'attempts',
    'has_snapshot',
}


# --------------------------------------------------------------- in-test actions


class Params(BaseModel):
    tag: str = 'default'


FnStep = FunctionStep  # the testing kit's step made of functions


def make_action(
    *steps: BaseStep[Any], context_class: type[ActionContext] = ActionContext
) -> type[BaseAction[Params]]:
    """An action class running ``steps`` on a ``context_class`` context."""

    class InTestAction(BaseAction[Params]):
        def setup_steps(self, registry: StepRegistry[Any]) -> None:
            for step in steps:
                registry.register(step)

    InTestAction.context_class = context_class  # type: ignore[assignment]
    return InTestAction


@dataclass
class Dispatched:
    run_id: str
    result: dict[str, Any] | None
    error: BaseException | None
    logger: MemoryLogger


def dispatch(
    action: type[BaseAction[Any]],
    journal: Journal,
    params: dict[str, Any] | None = None,
    *,
    origin: ActionOrigin | None = None,
    listeners: Iterable[RunListener] = (),
    client: Any = None,
) -> Dispatched:
    """Run ``action`` journaled in this process; an exception is returned, not raised.

    ``KeyboardInterrupt`` is caught too, so a test can check what the journal
    says about an interrupted run.
    """
    logger = MemoryLogger()
    runtime = RuntimeContext(logger=logger, client=client)
    try:
        result = run_action(
            action, params or {}, runtime, journal=journal, origin=origin, listeners=listeners
        )
    except BaseException as error:  # noqa: BLE001 - the test inspects it
        return Dispatched(runtime.run_id, None, error, logger)
    return Dispatched(runtime.run_id, result, None, logger)


# --------------------------------------------------------------- the database, read directly

Where = Journal | Path | str  # a journal, or where one lives (a path, a URL)


def connect(where: Where) -> Any:
    """A second connection to the journal, independent of any Journal object: sqlite3's
    own (which neither creates nor migrates anything), or one to the PostgreSQL database."""
    location = _location(where)
    if is_url(location):
        return open_database(location, journal_schema()).connect()
    return sqlite3.connect(location, timeout=30.0, isolation_level=None)


def _location(where: Where) -> str | os.PathLike[str]:
    return where.location if isinstance(where, Journal) else where


def peek(where: Where, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    conn = connect(where)
    try:
        return list(conn.execute(sql, tuple(args)).fetchall())
    finally:
        conn.close()


def write(where: Where, sql: str, args: Iterable[Any] = ()) -> None:
    """One statement, committed, through a second connection."""
    conn = connect(where)
    try:
        conn.execute(sql, tuple(args))
    finally:
        conn.close()


def _dicts(where: Where, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    conn = connect(where)
    try:
        cursor = conn.execute(sql, args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        conn.close()


def peek_steps(where: Where, run_id: str) -> dict[str, dict[str, Any]]:
    """``{step name: row as dict}`` of the run, as committed right now."""
    rows = _dicts(where, 'SELECT * FROM steps WHERE run_id = ? ORDER BY idx', (run_id,))
    return {row['name']: row for row in rows}


def peek_run(where: Where, run_id: str) -> dict[str, Any] | None:
    rows = _dicts(where, 'SELECT * FROM runs WHERE id = ?', (run_id,))
    return rows[0] if rows else None


def peek_items(where: Where, run_id: str) -> list[tuple[int, str, Any, int]]:
    """``(step index, key, decoded value, append)`` rows of rollback_items, in order."""
    rows = peek(
        where,
        'SELECT idx, key, value, append FROM rollback_items WHERE run_id = ? ORDER BY seq',
        (run_id,),
    )
    return [(idx, key, json.loads(value), int(append)) for idx, key, value, append in rows]


def copy_run(source: Where, target: Where, run_id: str) -> None:
    """Put what ``source`` has committed of the run into ``target`` (either database), as
    the next process would find it: a killed process leaves exactly that behind."""
    tables = (('runs', 'id', ''), ('steps', 'run_id', ' ORDER BY idx'))
    tables += (('rollback_items', 'run_id', ' ORDER BY seq'),)
    reads = {
        table: _dicts(source, f'SELECT * FROM {table} WHERE {key} = ?{order}', (run_id,))
        for table, key, order in tables
    }
    open_database(_location(target), journal_schema()).connect().close()  # has the tables
    conn = connect(target)
    try:
        conn.execute('BEGIN')
        for table, key, _ in reversed(tables):
            conn.execute(f'DELETE FROM {table} WHERE {key} = ?', (run_id,))
        for table, _, _ in tables:
            for row in reads[table]:
                row.pop('seq', None)  # the target numbers its rows itself
                if 'append' in row:
                    row['append'] = bool(row['append'])
                names, marks = ', '.join(row), ', '.join('?' * len(row))
                sql = f'INSERT INTO {table} ({names}) VALUES ({marks})'
                conn.execute(sql, tuple(row.values()))
        conn.execute('COMMIT')
    finally:
        conn.close()


def default_location(home: Path) -> str | Path:
    """Where ``Journal()`` puts the journal now: SYNAPSE_DATABASE_URL, else under ``home``."""
    return os.environ.get(DATABASE_URL_VARIABLE) or home / 'runs.db'


# --------------------------------------------------------------- storage


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_files(folder: Path, count: int, seed: int, prefix: str = 'f') -> dict[str, str]:
    """``count`` small files with unique names and random content; ``{name: sha256}``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for i in range(count):
        path = folder / f'{prefix}{i:04d}.bin'
        path.write_bytes(rng.randbytes(rng.randint(1, 256)))
        files[path.name] = sha256(path)
    return files


def stored(home: Path) -> list[tuple[int, str, str]]:
    """``(id, name, checksum)`` of every indexed file; each blob is checked against its sum."""
    client = LocalBackendClient(home / 'storage')
    entries = []
    for info in client.list_files():
        blob = Path(info['path'])
        assert blob.is_file(), f'file {info["id"]} is indexed but its blob is missing'
        assert sha256(blob) == info['checksum'], f'blob of file {info["id"]} is damaged'
        entries.append((info['id'], info['name'], info['checksum']))
    return entries


def storage_snapshot(home: Path) -> dict[str, str]:
    """The storage folder as it is: every file (temp files and blobs included) by its
    sha256, and the index by its rows (its pages change with any write, even an undone one).
    Equal snapshots: the folder holds byte for byte the same files."""
    root = home / 'storage'
    state = {
        p.relative_to(root).as_posix(): sha256(p)
        for p in sorted(root.rglob('*'))
        if p.is_file() and not p.name.startswith('index.db')
    }
    conn = connect(root / 'index.db')
    try:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        for table in sorted(tables & {'files', 'partial'}):
            rows = conn.execute(f'SELECT * FROM {table} ORDER BY 1').fetchall()
            state[f'index.db:{table}'] = repr(rows)
    finally:
        conn.close()
    return state


def assert_storage_holds_only_indexed_files(home: Path) -> None:
    """No temp file, no blob that no row refers to, no write still announced."""
    state = storage_snapshot(home)
    blobs = {name.removeprefix('blobs/') for name in state if name.startswith('blobs/')}
    indexed = {row[0] for row in peek(home / 'storage' / 'index.db', 'SELECT blob FROM files')}
    others = [name for name in state if not name.startswith(('blobs/', 'index.db:'))]
    assert others == [], f'left in the storage: {others}'
    assert blobs == indexed, f'blobs no row refers to: {sorted(blobs - indexed)}'
    assert state.get('index.db:partial', '[]') == '[]', state['index.db:partial']


def pre_store(home: Path, tmp: Path, count: int = 3) -> list[tuple[int, str, str]]:
    """Store ``count`` files unrelated to any run; returns them as ``stored`` lists them."""
    folder = tmp / 'unrelated'
    make_files(folder, count, seed=99, prefix='unrelated_')
    client = LocalBackendClient(home / 'storage')
    for path in sorted(folder.iterdir()):
        client.upload_file(path)
    return stored(home)


# --------------------------------------------------------------- subprocesses

TEST_PLUGIN_SWITCHES = (
    'JT_CRASH_AFTER',
    'JT_CRASH_IN',
    'JT_FAIL_IN',
    'JT_KILL_IN_UPLOAD',
    'JT_REPORT_IN',
    'JT_FIRST_ATTEMPT_FAILS_AFTER',
    'JT_ROLLBACK_GATE',
    'JT_DELETE_LOG',
    'JT_CRASH_ROLLBACK_AFTER',
    'JT_SLOW',
)


def subprocess_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env['SYNAPSE_HOME'] = str(home)
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    env['COLUMNS'] = '200'
    for name in ('FORCE_COLOR', 'TTY_COMPATIBLE', 'TTY_INTERACTIVE'):
        env.pop(name, None)
    for name in TEST_PLUGIN_SWITCHES:
        env.pop(name, None)
    env.update(extra)
    return env


def run_cli(
    home: Path, *args: str | Path, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``synapse ARGS`` with ``SYNAPSE_HOME=home`` (extra keyword arguments: environment)."""
    return subprocess.run(
        [SYNAPSE, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or home.parent,
        env=subprocess_env(home, **env),
        timeout=120,
        check=False,
    )


def cli_json(home: Path, *args: str | Path) -> Any:
    """Run a command that prints JSON and must exit 0; the parsed output."""
    done = run_cli(home, *args)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a command that exited 2, checked to be one ``error:`` line."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith('error: '), lines[0]
    assert 'Traceback' not in done.stderr
    return lines[0]


def journal_run_ids(home: Path) -> list[str]:
    """The runs in the journal ``Journal()`` uses now (none if it was never created)."""
    where = default_location(home)
    if isinstance(where, Path):
        if not where.exists():
            return []
        tables = peek(
            where, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
        )
        if not tables:  # killed while the journal was being created: no run was recorded
            return []
    return [row[0] for row in peek(where, 'SELECT id FROM runs ORDER BY started_at')]


# --------------------------------------------------------------- fixtures


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / 'home'
    monkeypatch.setenv('SYNAPSE_HOME', str(home))
    return home


DATABASES = ('sqlite', 'postgresql')


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        'markers', 'both_databases: run on SQLite and on PostgreSQL (see journal_database)'
    )
    config.addinivalue_line('markers', 'sqlite_only: not run twice in a both_databases module')


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker('both_databases') is not None
    if marked and metafunc.definition.get_closest_marker('sqlite_only') is None:
        metafunc.parametrize('journal_database', DATABASES, indirect=True)


@pytest.fixture(autouse=True)
def journal_database(
    request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Where this test's journal lives: its SQLite file, or (the ``postgresql`` param of
    a ``both_databases`` test) a fresh PostgreSQL database, which SYNAPSE_DATABASE_URL
    then names for this process and its subprocesses (the storage index goes there too)."""
    if getattr(request, 'param', 'sqlite') == 'sqlite':
        monkeypatch.delenv(DATABASE_URL_VARIABLE, raising=False)
        return str(home / 'runs.db')
    url: str = request.getfixturevalue('postgres_db').url
    monkeypatch.setenv(DATABASE_URL_VARIABLE, url)
    return url


@pytest.fixture
def journal(journal_database: str) -> Iterator[Journal]:
    store = Journal(journal_database)
    yield store
    store.close()


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A copy of the test plugin (so loading it leaves nothing in the repository)."""
    target = tmp_path / 'plugin'
    shutil.copytree(PLUGIN_SOURCE, target, ignore=shutil.ignore_patterns('__pycache__'))
    return target
