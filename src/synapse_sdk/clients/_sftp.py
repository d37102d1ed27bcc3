"""The SFTP store (``sftp://user@host:port/path``), through asyncssh.

obstore has no SFTP; asyncssh (pure Python, already what the test server runs
on) is driven from one event loop thread per store and process, so the
client's synchronous calls from any thread share one SSH connection.

A blob is written to a temp file beside its final name
(``blobs/.upload-<uuid>.tmp``) and renamed into place: a crash leaves at worst
that temp file, never a visible blob with partial content. Credentials come from SSH's own
chain: an agent (``SSH_AUTH_SOCK``), the keys in ``~/.ssh`` or ``?identity=``,
the password in ``SYNAPSE_SFTP_PASSWORD``; the host key must be known
(``~/.ssh/known_hosts`` or ``?known_hosts=``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterator
from concurrent.futures import Future
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

with warnings.catch_warnings():  # asyncssh still imports cryptography's DSA
    warnings.filterwarnings('ignore', message='.*DSA.*')
    import asyncssh

from synapse_sdk.clients._blobs import (
    CHUNK_SIZE,
    Digest,
    ObjectInfo,
    Reader,
    Writable,
    temp_name,
    write_all,
)
from synapse_sdk.clients._errors import (
    StorageAccessError,
    StorageIntegrityError,
    StorageUnavailableError,
)
from synapse_sdk.clients._urls import credentials_hint

if TYPE_CHECKING:
    from synapse_sdk.clients._urls import StorageLocation

T = TypeVar('T')
RETRY_DELAYS = (0.2, 0.5, 1.0)  # a dropped connection is made again after these waits
PASSWORD_ENV = 'SYNAPSE_SFTP_PASSWORD'


class SFTPStore:
    """A ``BlobStore`` in a directory of an SFTP server."""

    def __init__(self, location: StorageLocation) -> None:
        self.location = location
        self.root = '/' + location.prefix if location.prefix else '/'
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._conn: Any = None
        self._sftp: Any = None
        self._open: dict[str, Any] = {}  # the connection, for the finalizer
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {'location': self.location}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state['location'])  # type: ignore[misc]

    # ------------------------------------------------------------------ the interface

    def put(self, name: str, source: Reader) -> Digest:
        path = self._path(name)
        tmp = self._path(temp_name(name))
        sftp = self._client('uploading', name)
        try:
            self._run(sftp.makedirs(path.rsplit('/', 1)[0], exist_ok=True), 'uploading', name)
            handle = self._run(sftp.open(tmp, 'xb'), 'uploading', name)
            try:
                for chunk in source.chunks(CHUNK_SIZE):
                    self._run(handle.write(chunk), 'uploading', name)
            finally:
                self._run(handle.close(), 'uploading', name)
            self._run(sftp.rename(tmp, path), 'uploading', name)  # fails if it exists
        except BaseException:
            self._discard(tmp)
            raise
        digest = source.digest
        info = self.head(name)
        if info is None or info.size != digest.size:
            self.delete(name)
            raise StorageIntegrityError(
                f'storage {self.location.url}: the upload of {name} was not stored as sent '
                f'({digest.size} bytes sent); nothing was indexed, upload it again'
            )
        return digest

    def get(self, name: str, out: Writable) -> Digest:
        sftp = self._client('downloading', name)
        handle = self._run(sftp.open(self._path(name), 'rb'), 'downloading', name)
        try:
            return write_all(self._chunks(handle, name), out)
        finally:
            self._run(handle.close(), 'downloading', name)

    def head(self, name: str) -> ObjectInfo | None:
        try:
            attrs = self._retrying(lambda s: s.stat(self._path(name)), 'reading', name)
        except FileNotFoundError:
            return None
        return ObjectInfo(name, int(attrs.size or 0), _when(attrs.mtime))

    def delete(self, name: str) -> None:
        with suppress(FileNotFoundError):
            self._retrying(lambda s: s.remove(self._path(name)), 'deleting', name)

    def discard_temp(self, name: str) -> list[str]:
        tmp = temp_name(name)
        try:
            self._retrying(lambda s: s.remove(self._path(tmp)), 'deleting', tmp)
        except FileNotFoundError:
            return []
        return [tmp]

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            found = self._retrying(lambda s: _walk(s, self._path(prefix)), 'listing', prefix)
        except FileNotFoundError:
            return
        start = len(self.root.rstrip('/')) + 1
        for path, attrs in found:
            yield ObjectInfo(path[start:], int(attrs.size or 0), _when(attrs.mtime))

    def locate(self, name: str) -> str:
        loc = self.location
        netloc = f'{loc.user}@{loc.netloc}' if loc.user else loc.netloc
        return f'sftp://{netloc}{self._path(name)}'

    def check(self) -> None:
        try:
            attrs = self._retrying(lambda s: s.stat(self.root), 'opening', self.root)
        except FileNotFoundError:
            raise StorageAccessError(
                f'storage {self.location.url}: the folder {self.root} does not exist on the '
                'server; create it, or name an existing one in the storage URL'
            ) from None
        if not stat.S_ISDIR(attrs.permissions or 0):
            raise StorageAccessError(
                f'storage {self.location.url}: {self.root} is not a folder on the server'
            )

    # ------------------------------------------------------------------ internals

    def _path(self, name: str) -> str:
        return f'{self.root.rstrip("/")}/{name}'

    def _chunks(self, handle: Any, name: str) -> Iterator[bytes]:
        while chunk := self._run(handle.read(CHUNK_SIZE), 'downloading', name):
            yield chunk

    def _discard(self, tmp: str) -> None:
        try:
            sftp = self._client('cleaning up', tmp)
            self._run(sftp.remove(tmp), 'cleaning up', tmp)
        except BaseException:  # best effort: a temp file is invisible and collectable
            pass

    def _retrying(self, operation: Any, doing: str, name: str) -> Any:
        """Run an idempotent operation, connecting again after a dropped connection."""
        for delay in (*RETRY_DELAYS, None):
            try:
                return self._run(operation(self._client(doing, name)), doing, name)
            except StorageUnavailableError:
                if delay is None:
                    raise
                self._forget_connection()
                time.sleep(delay)
        raise AssertionError('unreachable')  # pragma: no cover

    def _client(self, doing: str, name: str) -> Any:
        with self._lock:
            loop = self._event_loop()
            if self._sftp is None:
                self._conn, self._sftp = self._submit(loop, self._connect(), doing, name)
                self._open['conn'] = self._conn
            return self._sftp

    def close(self) -> None:
        """Close the connection and stop the event loop (also done when the store is
        garbage collected, and at exit: the server sees a clean logout)."""
        with self._lock:
            finalizer, self._finalizer = self._finalizer, None
            self._loop, self._conn, self._sftp = None, None, None
        if finalizer is not None:
            finalizer()

    def _forget_connection(self) -> None:
        with self._lock:
            conn, self._conn, self._sftp = self._conn, None, None
            self._open.pop('conn', None)
        if conn is not None:
            conn.close()

    async def _connect(self) -> tuple[Any, Any]:
        loc = self.location
        host, port = _host_port(loc.netloc)
        options: dict[str, Any] = {'port': port}
        if loc.user:
            options['username'] = loc.user
        if loc.option('known_hosts'):
            options['known_hosts'] = os.path.expanduser(loc.option('known_hosts') or '')
        if loc.option('identity'):
            options['client_keys'] = [os.path.expanduser(loc.option('identity') or '')]
        if os.environ.get(PASSWORD_ENV):
            options['password'] = os.environ[PASSWORD_ENV]
        conn = await asyncio.wait_for(asyncssh.connect(host, **options), 30)
        try:
            return conn, await conn.start_sftp_client()
        except BaseException:
            conn.close()
            raise

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The store's event loop, running in its own thread; a new one in a forked child,
        or if the thread is gone (a call on a loop that does not run would never return)."""
        current = self._loop
        if current is not None and self._pid == os.getpid() and current.is_running():
            return current
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name='synapse-sftp', daemon=True).start()
        deadline = time.monotonic() + 10
        while not loop.is_running() and time.monotonic() < deadline:
            time.sleep(0.001)
        self._loop, self._pid, self._conn, self._sftp = loop, os.getpid(), None, None
        if self._finalizer is not None:  # a forked child: the parent's is not ours to run
            self._finalizer.detach()
        self._open = {}
        self._finalizer = weakref.finalize(self, _shut_down, loop, self._open, os.getpid())
        return loop

    def _run(self, coroutine: Awaitable[T], doing: str, name: str) -> T:
        return self._submit(self._event_loop(), coroutine, doing, name)

    def _submit(
        self,
        loop: asyncio.AbstractEventLoop,
        coroutine: Awaitable[T],
        doing: str,
        name: str,
    ) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(_awaiting(coroutine), loop)
        try:
            return future.result()
        except BaseException as error:
            if not future.done():
                future.cancel()
            if isinstance(error, asyncssh.Error | OSError) and not isinstance(
                error, FileNotFoundError
            ):
                raise self._translate(error, f'{doing} {name}') from error
            raise

    def _translate(self, error: BaseException, doing: str) -> BaseException:
        """The SDK's error for an SSH/SFTP failure (a missing file stays FileNotFoundError)."""
        where = f'storage {self.location.url}'
        if isinstance(error, asyncssh.SFTPNoSuchFile):
            return FileNotFoundError(str(error))
        if isinstance(error, asyncssh.HostKeyNotVerifiable):
            return StorageAccessError(
                f"{where}: the server's host key is not known; add it to ~/.ssh/known_hosts "
                '(ssh-keyscan), or give ?known_hosts=PATH'
            )
        if isinstance(error, asyncssh.PermissionDenied):
            return StorageAccessError(
                f'{where}: the server refused the login; check {credentials_hint("sftp")}'
            )
        if isinstance(error, asyncssh.SFTPPermissionDenied):
            return StorageAccessError(f'{where}: permission denied while {doing}')
        if isinstance(error, socket.gaierror):
            return StorageAccessError(f'{where}: the host name does not resolve; fix the URL')
        if isinstance(error, asyncssh.SFTPError):
            return StorageAccessError(f'{where}: the server refused {doing} ({error.reason})')
        return StorageUnavailableError(
            f'{where}: {doing} failed ({type(error).__name__}: {error}); check the host and '
            'the network, then try again'
        )


def _shut_down(loop: asyncio.AbstractEventLoop, held: dict[str, Any], pid: int) -> None:
    if os.getpid() != pid:  # a forked child: the loop's thread is in the parent
        return
    conn = held.pop('conn', None)
    if conn is not None and loop.is_running():
        closing = asyncio.run_coroutine_threadsafe(_close(conn), loop)
        with suppress(Exception):
            closing.result(5)
    loop.call_soon_threadsafe(loop.stop)


async def _close(conn: Any) -> None:
    conn.close()
    await conn.wait_closed()


async def _awaiting(awaitable: Awaitable[T]) -> T:
    """A coroutine of any awaitable (asyncssh's ``open`` returns a context-manager wrapper)."""
    return await awaitable


async def _walk(sftp: Any, top: str) -> list[tuple[str, Any]]:
    """Every file below ``top`` with its attributes (depth first)."""
    found: list[tuple[str, Any]] = []
    pending = [top]
    while pending:
        folder = pending.pop()
        entries: AsyncIterator[Any] = sftp.scandir(folder)
        async for entry in entries:
            name = entry.filename
            if name in ('.', '..'):
                continue
            path = f'{folder}/{name}'
            mode = entry.attrs.permissions or 0
            if stat.S_ISDIR(mode):
                pending.append(path)
            elif stat.S_ISREG(mode):
                found.append((path, entry.attrs))
    return found


def _host_port(netloc: str) -> tuple[str, int]:
    """``'host:2222'`` -> ``('host', 2222)``; ``'[::1]'`` -> ``('::1', 22)``."""
    host, port = netloc, 22
    if ':' in netloc and not netloc.endswith(']'):
        host, _, digits = netloc.rpartition(':')
        port = int(digits)
    return host.strip('[]'), port


def _when(mtime: int | float | None) -> datetime:
    return datetime.fromtimestamp(mtime or 0, UTC)
