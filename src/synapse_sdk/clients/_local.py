"""Embedded storage backend: blobs on local disk, metadata in SQLite.

It is the default ``client`` so plugins run with no server at all. The design
keeps the on-disk state consistent under crashes and concurrent processes:

* Blobs are named by a random uuid, never by the user's file name, so no
  name can place data outside the storage root.
* A blob is written to a temp file, fsynced and renamed into place *before*
  its index row is inserted. A crash can leave an orphan blob or temp file,
  which are invisible because only indexed rows are ever reported, but never a
  row whose blob is missing.
* A client bound to a run (``for_run``) announces each upload and delete in
  the index (table ``partial``: the blob's name, the run) before it touches a
  file, and takes the announcement back in the transaction that finishes it:
  what a killed run left half-written is exactly what its rows name, and
  ``discard_partial(run_id)`` (run by recovery) removes it.
* SQLite runs in WAL mode with a busy timeout and every operation is its own
  short transaction, so several processes can share one root (the database
  code is ``synapse_sdk.db``, shared with the run journal).
* A connection is opened per call, so the client holds no connection, is safe
  after ``fork`` and across threads, and pickles cleanly to Ray workers and
  subprocesses.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import operator
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol, TypedDict, runtime_checkable

from synapse_sdk._paths import synapse_home
from synapse_sdk.clients._errors import (
    FileNotFoundInStorageError,
    SourceFileError,
    StorageIndexError,
    StorageIntegrityError,
)
from synapse_sdk.db import Connection, Schema, SQLiteDatabase

__all__ = [
    'BackendClient',
    'FileInfo',
    'LocalBackendClient',
    'PartialWrites',
    'StrPath',
    'download_target',
    'stored_name',
]

StrPath = str | os.PathLike[str]

INDEX_NAME = 'index.db'
BLOB_DIR = 'blobs'
UPLOAD_TEMP_PREFIX = '.upload-'
DOWNLOAD_TEMP_PREFIX = '.synapse-download-'
TEMP_SUFFIX = '.tmp'

_CHUNK_SIZE = 1024 * 1024
_TABLES = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    blob TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL CHECK (size >= 0),
    checksum TEXT NOT NULL,
    created_at TEXT NOT NULL,
    key TEXT UNIQUE
)
"""
# What a run's uploads and deletes have begun and not finished: the blob (``token``) is
# maybe a temp file ``.upload-<token>.tmp``, maybe ``blobs/<token>``, maybe nothing yet.
_PARTIAL = """
CREATE TABLE partial (
    token TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE INDEX partial_by_run ON partial (run_id)
"""
_SCHEMA = Schema(
    name='storage index',
    version=2,
    tables={'sqlite': _TABLES + ';' + _PARTIAL},
    migrations={'sqlite': {1: _PARTIAL}},  # 1 -> 2: the partial writes of runs (#11)
    unusable_error=StorageIndexError,
    damaged_error=StorageIndexError,
)
_COLUMNS = 'id, name, blob, size, checksum, created_at'


class FileInfo(TypedDict):
    """Metadata of a stored file; a plain dict at runtime so it serialises as-is."""

    id: int
    name: str
    size: int
    checksum: str
    created_at: str
    path: str


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


class LocalBackendClient:
    """Store files under a local directory with a SQLite index.

    The root is made absolute at construction (so a pickled client means the
    same place in a worker with another cwd) and created lazily on first use
    (so constructing or unpickling a client never touches the disk).
    """

    def __init__(self, root: StrPath | None = None) -> None:
        chosen = synapse_home() / 'storage' if root is None else Path(root)
        self._root = Path(os.path.abspath(chosen.expanduser()))
        self._ready = False
        self._database = self._index()
        self._run: str | None = None  # the run whose writes are announced (for_run)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def url(self) -> str:
        """Where the files are, as a URL (``file:///...``): what the run journal records."""
        return self._root.as_uri()

    def __repr__(self) -> str:
        return f'{type(self).__name__}(root={str(self._root)!r})'

    # Pickling: only the root (and the run) travel; a live connection or readiness
    # flag from another process would be meaningless (or unsafe) on arrival.
    def __getstate__(self) -> dict[str, str]:
        state = {'root': str(self._root)}
        if self._run is not None:
            state['run'] = self._run
        return state

    def __setstate__(self, state: dict[str, str]) -> None:
        self._root = Path(state['root'])
        self._ready = False
        self._database = self._index()
        self._run = state.get('run')

    def for_run(self, run_id: str) -> LocalBackendClient:
        """This storage, with every upload and delete announced under ``run_id`` first,
        so that ``discard_partial(run_id)`` can remove what a kill left half-done."""
        if self._run == run_id:
            return self
        bound = copy.copy(self)
        bound._run = run_id
        return bound

    def discard_partial(self, run_id: str) -> list[str]:
        """Remove what ``run_id``'s unfinished uploads and deletes left: temp files, and
        blobs no index row refers to. Only while no process works on the run."""
        if not self._ready and not self._index_path.exists():
            return []  # nothing was ever stored here: and nothing is created
        with self._connect() as conn:
            rows = conn.fetchall('SELECT token FROM partial WHERE run_id = ?', (run_id,))
        removed: list[str] = []
        for (token,) in sorted(rows):
            removed.extend(self._discard(token))
        return removed

    # ------------------------------------------------------------------ API

    def upload_file(self, path: StrPath, *, key: str | None = None) -> int:
        """Copy ``path`` into storage and return its new id.

        ``key`` makes the upload idempotent: if a file was already stored under
        that key, its id is returned and nothing is copied. A step that records
        the key *before* uploading can thus always find (to delete, or to skip)
        what an interrupted attempt stored.

        The file is stored under its base name; bytes of it that are not UTF-8
        (a name from another system's archive) are shown as ``\\xNN`` (see
        :func:`stored_name`), so names are always printable text. Keys may hold
        any string, including such undecodable parts of a path.
        """
        if key is not None:
            existing = self.find_file(key)
            if existing is not None:
                return existing
        source = os.fspath(path)
        blob = uuid.uuid4().hex  # names the temp file, then the blob
        with _open_source(source) as src:
            name = stored_name(source)
            self._ensure_ready()
            self._announce(blob)
            try:
                size, checksum = self._write_blob(src, source, blob)
            except BaseException:
                self._discard_unindexed_blob(blob)
                raise
        created_at = datetime.now(UTC).isoformat(timespec='microseconds')
        try:
            with self._connect() as conn, conn.transaction():
                if key is not None:
                    row = conn.fetchone('SELECT id FROM files WHERE key = ?', (_key_value(key),))
                    if row is not None:  # stored meanwhile by another process
                        raise _AlreadyStored(row[0])
                cursor = conn.execute(
                    'INSERT INTO files (name, blob, size, checksum, created_at, key)'
                    ' VALUES (?, ?, ?, ?, ?, ?)',
                    (name, blob, size, checksum, created_at, _key_value(key)),
                )
                file_id = cursor.lastrowid
                if self._run is not None:  # complete: no longer partial, in the same commit
                    conn.execute('DELETE FROM partial WHERE token = ?', (blob,))
        except _AlreadyStored as stored:
            self._discard_unindexed_blob(blob)
            return stored.file_id
        except BaseException:
            self._discard_unindexed_blob(blob)
            raise
        if file_id is None:  # pragma: no cover - sqlite always sets it for INSERT
            raise StorageIntegrityError(f'SQLite returned no id for uploaded {source!r}')
        return file_id

    def find_file(self, key: str) -> int | None:
        """The id of the file stored under ``key``, if any."""
        with self._connect() as conn:
            row = conn.fetchone('SELECT id FROM files WHERE key = ?', (_key_value(key),))
        return None if row is None else int(row[0])

    def delete_file(self, file_id: int) -> None:
        """Remove a file; the row goes first so a crash leaves only an orphan blob."""
        fid = operator.index(file_id)
        with self._connect() as conn, conn.transaction():
            row = conn.fetchone('SELECT blob FROM files WHERE id = ?', (fid,))
            if row is None:
                raise FileNotFoundInStorageError(fid, str(self._root))
            blob_path = self._blob_path(row[0])
            conn.execute('DELETE FROM files WHERE id = ?', (fid,))
            if self._run is not None:  # a kill before the unlink leaves it to discard_partial
                self._announce(row[0], conn)
        blob_path.unlink(missing_ok=True)
        self._settle(row[0])

    def get_file(self, file_id: int) -> FileInfo:
        fid = operator.index(file_id)
        with self._connect() as conn:
            row = conn.fetchone(f'SELECT {_COLUMNS} FROM files WHERE id = ?', (fid,))
        if row is None:
            raise FileNotFoundInStorageError(fid, str(self._root))
        return self._to_info(row)

    def list_files(self) -> list[FileInfo]:
        with self._connect() as conn:
            rows = conn.fetchall(f'SELECT {_COLUMNS} FROM files ORDER BY id')
        return [self._to_info(row) for row in rows]

    def download_file(self, file_id: int, dest: StrPath) -> Path:
        """Copy a stored file to ``dest`` (or into it, if it is a directory).

        The copy goes through a temp file next to the target and is renamed into
        place only after the checksum matches, so ``dest`` never holds bad data.
        An existing file at the target is replaced; missing parents are not made.
        Into a directory, the file gets its stored name (see :func:`stored_name`).
        A ``dest`` ending with a path separator (``'exports/'``) means a
        directory, as with ``cp``: if it is not an existing one,
        ``NotADirectoryError`` is raised and nothing is written.
        """
        info = self.get_file(file_id)
        target = download_target(dest, info['name'], info['id'])
        try:
            src = open(info['path'], 'rb')  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            self.get_file(info['id'])  # raises if it was deleted meanwhile
            raise StorageIntegrityError(
                f'File {info["id"]} ({info["name"]!r}) is indexed but its blob '
                f'{info["path"]} is missing; the storage at {self._root} is damaged.'
            ) from None
        with src:
            fd, tmp = _create_temp(target.parent, DOWNLOAD_TEMP_PREFIX)
            try:
                with os.fdopen(fd, 'wb') as out:
                    size, checksum = _copy(src, out)
                if size != info['size'] or checksum != info['checksum']:
                    raise StorageIntegrityError(
                        f'File {info["id"]} ({info["name"]!r}) failed verification: expected '
                        f'{info["size"]} bytes sha256={info["checksum"]}, read {size} bytes '
                        f'sha256={checksum} from {info["path"]}.'
                    )
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return target

    # ------------------------------------------------------------ internals

    @property
    def _index_path(self) -> Path:
        return self._root / INDEX_NAME

    @property
    def _blob_dir(self) -> Path:
        return self._root / BLOB_DIR

    def _blob_path(self, blob: str) -> Path:
        # The blob name comes from the index; refuse anything that is not one of
        # our uuids so a tampered index cannot point reads or deletes elsewhere.
        if len(blob) != 32 or blob.strip('0123456789abcdef'):
            raise StorageIntegrityError(
                f'Index at {self._index_path} holds an invalid blob name {blob!r}.'
            )
        return self._blob_dir / blob

    def _to_info(self, row: tuple[int, str, str, int, str, str]) -> FileInfo:
        file_id, name, blob, size, checksum, created_at = row
        return FileInfo(
            id=file_id,
            name=name,
            size=size,
            checksum=checksum,
            created_at=created_at,
            path=str(self._blob_path(blob)),
        )

    def _write_blob(self, src: BinaryIO, source: str, blob: str) -> tuple[int, str]:
        """Copy ``src`` to the blob ``blob`` (through ``.upload-<blob>.tmp``); durable
        before it is indexed."""
        fd, tmp = _create_temp(self._root, UPLOAD_TEMP_PREFIX, blob)
        try:
            with os.fdopen(fd, 'wb') as out:
                size, checksum = _copy(src, out, source=source)
            os.replace(tmp, self._blob_dir / blob)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self._blob_dir)
        return size, checksum

    def _announce(self, token: str, conn: Connection | None = None) -> None:
        """Committed before the write it announces (bound clients only)."""
        if self._run is None:
            return
        row = (token, self._run, datetime.now(UTC).isoformat(timespec='microseconds'))
        sql = (
            'INSERT INTO partial (token, run_id, started_at) VALUES (?, ?, ?)'
            ' ON CONFLICT (token) DO NOTHING'
        )
        if conn is not None:
            conn.execute(sql, row)
            return
        with self._connect() as own:
            own.execute(sql, row)

    def _settle(self, token: str) -> None:
        """The write named ``token`` is over (done, or cleaned up here): forget it.
        If that fails, the row stays for ``discard_partial``."""
        if self._run is None:
            return
        with suppress(Exception), self._connect() as conn:
            conn.execute('DELETE FROM partial WHERE token = ?', (token,))

    def _discard(self, token: str) -> list[str]:
        """Remove the temp file and the unindexed blob named ``token``, then its row."""
        candidates = [self._root / f'{UPLOAD_TEMP_PREFIX}{token}{TEMP_SUFFIX}']
        with self._connect() as conn:
            if conn.fetchone('SELECT 1 FROM files WHERE blob = ?', (token,)) is None:
                candidates.append(self._blob_path(token))  # else: stored after all
        removed = []
        for path in candidates:
            with suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.relative_to(self._root).as_posix())
        with self._connect() as conn:
            conn.execute('DELETE FROM partial WHERE token = ?', (token,))
        return removed

    def _discard_unindexed_blob(self, blob: str) -> None:
        # Only delete the blob when we can confirm no row references it (the
        # failure may have come after COMMIT); if unsure, an orphan is harmless,
        # and for a bound client its announcement stays for discard_partial.
        try:
            with self._connect() as conn:
                indexed = conn.fetchone('SELECT 1 FROM files WHERE blob = ?', (blob,))
        except Exception:
            return
        if indexed is None:
            try:
                (self._blob_dir / blob).unlink(missing_ok=True)
            except OSError:
                return
        self._settle(blob)

    def _index(self) -> SQLiteDatabase:
        # durable: once upload_file returns an id, the row survives power loss
        return SQLiteDatabase(self._index_path, _SCHEMA, durable=True)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        self._ensure_ready()
        conn = self._database.connect()
        try:
            yield conn
        finally:
            conn.close()

    def _ensure_ready(self) -> None:
        """Create the root, blob dir and index once per process (idempotent).

        The index is read through here, so one that cannot be used (not a
        database, a newer version, damaged pages) is refused before anything
        is written to it, and left as it is.
        """
        if self._ready:
            return
        self._blob_dir.mkdir(parents=True, exist_ok=True)
        conn = self._database.connect()
        try:
            conn.check()
        finally:
            conn.close()
        self._ready = True


# ---------------------------------------------------------------- helpers


class _AlreadyStored(Exception):
    def __init__(self, file_id: int) -> None:
        self.file_id = file_id


@contextmanager
def _open_source(source: str) -> Iterator[BinaryIO]:
    """Open an upload source, refusing anything but a regular file.

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
        yield handle


def _copy(src: BinaryIO, out: BinaryIO, *, source: str | None = None) -> tuple[int, str]:
    """Stream ``src`` into ``out``, fsync it, and return (size, sha256 hex).

    Read errors on an upload source become SourceFileError so they are not
    mistaken for a storage-side (write) failure.
    """
    digest = hashlib.sha256()
    size = 0
    while True:
        try:
            chunk = src.read(_CHUNK_SIZE)
        except OSError as exc:
            if source is None:
                raise
            raise SourceFileError(source, f'read failed ({exc.strerror or exc})') from exc
        if not chunk:
            break
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
    out.flush()
    os.fsync(out.fileno())
    return size, digest.hexdigest()


def _create_temp(directory: Path, prefix: str, name: str | None = None) -> tuple[int, Path]:
    """Create a new temp file exclusively in ``directory`` (named by ``name``, else at random).

    Unlike ``tempfile.mkstemp`` the mode honours the umask (0o666 & ~umask), so
    a downloaded file gets the permissions users expect.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0)
    path = directory / f'{prefix}{name or uuid.uuid4().hex}{TEMP_SUFFIX}'
    return os.open(path, flags, 0o666), path


def _fsync_dir(directory: Path) -> None:
    """Persist a rename; POSIX only, as Windows cannot open directories."""
    if os.name != 'posix':
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _key_value(key: str | None) -> str | bytes | None:
    """How ``key`` is stored and looked up in the index's ``key`` column.

    A key built from a non-UTF-8 path holds lone surrogates, which SQLite text
    cannot; it is stored as a BLOB of its surrogate-preserving UTF-8 bytes. That
    mapping is one-to-one and a BLOB never equals a TEXT value, so such a key
    can never be mistaken for another.
    """
    if key is None:
        return None
    try:
        key.encode('utf-8')
    except UnicodeEncodeError:
        return key.encode('utf-8', 'surrogatepass')
    return key
