"""Embedded storage: blobs in a local folder, metadata in SQLite inside it (or in the
PostgreSQL database ``SYNAPSE_DATABASE_URL`` names).

It is the default ``client`` so plugins run with no server at all: the
``file://`` store of :class:`~synapse_sdk.clients.StorageClient`. The design
keeps the on-disk state consistent under crashes and concurrent processes:

* Blobs are named by a random uuid (``blobs/<uuid>``), never by the user's file
  name, so no name can place data outside the storage root.
* A blob is written to a temp file beside it, fsynced and renamed into place
  *before* its index row is inserted. A crash can leave an orphan blob or temp
  file, which are invisible because only indexed rows are ever reported, but
  never a row whose blob is missing.
* A client bound to a run (``for_run``) announces each upload and delete in
  the index before it touches a file; ``discard_partial(run_id)`` (run by
  recovery) removes what a killed run left half-written.
* SQLite runs in WAL mode with a busy timeout and every operation is its own
  short transaction, so several processes can share one root (the database
  code is ``synapse_sdk.db``, shared with the run journal).
* The client pickles as its root (and run): safe to send to Ray workers and
  subprocesses, which open their own connections.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from synapse_sdk._paths import synapse_home
from synapse_sdk.clients._storage import StorageClient, StrPath
from synapse_sdk.clients._urls import StorageLocation

__all__ = ['LocalBackendClient']


class LocalBackendClient(StorageClient):
    """Store files under a local directory with a SQLite index.

    The root is made absolute at construction (so a pickled client means the
    same place in a worker with another cwd) and created lazily on first use
    (so constructing or unpickling a client never touches the disk).
    """

    def __init__(self, root: StrPath | None = None, *, run_id: str | None = None) -> None:
        chosen = synapse_home() / 'storage' if root is None else Path(root)
        folder = os.path.abspath(chosen.expanduser())
        self._setup(StorageLocation('file', '', folder), run_id)

    @property
    def root(self) -> Path:
        return self.location.folder

    def __repr__(self) -> str:
        return f'{type(self).__name__}(root={str(self.root)!r})'

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {'root': str(self.root)}
        if self.run_id is not None:
            state['run'] = self.run_id
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(StorageLocation('file', '', state['root']), state.get('run'))
