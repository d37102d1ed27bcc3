"""What a run's actor gets through its environment, not its arguments: the database URL
of a PostgreSQL journal (with its password) and the secret params; and the resources
asked for, which are the actor's own."""

from __future__ import annotations

import os
from typing import Any

import pytest

from synapse_sdk.execution import Resources
from synapse_sdk.execution._on_ray import RayExecutor
from synapse_sdk.journal import Journal
from synapse_sdk.runtime import RuntimeContext

from .conftest import PluginFactory

SOURCE = """
    import os

    import ray
    from dataclasses import dataclass
    from pydantic import BaseModel, SecretStr
    from synapse_sdk.plugins import BaseUploadAction
    from synapse_sdk.plugins.pipelines.steps import (
        BaseStep, BaseStepContext, StepRegistry, StepResult,
    )


    class Params(BaseModel):
        name: str
        token: SecretStr


    @dataclass
    class Ctx(BaseStepContext):
        token: str = ''


    class Look(BaseStep[Ctx]):
        name, progress_weight = 'look', 1.0

        def execute(self, context: Ctx) -> StepResult:
            return StepResult(data={
                'token': context.token,
                'resources': ray.get_runtime_context().get_assigned_resources(),
            })


    class Action(BaseUploadAction[Params]):
        def setup_steps(self, registry: StepRegistry[Ctx]) -> None:
            registry.register(Look())

        def create_context(self) -> Ctx:
            return Ctx(runtime_ctx=self.ctx, token=self.params.token.get_secret_value())
"""


def test_a_postgresql_journal_and_a_secret_reach_the_worker_through_its_environment(
    plugin_factory: PluginFactory,
    runtime: RuntimeContext,
    postgres_db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the Ray instance's processes did not inherit it: only the actor's env_vars can say it
    monkeypatch.delenv('SYNAPSE_DATABASE_URL', raising=False)
    assert 'SYNAPSE_DATABASE_URL' not in os.environ
    loaded = plugin_factory('look', SOURCE)
    journal = Journal(postgres_db.url)
    executor = RayExecutor(
        journal=journal, console=False, resources=Resources(num_cpus=0.25, memory=10**6)
    )
    result = executor.run(
        loaded.action, {'name': 'n', 'token': 'hunter2'}, ctx=runtime, origin=loaded.origin
    )
    assert result['success'] is True
    [step] = journal.steps(runtime.run_id)  # the worker journaled it in PostgreSQL
    assert step.data is not None
    assert step.data['token'] == 'hunter2'  # not the '**********' of the params' JSON
    assert step.data['resources'] == {'CPU': 0.25, 'memory': 10**6}
    assert journal.get_run(runtime.run_id).params == {'name': 'n', 'token': '**********'}
