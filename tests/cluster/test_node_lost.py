"""The worker node itself is lost (its raylet killed, its workers with it) while a
detached run's step runs there: the run is ``crashed`` once its lease runs out, the job's
driver ends without undoing anything, and ``synapse runs rollback`` from the submitting
machine undoes the upload to S3. Its own module: the cluster is left with one node."""

from __future__ import annotations

from typing import Any

from synapse_sdk.journal import Journal

from .conftest import Cluster
from .test_detach import wait_run
from .test_node_loss import OnS3, kill_the_step, on_s3, submitted

__all__ = ['on_s3']  # the fixture, used here


def test_a_lost_worker_node_leaves_the_run_crashed_and_rollback_undoes_its_upload(
    cluster: Cluster, on_s3: OnS3, postgres_db: Any
) -> None:
    journal = Journal(postgres_db.url)
    run_id, job_id = submitted(cluster, on_s3)
    kill_the_step(journal, run_id, lambda: cluster.job_logs(job_id), kill=False)
    cluster.kill_worker_raylet()
    assert wait_run(journal, run_id, timeout=60) == 'crashed'  # its lease ran out
    info = cluster.wait_job(job_id, timeout=90)  # the job's driver does not hang
    assert info['status'] == 'FAILED'
    assert f'run {run_id} is crashed, nothing was rolled back' in cluster.job_logs(job_id)
    assert len(on_s3.stored()) == 1

    undone = on_s3.driver.synapse('runs', 'rollback', run_id)
    assert undone.returncode == 0, undone.stderr
    assert on_s3.stored() == []
    assert journal.get_run(run_id).status == 'rolled_back'
