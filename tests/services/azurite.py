"""An Azure Blob server for tests: Azurite (npm package ``azurite``) on 127.0.0.1.

Azurite keeps blobs in memory, sends no telemetry, and knows one account whose
key is generated per session (``AZURITE_ACCOUNTS``), not its well-known
development key, so tests can check that the key never leaks.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ._common import (
    LOOPBACK,
    free_port,
    require_module,
    stop_process,
    tail,
    unavailable,
    wait_for_port,
)

ACCOUNT = 'synapsetest'
AZURITE_VERSION = '3.35.0'  # the last release that runs on Node.js 20 (3.36 wants Node 21+)


@dataclass(frozen=True)
class AzuriteServer:
    """The account and its blob endpoint; the key stays out of ``repr``."""

    account_name: str
    account_key: str = field(repr=False)
    blob_endpoint: str

    @property
    def connection_string(self) -> str:
        return (
            f'DefaultEndpointsProtocol=http;AccountName={self.account_name};'
            f'AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};'
        )

    def service_client(self) -> Any:
        """An ``azure.storage.blob.BlobServiceClient`` for this account."""
        blob = require_module('azure.storage.blob', 'azure-storage-blob')
        return blob.BlobServiceClient.from_connection_string(self.connection_string)

    def create_container(self, name: str | None = None) -> str:
        """A new, empty container (a fresh name unless given)."""
        name = name or f'test-{secrets.token_hex(6)}'
        self.service_client().create_container(name)
        return name


def start_azurite(exe: str, workdir: Path, key: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start azurite-blob on a free port (another try if the port was taken meanwhile)."""
    env = {**os.environ, 'AZURITE_ACCOUNTS': f'{ACCOUNT}:{key}'}
    log = workdir / 'azurite.log'
    for _ in range(3):
        port = free_port()
        args = [
            exe, '--blobHost', LOOPBACK, '--blobPort', str(port),
            '--inMemoryPersistence', '--disableTelemetry', '--skipApiVersionCheck',
        ]  # fmt: skip
        with log.open('ab') as out:
            process = subprocess.Popen(
                args, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        if wait_for_port(port, process, timeout=60):
            return process, port
        stop_process(process)
        if 'EADDRINUSE' not in tail(log):
            break
    raise RuntimeError(f'Azurite did not start on {LOOPBACK}:{port}:\n{tail(log)}')


@pytest.fixture(scope='session')
def azurite_server() -> Iterator[AzuriteServer]:
    """Azurite's blob service on 127.0.0.1 for the session, stopped afterwards."""
    exe = shutil.which('azurite-blob')
    if exe is None:
        unavailable(f'Azurite is not installed: npm install -g azurite@{AZURITE_VERSION}')
    require_module('azure.storage.blob', 'azure-storage-blob')
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    with tempfile.TemporaryDirectory(prefix='synapse-azurite-') as workdir:
        process, port = start_azurite(exe, Path(workdir), key)
        try:
            yield AzuriteServer(ACCOUNT, key, f'http://{LOOPBACK}:{port}/{ACCOUNT}')
        finally:
            stop_process(process)
