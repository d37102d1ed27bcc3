"""The folder store (``file://``, the default): plain files, no extra needed.

A blob is written to a temp file beside its final name (``.upload-<uuid>.tmp``),
fsynced, renamed into place and its folder fsynced, so it is durable before the
index row exists. A crash leaves at worst a temp file or an unindexed blob:
invisible (only indexed rows are listed), removed by recovery for a run
(``discard``) and collectable (``synapse storage gc``).
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

from synapse_sdk.clients._blobs import (
    CHUNK_SIZE,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    Digest,
    ObjectInfo,
    Reader,
    Writable,
    temp_name,
    write_all,
)
from synapse_sdk.clients._errors import StorageAccessError

if TYPE_CHECKING:
    from synapse_sdk.clients._urls import StorageLocation


# a new file, never one that is there (a temp file's name is its object's: never reused)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0)


class FileStore:
    """Blobs as files below a folder."""

    def __init__(self, location: StorageLocation) -> None:
        self.location = location
        self.root = location.folder

    def put(self, name: str, source: Reader) -> Digest:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / temp_name(name)
        fd = os.open(tmp, _CREATE_FLAGS, 0o666)
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
        (self.root / name).unlink(missing_ok=True)

    def discard_temp(self, name: str) -> list[str]:
        base = name.rpartition('/')[2]
        # beside the object; a storage of index schema 2 wrote it in the root
        candidates = [temp_name(name), f'{TEMP_PREFIX}{base}{TEMP_SUFFIX}']
        removed = []
        for candidate in candidates:
            with suppress(FileNotFoundError):
                (self.root / candidate).unlink()
                removed.append(candidate)
        return removed

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


def create_temp(directory: Path, prefix: str) -> tuple[int, Path]:
    """Create a new temp file exclusively in ``directory``.

    Unlike ``tempfile.mkstemp`` the mode honours the umask (0o666 & ~umask), so
    a downloaded file gets the permissions users expect.
    """
    path = directory / f'{prefix}{uuid.uuid4().hex}{TEMP_SUFFIX}'
    return os.open(path, _CREATE_FLAGS, 0o666), path


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
