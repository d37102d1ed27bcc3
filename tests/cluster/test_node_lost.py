"""The worker node itself is lost (its raylet killed, its workers with it) while a
detached run's step runs there: the run is ``crashed`` once its lease runs out, the job's
driver ends without undoing anything, and ``synapse runs rollback`` from the submitting
machine undoes the upload. Its own module: the cluster is left with one node."""

from __future__ import annotations

import json
from typing import Any

from synapse_sdk.journal import Journal

from .conftest import WORKER_RESOURCE, Cluster, Driver
from .test_detach import wait_run
from .test_node_loss import UPLOAD, kill_the_step, shared, stored

__all__ = ['shared']  # the fixture, used here


def test_a_lost_worker_node_leaves_the_run_crashed_and_rollback_undoes_its_upload(
    cluster: Cluster, shared: Driver, postgres_db: Any
) -> None:
    journal = Journal(postgres_db.url)
    folder = shared.plugin('upload', UPLOAD, resources={WORKER_RESOURCE: 1})
    done = shared.synapse(
        'plugin', 'run', 'run', '--path', str(folder), '--mode', 'ray',
        '--ray-address', cluster.dashboard, '--detach', '--shared-fs',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id, job_id = json.loads(done.stdout)['run_id'], json.loads(done.stdout)['ray_job_id']
    kill_the_step(journal, run_id, lambda: cluster.job_logs(job_id), kill=False)
    cluster.kill_worker_raylet()
    assert wait_run(journal, run_id, timeout=60) == 'crashed'  # its lease ran out
    info = cluster.wait_job(job_id, timeout=90)  # the job's driver does not hang
    assert info['status'] == 'FAILED'
    assert f'run {run_id} is crashed, nothing was rolled back' in cluster.job_logs(job_id)
    assert len(stored(shared.home)) == 1

    undone = shared.synapse('runs', 'rollback', run_id)
    assert undone.returncode == 0, undone.stderr
    assert stored(shared.home) == []
    assert journal.get_run(run_id).status == 'rolled_back'
