"""An in-memory stand-in for the storage backend, with failures on demand."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from synapse_sdk.clients import (
    FileNotFoundInStorageError,
    SourceFileError,
    download_target,
    stored_name,
)


class FakeBackend:
    """The ``LocalBackendClient`` API, kept in a dict.

    ``fail_upload_at={3}`` makes the 3rd upload call raise ``ConnectionError``
    (or ``upload_error``); ``calls`` lists every call in order.

    Names and download targets follow the real client's rules: a file name that
    is not UTF-8 is stored with those bytes as ``\\xNN``, and a ``dest`` ending
    with a path separator must be an existing directory.
    """

    def __init__(
        self,
        *,
        fail_upload_at: set[int] | None = None,
        upload_error: BaseException | None = None,
        fail_delete_of: set[int] | None = None,
    ) -> None:
        self.files: dict[int, dict[str, Any]] = {}
        self.keys: dict[str, int] = {}
        self.calls: list[tuple[str, Any]] = []
        self.fail_upload_at = set(fail_upload_at or ())
        self.upload_error = upload_error
        self.fail_delete_of = set(fail_delete_of or ())
        self._uploads = 0
        self._next_id = 1

    def upload_file(
        self,
        path: str | os.PathLike[str],
        *,
        key: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        self.calls.append(('upload_file', os.fspath(path)))
        self._uploads += 1
        if self._uploads in self.fail_upload_at:
            raise self.upload_error or ConnectionError(f'upload {self._uploads} failed (injected)')
        if key is not None and key in self.keys:
            return self.keys[key]
        source = Path(path)
        if not source.is_file():
            raise SourceFileError(os.fspath(path), 'no such file')
        content = source.read_bytes()
        file_id = self._next_id
        self._next_id += 1
        self.files[file_id] = {
            'id': file_id,
            'name': stored_name(os.fspath(path)),
            'size': len(content),
            'checksum': hashlib.sha256(content).hexdigest(),
            'created_at': datetime.now(UTC).isoformat(),
            'path': f'memory://{file_id}',
            'content': content,
            'key': key,
        }
        if key is not None:
            self.keys[key] = file_id
        if progress is not None and content:
            progress(len(content), len(content))
        return file_id

    def upload_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        keys: Sequence[str] | None = None,
        concurrency: int = 16,
        progress: Callable[[int, int], None] | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> list[int]:
        """One after another (``concurrency`` is accepted, not used): each key announced
        before its upload, as the real client does."""
        sources = list(paths)
        names = list(keys) if keys is not None else [None] * len(sources)
        if len(names) != len(sources):
            raise ValueError(f'upload_files: {len(sources)} paths but {len(names)} keys')
        ids = []
        for done, (path, key) in enumerate(zip(sources, names, strict=True), 1):
            if announce is not None and key is not None:
                announce(key)
            ids.append(self.upload_file(path, key=key))
            if progress is not None:
                progress(done, len(sources))
        return ids

    def find_file(self, key: str) -> int | None:
        return self.keys.get(key)

    def delete_file(self, file_id: int) -> None:
        self.calls.append(('delete_file', file_id))
        if file_id in self.fail_delete_of:
            raise OSError(f'delete of {file_id} failed (injected)')
        entry = self.files.pop(file_id, None)
        if entry is None:
            raise FileNotFoundInStorageError(file_id, 'memory')
        if entry['key'] is not None:
            self.keys.pop(entry['key'], None)

    def get_file(self, file_id: int) -> dict[str, Any]:
        entry = self.files.get(file_id)
        if entry is None:
            raise FileNotFoundInStorageError(file_id, 'memory')
        return {k: v for k, v in entry.items() if k not in ('content', 'key')}

    def list_files(self) -> list[dict[str, Any]]:
        return [self.get_file(file_id) for file_id in sorted(self.files)]

    def download_file(self, file_id: int, dest: str | os.PathLike[str]) -> Path:
        info = self.get_file(file_id)
        target = download_target(dest, info['name'], file_id)
        target.write_bytes(self.files[file_id]['content'])
        return target
