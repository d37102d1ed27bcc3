"""The storage client: an index in a database plus a blob store chosen by URL.

``context.client`` is one of these. The same guarantees hold on every store
(a local folder, S3, Azure Blob, GCS, SFTP, memory):

* An object is stored and verified (size, and checksum where the provider
  returns one) before its index row exists; only indexed rows are ever
  listed, so a crash leaves at worst an orphan object that nothing shows.
* Objects are named by the SDK (``blobs/<uuid>``), never by user input,
  so no file name or key can place data outside the storage's prefix.
* Upload by key is idempotent; deleting removes the row first, then the
  object, and an object that is gone already is not an error.
* A client bound to a run (:meth:`StorageClient.for_run`) announces each upload
  and delete in the index (table ``partial``) before it touches the store, and
  takes the announcement back in the commit that finishes it: what a killed
  run left half-written is exactly what its rows name, and
  :meth:`StorageClient.discard_partial` (run by recovery) removes it.
* Orphans of unbound clients are found by listing ``blobs/``:
  :meth:`StorageClient.find_orphans` (``synapse storage gc``).
* The client holds no connection: it pickles to Ray workers and subprocesses
  (by URL; credentials are found again there, from the provider's chain).
"""

from __future__ import annotations

import copy
import errno
import operator
import os
import queue
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol, Self, TypedDict, runtime_checkable

from synapse_sdk._paths import synapse_home
from synapse_sdk.clients._blobs import (
    BLOB_DIR,
    BlobStore,
    ObjectInfo,
    Progress,
    Reader,
    is_blob,
    new_blob,
    object_name,
    open_blob_store,
)
from synapse_sdk.clients._errors import (
    FileNotFoundInStorageError,
    SourceFileError,
    StorageIntegrityError,
)
from synapse_sdk.clients._files import create_temp
from synapse_sdk.clients._index import INDEX_NAME, StorageIndex, index_database, index_schema
from synapse_sdk.clients._urls import StorageLocation, parse_storage
from synapse_sdk.db import Database, open_database

__all__ = [
    'BackendClient',
    'FileInfo',
    'PartialWrites',
    'StorageClient',
    'StrPath',
    'download_target',
    'open_storage',
    'stored_name',
]

StrPath = str | os.PathLike[str]
DOWNLOAD_TEMP_PREFIX = '.synapse-download-'
DEFAULT_CONCURRENCY = 16


class FileInfo(TypedDict):
    """Metadata of a stored file; a plain dict at runtime so it serialises as-is."""

    id: int
    name: str
    size: int
    checksum: str
    created_at: str
    path: str  # a local path for a folder store; the object's URL otherwise


@runtime_checkable
class BackendClient(Protocol):
    """The storage contract plugin steps rely on, so backends are swappable."""

    def upload_file(self, path: StrPath, *, key: str | None = None) -> int: ...

    def find_file(self, key: str) -> int | None: ...

    def delete_file(self, file_id: int) -> None: ...

    def get_file(self, file_id: int) -> FileInfo: ...

    def list_files(self) -> list[FileInfo]: ...

    def download_file(self, file_id: int, dest: StrPath) -> Path: ...


@runtime_checkable
class PartialWrites(Protocol):
    """A storage that lets recovery remove what a killed run's writes left half-done.

    ``for_run(run_id)``: the same storage, its writes announced under ``run_id``
    (somewhere the storage keeps: an index table, a marker object) before any
    byte is written, the announcement taken back when the write is complete.
    ``discard_partial(run_id)``: remove what those announcements name and no
    stored file refers to; returns the names removed. Recovery calls it once no
    process works on the run any more (docs/journal.md).
    """

    @property
    def url(self) -> str: ...

    def for_run(self, run_id: str) -> PartialWrites: ...

    def discard_partial(self, run_id: str) -> list[str]: ...


_MEMORY_INDEXES: dict[str, Path] = {}  # memory://name -> its index, for this process


class StorageClient:
    """Files kept in the blob store at ``storage`` (a folder path or URL; default: the
    folder ``$SYNAPSE_HOME/storage``), indexed in a database.

    A folder keeps its index inside it (``index.db``); other stores are indexed in
    ``$SYNAPSE_HOME/storage/index.db``, each under its URL; with
    ``SYNAPSE_DATABASE_URL`` every index is in that PostgreSQL database
    (:func:`~synapse_sdk.clients.index_database`). Nothing is touched before the
    first call. ``run_id``: the run whose writes this client announces (see
    :meth:`for_run`).
    """

    def __init__(
        self, storage: StrPath | StorageLocation | None = None, *, run_id: str | None = None
    ) -> None:
        if isinstance(storage, StorageLocation):
            location = storage
        elif storage is None:
            location = parse_storage(synapse_home() / 'storage')
        else:
            location = parse_storage(storage)
        self._setup(location, run_id)

    def _setup(self, location: StorageLocation, run_id: str | None) -> None:
        self.location = location
        self.run_id = run_id
        self._ready = False
        self._store: BlobStore = open_blob_store(location)
        # a folder's files are '' in its index (as before index schema 3, on PostgreSQL too)
        self._idx = StorageIndex(
            _index_of(location), '' if location.is_local else location.namespace
        )

    @property
    def url(self) -> str:
        """The storage's URL, never with credentials: what the run journal records."""
        return self.location.url

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.url!r})'

    # Pickling: the URL (and the run) travel; credentials are found again on arrival, and
    # a connection or readiness flag from another process would be meaningless there.
    def __getstate__(self) -> dict[str, Any]:
        return {'url': self.location.url, 'run_id': self.run_id}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(parse_storage(state['url']), state['run_id'])

    def for_run(self, run_id: str) -> Self:
        """The same storage, with every upload and delete announced under ``run_id``
        first, so that :meth:`discard_partial` can remove what a kill left half-done."""
        if self.run_id == run_id:
            return self
        bound = copy.copy(self)  # the same index and store (and connections), of any subclass
        bound.run_id = run_id
        return bound

    # ------------------------------------------------------------------ API

    def upload_file(
        self, path: StrPath, *, key: str | None = None, progress: Progress | None = None
    ) -> int:
        """Store the file at ``path``; its new id.

        ``key`` makes the upload idempotent: if a file was already stored under that
        key, its id is returned and nothing is stored. A step that records the key
        *before* uploading can thus always find (to delete, or to skip) what an
        interrupted attempt stored. ``progress(bytes_done, total)`` is called after
        each chunk (e.g. ``lambda done, total: context.set_progress(done, total)``).

        The file is stored under its base name; bytes of it that are not UTF-8
        (a name from another system's archive) are shown as ``\\xNN`` (see
        :func:`stored_name`), so names are always printable text. Keys may hold
        any string, including such undecodable parts of a path.
        """
        stored = self._store_file(path, key, progress)
        if isinstance(stored, int):
            return stored
        return self._index_stored([stored])[0]

    def upload_files(
        self,
        paths: Iterable[StrPath],
        *,
        keys: Sequence[str] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: Progress | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> list[int]:
        """Upload many files, ``concurrency`` at a time; their ids, in order.

        ``keys`` (one per path) make each upload idempotent. ``announce(key)`` is called
        in the calling thread just before the upload under ``key`` starts: record the key
        there (``context.append_rollback('keys', key)``) and a crash at any moment leaves
        rollback data naming every upload that may have happened. ``progress(files_done,
        files_total)`` is called in the calling thread too. The first upload that fails
        stops the rest (those already running finish) and its error is raised.
        """
        sources = list(paths)
        names = None if keys is None else list(keys)
        if names is not None and len(names) != len(sources):
            raise ValueError(f'upload_files: {len(sources)} paths but {len(names)} keys')
        if announce is not None and names is None:
            raise ValueError('upload_files: announce needs keys')
        if concurrency < 1:
            raise ValueError(f'upload_files: concurrency must be at least 1, got {concurrency}')
        ids: list[int] = [0] * len(sources)
        with ThreadPoolExecutor(max(1, min(concurrency, len(sources))), 'synapse-upload') as pool:
            _Batch(self, pool, sources, names, ids, concurrency, progress, announce).run()
        return ids

    def find_file(self, key: str) -> int | None:
        """The id of the file stored under ``key``, if any."""
        self._ensure_ready()
        return self._idx.find(key)

    def delete_file(self, file_id: int) -> None:
        """Remove a file: the row first, then the object, so a crash leaves only an orphan."""
        fid = operator.index(file_id)
        row = self._row(fid)
        self._object_of(row[2])  # a tampered blob name is refused before anything is removed
        blob = self._idx.remove(fid, self.run_id)  # bound: a kill now leaves it to discard
        if blob is None:
            raise FileNotFoundInStorageError(fid, self._where)  # deleted meanwhile
        self._store.delete(self._object_of(blob))
        self._settle(blob)

    def get_file(self, file_id: int) -> FileInfo:
        return self._to_info(self._row(file_id))

    def list_files(self) -> list[FileInfo]:
        self._ensure_ready()
        return [self._to_info(row) for row in self._idx.all()]

    def download_file(
        self, file_id: int, dest: StrPath, *, progress: Progress | None = None
    ) -> Path:
        """Copy a stored file to ``dest`` (or into it, if it is a directory).

        The copy goes through a temp file next to the target and is renamed into
        place only after the checksum matches, so ``dest`` never holds bad data.
        An existing file at the target is replaced; missing parents are not made.
        Into a directory, the file gets its stored name (see :func:`stored_name`).
        A ``dest`` ending with a path separator (``'exports/'``) means a
        directory, as with ``cp``: if it is not an existing one,
        ``NotADirectoryError`` is raised and nothing is written.
        """
        row = self._row(file_id)
        info = self._to_info(row)
        target = download_target(dest, info['name'], info['id'])
        name = self._object_of(row[2])
        fd, tmp = create_temp(target.parent, DOWNLOAD_TEMP_PREFIX)
        try:
            with os.fdopen(fd, 'wb') as raw:
                out: Any = _Counting(raw, info['size'], progress) if progress else raw
                digest = self._get(info, name, out)
                raw.flush()
                os.fsync(raw.fileno())
            if digest.size != info['size'] or digest.sha256 != info['checksum']:
                raise StorageIntegrityError(
                    f'File {info["id"]} ({info["name"]!r}) failed verification: expected '
                    f'{info["size"]} bytes sha256={info["checksum"]}, read {digest.size} bytes '
                    f'sha256={digest.sha256} from {info["path"]}.'
                )
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def close(self) -> None:
        """Let go of what the store holds open (an SFTP connection); the client can be used
        again, and opens it again. Also done when the client is garbage collected."""
        close = getattr(self._store, 'close', None)
        if close is not None:
            close()

    def check(self) -> None:
        """Raise now (``StorageAccessError``, ``StorageUnavailableError``) if the storage
        cannot be used; creates nothing. One cheap request (a listing of one object)."""
        self._store.check()

    # ------------------------------------------------------------- orphans

    def find_orphans(self, older_than: timedelta = timedelta(days=1)) -> list[ObjectInfo]:
        """Objects under ``blobs/`` that no index row points at, last written more than
        ``older_than`` ago (a younger one may be an upload about to be indexed)."""
        if older_than < timedelta(0):
            raise ValueError(f'older_than must not be negative, got {older_than}')
        self._ensure_ready()
        cutoff = datetime.now(UTC) - older_than
        return self._unindexed(o for o in self._store.list(BLOB_DIR) if o.modified <= cutoff)

    def remove_orphans(self, orphans: Iterable[ObjectInfo]) -> list[ObjectInfo]:
        """Delete the given orphans that are still not indexed; those deleted."""
        removed = self._unindexed(orphans)
        for orphan in removed:
            self._store.delete(orphan.name)
        return removed

    def discard_partial(self, run_id: str) -> list[str]:
        """Remove what ``run_id``'s unfinished uploads and deletes left: temp files, and
        objects no index row refers to; the names removed (below the storage's root).
        Only while no process works on the run."""
        if not self._ready and self._never_used():
            return []  # nothing was ever stored here: and nothing is created
        self._ensure_ready()
        removed: list[str] = []
        for blob in self._idx.partial(run_id):
            if is_blob(blob):
                name = object_name(blob)
                removed += self._store.discard_temp(name)
                if not self._idx.indexed([blob]) and self._store.head(name) is not None:
                    self._store.delete(name)
                    removed.append(name)
            self._idx.settle(blob)
        return removed

    # ------------------------------------------------------------ internals

    def _store_file(
        self,
        path: StrPath,
        key: str | None,
        progress: Progress | None,
        announced: str | None = None,
    ) -> int | _Stored:
        """Store the file's object (verified); the id already stored under ``key``, if any.
        ``announced``: the blob to store it as, announced already (else one is made, and
        announced for a bound client); unused when the key's file is there."""
        if key is not None:
            existing = self.find_file(key)
            if existing is not None:
                return existing
        source = os.fspath(path)
        with _open_source(source) as (handle, size):
            name = stored_name(source)
            self._ensure_ready()
            blob = announced or new_blob()
            if announced is None and self.run_id is not None:
                self._idx.announce(blob, self.run_id)
            try:
                digest = self._store.put(object_name(blob), Reader(handle, source, size, progress))
            except StorageIntegrityError:  # refused, nothing of ours left (maybe another's)
                self._settle(blob)
                raise
            except BaseException:
                self._discard_unindexed(blob)
                raise
        return _Stored(name, blob, digest.size, digest.sha256, key)

    def _index_stored(self, stored: list[_Stored]) -> list[int]:
        """Rows for stored objects, in one transaction (one fsync for all); an object
        whose key was taken meanwhile by another upload is removed, and that id given."""
        rows = [(s.name, s.blob, s.size, s.sha256, s.key) for s in stored]
        try:
            results = self._idx.insert_many(rows, settle=self.run_id is not None)
        except BaseException:
            for item in stored:
                self._discard_unindexed(item.blob)
            raise
        for item, (_, created) in zip(stored, results, strict=True):
            if not created:
                self._discard_unindexed(item.blob)
        return [file_id for file_id, _ in results]

    @property
    def _where(self) -> str:
        return str(self.location.folder) if self.location.is_local else self.url

    def _never_used(self) -> bool:
        """No index file yet (SQLite): nothing was ever stored through this index."""
        path = getattr(self._idx.database, 'path', None)
        return isinstance(path, Path) and not path.exists()

    def _ensure_ready(self) -> None:
        """Create a folder store's folders, and read the index once per process: one that
        cannot be used (not a database, a newer version, damaged pages) is refused before
        anything is written to it, and left as it is."""
        if self._ready:
            return
        if self.location.is_local:
            (self.location.folder / BLOB_DIR).mkdir(parents=True, exist_ok=True)
        self._idx.check()
        self._ready = True

    def _object_of(self, blob: str) -> str:
        # The blob name comes from the index; refuse anything that is not one of ours so
        # a tampered index cannot point reads or deletes elsewhere.
        if not is_blob(blob):
            raise StorageIntegrityError(
                f'Index at {self._idx.database.describe()} holds an invalid blob name {blob!r}.'
            )
        return object_name(blob)

    def _row(self, file_id: int) -> tuple[int, str, str, int, str, str]:
        fid = operator.index(file_id)
        self._ensure_ready()
        row = self._idx.get(fid)
        if row is None:
            raise FileNotFoundInStorageError(fid, self._where)
        return row

    def _to_info(self, row: tuple[int, str, str, int, str, str]) -> FileInfo:
        file_id, name, blob, size, checksum, created_at = row
        return FileInfo(
            id=file_id,
            name=name,
            size=size,
            checksum=checksum,
            created_at=created_at,
            path=self._store.locate(self._object_of(blob)),
        )

    def _get(self, info: FileInfo, name: str, out: Any) -> Any:
        try:
            return self._store.get(name, out)
        except FileNotFoundError:
            self.get_file(info['id'])  # raises if it was deleted meanwhile
            raise StorageIntegrityError(
                f'File {info["id"]} ({info["name"]!r}) is indexed but its blob '
                f'{info["path"]} is missing; the storage at {self._where} is damaged.'
            ) from None

    def _unindexed(self, objects: Iterable[ObjectInfo]) -> list[ObjectInfo]:
        found = {o.name.removeprefix(f'{BLOB_DIR}/'): o for o in objects}
        indexed = self._idx.indexed([blob for blob in found if is_blob(blob)])
        return [o for blob, o in found.items() if blob not in indexed]

    def _discard_unindexed(self, blob: str) -> None:
        # Only delete the object when we can confirm no row references it (the failure
        # may have come after COMMIT); if unsure, an orphan is harmless and collectable,
        # and for a bound client its announcement stays for discard_partial.
        try:
            if not self._idx.indexed([blob]):
                self._store.delete(object_name(blob))
        except Exception:
            return
        self._settle(blob)

    def _settle(self, blob: str) -> None:
        """The write of ``blob`` is over: forget its announcement (if that fails, the
        row stays for ``discard_partial``)."""
        if self.run_id is not None:
            with suppress(Exception):
                self._idx.settle(blob)


@dataclass(frozen=True)
class _Stored:
    """An object stored and verified, not yet indexed."""

    name: str
    blob: str
    size: int
    sha256: str
    key: str | None


class _Batch:
    """The bounded pool of :meth:`StorageClient.upload_files`: at most ``limit`` uploads
    in flight, each announced and submitted from the calling thread. The objects stored
    meanwhile are indexed together: every ``COMMIT_EVERY_S`` (or ``COMMIT_BATCH`` files),
    one commit for all of them, since with a durable index each commit is an fsync. For
    the same reason a bound client announces the blobs of the next ``COMMIT_BATCH``
    uploads in one commit, and takes back those it did not use at the end."""

    COMMIT_EVERY_S = 0.02
    COMMIT_BATCH = 64

    def __init__(
        self,
        client: StorageClient,
        pool: ThreadPoolExecutor,
        sources: list[StrPath],
        keys: list[str] | None,
        ids: list[int],
        limit: int,
        progress: Progress | None,
        announce: Callable[[str], None] | None,
    ) -> None:
        self.client, self.pool, self.sources, self.keys, self.ids = client, pool, sources, keys, ids
        self.limit, self.progress, self.announce = limit, progress, announce
        self.running: dict[Future[int | _Stored], int] = {}
        self.finished: queue.SimpleQueue[Future[int | _Stored]] = queue.SimpleQueue()
        self.stored: list[tuple[int, _Stored]] = []  # stored, not yet indexed
        self.failure: BaseException | None = None
        self.next = 0
        self.done = 0
        self.committed = time.monotonic()
        self.blobs: dict[Future[int | _Stored], str] = {}  # announced, per upload
        self.reserve: list[str] = []  # announced, not given to an upload yet
        self.unused: list[str] = []  # announced, and nothing was written under them

    def run(self) -> None:
        try:
            self._fill()
            while self.running or self.stored:
                self.stored += self._take(self._wait())
                self._fill()  # the next uploads start before the finished ones are indexed
                if self._due():
                    self._index()
        except BaseException:  # interrupted: what has not started never will; what ran
            for future in self.running:  # is indexed, so nothing stored is left unlisted
                future.cancel()
            with suppress(BaseException):
                self.stored += self._take(wait(self.running).done)
                self._index()
            raise
        finally:
            with suppress(Exception):  # if not, recovery finds nothing under them
                self.client._idx.settle_many(self.unused + self.reserve)
        if self.failure is not None:
            raise self.failure

    def _announced(self) -> str | None:
        """The next announced blob (announcing the next ones, in one commit, if none is
        left); None for a client not bound to a run."""
        run_id = self.client.run_id
        if run_id is None:
            return None
        if not self.reserve:
            count = min(self.COMMIT_BATCH, len(self.sources) - self.next + 1)
            self.client._ensure_ready()
            self.reserve = [new_blob() for _ in range(count)]
            self.client._idx.announce_many(self.reserve, run_id)
        return self.reserve.pop()

    def _wait(self) -> list[Future[int | _Stored]]:
        """The uploads finished since the last call (at least one, unless the stored ones
        are due to be indexed first); a queue their callbacks fill, not ``wait()``, which
        costs a lock on every running upload at every call."""
        if not self.running:
            return []
        timeout = None
        if self.stored:  # wake up in time to index them
            timeout = max(0.0, self.committed + self.COMMIT_EVERY_S - time.monotonic())
        try:
            done = [self.finished.get(timeout=timeout)]
        except queue.Empty:
            return []
        with suppress(queue.Empty):
            while True:
                done.append(self.finished.get_nowait())
        return done

    def _due(self) -> bool:
        if not self.stored:
            return False
        late = time.monotonic() - self.committed >= self.COMMIT_EVERY_S
        return not self.running or late or len(self.stored) >= self.COMMIT_BATCH

    def _fill(self) -> None:
        while len(self.running) < self.limit and self.failure is None:
            if self.next >= len(self.sources):
                return
            index, self.next = self.next, self.next + 1
            key = None if self.keys is None else self.keys[index]
            if self.announce is not None and key is not None:
                self.announce(key)
            blob = self._announced()
            future = self.pool.submit(self.client._store_file, self.sources[index], key, None, blob)
            self.running[future] = index
            if blob is not None:
                self.blobs[future] = blob
            future.add_done_callback(self.finished.put)

    def _take(self, finished: Iterable[Future[int | _Stored]]) -> list[tuple[int, _Stored]]:
        """The finished uploads' outcomes: ids of files stored before (recorded now), a
        failure, or objects stored now (returned, to be indexed)."""
        stored: list[tuple[int, _Stored]] = []
        for future in finished:
            index = self.running.pop(future, None)
            blob = self.blobs.pop(future, None)
            if index is None or future.cancelled():  # taken already, or never started
                if future.cancelled() and blob is not None:
                    self.unused.append(blob)
                continue
            try:
                result = future.result()
            except BaseException as error:  # the upload's own failure path kept or took
                self.failure = self.failure or error  # back its announcement
                continue
            if isinstance(result, _Stored):
                stored.append((index, result))
            else:
                self._done(index, result)
                if blob is not None:  # stored before: nothing written under it
                    self.unused.append(blob)
        return stored

    def _index(self) -> None:
        stored, self.stored = self.stored, []
        self.committed = time.monotonic()
        if stored:
            ids = self.client._index_stored([item for _, item in stored])
            for (index, _), file_id in zip(stored, ids, strict=True):
                self._done(index, file_id)

    def _done(self, index: int, file_id: int) -> None:
        self.ids[index] = file_id
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, len(self.sources))


class _Counting:
    """A download's output that reports bytes written."""

    def __init__(self, out: BinaryIO, total: int, progress: Progress) -> None:
        self.out, self.total, self.progress, self.done = out, total, progress, 0

    def write(self, chunk: bytes) -> int:
        written = self.out.write(chunk)
        self.done += len(chunk)
        if self.total > 0:
            self.progress(min(self.done, self.total), self.total)
        return written


def open_storage(storage: StrPath | None = None, *, run_id: str | None = None) -> StorageClient:
    """The client for ``storage`` (a folder path or URL; None: ``$SYNAPSE_HOME/storage``):
    a :class:`~synapse_sdk.clients.LocalBackendClient` for a folder."""
    location = parse_storage(synapse_home() / 'storage' if storage is None else storage)
    if location.is_local:
        from synapse_sdk.clients._local import LocalBackendClient

        return LocalBackendClient(location.folder, run_id=run_id)
    return StorageClient(location, run_id=run_id)


def _index_of(location: StorageLocation) -> Database:
    """Where ``location``'s files are indexed: a folder in itself, a memory store in a
    file of this process (as short-lived as its blobs), others in the default index."""
    if location.is_local:
        return index_database(location.folder)
    if location.scheme == 'memory':
        if location.url not in _MEMORY_INDEXES:
            import tempfile

            folder = Path(tempfile.mkdtemp(prefix='synapse-memory-index-'))
            _MEMORY_INDEXES[location.url] = folder / INDEX_NAME
        return open_database(_MEMORY_INDEXES[location.url], index_schema())
    return index_database()


# ---------------------------------------------------------------- helpers


@contextmanager
def _open_source(source: str) -> Iterator[tuple[BinaryIO, int]]:
    """Open an upload source (and its size), refusing anything but a regular file.

    Checked before opening so a FIFO or device cannot block or stream forever.
    """
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise SourceFileError(source, 'no such file') from None
    except (UnicodeError, ValueError) as exc:  # a lone surrogate or a NUL in the path
        raise SourceFileError(source, f'it is not a valid path ({exc})') from exc
    except OSError as exc:
        raise SourceFileError(source, f'cannot access it ({exc.strerror or exc})') from exc
    if stat.S_ISDIR(st.st_mode):
        raise SourceFileError(source, 'it is a directory, not a file')
    if not stat.S_ISREG(st.st_mode):
        raise SourceFileError(source, 'it is not a regular file')
    try:
        handle = open(source, 'rb')  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise SourceFileError(source, f'cannot open it ({exc.strerror or exc})') from exc
    with handle:
        yield handle, st.st_size


def stored_name(path: str) -> str:
    """The name a file at ``path`` is stored under: its base name, as printable text.

    A name that is not valid UTF-8 reaches Python with its undecodable bytes as
    lone surrogates, which SQLite, JSON files and terminals refuse; each such
    byte is shown as ``\\xNN`` instead (``b'caf\\xe9.txt'`` is stored as
    ``'caf\\\\xe9.txt'``). Valid names are kept as they are.
    """
    name = os.path.basename(path)
    try:
        name.encode('utf-8')
    except UnicodeEncodeError:
        try:
            raw = os.fsencode(name)
        except UnicodeError:  # surrogates that no file system decoding produces
            raw = name.encode('utf-8', 'surrogatepass')
        return raw.decode('utf-8', 'backslashreplace')
    return name


def download_target(dest: StrPath, name: str, file_id: int) -> Path:
    """Where ``download_file(file_id, dest)`` writes a file stored as ``name``.

    Into ``dest`` if it is a directory, else ``dest`` itself. A ``dest`` that
    says it is a directory (a trailing separator, or ending in ``.``/``..``),
    which pathlib would silently drop, must be an existing one.
    """
    raw = os.fspath(dest)
    target = Path(raw)
    if target.is_dir():
        return target / _safe_name(name, file_id)
    separators = tuple(sep for sep in (os.sep, os.altsep) if sep)
    if raw.endswith(separators) or os.path.basename(raw) in ('.', '..'):
        raise NotADirectoryError(
            errno.ENOTDIR,
            f'Not a directory: cannot download file {file_id} into {raw!r}, which names a '
            'directory that does not exist; create it first, or give a file path',
        )
    return target


def _safe_name(name: str, file_id: int) -> str:
    """Name to use inside a destination directory, even if the index was edited.

    Only this system's separators split it: on POSIX a backslash is an ordinary
    character (as in the ``\\xNN`` of a stored non-UTF-8 name) and cannot lead
    out of the directory.
    """
    base = os.path.basename(name)
    if base in ('', '.', '..'):
        return f'file-{file_id}'
    return base
