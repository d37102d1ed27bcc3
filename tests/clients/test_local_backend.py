"""Tests for the embedded storage backend (LocalBackendClient)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import synapse_sdk.clients._local as local_module
from synapse_sdk._paths import synapse_home
from synapse_sdk.clients import (
    BackendClient,
    ClientError,
    FileNotFoundInStorageError,
    LocalBackendClient,
    SourceFileError,
    StorageIntegrityError,
    stored_name,
)
from synapse_sdk.testing import FakeBackend

SRC_DIR = Path(local_module.__file__).resolve().parents[2]


# ------------------------------------------------------------------ helpers


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / 'storage'


@pytest.fixture
def client(root: Path) -> LocalBackendClient:
    return LocalBackendClient(root)


def make_file(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def all_files(directory: Path) -> set[Path]:
    return {p for p in directory.rglob('*') if p.is_file()}


def blob_files(root: Path) -> set[Path]:
    return {p for p in (root / 'blobs').iterdir()} if (root / 'blobs').exists() else set()


def temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith('.tmp')]


def make_non_utf8_file(directory: Path, data: bytes) -> str:
    """A file named ``b'caf\\xe9.txt'`` (latin-1, not UTF-8); its path as Python sees it."""
    raw = os.fsencode(directory) + b'/caf\xe9.txt'
    try:
        with open(raw, 'wb') as handle:
            handle.write(data)
    except OSError as exc:  # e.g. macOS file systems accept UTF-8 names only
        pytest.skip(f'this file system refuses non-UTF-8 names: {exc}')
    return os.fsdecode(raw)


# ------------------------------------------------------------- synapse_home


def test_synapse_home_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv('SYNAPSE_HOME', str(tmp_path / 'home'))
    assert synapse_home() == tmp_path / 'home'
    assert not (tmp_path / 'home').exists()  # not created


def test_synapse_home_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv('SYNAPSE_HOME', raising=False)
    monkeypatch.setenv('HOME', str(tmp_path))
    assert synapse_home() == tmp_path / '.synapse'
    assert not (tmp_path / '.synapse').exists()


def test_synapse_home_empty_env_means_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv('SYNAPSE_HOME', '')
    monkeypatch.setenv('HOME', str(tmp_path))
    assert synapse_home() == tmp_path / '.synapse'


# ------------------------------------------------------------- construction


def test_default_root_honours_synapse_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / 'fresh-machine' / 'synapse'
    monkeypatch.setenv('SYNAPSE_HOME', str(home))
    c = LocalBackendClient()
    assert c.root == home / 'storage'
    assert not home.exists()  # lazily created
    file_id = c.upload_file(make_file(tmp_path / 'src', 'a.txt', b'hello'))
    assert (home / 'storage' / 'index.db').is_file()
    assert Path(c.get_file(file_id)['path']).parent == home / 'storage' / 'blobs'


def test_construction_does_not_touch_disk(root: Path) -> None:
    LocalBackendClient(root)
    assert not root.exists()


def test_relative_root_is_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    c = LocalBackendClient('rel/store')
    assert c.root == tmp_path / 'rel' / 'store'
    assert c.root.is_absolute()


def test_root_accepts_str_and_pathlike(root: Path) -> None:
    assert LocalBackendClient(str(root)).root == root
    assert LocalBackendClient(root).root == root


def test_index_uses_wal(client: LocalBackendClient, root: Path) -> None:
    client.list_files()
    conn = sqlite3.connect(root / 'index.db')
    try:
        assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    finally:
        conn.close()


def test_satisfies_backend_protocol(client: LocalBackendClient) -> None:
    assert isinstance(client, BackendClient)
    assert not isinstance(object(), BackendClient)


def test_repr_names_root(client: LocalBackendClient, root: Path) -> None:
    assert str(root) in repr(client)


# ------------------------------------------------------------------ upload


@pytest.mark.usefixtures('index_database')
def test_upload_returns_distinct_increasing_ids(client: LocalBackendClient, tmp_path: Path) -> None:
    src = make_file(tmp_path / 'src', 'a.bin', b'x')
    ids = [client.upload_file(src) for _ in range(5)]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


@pytest.mark.usefixtures('index_database')
def test_get_file_metadata(client: LocalBackendClient, root: Path, tmp_path: Path) -> None:
    data = b'some bytes\n' * 100
    src = make_file(tmp_path / 'src', 'report.csv', data)
    before = datetime.now(UTC)
    file_id = client.upload_file(src)
    after = datetime.now(UTC)

    info = client.get_file(file_id)
    assert set(info) == {'id', 'name', 'size', 'checksum', 'created_at', 'path'}
    assert info['id'] == file_id
    assert info['name'] == 'report.csv'
    assert info['size'] == len(data)
    assert info['checksum'] == sha256(data)
    created = datetime.fromisoformat(info['created_at'])
    assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
    assert before <= created <= after
    blob = Path(info['path'])
    assert blob.parent == root / 'blobs'
    assert blob.name != 'report.csv'
    assert blob.read_bytes() == data


def test_upload_accepts_str_path(client: LocalBackendClient, tmp_path: Path) -> None:
    src = make_file(tmp_path / 'src', 'a.txt', b'abc')
    file_id = client.upload_file(str(src))
    assert client.get_file(file_id)['name'] == 'a.txt'


def test_upload_empty_file(client: LocalBackendClient, tmp_path: Path) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'empty', b''))
    info = client.get_file(file_id)
    assert info['size'] == 0
    assert info['checksum'] == sha256(b'')
    assert Path(info['path']).read_bytes() == b''


def test_upload_file_larger_than_chunk(client: LocalBackendClient, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    file_id = client.upload_file(make_file(tmp_path / 'src', 'big.bin', data))
    info = client.get_file(file_id)
    assert info['size'] == len(data)
    assert info['checksum'] == sha256(data)


def test_upload_is_a_copy(client: LocalBackendClient, tmp_path: Path) -> None:
    src = make_file(tmp_path / 'src', 'a.txt', b'original')
    file_id = client.upload_file(src)
    src.write_bytes(b'changed afterwards')
    assert Path(client.get_file(file_id)['path']).read_bytes() == b'original'
    src.unlink()
    assert Path(client.get_file(file_id)['path']).exists()


def test_upload_leaves_no_temp_files(
    client: LocalBackendClient, root: Path, tmp_path: Path
) -> None:
    client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'abc'))
    assert temp_files(root) == []
    assert len(blob_files(root)) == 1


def test_upload_follows_symlink_keeps_link_name(client: LocalBackendClient, tmp_path: Path) -> None:
    target = make_file(tmp_path / 'src', 'real.txt', b'real')
    link = tmp_path / 'src' / 'alias.txt'
    link.symlink_to(target)
    info = client.get_file(client.upload_file(link))
    assert info['name'] == 'alias.txt'
    assert info['checksum'] == sha256(b'real')


@pytest.mark.parametrize('use_absolute', [False, True])
def test_user_paths_cannot_escape_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, use_absolute: bool
) -> None:
    work = tmp_path / 'a' / 'b'
    work.mkdir(parents=True)
    make_file(tmp_path, 'x', b'payload')
    root = work / 'store'
    c = LocalBackendClient(root)
    monkeypatch.chdir(work)
    source = str(tmp_path / 'x') if use_absolute else '../../x'
    before = all_files(tmp_path)

    file_id = c.upload_file(source)

    info = c.get_file(file_id)
    assert info['name'] == 'x'
    blob = Path(info['path']).resolve()
    assert blob.parent == (root / 'blobs').resolve()
    assert blob.name != 'x'
    new_files = all_files(tmp_path) - before
    assert new_files, 'upload wrote nothing'
    assert all(root.resolve() in p.resolve().parents for p in new_files)


def test_odd_source_names_stay_inside_root(
    client: LocalBackendClient, root: Path, tmp_path: Path
) -> None:
    for name in ['..x', '.hidden', 'with space', 'ünïcødé', 'index.db', 'blobs']:
        file_id = client.upload_file(make_file(tmp_path / 'src', name, name.encode()))
        info = client.get_file(file_id)
        assert info['name'] == name
        assert Path(info['path']).parent == root / 'blobs'
    # Uploading files named like the index did not clobber it.
    assert len(client.list_files()) == 6


def test_upload_of_a_file_whose_name_is_not_utf8(tmp_path: Path) -> None:
    """A name with non-UTF-8 bytes (common in archives from other systems) once failed
    with a bare UnicodeEncodeError from SQLite that did not even name the file."""
    source = make_non_utf8_file(tmp_path, b'latin-1 name')
    assert FakeBackend().upload_file(source) == 1  # the testing kit's backend copes
    client = LocalBackendClient(tmp_path / 'storage')
    file_id = client.upload_file(source)
    info = client.get_file(file_id)
    assert info['size'] == len(b'latin-1 name')
    json.dumps(client.list_files())  # names are printable text
    out = tmp_path / 'out'
    out.mkdir()
    assert client.download_file(file_id, out).read_bytes() == b'latin-1 name'


def test_a_non_utf8_name_is_stored_and_downloaded_with_its_bad_bytes_escaped(
    client: LocalBackendClient, tmp_path: Path
) -> None:
    source = make_non_utf8_file(tmp_path, b'data')
    file_id = client.upload_file(source)
    assert client.get_file(file_id)['name'] == 'caf\\xe9.txt'
    assert [f['name'] for f in client.list_files()] == ['caf\\xe9.txt']
    assert stored_name(source) == 'caf\\xe9.txt'
    assert stored_name(str(tmp_path / 'ünïcødé.txt')) == 'ünïcødé.txt'
    out = tmp_path / 'out'
    out.mkdir()
    # Into a directory: under the stored name, backslash and all, not split on it.
    assert client.download_file(file_id, out) == out / 'caf\\xe9.txt'


@pytest.mark.usefixtures('index_database')
def test_a_key_built_from_a_non_utf8_path_is_stored_and_found(
    client: LocalBackendClient, tmp_path: Path
) -> None:
    source = make_non_utf8_file(tmp_path, b'data')
    key = f'run1:{os.path.basename(source)}'  # holds a lone surrogate
    first = client.upload_file(source, key=key)
    assert client.find_file(key) == first
    assert client.upload_file(source, key=key) == first
    # Not mistaken for the key spelled like its printable form.
    assert client.find_file('run1:caf\\xe9.txt') is None
    assert client.upload_file(source, key='run1:caf\\xe9.txt') != first
    assert client.find_file('run1:\ud800') is None  # any surrogate at all
    client.delete_file(first)
    assert client.find_file(key) is None


@pytest.mark.parametrize('bad', ['caf\ud800.txt', 'nul\x00.txt'])
def test_a_source_path_that_is_not_a_valid_path_is_a_source_file_error(
    client: LocalBackendClient, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(SourceFileError, match='not a valid path'):
        client.upload_file(str(tmp_path / bad))


# ------------------------------------------------------------ upload errors


def test_upload_missing_source(client: LocalBackendClient, root: Path, tmp_path: Path) -> None:
    missing = tmp_path / 'nope.txt'
    with pytest.raises(SourceFileError) as excinfo:
        client.upload_file(missing)
    err = excinfo.value
    assert isinstance(err, FileNotFoundError)
    assert isinstance(err, ClientError)
    assert str(missing) in str(err)
    assert err.path == str(missing)
    assert client.list_files() == []
    assert temp_files(root) == []


def test_upload_directory_source(client: LocalBackendClient, root: Path, tmp_path: Path) -> None:
    directory = tmp_path / 'adir'
    directory.mkdir()
    with pytest.raises(SourceFileError, match='directory') as excinfo:
        client.upload_file(directory)
    assert str(directory) in str(excinfo.value)
    assert client.list_files() == []
    assert blob_files(root) == set()


def test_upload_path_through_a_file(client: LocalBackendClient, tmp_path: Path) -> None:
    f = make_file(tmp_path, 'plain', b'')
    with pytest.raises(SourceFileError):
        client.upload_file(f / 'child')


@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='needs FIFOs')
def test_upload_fifo_is_refused_without_blocking(
    client: LocalBackendClient, tmp_path: Path
) -> None:
    fifo = tmp_path / 'pipe'
    os.mkfifo(fifo)
    with pytest.raises(SourceFileError, match='not a regular file'):
        client.upload_file(fifo)


def test_upload_unreadable_source(
    client: LocalBackendClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod 000 does not stop root (CI runs as root), so refuse the open itself.
    import builtins

    import synapse_sdk.clients._storage as storage

    src = make_file(tmp_path, 'secret', b'x')
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(file) == str(src):
            raise PermissionError(13, 'Permission denied', str(src))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(storage, 'open', refusing_open, raising=False)
    with pytest.raises(SourceFileError) as excinfo:
        client.upload_file(src)
    assert str(src) in str(excinfo.value)
    assert 'Permission denied' in str(excinfo.value)
    assert client.list_files() == []


def test_failed_insert_removes_blob(client: LocalBackendClient, root: Path, tmp_path: Path) -> None:
    client.list_files()  # create the index
    conn = sqlite3.connect(root / 'index.db')
    try:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON files BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(sqlite3.IntegrityError, match='boom'):
        client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'abc'))
    assert blob_files(root) == set()
    assert temp_files(root) == []
    assert client.list_files() == []


# -------------------------------------------------------- crash leftovers


def test_orphan_blob_and_temp_files_are_invisible(
    client: LocalBackendClient, root: Path, tmp_path: Path
) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'abc'))
    listed = client.list_files()
    # Simulate crashes: between copy and insert, and during the copy.
    (root / 'blobs' / ('f' * 32)).write_bytes(b'orphan')
    (root / '.upload-0123456789abcdef0123456789abcdef.tmp').write_bytes(b'partial')

    assert client.list_files() == listed
    with pytest.raises(FileNotFoundInStorageError):
        client.get_file(file_id + 1)
    # And a later upload is unaffected.
    new_id = client.upload_file(make_file(tmp_path / 'src', 'b.txt', b'def'))
    assert [f['id'] for f in client.list_files()] == [file_id, new_id]


def test_tampered_blob_name_is_rejected(
    client: LocalBackendClient, root: Path, tmp_path: Path
) -> None:
    victim = make_file(tmp_path, 'victim.txt', b'keep me')
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'abc'))
    conn = sqlite3.connect(root / 'index.db')
    try:
        conn.execute('UPDATE files SET blob = ? WHERE id = ?', ('../../victim.txt', file_id))
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(StorageIntegrityError):
        client.get_file(file_id)
    with pytest.raises(StorageIntegrityError):
        client.delete_file(file_id)
    assert victim.read_bytes() == b'keep me'


# ------------------------------------------------------------ get / list


def test_list_files_empty(client: LocalBackendClient) -> None:
    assert client.list_files() == []


@pytest.mark.usefixtures('index_database')
def test_list_files_ordered_by_id_with_same_shape(
    client: LocalBackendClient, tmp_path: Path
) -> None:
    ids = [
        client.upload_file(make_file(tmp_path / 'src', f'f{i}.txt', f'data {i}'.encode()))
        for i in range(4)
    ]
    listed = client.list_files()
    assert [f['id'] for f in listed] == ids
    assert listed == [client.get_file(i) for i in ids]
    assert [f['name'] for f in listed] == [f'f{i}.txt' for i in range(4)]


@pytest.mark.usefixtures('index_database')
def test_new_client_on_same_root_sees_files(root: Path, tmp_path: Path) -> None:
    file_id = LocalBackendClient(root).upload_file(make_file(tmp_path / 'src', 'a', b'1'))
    assert [f['id'] for f in LocalBackendClient(root).list_files()] == [file_id]


@pytest.mark.parametrize('method', ['get_file', 'delete_file'])
@pytest.mark.usefixtures('index_database')
def test_unknown_id(client: LocalBackendClient, method: str) -> None:
    with pytest.raises(FileNotFoundInStorageError) as excinfo:
        getattr(client, method)(424242)
    err = excinfo.value
    assert isinstance(err, KeyError)
    assert isinstance(err, ClientError)
    assert err.file_id == 424242
    message = str(err)
    assert '424242' in message
    assert 'list_files()' in message
    assert not message.startswith(("'", '"'))  # not KeyError's repr()


def test_non_integer_id_is_a_type_error(client: LocalBackendClient) -> None:
    with pytest.raises(TypeError):
        client.get_file('1')  # type: ignore[arg-type]


# ------------------------------------------------------------------ delete


@pytest.mark.usefixtures('index_database')
def test_delete_removes_blob_and_row(
    client: LocalBackendClient, root: Path, tmp_path: Path
) -> None:
    keep = client.upload_file(make_file(tmp_path / 'src', 'keep', b'keep'))
    gone = client.upload_file(make_file(tmp_path / 'src', 'gone', b'gone'))
    blob = Path(client.get_file(gone)['path'])

    client.delete_file(gone)

    assert not blob.exists()
    assert [f['id'] for f in client.list_files()] == [keep]
    with pytest.raises(FileNotFoundInStorageError):
        client.get_file(gone)
    with pytest.raises(FileNotFoundInStorageError):
        client.delete_file(gone)
    assert Path(client.get_file(keep)['path']).read_bytes() == b'keep'


@pytest.mark.usefixtures('index_database')
def test_ids_are_not_reused_after_delete(client: LocalBackendClient, tmp_path: Path) -> None:
    src = make_file(tmp_path / 'src', 'a', b'a')
    first = client.upload_file(src)
    client.delete_file(first)
    assert client.upload_file(src) > first


def test_delete_tolerates_missing_blob(client: LocalBackendClient, tmp_path: Path) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a', b'a'))
    Path(client.get_file(file_id)['path']).unlink()
    client.delete_file(file_id)
    assert client.list_files() == []


# ---------------------------------------------------------------- download


@pytest.mark.usefixtures('index_database')
def test_download_round_trip_to_file(client: LocalBackendClient, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    file_id = client.upload_file(make_file(tmp_path / 'src', 'data.bin', data))
    dest = tmp_path / 'out' / 'copy.bin'
    dest.parent.mkdir()

    result = client.download_file(file_id, dest)

    assert result == dest
    assert isinstance(result, Path)
    assert dest.read_bytes() == data
    assert temp_files(dest.parent) == []


def test_download_into_directory_uses_stored_name(
    client: LocalBackendClient, tmp_path: Path
) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'report.csv', b'a,b\n'))
    out = tmp_path / 'out'
    out.mkdir()
    result = client.download_file(file_id, str(out))
    assert result == out / 'report.csv'
    assert result.read_bytes() == b'a,b\n'


def test_download_overwrites_existing_file(client: LocalBackendClient, tmp_path: Path) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a', b'new'))
    dest = make_file(tmp_path / 'out', 'a', b'old contents')
    client.download_file(file_id, dest)
    assert dest.read_bytes() == b'new'


def test_download_unknown_id(client: LocalBackendClient, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundInStorageError, match='99'):
        client.download_file(99, tmp_path / 'out.bin')
    assert not (tmp_path / 'out.bin').exists()


def test_download_detects_corruption(client: LocalBackendClient, tmp_path: Path) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'good data'))
    Path(client.get_file(file_id)['path']).write_bytes(b'evil data')
    out = tmp_path / 'out'
    out.mkdir()
    with pytest.raises(StorageIntegrityError, match='verification'):
        client.download_file(file_id, out / 'a.txt')
    assert list(out.iterdir()) == []  # neither the bad file nor a temp file


def test_download_detects_truncation(client: LocalBackendClient, tmp_path: Path) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'0123456789'))
    Path(client.get_file(file_id)['path']).write_bytes(b'01234')
    with pytest.raises(StorageIntegrityError):
        client.download_file(file_id, tmp_path / 'out.txt')
    assert not (tmp_path / 'out.txt').exists()


def test_download_missing_blob(client: LocalBackendClient, tmp_path: Path) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'abc'))
    Path(client.get_file(file_id)['path']).unlink()
    with pytest.raises(StorageIntegrityError, match='missing'):
        client.download_file(file_id, tmp_path / 'out.txt')


def test_download_into_directory_ignores_path_in_tampered_name(
    client: LocalBackendClient, root: Path, tmp_path: Path
) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'abc'))
    conn = sqlite3.connect(root / 'index.db')
    try:
        conn.execute('UPDATE files SET name = ? WHERE id = ?', ('../../evil.txt', file_id))
        conn.commit()
    finally:
        conn.close()
    out = tmp_path / 'deep' / 'out'
    out.mkdir(parents=True)
    assert client.download_file(file_id, out) == out / 'evil.txt'
    assert not (tmp_path / 'evil.txt').exists()


def test_download_missing_parent_directory(client: LocalBackendClient, tmp_path: Path) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'abc'))
    with pytest.raises(FileNotFoundError):
        client.download_file(file_id, tmp_path / 'no' / 'such' / 'dir' / 'a.txt')


def test_download_to_a_missing_directory_with_a_trailing_slash(tmp_path: Path) -> None:
    """``download_file(id, 'exports/')`` with no exports/ once wrote a *file* named
    'exports' (pathlib drops the slash), where ``cp a.txt exports/`` says 'Not a
    directory'; the next download into 'exports/' then silently replaced it."""
    source = tmp_path / 'a.txt'
    source.write_text('hello', encoding='utf-8')
    client = LocalBackendClient(tmp_path / 'storage')
    file_id = client.upload_file(source)
    target = tmp_path / 'exports'
    try:
        client.download_file(file_id, str(target) + os.sep)
    except Exception:
        pass
    assert not target.is_file(), 'a file was written where a directory was meant'


@pytest.mark.parametrize('backend', ['local', 'fake'])
@pytest.mark.parametrize('suffix', [os.sep, os.sep + '.'])
def test_download_to_a_missing_directory_is_not_a_directory_error(
    tmp_path: Path, backend: str, suffix: str
) -> None:
    storage = LocalBackendClient(tmp_path / 'storage') if backend == 'local' else FakeBackend()
    file_id = storage.upload_file(make_file(tmp_path / 'src', 'a.txt', b'abc'))
    dest = str(tmp_path / 'exports') + suffix
    with pytest.raises(NotADirectoryError, match='exports') as excinfo:
        storage.download_file(file_id, dest)
    assert 'Not a directory' in str(excinfo.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ['src'] + (['storage'] if backend == 'local' else [])
    )
    # An existing file is no directory either; it is left alone.
    existing = make_file(tmp_path, 'plain.txt', b'keep')
    with pytest.raises(NotADirectoryError):
        storage.download_file(file_id, str(existing) + os.sep)
    assert existing.read_bytes() == b'keep'


def test_download_to_an_existing_directory_with_a_trailing_slash(
    client: LocalBackendClient, tmp_path: Path
) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'abc'))
    out = tmp_path / 'exports'
    out.mkdir()
    assert client.download_file(file_id, str(out) + os.sep) == out / 'a.txt'
    assert (out / 'a.txt').read_bytes() == b'abc'


# ---------------------------------------------------------------- pickling


def test_pickle_round_trip(client: LocalBackendClient, tmp_path: Path) -> None:
    file_id = client.upload_file(make_file(tmp_path / 'src', 'a.txt', b'abc'))
    assert client.__getstate__() == {'root': str(client.root)}

    clone = pickle.loads(pickle.dumps(client))

    assert isinstance(clone, LocalBackendClient)
    assert clone.root == client.root
    assert clone.get_file(file_id) == client.get_file(file_id)
    second = clone.upload_file(make_file(tmp_path / 'src', 'b.txt', b'def'))
    assert [f['id'] for f in client.list_files()] == [file_id, second]


def test_unpickled_client_recreates_missing_root(root: Path, tmp_path: Path) -> None:
    c = LocalBackendClient(root)
    c.list_files()
    blob = pickle.dumps(c)
    import shutil

    shutil.rmtree(root)
    clone = pickle.loads(blob)
    assert clone.list_files() == []


def test_errors_pickle(tmp_path: Path) -> None:
    errors: list[ClientError] = [
        FileNotFoundInStorageError(7, str(tmp_path)),
        SourceFileError('/x/y', 'no such file'),
        StorageIntegrityError('bad'),
    ]
    for err in errors:
        clone = pickle.loads(pickle.dumps(err))
        assert type(clone) is type(err)
        assert str(clone) == str(err)
    clone_nf = pickle.loads(pickle.dumps(errors[0]))
    assert isinstance(clone_nf, FileNotFoundInStorageError) and clone_nf.file_id == 7


_CHILD_SCRIPT = """
import pickle, sys
client = pickle.loads(sys.stdin.buffer.read())
src, count = sys.argv[1], int(sys.argv[2])
ids = [client.upload_file(src) for _ in range(count)]
print(','.join(map(str, ids)))
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get('PYTHONPATH')]))
    return env


@pytest.mark.usefixtures('index_database')
def test_pickled_client_works_in_fresh_interpreters(
    client: LocalBackendClient, tmp_path: Path
) -> None:
    """Two independent interpreters (as Ray workers would be) upload at once."""
    first = client.upload_file(make_file(tmp_path / 'src', 'seed', b'seed'))
    payload = pickle.dumps(client)
    srcs = [make_file(tmp_path / 'src', f'p{i}.bin', f'proc {i}'.encode()) for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, '-c', _CHILD_SCRIPT, str(src), '50'],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(),
        )
        for src in srcs
    ]
    outputs = [p.communicate(payload, timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err.decode()
    child_ids = [int(i) for out, _ in outputs for i in out.decode().strip().split(',')]
    assert len(child_ids) == len(set(child_ids)) == 100
    listed = client.list_files()
    assert [f['id'] for f in listed] == sorted([first, *child_ids])


# ------------------------------------------------------------- concurrency


@pytest.mark.parametrize(
    'start_method',
    [m for m in ('fork', 'spawn') if m in multiprocessing.get_all_start_methods()],
)
@pytest.mark.usefixtures('index_database')
def test_concurrent_multiprocess_uploads(
    client: LocalBackendClient, root: Path, tmp_path: Path, start_method: str
) -> None:
    """2 processes x 50 uploads into one root, both released at the same moment.

    The pool runs ``client.upload_file`` itself (a bound method pickles by
    reference to the library), so spawned children need not import this test
    module, which pytest's importlib import mode would not allow.
    """
    ctx = multiprocessing.get_context(start_method)
    # Use the client in the parent first, so a fork child inherits a used client.
    assert client.list_files() == []
    srcs = [
        make_file(tmp_path / 'src', f'w{i}.bin', f'worker {i}'.encode() * 100) for i in range(2)
    ]
    barrier = ctx.Barrier(2)
    tasks = [str(srcs[0])] * 50 + [str(srcs[1])] * 50
    with ctx.Pool(2, initializer=barrier.wait, initargs=(60,)) as pool:
        ids = pool.map_async(client.upload_file, tasks, chunksize=50).get(timeout=120)
        pool.close()
        pool.join()

    assert len(ids) == len(set(ids)) == 100
    listed = client.list_files()
    assert len(listed) == 100
    assert sorted(ids) == [f['id'] for f in listed]
    expected = {src.name: sha256(src.read_bytes()) for src in srcs}
    for info in listed:
        blob = Path(info['path'])
        assert blob.is_file()
        assert sha256(blob.read_bytes()) == info['checksum'] == expected[info['name']]
    assert len(blob_files(root)) == 100
    assert temp_files(root) == []


@pytest.mark.usefixtures('index_database')
def test_concurrent_thread_uploads_share_one_client(
    client: LocalBackendClient, tmp_path: Path
) -> None:
    src = make_file(tmp_path / 'src', 't.bin', b'thread')
    ids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            got = [client.upload_file(src) for _ in range(20)]
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            ids.extend(got)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(set(ids)) == 80
    assert len(client.list_files()) == 80


# ------------------------------------------------------------ idempotency keys


@pytest.mark.usefixtures('index_database')
def test_upload_with_a_key_is_idempotent(client: LocalBackendClient, tmp_path: Path) -> None:
    src = make_file(tmp_path, 'a.txt', b'alpha')
    first = client.upload_file(src, key='run1:a.txt')
    again = client.upload_file(src, key='run1:a.txt')
    assert again == first
    assert [f['id'] for f in client.list_files()] == [first]
    assert client.find_file('run1:a.txt') == first
    other = client.upload_file(src, key='run2:a.txt')
    assert other != first
    assert client.upload_file(src) not in (first, other)  # no key: always a new file


@pytest.mark.usefixtures('index_database')
def test_find_file_by_unknown_key(client: LocalBackendClient) -> None:
    assert client.find_file('nope') is None


@pytest.mark.usefixtures('index_database')
def test_a_deleted_keyed_file_can_be_stored_again(
    client: LocalBackendClient, tmp_path: Path
) -> None:
    src = make_file(tmp_path, 'a.txt', b'alpha')
    first = client.upload_file(src, key='k')
    client.delete_file(first)
    assert client.find_file('k') is None
    second = client.upload_file(src, key='k')
    assert second != first
    assert client.get_file(second)['checksum'] == hashlib.sha256(b'alpha').hexdigest()


@pytest.mark.usefixtures('index_database')
def test_a_key_stored_meanwhile_by_another_writer_wins(
    client: LocalBackendClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other writer commits between our check and our insert: we must
    # return its id and leave no second copy (no row, no blob).
    src = make_file(tmp_path, 'a.txt', b'alpha')
    other = LocalBackendClient(client.root)
    real_find = LocalBackendClient.find_file
    calls = {'n': 0}

    def racing_find(self: LocalBackendClient, key: str) -> int | None:
        calls['n'] += 1
        if calls['n'] == 1:
            result = real_find(self, key)
            monkeypatch.setattr(LocalBackendClient, 'find_file', real_find)
            other.upload_file(src, key=key)
            return result
        return real_find(self, key)

    monkeypatch.setattr(LocalBackendClient, 'find_file', racing_find)
    file_id = client.upload_file(src, key='k')
    assert [f['id'] for f in client.list_files()] == [file_id]
    assert len(list((client.root / 'blobs').iterdir())) == 1
