"""Faults against real servers: a missing bucket, refused credentials, damage in transit,
a storage that goes away and comes back, an upload interrupted mid-part, a process
killed between storing and indexing. S3 on moto (through a TCP proxy where the fault is
the network's), Azure on Azurite, SFTP on asyncssh; all on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.services.proxy import Proxy, proxy_to
from tests.services.s3 import S3Server
from tests.services.sftp import SFTPServer

from synapse_sdk.clients import (
    ClientError,
    StorageAccessError,
    StorageIntegrityError,
    StorageUnavailableError,
    open_storage,
)
from synapse_sdk.errors import ErrorKind

from .conftest import PREFIX, azure_environment, s3_store, sftp_url

MiB = 1024 * 1024
Files = Callable[[str, bytes], Path]
SRC = Path(__file__).resolve().parents[2] / 'src'


def everything_said(error: BaseException) -> str:
    """The error as a user or a log can ever see it: message, notes, causes, traceback."""
    return ''.join(traceback.format_exception(error))


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[Proxy]:
    host, port = s3_server.endpoint_url.removeprefix('http://').split(':')
    with proxy_to(host, int(port)) as running:
        yield running


def through(proxy: Proxy, bucket: str, **options: str) -> str:
    query = '&'.join(f'{k}={v}' for k, v in {'endpoint': proxy.url, **options}.items())
    return f's3://{bucket}/{PREFIX}?{query}'


# --------------------------------------------------------------------- S3: permanent


def test_a_missing_bucket_is_one_line_naming_the_url(
    home: Path, s3_server: S3Server, files: Files
) -> None:
    client = open_storage('s3://no-such-bucket/x')
    with pytest.raises(StorageAccessError) as checked:
        client.check()
    with pytest.raises(StorageAccessError) as uploaded:
        client.upload_file(files('a.txt', b'a'))
    for caught in (checked, uploaded):
        message = str(caught.value)
        assert message.startswith("storage s3://no-such-bucket/x: the bucket 'no-such-bucket'")
        assert 'does not exist (NoSuchBucket); create it' in message
        assert '\n' not in message
        assert caught.value.kind is ErrorKind.BAD_INPUT
        assert s3_server.secret_access_key not in everything_said(caught.value)
    assert client.list_files() == []


def test_an_endpoint_that_does_not_resolve_is_bad_input(home: Path, files: Files) -> None:
    client = open_storage('s3://bucket-x/p?endpoint=http://no-such-host.invalid:9000&max_retries=0')
    with pytest.raises(StorageAccessError, match='host name does not resolve; fix the endpoint'):
        client.upload_file(files('a.txt', b'a'))


# --------------------------------------------------------------------- S3: transient


def test_an_unreachable_storage_fails_fast_after_retries_and_works_again_later(
    home: Path, s3_bucket: str, proxy: Proxy, files: Files
) -> None:
    url = through(proxy, s3_bucket, max_retries='2')
    source = files('a.txt', b'abc')
    proxy.down()
    client = open_storage(url)
    with pytest.raises(StorageUnavailableError) as first:
        client.upload_file(source, key='k')
    assert isinstance(first.value, ConnectionError)  # RetryPolicy(retry_on=ConnectionError)
    assert first.value.kind is ErrorKind.FAILED
    assert str(first.value).startswith(f'storage {url}: uploading blobs/')
    assert 'failed after retries' in str(first.value)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match='not tried again so soon'):
        client.upload_file(source, key='k')  # a rollback's next delete: no second wait
    assert time.monotonic() - started < 1
    assert client.list_files() == []

    proxy.up()
    later = open_storage(url)  # e.g. `synapse runs rollback` run again
    file_id = later.upload_file(source, key='k')
    assert later.get_file(file_id)['size'] == 3


def test_an_upload_damaged_in_transit_is_refused_and_leaves_nothing(
    home: Path, s3_server: S3Server, s3_bucket: str, proxy: Proxy, files: Files
) -> None:
    """moto stores what it receives; the client compares the ETag with the MD5 of what it
    sent, reads the object back when they differ, and refuses a stored copy that differs."""
    client = open_storage(through(proxy, s3_bucket))
    proxy.corrupt_next_put()
    with pytest.raises(StorageUnavailableError, match=r'was stored damaged \(sent 11 bytes'):
        client.upload_file(files('a.txt', b'hello world'), key='k')
    assert client.list_files() == [] and client.find_file('k') is None
    assert s3_store(s3_server, s3_bucket).objects() == {}
    file_id = client.upload_file(files('a.txt', b'hello world'), key='k')  # a retry stores it
    assert client.get_file(file_id)['size'] == 11


def test_a_put_whose_reply_was_lost_is_stored_once(
    home: Path, s3_server: S3Server, s3_bucket: str, proxy: Proxy, files: Files
) -> None:
    """The PUT reached the server, its reply did not reach the client: obstore tries again,
    and the create-only PUT finds the first try's object. Its content shows it is ours."""
    client = open_storage(through(proxy, s3_bucket))
    proxy.lose_next_put_reply()
    file_id = client.upload_file(files('a.txt', b'stored by the first try'), key='k')
    assert client.get_file(file_id)['size'] == 23
    assert list(s3_store(s3_server, s3_bucket).objects().values()) == [b'stored by the first try']


def test_an_upload_interrupted_mid_part_leaves_no_object_no_part_and_no_row(
    home: Path, s3_server: S3Server, s3_bucket: str, files: Files
) -> None:
    """Ctrl-C (or a step's cancel point in the progress callback) in the middle of a
    multipart upload: the upload is aborted, so S3 shows nothing and keeps no parts."""
    client = open_storage(f's3://{s3_bucket}/{PREFIX}')

    def interrupt(done: int, total: int) -> None:
        if done > 12 * MiB:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.upload_file(files('big.bin', os.urandom(30 * MiB)), key='k', progress=interrupt)
    assert client.list_files() == [] and client.find_file('k') is None
    assert s3_store(s3_server, s3_bucket).objects() == {}
    pending = s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get('Uploads', [])
    assert pending == []


def test_an_object_already_at_the_name_is_never_overwritten(
    home: Path, s3_server: S3Server, s3_bucket: str, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    import synapse_sdk.clients._storage as storage

    monkeypatch.setattr(storage, 'new_blob', lambda: 'c' * 32)
    raw = s3_store(s3_server, s3_bucket)
    raw.put_raw('blobs/' + 'c' * 32, b'somebody else')
    client = open_storage(f's3://{s3_bucket}/{PREFIX}')
    with pytest.raises(StorageIntegrityError, match='an object is there already'):
        client.upload_file(files('a.txt', b'mine'))
    assert raw.objects() == {'blobs/' + 'c' * 32: b'somebody else'}
    assert client.list_files() == []


# ------------------------------------------------------------ a process killed mid-way

KILLED_AFTER_STORING = """
import os, sys
from synapse_sdk.clients import open_storage
from synapse_sdk.clients._index import StorageIndex

def die(*args, **kwargs):
    os._exit(137)  # as SIGKILL would: the object is stored, its row never written

StorageIndex.insert_many = die
open_storage(sys.argv[1]).for_run('killed-run').upload_file(sys.argv[2], key='k')
"""


def test_a_process_killed_between_storing_and_indexing_leaves_an_invisible_orphan(
    home: Path, s3_server: S3Server, s3_bucket: str, files: Files
) -> None:
    url = f's3://{s3_bucket}/{PREFIX}'
    source = files('a.txt', b'stored, never indexed')
    env = {**os.environ, 'PYTHONPATH': str(SRC)}
    done = subprocess.run([sys.executable, '-c', KILLED_AFTER_STORING, url, str(source)], env=env)
    assert done.returncode == 137
    raw = s3_store(s3_server, s3_bucket)
    (orphan,) = raw.objects()
    assert orphan.startswith('blobs/')

    client = open_storage(url)
    assert client.list_files() == [] and client.find_file('k') is None  # invisible
    synapse = [sys.executable, '-m', 'synapse_sdk.cli', 'storage', 'gc', '--storage', url]
    listed = subprocess.run([*synapse, '--older-than', '0', '--json'], env=env, text=True,
                            capture_output=True)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert [o['name'] for o in report['orphans']] == [orphan] and report['removed'] == 0
    assert list(raw.objects()) == [orphan]  # a dry run by default
    young = subprocess.run([*synapse, '--delete'], env=env, text=True, capture_output=True)
    assert '0 orphan(s)' in young.stderr and list(raw.objects()) == [orphan]  # younger than 1d
    removed = subprocess.run([*synapse, '--older-than', '0', '--delete'], env=env, text=True,
                             capture_output=True)  # fmt: skip
    assert removed.returncode == 0, removed.stderr
    assert f'1 orphan(s), 21 bytes, in {url}; removed 1' in removed.stderr
    assert raw.objects() == {}
    assert s3_server.secret_access_key not in listed.stdout + removed.stderr


# ------------------------------------------------------------------ Azure, SFTP


def test_azure_refused_credentials_and_a_missing_container(
    home: Path, azurite_server: object, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.services.azurite import AzuriteServer

    assert isinstance(azurite_server, AzuriteServer)
    for name, value in azure_environment(azurite_server).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StorageAccessError, match="the container 'missing-one' does not exist"):
        open_storage('az://missing-one/x').check()
    container = azurite_server.create_container()
    wrong = 'A' * 43 + '='
    monkeypatch.setenv('AZURE_STORAGE_ACCOUNT_KEY', wrong)
    with pytest.raises(StorageAccessError) as caught:
        open_storage(f'az://{container}/x').upload_file(files('a.txt', b'a'))
    assert str(caught.value).startswith(f'storage az://{container}/x: access denied')
    assert 'AZURE_STORAGE_ACCOUNT_KEY' in str(caught.value)  # where the key comes from
    assert azurite_server.account_key not in everything_said(caught.value)


def test_sftp_password_login_refused_login_unknown_host_and_missing_folder(
    home: Path, sftp_server: SFTPServer, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sftp_server.root / 'pw').mkdir()
    host = f'{sftp_server.username}@{sftp_server.host}:{sftp_server.port}'
    by_password = f'sftp://{host}/pw?known_hosts={sftp_server.known_hosts}'
    monkeypatch.setenv('SYNAPSE_SFTP_PASSWORD', sftp_server.password)
    client = open_storage(by_password)
    file_id = client.upload_file(files('a.txt', b'by password'))
    assert client.download_file(file_id, files('x', b'')).read_bytes() == b'by password'

    monkeypatch.setenv('SYNAPSE_SFTP_PASSWORD', 'wrong')
    with pytest.raises(StorageAccessError, match='refused the login') as caught:
        open_storage(f'sftp://{host}/pw?known_hosts={sftp_server.known_hosts}').check()
    assert 'wrong' not in str(caught.value) and sftp_server.password not in str(caught.value)
    monkeypatch.delenv('SYNAPSE_SFTP_PASSWORD')

    empty = files('known_hosts', b'')
    with pytest.raises(StorageAccessError, match='host key is not known'):
        open_storage(
            f'sftp://{host}/pw?known_hosts={empty}&identity={sftp_server.client_key}'
        ).check()
    with pytest.raises(StorageAccessError, match='the folder /no/such does not exist'):
        open_storage(sftp_url(sftp_server, 'no/such')).check()


def test_an_unreachable_sftp_server_is_unavailable(home: Path, files: Files) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    client = open_storage(f'sftp://127.0.0.1:{port}/x')
    with pytest.raises(StorageUnavailableError) as caught:
        client.check()
    assert isinstance(caught.value, ClientError)
    assert str(caught.value).startswith(f'storage sftp://127.0.0.1:{port}/x: ')
