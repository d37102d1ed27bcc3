"""The folder store (``file://``, the default): plain files, no extra needed.

A blob is written to a temp file beside its final name, fsynced, renamed into
place and its folder fsynced, so it is durable before the index row exists.
A crash leaves at worst a temp file or an unindexed blob: invisible (only
indexed rows are listed) and collectable.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import StorageAccessError
from . import (
    BLOB_DIR,
    CHUNK_SIZE,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    Digest,
    ObjectInfo,
    Reader,
    Writable,
    write_all,
)

if TYPE_CHECKING:
    from ..urls import StorageLocation


class FileStore:
    """Blobs as files below a folder."""

    def __init__(self, location: StorageLocation) -> None:
        self.location = location
        self.root = location.folder

    def put(self, name: str, source: Reader) -> Digest:
        target = self.root / name
        fd, tmp = _create_temp_beside(target)
        try:
            with os.fdopen(fd, 'wb') as out:
                _copy(source, out)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return source.digest

    def get(self, name: str, out: Writable) -> Digest:
        with open(self.root / name, 'rb') as src:
            return write_all(iter(lambda: src.read(CHUNK_SIZE), b''), out)

    def head(self, name: str) -> ObjectInfo | None:
        try:
            st = os.stat(self.root / name)
        except FileNotFoundError:
            return None
        return ObjectInfo(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, name: str) -> None:
        path = self.root / name
        path.unlink(missing_ok=True)
        if path.parent != self.root / BLOB_DIR:  # a run's folder: gone with its last blob
            with suppress(OSError):
                path.parent.rmdir()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        top = self.root / prefix
        for folder, _dirs, files in os.walk(top):
            for file in sorted(files):
                path = Path(folder) / file
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue  # removed meanwhile
                if stat.S_ISREG(st.st_mode):
                    name = path.relative_to(self.root).as_posix()
                    yield ObjectInfo(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def locate(self, name: str) -> str:
        return str(self.root / name)

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StorageAccessError(
                f'storage folder {self.root} is not a folder; give a folder path as --storage'
            )


def _create_temp_beside(target: Path) -> tuple[int, Path]:
    """A new temp file in ``target``'s folder, made if missing (a run's folder can be
    removed by a delete in another thread between the two: then made again)."""
    for attempt in range(3):
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            return create_temp(target.parent, TEMP_PREFIX)
        except FileNotFoundError:
            if attempt == 2:
                raise
    raise AssertionError('unreachable')  # pragma: no cover


def create_temp(directory: Path, prefix: str) -> tuple[int, Path]:
    """Create a new temp file exclusively in ``directory``.

    Unlike ``tempfile.mkstemp`` the mode honours the umask (0o666 & ~umask), so
    a downloaded file gets the permissions users expect.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0)
    path = directory / f'{prefix}{uuid.uuid4().hex}{TEMP_SUFFIX}'
    return os.open(path, flags, 0o666), path


def _copy(source: Reader, out: BinaryIO) -> None:
    """Stream ``source`` into ``out`` and fsync it."""
    for chunk in source.chunks(CHUNK_SIZE):
        out.write(chunk)
    out.flush()
    os.fsync(out.fileno())


def _fsync_dir(directory: Path) -> None:
    """Persist a rename; POSIX only, as Windows cannot open directories."""
    if os.name != 'posix':
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
