"""An SFTP server for tests: asyncssh on 127.0.0.1, in a thread with its own event loop.

Clients see a temp directory as ``/`` (chroot). One user logs in with a
generated password or with a generated key; the host key is generated too and
written to a ``known_hosts`` file, so clients can verify it instead of trusting
any host.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ._common import LOOPBACK, require_module

USERNAME = 'synapse'


@dataclass(frozen=True)
class SFTPServer:
    """How to reach and log in; the password stays out of ``repr``.

    ``root`` is the directory clients see as ``/``; ``client_key`` a private key
    file (OpenSSH format) that may log in as ``username``; ``known_hosts`` a file
    naming the server's host key for ``[127.0.0.1]:port``.
    """

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    root: Path
    client_key: Path
    known_hosts: Path


class _Loop:
    """An event loop running in a daemon thread, for a server the test thread does not block on."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name='sftp-server', daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def server_classes(asyncssh: Any, password: str, root: Path) -> tuple[type, Any]:
    """The SSH server (one user, password or key) and the chrooted SFTP factory."""

    class Server(asyncssh.SSHServer):  # type: ignore[misc,name-defined]
        def begin_auth(self, username: str) -> bool:
            return True  # always ask for credentials

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, given: str) -> bool:
            return username == USERNAME and hmac.compare_digest(given, password)

    def sftp_factory(channel: Any) -> Any:
        return asyncssh.SFTPServer(channel, chroot=str(root).encode())

    return Server, sftp_factory


async def _listen(asyncssh: Any, workdir: Path, root: Path, password: str) -> tuple[Any, int]:
    host_key = asyncssh.generate_private_key('ssh-ed25519')
    client_key = asyncssh.generate_private_key('ssh-ed25519')
    client_key.write_private_key(str(workdir / 'client_key'))
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
    server_cls, sftp_factory = server_classes(asyncssh, password, root)
    acceptor = await asyncssh.listen(
        LOOPBACK, 0,
        server_factory=server_cls, server_host_keys=[host_key],
        authorized_client_keys=authorized, sftp_factory=sftp_factory, allow_scp=False,
    )  # fmt: skip
    port = int(acceptor.sockets[0].getsockname()[1])
    public = host_key.export_public_key().decode().strip()
    (workdir / 'known_hosts').write_text(f'[{LOOPBACK}]:{port} {public}\n', encoding='utf-8')
    return acceptor, port


async def _close(acceptor: Any) -> None:
    acceptor.close()
    await acceptor.wait_closed()


@pytest.fixture(scope='session')
def sftp_server() -> Iterator[SFTPServer]:
    """An SFTP server on 127.0.0.1 for the session, rooted at a temp directory."""
    with warnings.catch_warnings():  # asyncssh still imports cryptography's DSA
        warnings.filterwarnings('ignore', message='DSA is deprecated')
        asyncssh = require_module('asyncssh', 'asyncssh')
    workdir = Path(tempfile.mkdtemp(prefix='synapse-sftp-'))
    root = workdir / 'root'
    root.mkdir()
    password = secrets.token_urlsafe(18)
    loop = _Loop()
    try:
        acceptor, port = loop.run(_listen(asyncssh, workdir, root, password))
        try:
            yield SFTPServer(
                LOOPBACK, port, USERNAME, password, root,
                workdir / 'client_key', workdir / 'known_hosts',
            )  # fmt: skip
        finally:
            loop.run(_close(acceptor))
    finally:
        loop.close()
        shutil.rmtree(workdir, ignore_errors=True)
