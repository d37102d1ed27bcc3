"""Embedded storage: blobs in a local folder, metadata in SQLite inside it.

It is the default ``client`` so plugins run with no server at all: the
``file://`` store of :class:`~synapse_sdk.clients.storage.StorageClient`, with
its index in ``<root>/index.db``. The design keeps the on-disk state
consistent under crashes and concurrent processes:

* Blobs are named by a random uuid (under ``blobs/``, or ``blobs/<run>/`` for
  a run's uploads), never by the user's file name, so no name can place data
  outside the storage root.
* A blob is written to a temp file, fsynced and renamed into place *before*
  its index row is inserted. A crash can leave an orphan blob or temp file,
  which are invisible because only indexed rows are ever reported, but never a
  row whose blob is missing.
* SQLite runs in WAL mode with a busy timeout and every operation is its own
  short transaction, so several processes can share one root (the database
  code is ``synapse_sdk.db``, shared with the run journal).
* A connection is opened per call, so the client holds no connection, is safe
  after ``fork`` and across threads, and pickles cleanly to Ray workers and
  subprocesses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from synapse_sdk.paths import synapse_home

from .storage import (
    INDEX_NAME,
    BackendClient,
    FileInfo,
    StorageClient,
    StrPath,
    download_target,
    stored_name,
)
from .urls import StorageLocation

__all__ = [
    'BackendClient',
    'FileInfo',
    'LocalBackendClient',
    'StrPath',
    'download_target',
    'stored_name',
]


class LocalBackendClient(StorageClient):
    """Store files under a local directory with a SQLite index.

    The root is made absolute at construction (so a pickled client means the
    same place in a worker with another cwd) and created lazily on first use
    (so constructing or unpickling a client never touches the disk).
    """

    def __init__(self, root: StrPath | None = None, *, run_id: str | None = None) -> None:
        chosen = synapse_home() / 'storage' if root is None else Path(root)
        folder = os.path.abspath(chosen.expanduser())
        location = StorageLocation('file', '', folder)
        self._setup(location, run_id, Path(folder) / INDEX_NAME)

    @property
    def root(self) -> Path:
        return self.location.folder

    def __repr__(self) -> str:
        return f'{type(self).__name__}(root={str(self.root)!r})'

    # Pickling: only the root (and the run it uploads for) travel; a live connection or
    # readiness flag from another process would be meaningless (or unsafe) on arrival.
    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {'root': str(self.root)}
        if self.run_id is not None:
            state['run_id'] = self.run_id
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        folder = state['root']
        self._setup(StorageLocation('file', '', folder), state.get('run_id'), None)

    def for_run(self, run_id: str) -> LocalBackendClient:
        return LocalBackendClient(self.root, run_id=run_id)
