"""Blob stores: where a storage client keeps file contents, behind one narrow interface.

Every store keeps the SDK's objects under ``blobs/`` below its root (a folder,
a bucket's prefix, a remote directory). Names are made here, never from user
input: ``blobs/<uuid>``; a store that writes through a temp file names it after
the object (``blobs/.upload-<uuid>.tmp``, :func:`temp_name`), so that what a
killed upload left is found from the object's name alone (``discard_temp``). A
store's ``put`` is create-only and verified (size, and a checksum where the
provider returns one) before it returns; ``delete`` of a missing object is not
an error; ``list`` is by prefix. Provider errors become
the SDK's (``StorageAccessError``: will not work as configured;
``StorageUnavailableError``: unreachable after the client's retries).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, Protocol

from synapse_sdk.clients._errors import SourceFileError, StorageConfigError

if TYPE_CHECKING:
    from synapse_sdk.clients._urls import StorageLocation

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
    'temp_name',
]

BLOB_DIR = 'blobs'
TEMP_PREFIX = '.upload-'
TEMP_SUFFIX = '.tmp'
CHUNK_SIZE = 1024 * 1024

Progress = Callable[[int, int], None]
"""``progress(bytes_done, total_bytes)``, after each chunk of a non-empty file."""


def new_blob() -> str:
    """A fresh blob id (what the index's ``blob`` column holds)."""
    return uuid.uuid4().hex


def is_blob(blob: str) -> bool:
    """Whether ``blob`` is a blob id this SDK makes (an index edited by hand may hold others)."""
    return len(blob) == 32 and not blob.strip('0123456789abcdef')


def object_name(blob: str) -> str:
    """The object's name below the store's root."""
    return f'{BLOB_DIR}/{blob}'


def temp_name(name: str) -> str:
    """Where a store that renames into place writes the object ``name`` first (folder,
    SFTP): beside it, named after it, so recovery finds it from the name."""
    folder, _, base = name.rpartition('/')
    return f'{folder}/{TEMP_PREFIX}{base}{TEMP_SUFFIX}'


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

    name: str  # below the store's root, e.g. 'blobs/<uuid>'
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

    def discard_temp(self, name: str) -> list[str]:
        """Remove what an interrupted ``put`` of ``name`` left beside it (a temp file; not
        the object itself); the names removed."""
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
        from synapse_sdk.clients._files import FileStore

        return FileStore(location)
    try:
        if location.scheme == 'sftp':
            from synapse_sdk.clients._sftp import SFTPStore

            return SFTPStore(location)
        from synapse_sdk.clients._objects import ObjectStoreBlobs

        return ObjectStoreBlobs(location)
    except ImportError as error:
        library = 'asyncssh' if location.scheme == 'sftp' else 'obstore'
        raise StorageConfigError(
            f'{location.scheme}:// storage needs {library}, which is not installed '
            f"({error}): pip install 'synapse-sdk[{location.extra}]'"
        ) from error
