"""A PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` in a temp directory, on 127.0.0.1.

PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` account that Debian's package creates (else ``nobody``). Clients
log in with scram-sha-256 and a generated password, so tests can check that the
password never shows up in an error or a log. ``fsync`` is off: a stopped or
killed server keeps its data (the OS has it), only a machine crash would not.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from ._common import LOOPBACK, free_port, require_module, tail, unavailable

SUPERUSER = 'synapse'
ACCOUNTS = ('postgres', 'nobody')  # who runs the server when the tests run as root
_NAME = re.compile(r'[a-z_][a-z0-9_]{0,62}')


@dataclass(frozen=True)
class PostgresDSN:
    """Where and how to connect; the password stays out of ``repr``."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str

    @property
    def url(self) -> str:
        """``postgresql://user:password@127.0.0.1:port/dbname`` (psycopg and libpq take it)."""
        user, password = quote(self.user, safe=''), quote(self.password, safe='')
        return f'postgresql://{user}:{password}@{self.host}:{self.port}/{self.dbname}'

    def with_dbname(self, dbname: str) -> PostgresDSN:
        return dataclasses.replace(self, dbname=dbname)


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` with initdb and pg_ctl (or pg_ctl on PATH)."""
    candidates = sorted(
        Path('/usr/lib/postgresql').glob('*/bin'),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which('pg_ctl')
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / 'initdb').is_file() and (bindir / 'pg_ctl').is_file():
            return bindir
    return None


def server_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as under root; None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ACCOUNTS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    unavailable(f'running as root and none of the accounts {ACCOUNTS} exists to run PostgreSQL')


class PostgresServer:
    """One server for the test session; tests may stop, start or restart it."""

    def __init__(self, bindir: Path, workdir: Path, account: pwd.struct_passwd | None) -> None:
        self.bindir = bindir
        self.workdir = workdir
        self.datadir = workdir / 'data'
        self.logfile = workdir / 'server.log'
        self.account = account
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)

    @property
    def dsn(self) -> PostgresDSN:
        """The superuser on the ``postgres`` database."""
        return PostgresDSN(LOOPBACK, self.port, SUPERUSER, self.password, 'postgres')

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith('PG')}
        account = self.account
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )

    def init(self) -> None:
        if self.account:
            os.chown(self.workdir, self.account.pw_uid, self.account.pw_gid)
        pwfile = self.workdir / 'pwfile'
        pwfile.write_text(self.password + '\n', encoding='utf-8')
        if self.account:
            os.chown(pwfile, self.account.pw_uid, self.account.pw_gid)
        try:
            done = self._run(
                'initdb', '-D', str(self.datadir), '-U', SUPERUSER, f'--pwfile={pwfile}',
                '--auth=scram-sha-256', '--encoding=UTF8', '--no-locale', '--no-sync',
            )  # fmt: skip
        finally:
            pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f'initdb failed (exit {done.returncode}):\n{done.stderr[-2000:]}')

    def start(self) -> None:
        options = (
            f"-c listen_addresses='{LOOPBACK}' -p {self.port} "
            f"-c unix_socket_directories='{self.workdir}' "
            '-c fsync=off -c synchronous_commit=off -c full_page_writes=off'
        )
        done = self._run(
            'pg_ctl', 'start', '-D', str(self.datadir), '-l', str(self.logfile),
            '-o', options, '-w', '-t', '60',
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f'PostgreSQL did not start on {LOOPBACK}:{self.port} (exit {done.returncode}):\n'
                f'{done.stderr[-1000:]}\n{tail(self.logfile)}'
            )

    def start_on_a_free_port(self, tries: int = 3) -> None:
        """First start: a port taken since ``free_port`` gets another try elsewhere."""
        for attempt in range(tries):
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == tries - 1 or 'could not bind' not in tail(self.logfile):
                    raise
                self.port = free_port()

    def stop(self, mode: str = 'fast') -> None:
        """``mode``: 'smart', 'fast' (clients are disconnected) or 'immediate' (like a crash)."""
        done = self._run('pg_ctl', 'stop', '-D', str(self.datadir), '-m', mode, '-w', '-t', '60')
        if done.returncode != 0:
            raise RuntimeError(f'pg_ctl stop failed (exit {done.returncode}): {done.stderr}')

    def restart(self, mode: str = 'fast') -> None:
        """Stop and start again on the same port: open connections break, data stays."""
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        return self._run('pg_ctl', 'status', '-D', str(self.datadir)).returncode == 0

    def ensure_running(self) -> None:
        if not self.is_running():
            self.start()

    def create_database(self, name: str | None = None) -> PostgresDSN:
        """A new, empty database; its DSN logs in as the superuser."""
        psycopg = require_module('psycopg', 'psycopg[binary]')
        name = name or f'test_{secrets.token_hex(6)}'
        if not _NAME.fullmatch(name):
            raise ValueError(f'database name {name!r}: use lower-case letters, digits, _')
        with psycopg.connect(self.dsn.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn.with_dbname(name)

    def drop_database(self, name: str) -> None:
        psycopg = require_module('psycopg', 'psycopg[binary]')
        if not _NAME.fullmatch(name):
            raise ValueError(f'database name {name!r}: use lower-case letters, digits, _')
        with psycopg.connect(self.dsn.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope='session')
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 for the session, removed with its data afterwards."""
    bindir = find_bindir()
    if bindir is None:
        unavailable(
            'PostgreSQL is not installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin): '
            'apt-get install postgresql'
        )
    account = server_account()
    server = PostgresServer(bindir, Path(tempfile.mkdtemp(prefix='synapse-pg-')), account)
    try:
        server.init()
        server.start_on_a_free_port()
        yield server
    finally:
        if server.is_running():
            try:
                server.stop('fast')
            except RuntimeError:
                server.stop('immediate')
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDSN]:
    """A fresh database for one test, dropped afterwards; starts the server if a test stopped it."""
    postgres_server.ensure_running()
    dsn = postgres_server.create_database()
    yield dsn
    postgres_server.ensure_running()
    postgres_server.drop_database(dsn.dbname)
