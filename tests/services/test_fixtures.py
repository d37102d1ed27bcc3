"""Each service fixture serves the real protocol on 127.0.0.1, and the skip/fail rule holds."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ._common import unavailable
from .azurite import AzuriteServer
from .chromium import launch_chromium
from .postgres import PostgresDSN, PostgresServer
from .s3 import S3Server
from .sftp import SFTPServer

if TYPE_CHECKING:
    from playwright.sync_api import Page


# ------------------------------------------------------------------ the rule
@pytest.mark.parametrize('value', ['true', '1', 'yes'])
def test_a_missing_service_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv('CI', value)
    with pytest.raises(pytest.fail.Exception, match=r'no frobnicator .*CI must provide it'):
        unavailable('no frobnicator')


@pytest.mark.parametrize('value', [None, '', 'false', '0'])
def test_a_missing_service_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv('CI', raising=False)
    else:
        monkeypatch.setenv('CI', value)
    with pytest.raises(pytest.skip.Exception, match='no frobnicator'):
        unavailable('no frobnicator')


# ------------------------------------------------------------------ PostgreSQL
def test_postgres_stores_and_reads_rows(postgres_db: PostgresDSN) -> None:
    import psycopg

    assert postgres_db.host == '127.0.0.1'
    assert postgres_db.password not in repr(postgres_db)
    with psycopg.connect(postgres_db.url) as conn:
        conn.execute('CREATE TABLE runs (id text PRIMARY KEY, state text NOT NULL)')
        conn.execute("INSERT INTO runs VALUES ('r1', 'running'), ('r2', 'succeeded')")
        conn.commit()
        rows = conn.execute('SELECT id, state FROM runs ORDER BY id').fetchall()
        assert rows == [('r1', 'running'), ('r2', 'succeeded')]
        assert conn.execute('SHOW listen_addresses').fetchone() == ('127.0.0.1',)


def test_postgres_refuses_a_wrong_password(postgres_db: PostgresDSN) -> None:
    import psycopg

    wrong = PostgresDSN(postgres_db.host, postgres_db.port, postgres_db.user, 'wrong', 'postgres')
    with pytest.raises(psycopg.OperationalError, match='password authentication failed'):
        psycopg.connect(wrong.url, connect_timeout=10)


def test_postgres_restart_breaks_connections_and_keeps_data(
    postgres_server: PostgresServer, postgres_db: PostgresDSN
) -> None:
    import psycopg

    conn = psycopg.connect(postgres_db.url, autocommit=True)
    conn.execute('CREATE TABLE t (n int)')
    conn.execute('INSERT INTO t VALUES (1)')
    postgres_server.restart()
    with pytest.raises(psycopg.OperationalError):
        conn.execute('SELECT 1')
    conn.close()
    with psycopg.connect(postgres_db.url) as again:
        assert again.execute('SELECT n FROM t').fetchall() == [(1,)]


def test_postgres_db_starts_a_server_a_test_left_stopped(
    postgres_server: PostgresServer, request: pytest.FixtureRequest
) -> None:
    postgres_server.stop('immediate')  # like a crash
    assert not postgres_server.is_running()
    dsn = request.getfixturevalue('postgres_db')
    import psycopg

    with psycopg.connect(dsn.url) as conn:
        assert conn.execute('SELECT current_database()').fetchone() == (dsn.dbname,)


# ------------------------------------------------------------------ S3 (moto)
def test_s3_put_get_list(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key='runs/a.txt', Body=b'alpha')
    s3.put_object(Bucket=s3_bucket, Key='runs/b.txt', Body=b'beta')
    s3.put_object(Bucket=s3_bucket, Key='other.txt', Body=b'x')
    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix='runs/')
    assert [o['Key'] for o in listed['Contents']] == ['runs/a.txt', 'runs/b.txt']
    assert s3.get_object(Bucket=s3_bucket, Key='runs/b.txt')['Body'].read() == b'beta'
    assert s3_server.secret_access_key not in repr(s3_server)


def test_s3_a_client_without_settings_reaches_the_test_server(s3_bucket: str) -> None:
    """The session's AWS_* environment sends a plain client to moto, never to AWS."""
    import boto3

    names = [b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']]
    assert s3_bucket in names


# ------------------------------------------------------------------ Azure Blob (Azurite)
def test_azurite_put_get(azurite_server: AzuriteServer) -> None:
    service = azurite_server.service_client()
    container = service.get_container_client(azurite_server.create_container())
    container.upload_blob('runs/a.txt', b'alpha')
    container.upload_blob('runs/b.txt', b'beta')
    assert [b.name for b in container.list_blobs(name_starts_with='runs/')] == [
        'runs/a.txt',
        'runs/b.txt',
    ]
    assert container.download_blob('runs/a.txt').readall() == b'alpha'
    assert azurite_server.blob_endpoint.startswith('http://127.0.0.1:')
    assert azurite_server.account_key not in repr(azurite_server)


def test_azurite_refuses_a_wrong_key(azurite_server: AzuriteServer) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobServiceClient

    other_key = 'A' * 86 + '=='
    forged = azurite_server.connection_string.replace(azurite_server.account_key, other_key)
    with pytest.raises(HttpResponseError) as refused:
        BlobServiceClient.from_connection_string(forged).create_container('forged')
    assert refused.value.status_code == 403
    assert refused.value.error_code == 'AuthorizationFailure'


# ------------------------------------------------------------------ SFTP (asyncssh)
async def _sftp_round_trip(server: SFTPServer, local: Path, **login: object) -> bytes:
    import asyncssh

    async with (
        asyncssh.connect(
            server.host, server.port, username=server.username,
            known_hosts=str(server.known_hosts), agent_path=None, **login,
        ) as conn,
        conn.start_sftp_client() as sftp,
    ):  # fmt: skip
        await sftp.makedirs('/runs', exist_ok=True)
        await sftp.put(str(local), f'/runs/{local.name}')
        assert local.name in await sftp.listdir('/runs')
        back = local.with_suffix('.back')
        await sftp.get(f'/runs/{local.name}', str(back))
        return back.read_bytes()


def test_sftp_put_get_with_password(sftp_server: SFTPServer, tmp_path: Path) -> None:
    local = tmp_path / 'a.bin'
    local.write_bytes(b'\x00payload\xff')
    got = asyncio.run(
        _sftp_round_trip(sftp_server, local, password=sftp_server.password, client_keys=None)
    )
    assert got == b'\x00payload\xff'
    assert (sftp_server.root / 'runs' / 'a.bin').read_bytes() == b'\x00payload\xff'  # chroot
    assert sftp_server.password not in repr(sftp_server)


def test_sftp_put_get_with_key(sftp_server: SFTPServer, tmp_path: Path) -> None:
    local = tmp_path / 'k.txt'
    local.write_bytes(b'by key')
    got = asyncio.run(
        _sftp_round_trip(sftp_server, local, client_keys=[str(sftp_server.client_key)])
    )
    assert got == b'by key'


def test_sftp_refuses_a_wrong_password(sftp_server: SFTPServer, tmp_path: Path) -> None:
    import asyncssh

    local = tmp_path / 'x.txt'
    local.write_bytes(b'x')
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(_sftp_round_trip(sftp_server, local, password='wrong', client_keys=None))


# ------------------------------------------------------------------ Chromium (Playwright)
@pytest.fixture
def served_page(tmp_path: Path) -> Iterator[str]:
    """A page whose script sets the title, served by http.server on 127.0.0.1."""
    (tmp_path / 'index.html').write_text(
        '<!doctype html><title>loading</title><p id="n">0</p>'
        '<script>document.title = "Synapse runs"; document.getElementById("n").textContent = 6 * 7;'
        '</script>',
        encoding='utf-8',
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}/index.html'
    server.shutdown()
    server.server_close()


def test_chromium_opens_a_page_on_loopback(chromium_page: Page, served_page: str) -> None:
    from playwright.sync_api import Error

    response = chromium_page.goto(served_page)
    assert response is not None and response.status == 200
    assert chromium_page.title() == 'Synapse runs'  # the page's script ran
    assert chromium_page.text_content('#n') == '42'
    chromium_page.goto(served_page.replace('127.0.0.1', 'localhost'))
    assert chromium_page.title() == 'Synapse runs'
    # no other name resolves (a *.localhost name would, without any DNS, but for the rule)
    with pytest.raises(Error, match='ERR_NAME_NOT_RESOLVED'):
        chromium_page.goto(served_page.replace('127.0.0.1', 'synapse.localhost'))


def test_chromium_leaves_no_running_event_loop_behind(served_page: str) -> None:
    """Why the browser is per test: while Playwright runs, asyncio.run fails in its thread."""

    async def answer() -> int:
        return 42

    with launch_chromium() as browser:
        page = browser.new_page()
        page.goto(served_page)
        coroutine = answer()
        with pytest.raises(RuntimeError, match='running event loop'):
            asyncio.run(coroutine)
        coroutine.close()
    assert asyncio.run(answer()) == 42
