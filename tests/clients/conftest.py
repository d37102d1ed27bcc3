"""Every kind of storage, each on a real server on 127.0.0.1 (tests/services), seen two
ways: through the SDK's client, and through an independent client of the provider
(boto3, azure-storage-blob, the SFTP server's folder) that tests read and damage it with.

And the storage index on each database: ``index_database`` (a test that asks for it runs
once with the index in its root's SQLite file, once in a fresh PostgreSQL database that
``SYNAPSE_DATABASE_URL`` names, as ``synapse --database URL`` would)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.services.azurite import AzuriteServer
from tests.services.s3 import S3Server
from tests.services.sftp import SFTPServer

from synapse_sdk._paths import DATABASE_URL_VARIABLE

KINDS = ['folder', 'memory', 's3', 'azure', 'sftp']
PREFIX = 'team/data'


@dataclass
class Store:
    """A storage URL, and raw access to what is stored below its prefix."""

    kind: str
    url: str
    objects: Callable[[], dict[str, bytes]]  # name below the prefix -> content
    put_raw: Callable[[str, bytes], None]
    remove_raw: Callable[[str], None]
    outside: Callable[[], list[str]]  # objects of the bucket/container/server NOT below it


@pytest.fixture(params=['sqlite', 'postgresql'])
def index_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``'sqlite'``, or the URL of the PostgreSQL database the index is in."""
    if request.param == 'sqlite':
        monkeypatch.delenv(DATABASE_URL_VARIABLE, raising=False)
        return 'sqlite'
    url: str = request.getfixturevalue('postgres_db').url
    monkeypatch.setenv(DATABASE_URL_VARIABLE, url)
    return url


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SYNAPSE_HOME (where the index of a non-folder storage lives)."""
    path = tmp_path / 'home'
    monkeypatch.setenv('SYNAPSE_HOME', str(path))
    monkeypatch.delenv('SYNAPSE_STORAGE', raising=False)
    return path


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, home: Path, tmp_path: Path) -> Store:
    return make_store(request.param, request, tmp_path)


def make_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if kind == 'folder':
        return folder_store(tmp_path / 'storage')
    if kind == 'memory':
        return memory_store(f'm{secrets.token_hex(4)}')
    if kind == 's3':
        server: S3Server = request.getfixturevalue('s3_server')
        return s3_store(server, request.getfixturevalue('s3_bucket'))
    if kind == 'azure':
        return azure_store(request.getfixturevalue('azurite_server'), request)
    return sftp_store(request.getfixturevalue('sftp_server'))


def folder_store(root: Path) -> Store:
    def objects() -> dict[str, bytes]:
        if not root.exists():
            return {}
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob('*')
            if p.is_file() and not p.name.startswith('index.db')
        }

    def put_raw(name: str, data: bytes) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)

    return Store('folder', str(root), objects, put_raw, lambda n: (root / n).unlink(), list)


def memory_store(name: str) -> Store:
    import obstore

    from synapse_sdk.clients import _objects as memory

    def raw() -> obstore.store.MemoryStore:
        return memory._MEMORY_STORES.setdefault(name, obstore.store.MemoryStore())

    def objects() -> dict[str, bytes]:
        found = [m['path'] for chunk in obstore.list(raw(), PREFIX) for m in chunk]
        return {p[len(PREFIX) + 1 :]: bytes(obstore.get(raw(), p).bytes()) for p in found}

    return Store(
        'memory',
        f'memory://{name}/{PREFIX}',
        objects,
        lambda n, data: obstore.put(raw(), f'{PREFIX}/{n}', data),
        lambda n: obstore.delete(raw(), f'{PREFIX}/{n}'),
        lambda: [
            m['path']
            for chunk in obstore.list(raw())
            for m in chunk
            if not m['path'].startswith(PREFIX + '/')
        ],
    )


def s3_store(server: S3Server, bucket: str) -> Store:
    s3 = server.client()

    def names(prefix: str = '') -> list[str]:
        pages = s3.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix)
        return [o['Key'] for page in pages for o in page.get('Contents', [])]

    def objects() -> dict[str, bytes]:
        return {
            key[len(PREFIX) + 1 :]: s3.get_object(Bucket=bucket, Key=key)['Body'].read()
            for key in names(PREFIX + '/')
        }

    return Store(
        's3',
        f's3://{bucket}/{PREFIX}',
        objects,
        lambda n, data: s3.put_object(Bucket=bucket, Key=f'{PREFIX}/{n}', Body=data),
        lambda n: s3.delete_object(Bucket=bucket, Key=f'{PREFIX}/{n}'),
        lambda: [k for k in names() if not k.startswith(PREFIX + '/')],
    )


def azure_environment(server: AzuriteServer) -> dict[str, str]:
    """How a user points the SDK at an account: the provider's own variables."""
    return {
        'AZURE_STORAGE_ACCOUNT_NAME': server.account_name,
        'AZURE_STORAGE_ACCOUNT_KEY': server.account_key,
        'AZURE_STORAGE_ENDPOINT': server.blob_endpoint,
    }


def azure_store(server: AzuriteServer, request: pytest.FixtureRequest) -> Store:
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue('monkeypatch')
    for name, value in azure_environment(server).items():
        monkeypatch.setenv(name, value)
    container_name = server.create_container()
    container = server.service_client().get_container_client(container_name)

    def names(prefix: str | None = None) -> list[str]:
        return [b.name for b in container.list_blobs(name_starts_with=prefix)]

    def objects() -> dict[str, bytes]:
        return {
            n[len(PREFIX) + 1 :]: container.download_blob(n).readall() for n in names(PREFIX + '/')
        }

    return Store(
        'azure',
        f'az://{container_name}/{PREFIX}',
        objects,
        lambda n, data: container.upload_blob(f'{PREFIX}/{n}', data),
        lambda n: container.delete_blob(f'{PREFIX}/{n}'),
        lambda: [n for n in names() if not n.startswith(PREFIX + '/')],
    )


def sftp_url(server: SFTPServer, path: str) -> str:
    return (
        f'sftp://{server.username}@{server.host}:{server.port}/{path}'
        f'?known_hosts={server.known_hosts}&identity={server.client_key}'
    )


def sftp_store(server: SFTPServer) -> Store:
    top = f'runs-{secrets.token_hex(4)}'
    (server.root / top).mkdir()
    inner = folder_store(server.root / top / PREFIX)
    outer = server.root / top

    def outside() -> list[str]:
        return [
            p.relative_to(outer).as_posix()
            for p in outer.rglob('*')
            if p.is_file() and not p.is_relative_to(outer / PREFIX)
        ]

    return Store(
        'sftp',
        sftp_url(server, f'{top}/{PREFIX}'),
        inner.objects,
        inner.put_raw,
        inner.remove_raw,
        outside,
    )


@pytest.fixture
def files(tmp_path: Path) -> Callable[..., Path]:
    """``files('a.txt', b'...')``: a source file to upload."""

    def make(name: str, data: bytes) -> Path:
        path = tmp_path / 'src' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return make
