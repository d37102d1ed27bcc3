"""Blob stores: where a storage client keeps file contents, behind one narrow interface.

Every store keeps the SDK's objects under ``blobs/`` below its root (a folder,
a bucket's prefix, a remote directory). Names are made here, never from user
input: ``blobs/<uuid>``, or ``blobs/<run tag>/<uuid>`` for uploads made by a
run, so that recovery can find what a killed run's uploads left half-written
(:func:`run_tag`). A store's ``put`` is create-only and verified (size, and a
checksum where the provider returns one) before it returns; ``delete`` of a
missing object is not an error; ``list`` is by prefix. Provider errors become
the SDK's (``StorageAccessError``: will not work as configured;
``StorageUnavailableError``: unreachable after the client's retries).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, Protocol

from ..errors import SourceFileError, StorageConfigError

if TYPE_CHECKING:
    from ..urls import StorageLocation

__all__ = [
    'BLOB_DIR',
    'BlobStore',
    'Digest',
    'ObjectInfo',
    'Progress',
    'is_blob',
    'new_blob',
    'object_name',
    'open_blob_store',
    'run_tag',
]

BLOB_DIR = 'blobs'
TEMP_PREFIX = '.upload-'
TEMP_SUFFIX = '.tmp'
CHUNK_SIZE = 1024 * 1024

Progress = Callable[[int, int], None]
"""``progress(bytes_done, total_bytes)``, after each chunk of a non-empty file."""

_PLAIN_TAG = re.compile(r'[A-Za-z0-9_-]{1,64}')
_BLOB = re.compile(r'(?:(?:[A-Za-z0-9_-]{1,64}|~[0-9a-f]{32})/)?[0-9a-f]{32}')


def run_tag(run_id: str) -> str:
    """The folder of a run's uploads: its id when that is a plain name, else a hash of it
    (``~`` and 32 hex digits, which no plain name can be), so no run id leaves ``blobs/``."""
    if _PLAIN_TAG.fullmatch(run_id):
        return run_id
    digest = hashlib.sha256(run_id.encode('utf-8', 'surrogatepass')).hexdigest()
    return '~' + digest[:32]


def new_blob(tag: str | None) -> str:
    """A fresh blob id (what the index's ``blob`` column holds)."""
    name = uuid.uuid4().hex
    return f'{tag}/{name}' if tag else name


def is_blob(blob: str) -> bool:
    """Whether ``blob`` is a blob id this SDK makes (an index edited by hand may hold others)."""
    return _BLOB.fullmatch(blob) is not None


def object_name(blob: str) -> str:
    """The object's name below the store's root."""
    return f'{BLOB_DIR}/{blob}'


def temp_name(directory: str) -> str:
    """A partial object's name, next to where it will be renamed to (folder, SFTP)."""
    return f'{directory}/{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}'


class Writable(Protocol):
    """Where a download's bytes go (a file opened for writing)."""

    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class Digest:
    """What was stored: the size and SHA-256 of the bytes read from the source."""

    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectInfo:
    """An object in a store, as its listing shows it."""

    name: str  # below the store's root, e.g. 'blobs/<run>/<uuid>'
    size: int
    modified: datetime  # timezone-aware


class BlobStore(Protocol):
    """What a storage client needs of a place to keep bytes."""

    @property
    def location(self) -> StorageLocation: ...

    def put(self, name: str, source: Reader) -> Digest:
        """Store ``source`` under ``name`` (which must not exist), verified, or raise and
        leave no visible object."""
        ...

    def get(self, name: str, out: Writable) -> Digest:
        """Stream the object into ``out``; ``FileNotFoundError`` if there is none."""
        ...

    def head(self, name: str) -> ObjectInfo | None: ...

    def delete(self, name: str) -> None:
        """Remove the object; one that is already gone is not an error."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object below the folder ``prefix``, at any depth (partial ones too)."""
        ...

    def locate(self, name: str) -> str:
        """Where the object is, for ``FileInfo['path']``: a local path or a URL."""
        ...

    def check(self) -> None:
        """Raise ``StorageAccessError``/``StorageUnavailableError`` if the store cannot
        be used (no such bucket, access denied, unreachable); creates nothing."""
        ...


class Reader:
    """An upload's source, read once in chunks: hashed, counted and reported as it goes.

    Read errors become ``SourceFileError`` (the source is at fault, not the store).
    Extra hashes (``md5`` of the whole and of each part) are what S3 returns as ETag.
    """

    def __init__(
        self,
        handle: BinaryIO,
        path: str,
        size: int,
        progress: Progress | None = None,
    ) -> None:
        self.handle = handle
        self.path = path
        self.size = size  # as the file system said when it was opened
        self.progress = progress
        self.done = 0
        self._sha256 = hashlib.sha256()

    def read(self, size: int) -> bytes:
        try:
            chunk = self.handle.read(size)
        except OSError as exc:
            raise SourceFileError(self.path, f'read failed ({exc.strerror or exc})') from exc
        if chunk:
            self._sha256.update(chunk)
            self.done += len(chunk)
            if self.progress is not None:
                self.progress(self.done, max(self.size, self.done))
        return chunk

    def chunks(self, size: int = CHUNK_SIZE) -> Iterator[bytes]:
        while chunk := self.read(size):
            yield chunk

    @property
    def digest(self) -> Digest:
        return Digest(self.done, self._sha256.hexdigest())


def write_all(chunks: Iterable[bytes], out: Writable) -> Digest:
    """Write a download's chunks to ``out``; what was written, to check against the index."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
    return Digest(size, digest.hexdigest())


def open_blob_store(location: StorageLocation) -> BlobStore:
    """The store for ``location``; an extra that is missing is one line naming it."""
    if location.is_local:
        from .files import FileStore

        return FileStore(location)
    try:
        if location.scheme == 'sftp':
            from .sftp import SFTPStore

            return SFTPStore(location)
        from .objects import ObjectStoreBlobs

        return ObjectStoreBlobs(location)
    except ImportError as error:
        library = 'asyncssh' if location.scheme == 'sftp' else 'obstore'
        raise StorageConfigError(
            f'{location.scheme}:// storage needs {library}, which is not installed '
            f"({error}): pip install 'synapse-sdk[{location.extra}]'"
        ) from error
