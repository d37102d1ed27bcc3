"""What a killed upload or delete leaves, and ``discard_partial`` taking it away.

A client bound to a run (``for_run``) announces each write in the index before
it touches a file. Each test kills a child process (SIGKILL) at one moment of
an upload or a delete, then checks that the storage folder holds extra bytes
(the half-done write), that ``discard_partial`` of that run removes exactly
them, and that the folder is then byte for byte what it was before.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import synapse_sdk.clients._files as files_module
from synapse_sdk.clients import LocalBackendClient, PartialWrites

SRC_DIR = Path(files_module.__file__).resolve().parents[2]

# The child unpickles a client from stdin and does one operation, killing itself
# (SIGKILL) at the named moment: a crash there, not a simulated one.
CHILD = """\
import os, pickle, signal, sys
import synapse_sdk.clients._files as files

where, op, arg = sys.argv[1], sys.argv[2], sys.argv[3]
client = pickle.loads(sys.stdin.buffer.read())

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if where == 'writing':  # the temp file exists, half written
    def _copy(source, out):
        out.write(source.read(3)); out.flush(); die()
    files._copy = _copy
elif where == 'renamed':  # the blob is in place, no row refers to it yet
    files._fsync_dir = die
elif where == 'unlinking':  # the row is deleted, the blob not yet
    real_unlink = files.Path.unlink
    def unlink(self, missing_ok=False):
        if self.parent.name == 'blobs':
            die()
        return real_unlink(self, missing_ok=missing_ok)
    files.Path.unlink = unlink
if op == 'upload':
    client.upload_file(arg, key='k')
else:
    client.delete_file(int(arg))
"""


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (temp files and blobs included) by its sha256; the
    index database by its rows, which is what it holds (its pages change with any write)."""
    files = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob('*'))
        if p.is_file() and not p.name.startswith('index.db')
    }
    conn = sqlite3.connect(root / 'index.db')
    try:
        for table in ('files', 'partial'):
            rows = conn.execute(f'SELECT * FROM {table} ORDER BY 1').fetchall()
            files[f'index.db:{table}'] = repr(rows)
    finally:
        conn.close()
    return files


def kill_child(client: LocalBackendClient, where: str, op: str, arg: str) -> None:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get('PYTHONPATH')]))
    done = subprocess.run(
        [sys.executable, '-c', CHILD, where, op, arg],
        input=pickle.dumps(client),
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / 'storage'


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / 'a.bin'
    path.write_bytes(os.urandom(5000))
    return path


@pytest.fixture
def client(root: Path, tmp_path: Path) -> LocalBackendClient:
    """A storage holding one unrelated file."""
    client = LocalBackendClient(root)
    unrelated = tmp_path / 'unrelated.txt'
    unrelated.write_bytes(b'unrelated')
    client.upload_file(unrelated)
    return client


@pytest.mark.parametrize(
    ('where', 'left'),
    [('writing', r'blobs/\.upload-[0-9a-f]{32}\.tmp'), ('renamed', r'blobs/[0-9a-f]{32}')],
)
def test_a_killed_upload_leaves_what_discard_partial_removes(
    client: LocalBackendClient, root: Path, source: Path, where: str, left: str
) -> None:
    before = snapshot(root)
    kill_child(client.for_run('run-a'), where, 'upload', str(source))
    after_kill = snapshot(root)
    extra = sorted(set(after_kill) - set(before))
    assert len(extra) == 1 and re.fullmatch(left, extra[0]), extra
    assert client.list_files() == LocalBackendClient(root).list_files()  # invisible

    assert client.for_run('run-b').discard_partial('run-b') == []  # another run's: kept
    assert snapshot(root) == after_kill
    assert client.discard_partial('run-a') == extra
    assert snapshot(root) == before
    assert client.discard_partial('run-a') == []  # twice: nothing more


def test_a_delete_killed_before_the_unlink_leaves_a_blob_discard_partial_removes(
    client: LocalBackendClient, root: Path, source: Path
) -> None:
    before = snapshot(root)
    file_id = client.upload_file(source, key='k')
    kill_child(client.for_run('run-a'), 'unlinking', 'delete', str(file_id))
    assert client.find_file('k') is None  # the row went first
    (extra,) = set(snapshot(root)) - set(before)
    assert extra.startswith('blobs/')

    assert client.discard_partial('run-a') == [extra]
    assert snapshot(root) == before


def test_a_finished_upload_is_not_partial(
    client: LocalBackendClient, root: Path, source: Path
) -> None:
    bound = client.for_run('run-a')
    file_id = bound.upload_file(source, key='k')
    assert bound.upload_file(source, key='k') == file_id  # idempotent: nothing written
    stored = snapshot(root)
    assert stored['index.db:partial'] == '[]'
    assert bound.discard_partial('run-a') == []
    assert snapshot(root) == stored
    bound.delete_file(file_id)
    assert snapshot(root)['index.db:partial'] == '[]'


def test_an_upload_that_fails_in_process_cleans_up_itself(
    client: LocalBackendClient, root: Path, tmp_path: Path
) -> None:
    before = snapshot(root)
    with pytest.raises(FileNotFoundError):
        client.for_run('run-a').upload_file(tmp_path / 'missing.bin')
    assert snapshot(root) == before


def test_an_unbound_client_announces_nothing(
    client: LocalBackendClient, root: Path, source: Path
) -> None:
    kill_child(client, 'renamed', 'upload', str(source))
    assert snapshot(root)['index.db:partial'] == '[]'  # an orphan blob nobody can name


def test_a_bound_client_is_the_same_storage_and_travels_bound(
    client: LocalBackendClient, root: Path
) -> None:
    bound = client.for_run('run-a')
    assert isinstance(bound, PartialWrites)
    assert bound.url == client.url == root.as_uri()
    assert bound.for_run('run-a') is bound
    assert client.for_run('run-b') is not bound
    arrived = pickle.loads(pickle.dumps(bound))
    assert arrived.root == root
    assert arrived.for_run('run-a') is arrived  # still bound to run-a


def test_discarding_on_a_storage_never_used_creates_nothing(tmp_path: Path) -> None:
    client = LocalBackendClient(tmp_path / 'never').for_run('run-a')
    assert client.discard_partial('run-a') == []
    assert not (tmp_path / 'never').exists()


def test_a_batch_announces_ahead_and_takes_back_what_it_did_not_use(
    client: LocalBackendClient, root: Path, tmp_path: Path
) -> None:
    """``upload_files`` announces the blobs of the next uploads in one commit; those a
    file stored before did not need, and those never reached, are taken back."""
    sources = []
    for i in range(70):
        path = tmp_path / f'f{i:02d}.bin'
        path.write_bytes(os.urandom(100 + i))
        sources.append(path)
    bound = client.for_run('run-a')
    keys = [f'k{i}' for i in range(70)]
    first = bound.upload_files(sources[:5], keys=keys[:5])
    ids = bound.upload_files(sources, keys=keys, concurrency=4)  # 5 stored already
    assert ids[:5] == first and len(set(ids)) == 70
    stored = snapshot(root)
    assert stored['index.db:partial'] == '[]'
    assert len([name for name in stored if name.startswith('blobs/')]) == 71  # + unrelated

    sources[3] = tmp_path / 'missing.bin'  # the batch stops there: the rest never starts
    with pytest.raises(FileNotFoundError):
        bound.upload_files(sources, keys=[f'again{i}' for i in range(70)], concurrency=1)
    assert bound.discard_partial('run-a') == []  # what it announced and never wrote
    assert snapshot(root)['index.db:partial'] == '[]'
