"""Write-ahead: the journal is committed before the work it describes goes on.

Everything here is read with a second connection (``peek_*``), which only sees
committed data: what a process started after a crash would find. On SQLite and
on PostgreSQL.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.journal import Journal, JournalListener
from synapse_sdk.plugins.actions import ActionContext
from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Orchestrator,
    RollbackData,
    RunEvent,
    RunListener,
    StepEnded,
    StepInfo,
    StepRegistry,
    StepResult,
    StepStarted,
)
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

from .conftest import FnStep, dispatch, make_action, peek_items, peek_run, peek_steps

pytestmark = pytest.mark.both_databases


@dataclass(kw_only=True)
class CountingContext(ActionContext):
    counter: int = 0


def test_inside_a_step_the_previous_step_and_this_start_are_committed(journal: Journal) -> None:
    seen: dict[str, Any] = {}

    def first(context: CountingContext) -> StepResult:
        context.counter = 1
        return StepResult(data={'n': 1}, rollback_data={'undo': 'first'})

    def second(context: CountingContext) -> StepResult:
        run_id = context.runtime_ctx.run_id
        seen['at_start'] = peek_steps(journal, run_id)
        seen['run_at_start'] = peek_run(journal, run_id)
        context.append_rollback('keys', 'k1')
        seen['after_append'] = peek_items(journal, run_id)
        context.append_rollback('keys', 'k2')
        context.record_rollback(marker={'at': 2})
        seen['after_record'] = peek_items(journal, run_id)
        # the Journal API reads the same, from a separate Journal object
        other = Journal(journal.location)
        try:
            seen['partial'] = other.partial_rollback_data(run_id, 1)
        finally:
            other.close()
        return StepResult(data={'n': 2}, rollback_data={'final': True})

    def third(context: CountingContext) -> None:
        run_id = context.runtime_ctx.run_id
        seen['third'] = peek_steps(journal, run_id)
        seen['items_at_third'] = peek_items(journal, run_id)

    action = make_action(
        FnStep('first', execute=first),
        FnStep('second', execute=second),
        FnStep('third', execute=third),
        context_class=CountingContext,
    )
    done = dispatch(action, journal)
    assert done.error is None, done.error

    at_start = seen['at_start']
    assert at_start['second']['status'] == 'started'
    assert at_start['second']['attempts'] == 1
    assert at_start['second']['started_at'] is not None
    assert at_start['second']['ended_at'] is None
    assert at_start['first']['status'] == 'succeeded'
    assert json.loads(at_start['first']['data']) == {'n': 1}
    assert json.loads(at_start['first']['rollback_data']) == {'undo': 'first'}
    assert json.loads(at_start['first']['snapshot'])['counter'] == 1
    assert at_start['third']['status'] == 'pending'
    assert seen['run_at_start']['status'] == 'running'
    assert seen['run_at_start']['ended_at'] is None

    # rollback data recorded mid-step is committed as it is recorded
    assert seen['after_append'] == [(1, 'keys', 'k1', 1)]
    assert seen['after_record'] == [
        (1, 'keys', 'k1', 1),
        (1, 'keys', 'k2', 1),
        (1, 'marker', {'at': 2}, 0),
    ]
    assert seen['partial'] == {'keys': ['k1', 'k2'], 'marker': {'at': 2}}

    # once the step ended, its rollback data is final (merged) and the items are gone
    assert seen['third']['second']['status'] == 'succeeded'
    assert json.loads(seen['third']['second']['rollback_data']) == {
        'keys': ['k1', 'k2'],
        'marker': {'at': 2},
        'final': True,
    }
    assert seen['items_at_third'] == []
    assert journal.steps(done.run_id)[1].rollback_data == {
        'keys': ['k1', 'k2'],
        'marker': {'at': 2},
        'final': True,
    }


class Probe(RunListener):
    """Listens after the JournalListener: records what the DB holds at each event."""

    def __init__(self, where: Journal, run_id: str) -> None:
        self.where = where
        self.run_id = run_id
        self.seen: list[tuple[str, str, dict[str, dict[str, Any]], list[Any]]] = []

    def _look(self, event: str, step: StepInfo) -> None:
        steps = peek_steps(self.where, self.run_id)
        self.seen.append((event, step.name, steps, peek_items(self.where, self.run_id)))

    def on_event(self, event: RunEvent) -> None:
        match event:
            case StepStarted(step=step):
                self._look('start', step)
            case RollbackData(step=step):
                self._look('rollback_data', step)
            case StepEnded(step=step):
                self._look('end', step)


def test_a_listener_after_the_journal_sees_each_event_committed(journal: Journal) -> None:
    def work(index: int) -> Any:
        def execute(context: BaseStepContext) -> StepResult:
            for i in range(2):
                context.append_rollback('done', f'{index}.{i}')
            return StepResult(data={'step': index}, rollback_data={'index': index})

        return execute

    registry: StepRegistry[Any] = StepRegistry()
    for index in range(3):
        registry.register(FnStep(f's{index}', execute=work(index)))
    run_id = 'probe-run'
    journal.start_run(run_id, entrypoint='tests:probe', params={})
    probe = Probe(journal, run_id)
    context = BaseStepContext(runtime_ctx=RuntimeContext(logger=MemoryLogger()))
    Orchestrator(registry, context, listeners=[JournalListener(journal, run_id), probe]).execute()

    events = [(event, name) for event, name, _, _ in probe.seen]
    assert events == [
        ('start', 's0'),
        ('rollback_data', 's0'),
        ('rollback_data', 's0'),
        ('end', 's0'),
        ('start', 's1'),
        ('rollback_data', 's1'),
        ('rollback_data', 's1'),
        ('end', 's1'),
        ('start', 's2'),
        ('rollback_data', 's2'),
        ('rollback_data', 's2'),
        ('end', 's2'),
    ]
    appended: dict[str, int] = {}
    for event, name, steps, items in probe.seen:
        index = int(name[1:])
        row = steps[name]
        if event == 'start':
            assert row['status'] == 'started'
            assert row['attempts'] == 1
            if index:
                before = steps[f's{index - 1}']
                assert before['status'] == 'succeeded'
                assert json.loads(before['data']) == {'step': index - 1}
                assert json.loads(before['rollback_data']) == {
                    'done': [f'{index - 1}.0', f'{index - 1}.1'],
                    'index': index - 1,
                }
                assert before['snapshot'] is not None
            for later in range(index + 1, 3):
                assert steps[f's{later}']['status'] == 'pending'
        elif event == 'rollback_data':
            appended[name] = appended.get(name, 0) + 1
            assert row['status'] == 'started'
            assert items == [(index, 'done', f'{index}.{i}', 1) for i in range(appended[name])]
        else:
            assert row['status'] == 'succeeded'
            assert row['ended_at'] is not None
            assert items == []
    assert peek_run(journal, run_id)['status'] == 'succeeded'


def test_rollback_data_of_a_step_that_raised_is_kept_for_its_rollback(journal: Journal) -> None:
    received: list[dict[str, Any]] = []

    def half_then_fail(context: BaseStepContext) -> None:
        context.append_rollback('ids', 1)
        context.append_rollback('ids', 2)
        raise ConnectionError('lost the backend')

    step = FnStep(
        'upload',
        execute=half_then_fail,
        rollback=lambda c, result: received.append(dict(result.rollback_data)),
    )
    done = dispatch(make_action(step), journal)
    assert done.error is not None
    assert received == [{'ids': [1, 2]}]
    record = journal.steps(done.run_id)[0]
    assert record.rollback_data == {'ids': [1, 2]}
    assert record.status == 'rolled_back'
    assert peek_items(journal, done.run_id) == []


@pytest.mark.sqlite_only
def test_wal_with_normal_sync_by_default_and_full_sync_when_durable(home: Path) -> None:
    default = Journal(home / 'a.db')
    durable = Journal(home / 'b.db', durable=True)
    try:
        assert default.db.execute('PRAGMA journal_mode').fetchone() == ('wal',)
        assert default.db.execute('PRAGMA synchronous').fetchone() == (1,)  # NORMAL
        assert durable.db.execute('PRAGMA journal_mode').fetchone() == ('wal',)
        assert durable.db.execute('PRAGMA synchronous').fetchone() == (2,)  # FULL
    finally:
        default.close()
        durable.close()


def test_a_pickled_journal_reopens_the_same_database(journal: Journal) -> None:
    journal.start_run('pickled', entrypoint='tests:x', params={'k': [1]})
    copy = pickle.loads(pickle.dumps(journal))
    try:
        assert copy.location == journal.location and copy.durable == journal.durable
        assert copy.get_run('pickled').params == {'k': [1]}
    finally:
        copy.close()
