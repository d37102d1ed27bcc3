"""The journal's PostgreSQL server going away in the middle of a run.

The step that was running when the journal could no longer be written fails with
an error that names the database; the run rolls back what it can (every
rollback runs: the steps' own undo does not need the journal); no later step
runs, and no step ever runs without its start committed first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.services.postgres import PostgresDSN, PostgresServer

from synapse_sdk.journal import Journal, JournalUnavailableError
from synapse_sdk.plugins.actions import ActionContext
from synapse_sdk.plugins.steps import StepExecutionError, StepResult

from .conftest import FnStep, dispatch, make_action


@pytest.fixture
def journal(postgres_db: PostgresDSN) -> Any:
    store = Journal(postgres_db.url)
    yield store
    store.close()


class Ledger:
    """What the steps did and undid, kept in this process (not in the journal)."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.undone: list[str] = []

    def step(self, name: str, during: Callable[[], None] | None = None) -> FnStep:
        def execute(context: ActionContext) -> StepResult:
            context.append_rollback('work', name)  # write-ahead: before the work
            self.done.append(name)
            if during is not None:
                during()
            return StepResult(data={'step': name})

        def rollback(context: ActionContext, result: StepResult) -> None:
            self.undone.extend(result.rollback_data.get('work', []))

        return FnStep(name, execute=execute, rollback=rollback)


def test_a_server_restart_mid_step_fails_that_step_and_the_run_rolls_back(
    journal: Journal, postgres_server: PostgresServer
) -> None:
    ledger = Ledger()
    action = make_action(
        ledger.step('one'), ledger.step('two', during=postgres_server.restart), ledger.step('three')
    )
    done = dispatch(action, journal)

    assert isinstance(done.error, StepExecutionError)
    assert done.error.step_name == 'two'
    message = str(done.error)
    assert f'lost the connection to the run journal database {journal.database.describe()}' in (
        message
    )
    assert isinstance(done.error.__cause__, JournalUnavailableError)
    assert ledger.done == ['one', 'two']  # three never ran
    assert ledger.undone == ['two', 'one']  # newest first, each once
    # the server came back: the rollback was recorded on a new connection
    run = journal.get_run(done.run_id)
    assert run.status == 'rolled_back'
    assert "Step 'two' failed" in (run.error or '') and 'lost the connection' in (run.error or '')
    steps = {s.name: s.status for s in journal.steps(done.run_id)}
    assert steps == {'one': 'rolled_back', 'two': 'rolled_back', 'three': 'pending'}


def test_a_server_gone_for_good_still_rolls_back_what_it_can_and_runs_nothing_more(
    journal: Journal, postgres_server: PostgresServer
) -> None:
    ledger = Ledger()
    # 'fast': clients are cut off. ('immediate' would lose the last commits too: the test
    # server runs with synchronous_commit=off)
    stop = lambda: postgres_server.stop('fast')  # noqa: E731
    action = make_action(ledger.step('one'), ledger.step('two', during=stop), ledger.step('three'))
    try:
        done = dispatch(action, journal)
    finally:
        postgres_server.start()

    assert isinstance(done.error, StepExecutionError)
    assert done.error.step_name == 'two'
    assert 'lost the connection to the run journal database' in str(done.error)
    assert ledger.done == ['one', 'two']
    assert ledger.undone == ['two', 'one']  # the undo needs no journal
    # what the journal could not hear of stays as it was: two committed as started,
    # three never announced; `synapse runs rollback` finds it (rollbacks may repeat)
    steps = {s.name: s.status for s in journal.steps(done.run_id)}
    assert steps == {'one': 'succeeded', 'two': 'started', 'three': 'pending'}
    assert journal.rollback_data_of(done.run_id, journal.steps(done.run_id)[1]) == {'work': ['two']}


def test_rollback_data_that_cannot_be_recorded_stops_the_work_it_describes(
    journal: Journal, postgres_server: PostgresServer
) -> None:
    ledger = Ledger()

    def execute(context: ActionContext) -> StepResult:
        postgres_server.stop('fast')
        context.append_rollback('work', 'two')  # cannot be recorded: raises
        ledger.done.append('two')  # so this never happens
        return StepResult()

    action = make_action(ledger.step('one'), FnStep('two', execute=execute), ledger.step('three'))
    try:
        done = dispatch(action, journal)
    finally:
        postgres_server.start()

    assert isinstance(done.error, StepExecutionError)
    assert done.error.step_name == 'two'
    assert isinstance(done.error.__cause__, JournalUnavailableError)
    assert ledger.done == ['one']
    assert ledger.undone == ['one']


def test_a_step_whose_start_cannot_be_recorded_does_not_run(
    journal: Journal, postgres_server: PostgresServer
) -> None:
    """The first step ends by stopping the server: its end and the next step's start are
    one statement, which fails; the next step must not run unrecorded."""
    ledger = Ledger()
    stop = lambda: postgres_server.stop('fast')  # noqa: E731
    action = make_action(ledger.step('one', during=stop), ledger.step('two'))
    try:
        done = dispatch(action, journal)
    finally:
        postgres_server.start()

    assert isinstance(done.error, StepExecutionError)
    assert done.error.step_name == 'one'
    assert ledger.done == ['one']
    assert ledger.undone == ['one']
    steps = {s.name: s.status for s in journal.steps(done.run_id)}
    assert steps['two'] == 'pending'
