"""Detached runs on a two-node cluster: submitted as Ray jobs, journaled in PostgreSQL,
their step placed on the worker node by a custom resource; nothing of the driver's
files read there; no password where Ray shows a job."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import pytest

from synapse_sdk.journal import Journal

from .conftest import ISOLATED, VENV_BIN, WORKER_RESOURCE, Cluster, Driver

WHERE = """
    import os

    import ray
    from dataclasses import dataclass
    from pydantic import BaseModel, SecretStr
    from synapse_sdk.plugins import BaseUploadAction
    from synapse_sdk.plugins.pipelines.steps import (
        BaseStep, BaseStepContext, StepRegistry, StepResult,
    )


    class Params(BaseModel):
        driver_folder: str
        token: SecretStr | None = None


    @dataclass
    class Ctx(BaseStepContext):
        driver_folder: str = ''
        token: str = ''


    class Where(BaseStep[Ctx]):
        name, progress_weight = 'where', 1.0

        def execute(self, context: Ctx) -> StepResult:
            here = ray.get_runtime_context()
            return StepResult(data={
                'node': here.get_node_id(),
                'resources': here.get_assigned_resources(),
                'sees_driver_folder': os.path.exists(context.driver_folder),
                'home': os.environ.get('SYNAPSE_HOME'),
                'token_is_hunter2': context.token == 'hunter2',
            })


    class Action(BaseUploadAction[Params]):
        def setup_steps(self, registry: StepRegistry[Ctx]) -> None:
            registry.register(Where())

        def create_context(self) -> Ctx:
            token = self.params.token.get_secret_value() if self.params.token else ''
            return Ctx(runtime_ctx=self.ctx, driver_folder=self.params.driver_folder, token=token)
"""


def wait_run(journal: Journal, run_id: str, timeout: float = 120.0) -> str:
    """The run's status once it has ended (the journal, as any machine sees it)."""
    deadline = time.monotonic() + timeout
    status = 'unknown'
    while time.monotonic() < deadline:
        try:
            record = journal.get_run(run_id)
        except KeyError:
            time.sleep(0.2)
            continue
        status = record.status
        if record.ended_at is not None:
            return status
        time.sleep(0.2)
    raise AssertionError(f'run {run_id} did not end within {timeout:g}s (last: {status})')


@pytest.fixture
def pg_driver(driver: Driver, postgres_db: Any) -> Driver:
    driver.env['SYNAPSE_DATABASE_URL'] = postgres_db.url
    return driver


def test_a_detached_run_returns_at_once_and_runs_its_step_on_the_worker_node(
    cluster: Cluster, pg_driver: Driver, postgres_db: Any, s3_bucket: str
) -> None:
    pg_driver.env.update({k: v for k, v in os.environ.items() if k.startswith('AWS_')})
    storage = f's3://{s3_bucket}/runs'
    folder = pg_driver.plugin('where', WHERE, resources={WORKER_RESOURCE: 1, 'num_cpus': 0.5})
    params = json.dumps({'driver_folder': str(pg_driver.folder)})
    started = time.monotonic()
    done = pg_driver.synapse(
        'plugin', 'run', 'run', '--path', str(folder), '--params', params, '--mode', 'ray',
        '--ray-address', cluster.dashboard, '--detach', '--storage', storage,
        '--memory', '64MiB',
    )  # fmt: skip
    returned = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    submitted = json.loads(done.stdout)
    run_id, job_id = submitted['run_id'], submitted['ray_job_id']
    assert submitted['status'] == 'submitted' and job_id == f'synapse-{run_id}'
    assert f'run {run_id} submitted as Ray job {job_id}' in done.stderr
    assert returned < 20  # it does not wait for the run (which needs a runtime env, a driver)
    journal = Journal(postgres_db.url)
    # journaled before the job was submitted: there at once, submitted or started since
    assert journal.get_run(run_id).status in ('submitted', 'running', 'succeeded')

    info = cluster.wait_job(job_id)
    assert info['status'] == 'SUCCEEDED', cluster.job_logs(job_id)
    assert wait_run(journal, run_id) == 'succeeded'
    [step] = journal.steps(run_id)
    assert step.data is not None
    assert step.data['node'] == cluster.worker_node_id()  # the custom resource placed it
    assert step.data['resources'] == {
        'CPU': 0.5,
        'memory': 64 * 1024**2,
        WORKER_RESOURCE: 1.0,
    }  # config.yaml's resources with the --memory option: the actor's own
    if ISOLATED:
        assert step.data['sees_driver_folder'] is False
    record = journal.get_run(run_id)
    assert record.plugin_path == str(folder)  # recovery from the submitting machine acts here
    assert record.cwd == str(pg_driver.folder)
    assert record.storage == storage  # the job was given the storage


def test_the_password_stays_out_of_what_ray_shows_of_the_job(
    cluster: Cluster, pg_driver: Driver, postgres_db: Any
) -> None:
    folder = pg_driver.plugin('where', WHERE)
    params = json.dumps({'driver_folder': str(pg_driver.folder), 'token': 'hunter2'})
    done = pg_driver.synapse(
        'plugin', 'run', 'run', '--path', str(folder), '--params', params, '--mode', 'ray',
        '--ray-address', cluster.dashboard, '--detach', '--shared-fs', '--log-format', 'json',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)['ray_job_id']
    line = json.loads(done.stderr.splitlines()[-1])
    assert line['event'] == 'submitted' and line['data']['ray_job_id'] == job_id
    info = cluster.wait_job(job_id)
    password = postgres_db.password
    assert password not in info['entrypoint']
    assert password not in json.dumps(info['metadata'])
    assert password not in done.stdout + done.stderr
    # what Ray shows of the job's environment is the job's runtime_env: the URL is there
    # (docs/ray.md says who can read it); the job's processes show no password in ps
    assert info['runtime_env']['env_vars']['SYNAPSE_DATABASE_URL'] == postgres_db.url
    assert info['status'] == 'SUCCEEDED', cluster.job_logs(job_id)
    assert password not in cluster.job_logs(job_id)
    # a secret param (SecretStr) travels like the URL, not on the command line
    assert 'hunter2' not in info['entrypoint'] and 'hunter2' not in json.dumps(info['metadata'])
    journal = Journal(postgres_db.url)
    run_id = json.loads(done.stdout)['run_id']
    assert wait_run(journal, run_id) == 'succeeded'
    [step] = journal.steps(run_id)
    assert step.data is not None and step.data['token_is_hunter2'] is True
    assert 'hunter2' not in json.dumps(journal.get_run(run_id).params)


def test_a_detached_run_with_the_embedded_journal_is_refused_before_submitting(
    cluster: Cluster, driver: Driver
) -> None:
    folder = driver.plugin('where', WHERE)
    jobs = len(cluster.get('/api/jobs/'))
    done = driver.synapse(
        'plugin', 'run', 'run', '--path', str(folder), '--params', '{"driver_folder": "."}',
        '--mode', 'ray', '--ray-address', cluster.dashboard, '--detach',
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert 'a detached run needs a journal and a storage that every node reaches' in line
    assert 'SYNAPSE_DATABASE_URL' in line and '--storage' in line and '--shared-fs' in line
    assert done.stdout == ''
    assert len(cluster.get('/api/jobs/')) == jobs  # nothing was submitted


def test_a_foreground_run_on_a_cluster_of_two_nodes_refuses_the_embedded_journal(
    cluster: Cluster, driver: Driver
) -> None:
    folder = driver.plugin('where', WHERE)
    done = driver.synapse(
        'plugin', 'run', 'run', '--path', str(folder), '--params', '{"driver_folder": "."}',
        '--mode', 'ray', '--ray-address', cluster.address, '--log-format', 'plain',
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    error = [line for line in done.stderr.splitlines() if 'error' in line]
    assert len(error) == 1
    assert 'a run on a Ray cluster of 2 nodes' in error[0]
    assert 'SYNAPSE_DATABASE_URL' in error[0] and '--shared-fs' in error[0]
    assert os.path.exists(driver.home / 'runs.db')
    [run] = Journal(driver.home / 'runs.db').list_runs()
    assert run.status == 'failed'  # nothing ran; the run id was announced, so it says why
    assert Journal(driver.home / 'runs.db').steps(run.id) == []


WAIT = """
    import time

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


    class Wait(BaseStep[Ctx]):
        name, progress_weight = 'wait', 1.0

        def execute(self, context: Ctx) -> StepResult:
            context.log('waiting', {}, level='info')
            while True:  # until cancelled
                context.raise_if_cancelled()
                time.sleep(0.05)


    class Action(BaseUploadAction[Params]):
        def setup_steps(self, registry: StepRegistry[Ctx]) -> None:
            registry.register(Wait())

        def create_context(self) -> Ctx:
            return Ctx(runtime_ctx=self.ctx)
"""


def test_a_detached_run_is_watched_and_cancelled_from_the_submitting_machine(
    cluster: Cluster, pg_driver: Driver, postgres_db: Any
) -> None:
    folder = pg_driver.plugin('wait', WAIT, resources={WORKER_RESOURCE: 1})
    done = pg_driver.synapse(
        'plugin', 'run', 'run', '--path', str(folder), '--mode', 'ray',
        '--ray-address', cluster.dashboard, '--detach', '--shared-fs',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id, job_id = json.loads(done.stdout)['run_id'], json.loads(done.stdout)['ray_job_id']
    watcher = subprocess.Popen(
        [str(VENV_BIN / 'synapse'), 'runs', 'watch', run_id, '--log-format', 'plain'],
        env=pg_driver.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip  # from the moment it was submitted: it waits for the run to start
    try:
        journal = Journal(postgres_db.url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            steps = journal.steps(run_id) if journal.get_run(run_id).status == 'running' else []
            if steps and steps[0].status == 'started':
                break
            time.sleep(0.1)
        cancelled = pg_driver.synapse('runs', 'cancel', run_id)
        assert cancelled.returncode == 0, cancelled.stderr
        _, watched = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 130, watched  # as plugin run would have exited
    assert journal.get_run(run_id).status == 'cancelled'
    assert cluster.wait_job(job_id, timeout=60)['status'] == 'FAILED'  # its driver exited 130
