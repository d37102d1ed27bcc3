"""Detached runs whose Ray job never starts the run: the journal keeps the job's id and
job server, so that `runs watch` / `runs cancel` find the job and end the run, instead of
waiting for a run that never comes."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from synapse_sdk.journal import Journal

from .conftest import VENV_BIN, Cluster, Driver
from .test_detach import WAIT


@pytest.fixture
def pg_driver(driver: Driver, postgres_db: Any) -> Driver:
    driver.env['SYNAPSE_DATABASE_URL'] = postgres_db.url
    return driver


def submit(cluster: Cluster, driver: Driver, requirements: list[str]) -> tuple[str, str]:
    folder = driver.plugin('unstarted', WAIT)
    config = json.loads((folder / 'config.yaml').read_text(encoding='utf-8'))
    config['requirements'] = requirements
    (folder / 'config.yaml').write_text(json.dumps(config), encoding='utf-8')
    done = driver.synapse(
        'plugin', 'run', 'run', '--path', str(folder), '--mode', 'ray',
        '--ray-address', cluster.dashboard, '--detach', '--shared-fs',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    submitted = json.loads(done.stdout)
    return submitted['run_id'], submitted['ray_job_id']


def test_a_detached_run_whose_requirements_do_not_install_is_watched_to_its_failure(
    cluster: Cluster, pg_driver: Driver, postgres_db: Any
) -> None:
    run_id, job_id = submit(cluster, pg_driver, ['synapse-no-such-package-zz==99'])
    journal = Journal(postgres_db.url)
    record = journal.get_run(run_id)
    assert (record.ray_job_id, record.ray_address) == (job_id, cluster.dashboard)

    started = time.monotonic()
    watched = pg_driver.synapse('runs', 'watch', run_id, '--log-format', 'plain', timeout=240)
    assert watched.returncode == 1, watched.stderr
    assert time.monotonic() - started < 200
    line = watched.stderr.strip().splitlines()[-1]
    assert line.startswith(f'run {run_id} ended: failed (its Ray job {job_id} ended FAILED')
    assert f'`ray job logs {job_id} --address {cluster.dashboard}`' in line
    assert 'No matching distribution found for synapse-no-such-package-zz==99' in line  # pip's
    record = journal.get_run(run_id)
    assert record.status == 'failed' and record.ended_at is not None
    assert f'ray job logs {job_id}' in (record.error or '')
    assert cluster.job(job_id)['status'] == 'FAILED'
    again = pg_driver.synapse('runs', 'cancel', run_id)  # over: nothing to cancel
    assert again.returncode == 2 and 'already ended (failed)' in again.stderr


@pytest.fixture
def silent_index() -> Iterator[socket.socket]:
    """A package index that takes connections and never answers: pip waits on it (until
    the test closes it)."""
    with socket.socket() as server:
        server.bind(('127.0.0.1', 0))
        server.listen(16)
        yield server


def test_cancelling_a_detached_run_not_started_yet_ends_it_at_once_and_stops_its_job(
    cluster: Cluster, pg_driver: Driver, postgres_db: Any, silent_index: socket.socket
) -> None:
    index = f'http://127.0.0.1:{silent_index.getsockname()[1]}/simple'
    run_id, job_id = submit(cluster, pg_driver, [f'--index-url {index}', 'synapse-nope==99'])
    journal = Journal(postgres_db.url)
    watcher = subprocess.Popen(
        [str(VENV_BIN / 'synapse'), 'runs', 'watch', run_id, '--log-format', 'plain'],
        env=pg_driver.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2)  # pip is waiting for the index: the job is setting up
        assert journal.get_run(run_id).status == 'submitted'
        started = time.monotonic()
        cancelled = pg_driver.synapse('runs', 'cancel', run_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert time.monotonic() - started < 20
        assert f'run {run_id} cancelled: the run was cancelled before it started' in (
            cancelled.stdout
        )
        assert f'its Ray job {job_id} was told to stop' in cancelled.stdout
        _, watched = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
        silent_index.close()  # pip fails now: the job's setup ends
    assert watcher.returncode == 130, watched
    assert f'run {run_id} ended: cancelled' in watched
    # Ray stops a job still setting up once its setup ends; the run never started
    assert cluster.wait_job(job_id, timeout=90)['status'] in ('STOPPED', 'FAILED')
    record = journal.get_run(run_id)
    assert record.status == 'cancelled' and journal.steps(run_id) == []
