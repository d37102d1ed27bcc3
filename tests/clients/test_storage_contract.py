"""The storage client's guarantees, the same on every store: a folder, memory://, and S3,
Azure Blob and SFTP on real servers (moto, Azurite, asyncssh) on 127.0.0.1.

What is stored is checked through each provider's own client (conftest.Store), not
through the SDK: objects exist only under the URL's prefix, in ``blobs/``, and only
while an index row points at them.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from tests.services.s3 import S3Server

from synapse_sdk.clients import (
    FileNotFoundInStorageError,
    SourceFileError,
    StorageClient,
    StorageIntegrityError,
    open_storage,
)

from .conftest import Store, s3_store

MiB = 1024 * 1024
Files = Callable[[str, bytes], Path]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_round_trip_of_a_small_and_a_multipart_file(store: Store, files: Files) -> None:
    small, large = os.urandom(4096), os.urandom(20 * MiB + 123)  # three parts
    client = open_storage(store.url).for_run('run-1')
    small_id = client.upload_file(files('a.txt', small))
    large_id = client.upload_file(files('big.bin', large))

    listed = client.list_files()
    assert [(f['id'], f['name'], f['size']) for f in listed] == [
        (small_id, 'a.txt', 4096),
        (large_id, 'big.bin', len(large)),
    ]
    assert listed[1]['checksum'] == sha256(large)
    stored = store.objects()  # as the provider's own client sees it
    assert sorted(stored.values(), key=len) == [small, large]
    assert all(re.fullmatch('blobs/[0-9a-f]{32}', name) for name in stored)
    assert listed[0]['path'].endswith(next(n for n, d in stored.items() if d == small))

    back = client.download_file(large_id, Path(files('x', b'')).parent / 'back.bin')
    assert back.read_bytes() == large
    client.delete_file(small_id)
    client.delete_file(large_id)
    assert client.list_files() == []
    assert store.objects() == {}
    assert store.outside() == []


def test_upload_by_key_stores_once_even_when_the_source_is_gone(store: Store, files: Files) -> None:
    source = files('a.txt', b'first')
    client = open_storage(store.url)
    file_id = client.upload_file(source, key='run-7:a.txt')
    source.unlink()
    assert client.upload_file(source, key='run-7:a.txt') == file_id  # a resume: no re-upload
    assert open_storage(store.url).find_file('run-7:a.txt') == file_id  # another client too
    assert len(store.objects()) == 1
    with pytest.raises(SourceFileError):
        client.upload_file(source, key='run-7:other')


def test_no_key_or_file_name_places_an_object_outside_the_prefix(
    store: Store, files: Files
) -> None:
    client = open_storage(store.url).for_run('../../escape')
    keys = ['../../../etc/passwd', '/absolute', 'a/../../b', '..', 'x\x00y', 'ü\udce9']
    for i, key in enumerate(keys):
        client.upload_file(files(f'..{i}', b'%d' % i), key=key)
    client.upload_file(files('index.db', b'not the index'))
    stored = store.objects()
    assert len(stored) == len(keys) + 1
    assert all(name.startswith('blobs/') and '..' not in name for name in stored)
    assert store.outside() == []
    assert [client.find_file(k) for k in keys] == [f['id'] for f in client.list_files()][:-1]


def test_deleting_a_file_whose_object_is_already_gone_removes_its_row(
    store: Store, files: Files
) -> None:
    """What a rollback meets after an earlier, interrupted rollback deleted the object."""
    client = open_storage(store.url)
    file_id = client.upload_file(files('a.txt', b'abc'))
    (name,) = store.objects()
    store.remove_raw(name)
    client.delete_file(file_id)
    assert client.list_files() == []
    with pytest.raises(FileNotFoundInStorageError):
        client.delete_file(file_id)  # the row is gone too: that is for the caller to decide


def test_a_missing_or_damaged_object_is_never_handed_out(store: Store, files: Files) -> None:
    client = open_storage(store.url)
    damaged = client.upload_file(files('a.txt', b'original'))
    missing = client.upload_file(files('b.txt', b'other'))
    names = {data: name for name, data in store.objects().items()}
    store.remove_raw(names[b'original'])
    store.put_raw(names[b'original'], b'tampered')
    store.remove_raw(names[b'other'])
    target = Path(files('x', b'')).parent / 'out.txt'
    with pytest.raises(StorageIntegrityError, match='failed verification'):
        client.download_file(damaged, target)
    with pytest.raises(StorageIntegrityError, match='is missing'):
        client.download_file(missing, target)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if p.name.endswith('.tmp')] == []


def test_orphans_are_invisible_and_found_by_age(store: Store, files: Files) -> None:
    """An object without a row (a crash between storing and indexing) is not listed;
    find_orphans sees it once it is older than asked, remove_orphans deletes it."""
    client = open_storage(store.url)
    kept = client.upload_file(files('kept.txt', b'kept'))
    store.put_raw('blobs/' + 'f' * 32, b'orphan of a killed upload')
    store.put_raw('blobs/.upload-' + 'e' * 32 + '.tmp', b'partial')

    assert [f['id'] for f in client.list_files()] == [kept]
    assert client.find_orphans(timedelta(days=1)) == []  # too young: maybe being indexed
    orphans = client.find_orphans(timedelta(0))
    assert sorted(o.name for o in orphans) == [
        'blobs/.upload-' + 'e' * 32 + '.tmp',
        'blobs/' + 'f' * 32,
    ]
    assert client.remove_orphans(orphans) == orphans
    assert list(store.objects().values()) == [b'kept']
    assert [f['id'] for f in client.list_files()] == [kept]


def test_a_runs_leftovers_are_discarded_and_nothing_else(store: Store, files: Files) -> None:
    """What killed uploads left: an object stored but never indexed, and the temp file of
    one cut off mid-write (stores that rename into place). Exactly what the run's
    announcements name, and no other run's, is removed."""
    ours = open_storage(store.url).for_run('r1')
    theirs = open_storage(store.url).for_run('r2')
    indexed = ours.upload_file(files('a.txt', b'a'))
    theirs.upload_file(files('b.txt', b'b'))
    for blob, run in (('a' * 32, 'r1'), ('c' * 32, 'r1'), ('b' * 32, 'r2')):
        ours._idx.announce(blob, run)  # as each upload did before it wrote a byte
    store.put_raw('blobs/' + 'a' * 32, b'stored by r1, never indexed')
    store.put_raw('blobs/' + 'b' * 32, b'left by r2, which may still run')
    temp = 'blobs/.upload-' + 'c' * 32 + '.tmp'
    renames = store.kind in ('folder', 'sftp')
    if renames:
        store.put_raw(temp, b'half written')

    assert sorted(ours.discard_partial('r1')) == sorted(
        ['blobs/' + 'a' * 32, *([temp] if renames else [])]
    )
    assert sorted(store.objects().values()) == [b'a', b'b', b'left by r2, which may still run']
    assert ours.get_file(indexed)['name'] == 'a.txt'
    assert ours.discard_partial('r1') == []  # its announcements are gone with them
    assert ours.discard_partial('never-ran') == []


def test_many_files_concurrently_announced_before_each_upload(store: Store, files: Files) -> None:
    sources = [files(f'f{i:03d}.bin', os.urandom(100 + i)) for i in range(40)]
    keys = [f'run:{p.name}' for p in sources]
    client = open_storage(store.url).for_run('run')
    announced: list[str] = []
    progress: list[tuple[int, int]] = []

    def announce(key: str) -> None:
        assert client.find_file(key) is None  # recorded before its upload began
        announced.append(key)

    ids = client.upload_files(
        sources, keys=keys, concurrency=8, announce=announce, progress=lambda *p: progress.append(p)
    )
    assert announced == keys
    assert [client.find_file(k) for k in keys] == ids
    assert [client.get_file(i)['name'] for i in ids] == [p.name for p in sources]
    assert progress[-1] == (40, 40) and len(progress) == 40
    assert client.upload_files(sources, keys=keys) == ids  # idempotent as a whole
    assert len(store.objects()) == 40


def test_a_failing_upload_stops_the_batch_and_is_raised(store: Store, files: Files) -> None:
    sources = [files(f'f{i}.bin', b'x') for i in range(6)]
    sources[2] = sources[2].with_name('missing.bin')
    client = open_storage(store.url)
    with pytest.raises(SourceFileError, match='missing.bin'):
        client.upload_files(sources, keys=[f'k{i}' for i in range(6)], concurrency=1)
    assert [client.find_file(f'k{i}') is not None for i in range(6)] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]


def test_byte_progress_of_an_upload_and_a_download(store: Store, files: Files) -> None:
    data = os.urandom(3 * MiB + 5)
    client = open_storage(store.url)
    seen: list[tuple[int, int]] = []
    file_id = client.upload_file(files('a.bin', data), progress=lambda *p: seen.append(p))
    assert seen[-1] == (len(data), len(data))
    assert [done for done, _ in seen] == sorted({done for done, _ in seen})  # only forward
    back: list[tuple[int, int]] = []
    target = Path(files('x', b'')).parent / 'back.bin'
    client.download_file(file_id, target, progress=lambda *p: back.append(p))
    assert back[-1] == (len(data), len(data))


def test_a_client_pickles_by_its_url(store: Store, files: Files) -> None:
    # (memory:// lives in one process: its clone is good in this one only)
    client = open_storage(store.url).for_run('run-3')
    file_id = client.upload_file(files('a.txt', b'abc'))
    clone = pickle.loads(pickle.dumps(client))
    assert isinstance(clone, StorageClient)
    assert clone.url == client.url and clone.run_id == 'run-3'
    assert clone.get_file(file_id) == client.get_file(file_id)
    assert clone.upload_file(files('b.txt', b'def')) == file_id + 1


def test_the_url_a_client_reports_opens_the_same_storage(store: Store, files: Files) -> None:
    """What the run journal records (``client.url``) is enough to find the files again."""
    client = open_storage(store.url)
    file_id = client.upload_file(files('a.txt', b'abc'))
    again = open_storage(client.url)
    assert again.url == client.url
    assert again.get_file(file_id) == client.get_file(file_id)


def test_a_closed_client_opens_its_storage_again_on_use(store: Store, files: Files) -> None:
    client = open_storage(store.url)
    first = client.upload_file(files('a.txt', b'a'))
    client.close()  # an SFTP connection is logged out; other stores hold none
    client.close()  # harmless twice
    second = client.upload_file(files('b.txt', b'b'))
    assert [f['id'] for f in client.list_files()] == [first, second]


@pytest.mark.usefixtures('index_database')
def test_two_stores_in_one_index_on_either_database(
    home: Path, s3_server: S3Server, s3_bucket: str, files: Files
) -> None:
    """Storages by URL share one index (SQLite under SYNAPSE_HOME, or PostgreSQL): each
    sees its own files and keys, and its own run's announcements."""
    ours = open_storage(f's3://{s3_bucket}/team/data').for_run('r')
    theirs = open_storage(f's3://{s3_bucket}/other').for_run('r')
    mine = ours.upload_file(files('a.txt', b'a'), key='k')
    yours = theirs.upload_file(files('b.txt', b'b'), key='k')  # the same key, elsewhere
    assert mine != yours
    assert (ours.find_file('k'), theirs.find_file('k')) == (mine, yours)
    assert [f['name'] for f in ours.list_files()] == ['a.txt']
    with pytest.raises(FileNotFoundInStorageError):
        theirs.get_file(mine)

    ours._idx.announce('c' * 32, 'r')  # a killed upload of run r, in our store
    s3_store(s3_server, s3_bucket).put_raw('blobs/' + 'c' * 32, b'never indexed')
    assert theirs.discard_partial('r') == []
    assert ours.discard_partial('r') == ['blobs/' + 'c' * 32]
    ours.delete_file(mine)
    assert ours.list_files() == [] and [f['id'] for f in theirs.list_files()] == [yours]
