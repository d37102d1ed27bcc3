"""Fault injection once more, with the files in S3 (moto on 127.0.0.1): SIGKILL the example
upload anywhere, then ``synapse runs rollback`` or ``resume`` (with no ``--storage``: the
run's storage comes from the journal).

As in test_fault_injection.py (whose kill points and their coverage this reuses), with
fewer trials and files to keep the suite fast. Each trial has its own home and bucket,
holding three unrelated stored files and one object that is not the SDK's. After a
rollback the bucket holds exactly what it held before (every key, every byte: no
orphan, no partial object) and the index the same rows; after a resume every source
file is stored exactly once, and the bucket holds those objects and nothing else new.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.services.s3 import S3Server

from synapse_sdk.clients import StorageClient, index_database, parse_storage
from synapse_sdk.clients._index import StorageIndex

from .conftest import EXAMPLE, SYNAPSE, journal_run_ids, make_files, peek_steps, run_cli
from .conftest import subprocess_env as base_env
from .test_fault_injection import Trial, draw_trials, kill_at, run_status, run_trials

SEED = 4321
TRIALS = 10
FILES = 100
MIN_MID_RUN_KILLS = 6
MIN_PARTIAL_UPLOADS = 3
MAX_EXTRA_TRIALS = 6
PARALLEL = 2


def index_of(home: Path, url: str) -> StorageClient:
    """The storage client a run in ``home`` uses (its index named here, not by
    SYNAPSE_HOME: trials run in threads, each with a home of its own)."""
    client = StorageClient(url)
    client._idx = StorageIndex(index_database(home / 'storage'), parse_storage(url).namespace)
    return client


def stored(home: Path, url: str) -> list[tuple[int, str, str]]:
    return [(f['id'], f['name'], f['checksum']) for f in index_of(home, url).list_files()]


def bucket(server: S3Server, name: str) -> dict[str, str]:
    """Every object of the bucket: key -> sha256 of its content."""
    s3 = server.client()
    pages = s3.get_paginator('list_objects_v2').paginate(Bucket=name)
    keys = [o['Key'] for page in pages for o in page.get('Contents', [])]
    return {
        key: hashlib.sha256(s3.get_object(Bucket=name, Key=key)['Body'].read()).hexdigest()
        for key in keys
    }


def prepare(server: S3Server, workdir: Path, seed: int) -> tuple[Path, str, dict[str, str]]:
    """A home, a bucket with unrelated content, and the source files; (home, url, sources)."""
    home = workdir / 'home'
    name = server.create_bucket()
    url = f's3://{name}/uploads'
    server.client().put_object(Bucket=name, Key='not-the-sdks.txt', Body=b'leave me')
    unrelated = make_files(workdir / 'unrelated', 3, seed=99, prefix='unrelated_')
    client = index_of(home, url)
    for file in sorted(unrelated):
        client.upload_file(workdir / 'unrelated' / file)
    return home, url, make_files(workdir / 'source', FILES, seed=seed)


def env(home: Path) -> dict[str, str]:
    return base_env(home)  # with the s3_server fixture's AWS_* (moto, dummy keys)


def start_upload(home: Path, workdir: Path, url: str) -> subprocess.Popen[bytes]:
    params = json.dumps({'source_path': str(workdir / 'source')})
    with (workdir / 'run.log').open('wb') as out:
        return subprocess.Popen(
            [SYNAPSE, 'plugin', 'run', 'upload', '--path', str(EXAMPLE), '--params', params,
             '--storage', url],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env(home),
        )  # fmt: skip


def check_all_stored_once(
    server: S3Server,
    home: Path,
    url: str,
    rows_before: list[tuple[int, str, str]],
    objects_before: dict[str, str],
    source: dict[str, str],
) -> None:
    rows = stored(home, url)
    assert rows[: len(rows_before)] == rows_before, 'the unrelated files were changed'
    added = Counter((name, checksum) for _, name, checksum in rows[len(rows_before) :])
    assert added == Counter(source.items()), f'stored {sum(added.values())}, not each once'
    now = bucket(server, url.split('/')[2])
    assert {k: v for k, v in now.items() if k in objects_before} == objects_before
    new = Counter(v for k, v in now.items() if k not in objects_before)
    assert new == Counter(source.values()), f'{sum(new.values())} new objects for {FILES} files'


def run_trial(server: S3Server, trial: Trial, workdir: Path) -> None:
    home, url, source = prepare(server, workdir, trial.seed)
    name = url.split('/')[2]
    rows_before, objects_before = stored(home, url), bucket(server, name)
    proc = start_upload(home, workdir, url)
    kill_at(proc, home / 'runs.db', trial.mode, trial.arg)
    log = (workdir / 'run.log').read_text(errors='replace')
    ids = journal_run_ids(home)
    trial.leftovers = len(stored(home, url)) - len(rows_before)

    if proc.returncode == 0 or (len(ids) == 1 and run_status(home, ids[0]) == 'succeeded'):
        trial.outcome = 'finished'
        check_all_stored_once(server, home, url, rows_before, objects_before, source)
        return
    assert proc.returncode == -signal.SIGKILL, (trial, proc.returncode, log)
    if not ids:
        trial.outcome = 'before the run'
        assert bucket(server, name) == objects_before, 'killed before the run, yet S3 changed'
        return
    trial.outcome = 'mid-run'
    (run_id,) = ids
    steps = peek_steps(home / 'runs.db', run_id)
    trial.at_kill = {step: row['status'] for step, row in steps.items()}
    assert run_status(home, run_id) == 'crashed'

    done = run_cli(home, 'runs', trial.recovery, run_id, cwd=workdir)
    assert done.returncode == 0, f'{trial.recovery} exited {done.returncode}: {done.stderr}'
    report: dict[str, Any] = json.loads(done.stdout)
    if trial.recovery == 'rollback':
        assert report['errors'] == [], report
        assert stored(home, url) == rows_before, 'the index is not as it was'
        leftover = set(bucket(server, name).items()) ^ set(objects_before.items())
        assert not leftover, f'the bucket is not as it was: {sorted(leftover)[:3]}'
        assert run_status(home, run_id) == 'rolled_back'
    else:
        assert report['success'] is True, report
        check_all_stored_once(server, home, url, rows_before, objects_before, source)
        assert run_status(home, run_id) == 'succeeded'


def calibrate(server: S3Server, workdir: Path) -> float:
    """Seconds an uninterrupted run takes, PARALLEL at once; each checked for exactness."""
    import time

    def one(folder: Path) -> float:
        home, url, source = prepare(server, folder, SEED)
        rows, objects = stored(home, url), bucket(server, url.split('/')[2])
        began = time.monotonic()
        proc = start_upload(home, folder, url)
        assert proc.wait(timeout=180) == 0, (folder / 'run.log').read_text()
        elapsed = time.monotonic() - began
        check_all_stored_once(server, home, url, rows, objects, source)
        return elapsed

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return max(pool.map(one, [workdir / str(i) for i in range(PARALLEL)]))


def test_sigkill_anywhere_then_rollback_or_resume_is_exact_in_s3(
    s3_server: S3Server, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    full = calibrate(s3_server, tmp_path / 'calibration')
    trials = draw_trials(rng, full, TRIALS, FILES)
    run_trials(
        trials,
        lambda trial: run_trial(s3_server, trial, tmp_path / f'trial{trial.number:02d}'),
        rng,
        _missing,
        MAX_EXTRA_TRIALS,
    )


def _missing(trials: list[Trial]) -> tuple[str, float] | None:
    """A kill inside the upload, while too few trials killed the run in its middle, or
    inside the upload with part of the files stored, or not both recoveries among them."""
    mid_run = [t for t in trials if t.outcome == 'mid-run']
    partial = [t for t in mid_run if 0 < t.leftovers < FILES]
    recoveries = {t.recovery for t in partial}
    if (
        len(mid_run) < MIN_MID_RUN_KILLS
        or len(partial) < MIN_PARTIAL_UPLOADS
        or recoveries != {'rollback', 'resume'}
    ):
        return 'items', FILES // 2
    return None
