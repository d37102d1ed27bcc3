"""The Ray worker running a detached run's step dies (SIGKILL of its process, on the
worker node): the job's driver does not hang, the run is ``crashed`` once its lease has
run out, nothing is undone behind the user's back, and from the submitting machine
``synapse runs rollback`` undoes its upload to S3, or ``synapse runs resume`` finishes it.
The journal is in PostgreSQL, the files in S3 (moto): nothing is on a shared path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from synapse_sdk.journal import Journal

from .conftest import VENV_BIN, WORKER_RESOURCE, Cluster, Driver
from .test_detach import wait_run

UPLOAD = """
    import os
    import tempfile
    import time

    import ray
    from dataclasses import dataclass
    from pydantic import BaseModel
    from synapse_sdk.plugins import BaseUploadAction
    from synapse_sdk.plugins.pipelines.steps import (
        BaseStep, BaseStepContext, StepRegistry, StepResult,
    )


    class Params(BaseModel):
        pass


    @dataclass
    class Ctx(BaseStepContext):
        pass


    class Upload(BaseStep[Ctx]):
        name, progress_weight = 'upload', 1.0

        def execute(self, context: Ctx) -> StepResult:
            key = f'{context.runtime_ctx.run_id}/only'
            context.append_rollback('keys', key)  # journaled before the upload
            with tempfile.NamedTemporaryFile('w', suffix='.txt', delete=False) as f:
                f.write(key)
            context.client.upload_file(f.name, key=key)
            os.unlink(f.name)
            if ray.is_initialized():  # on Ray: wait here to be killed; resumed locally: done
                context.append_rollback('pid', os.getpid())
                while True:
                    time.sleep(0.05)
            return StepResult(data={'key': key})

        def rollback(self, context: Ctx, result: StepResult) -> None:
            for key in result.rollback_data.get('keys', []):
                found = context.client.find_file(key)
                if found is not None:
                    context.client.delete_file(found)


    class Action(BaseUploadAction[Params]):
        def setup_steps(self, registry: StepRegistry[Ctx]) -> None:
            registry.register(Upload())

        def create_context(self) -> Ctx:
            return Ctx(runtime_ctx=self.ctx)
"""


@dataclass
class OnS3:
    """The driver with its journal in PostgreSQL and its storage in an S3 bucket."""

    driver: Driver
    server: Any
    bucket: str

    @property
    def storage(self) -> str:
        return f's3://{self.bucket}/runs'

    def stored(self) -> list[str]:
        listed = self.server.client().list_objects_v2(Bucket=self.bucket)
        return sorted(o['Key'] for o in listed.get('Contents', []))


@pytest.fixture
def on_s3(driver: Driver, postgres_db: Any, s3_server: Any, s3_bucket: str) -> OnS3:
    driver.env['SYNAPSE_DATABASE_URL'] = postgres_db.url
    driver.env.update({k: v for k, v in os.environ.items() if k.startswith('AWS_')})
    return OnS3(driver, s3_server, s3_bucket)


def submitted(cluster: Cluster, on_s3: OnS3) -> tuple[str, str]:
    """The upload submitted as a detached run, its step on the worker node; run, job ids."""
    folder = on_s3.driver.plugin('upload', UPLOAD, resources={WORKER_RESOURCE: 1})
    done = on_s3.driver.synapse(
        'plugin', 'run', 'run', '--path', str(folder), '--mode', 'ray',
        '--ray-address', cluster.dashboard, '--detach', '--storage', on_s3.storage,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    submitted = json.loads(done.stdout)
    return submitted['run_id'], submitted['ray_job_id']


def killed_mid_step(cluster: Cluster, on_s3: OnS3, journal: Journal) -> tuple[str, str]:
    """Submit the upload, kill its worker once the upload is recorded; the run and job ids."""
    run_id, job_id = submitted(cluster, on_s3)
    kill_the_step(journal, run_id, lambda: cluster.job_logs(job_id))
    return run_id, job_id


def kill_the_step(
    journal: Journal, run_id: str, logs: Callable[[], str], *, kill: bool = True
) -> int:
    """SIGKILL the process running the upload step, once the upload is recorded (or only
    wait for that, ``kill=False``); its pid."""
    deadline = time.monotonic() + 120
    pid = None
    while pid is None and time.monotonic() < deadline:
        try:
            steps = journal.steps(run_id)
        except KeyError:
            steps = []
        recorded = journal.rollback_data_of(run_id, steps[0]) if steps else {}
        pid = recorded.get('pid', [None])[0]
        time.sleep(0.1)
    assert pid is not None, logs()
    if kill:
        os.kill(pid, signal.SIGKILL)  # the actor's worker process, on the worker node
    return int(pid)


def test_a_killed_worker_leaves_the_run_crashed_and_rollback_undoes_its_upload(
    cluster: Cluster, on_s3: OnS3, postgres_db: Any
) -> None:
    journal = Journal(postgres_db.url)
    run_id, job_id = killed_mid_step(cluster, on_s3, journal)
    info = cluster.wait_job(job_id, timeout=60)  # the job's driver does not hang
    assert info['status'] == 'FAILED'
    logs = cluster.job_logs(job_id)
    assert f'run {run_id} is crashed, nothing was rolled back' in logs
    assert journal.get_run(run_id).status == 'crashed'
    [step] = journal.steps(run_id)
    assert journal.rollback_data_of(run_id, step)['keys'] == [f'{run_id}/only']
    assert len(on_s3.stored()) == 1  # the upload is still there

    undone = on_s3.driver.synapse('runs', 'rollback', run_id)  # from the submitting machine
    assert undone.returncode == 0, undone.stderr
    assert json.loads(undone.stdout)['errors'] == []
    assert on_s3.stored() == []
    assert journal.get_run(run_id).status == 'rolled_back'


def test_a_killed_worker_leaves_the_run_crashed_and_resume_finishes_it(
    cluster: Cluster, on_s3: OnS3, postgres_db: Any
) -> None:
    journal = Journal(postgres_db.url)
    run_id, job_id = killed_mid_step(cluster, on_s3, journal)
    assert wait_run(journal, run_id, timeout=60) == 'crashed'
    resumed = on_s3.driver.synapse('runs', 'resume', run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)['success'] is True
    assert journal.get_run(run_id).status == 'succeeded'
    assert len(on_s3.stored()) == 1  # the cut-off upload undone, then done once
    assert cluster.wait_job(job_id, timeout=60)['status'] == 'FAILED'


def test_a_foreground_driver_rolls_back_a_run_whose_worker_node_process_died(
    cluster: Cluster, on_s3: OnS3, postgres_db: Any
) -> None:
    journal = Journal(postgres_db.url)
    folder = on_s3.driver.plugin('upload', UPLOAD, resources={WORKER_RESOURCE: 1})
    run_id = 'foreground1'
    driver = subprocess.Popen(
        [str(VENV_BIN / 'synapse'), 'plugin', 'run', 'run', '--path', str(folder),
         '--mode', 'ray', '--ray-address', cluster.address, '--storage', on_s3.storage,
         '--log-format', 'plain', '--run-id', run_id],
        env=on_s3.driver.env, cwd=on_s3.driver.folder, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        kill_the_step(journal, run_id, lambda: '(a foreground run: see its stderr)')
        out, err = driver.communicate(timeout=60)  # it does not hang
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, err
    assert "Step 'upload' failed: the Ray worker died while running it" in err
    assert json.loads(out)['success'] is False
    assert journal.get_run(run_id).status == 'rolled_back'  # undone here, from the journal
    assert on_s3.stored() == []
