"""Context snapshots: taken after each committed step, of the context's own fields only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from synapse_sdk.journal import Journal, SnapshotError, restore, snapshot
from synapse_sdk.plugins.actions import ActionContext
from synapse_sdk.plugins.steps import StepExecutionError, StepResult
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

from .conftest import FnStep, dispatch, make_action, peek_steps

WHEN = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@dataclass(kw_only=True)
class RichContext(ActionContext):
    count: int = 0
    folder: Path | None = None
    pair: tuple[Any, ...] = ()
    tags: set[str] = field(default_factory=set)
    when: datetime | None = None
    nested: dict[str, Any] = field(default_factory=dict)
    ratio: float = 0.0
    cache: Any = field(default=None, metadata={'snapshot': False})
    extra: Any = None


def fill(context: RichContext) -> StepResult:
    context.count = 1
    context.folder = Path('/data/in')
    context.pair = (1, 'a', Path('x'))
    context.tags = {'b', 'a'}
    context.when = WHEN
    context.nested = {'paths': [Path('p/q')], 'pairs': [(1, 2)], 'ids': {3, 1}, 'naive': WHEN}
    context.ratio = float('inf')
    context.cache = object()  # not savable, but kept out by its metadata
    return StepResult()


def more(context: RichContext) -> None:
    context.count = 2
    context.tags.add('c')


def fresh() -> RichContext:
    return RichContext(runtime_ctx=RuntimeContext(logger=MemoryLogger()))


@pytest.mark.both_databases
def test_the_context_is_snapshotted_after_each_committed_step(journal: Journal) -> None:
    action = make_action(
        FnStep('fill', execute=fill), FnStep('more', execute=more), context_class=RichContext
    )
    done = dispatch(action, journal, {'tag': 't'})
    assert done.error is None, done.error

    rows = peek_steps(journal, done.run_id)
    first = json.loads(rows['fill']['snapshot'])
    second = json.loads(rows['more']['snapshot'])
    own = {'count', 'folder', 'pair', 'tags', 'when', 'nested', 'ratio', 'extra'}
    # not runtime_ctx, step_results, errors, current_step; not cache; not params (input,
    # journaled with the run and given again on recovery)
    assert set(first) == own
    assert set(second) == own
    assert first['count'] == 1
    assert second['count'] == 2
    assert journal.get_run(done.run_id).params == {'tag': 't'}

    restored = fresh()
    restore(restored, journal.snapshot_before(done.run_id, 1))
    assert restored.count == 1
    assert restored.folder == Path('/data/in') and isinstance(restored.folder, Path)
    assert restored.pair == (1, 'a', Path('x')) and isinstance(restored.pair, tuple)
    assert isinstance(restored.pair[2], Path)
    assert restored.tags == {'a', 'b'} and isinstance(restored.tags, set)
    assert restored.when == WHEN and restored.when.tzinfo is not None
    assert restored.nested == {
        'paths': [Path('p/q')],
        'pairs': [(1, 2)],
        'ids': {1, 3},
        'naive': WHEN,
    }
    assert isinstance(restored.nested['pairs'][0], tuple)
    assert restored.ratio == float('inf')
    assert restored.cache is None  # left out: the fresh context's default stays
    assert restored.step_results == [] and restored.errors == []

    latest = fresh()
    restore(latest, journal.snapshot_before(done.run_id, 2))
    assert latest.count == 2
    assert latest.tags == {'a', 'b', 'c'}


@pytest.mark.both_databases
def test_a_failed_or_skipped_step_takes_no_snapshot(journal: Journal) -> None:
    action = make_action(
        FnStep('fill', execute=fill),
        FnStep('maybe', skip=lambda c: True),
        FnStep('boom', execute=lambda c: 1 / 0),
        context_class=RichContext,
    )
    done = dispatch(action, journal)
    assert done.error is not None
    rows = peek_steps(journal, done.run_id)
    assert rows['fill']['snapshot'] is not None
    assert rows['maybe']['snapshot'] is None
    assert rows['boom']['snapshot'] is None
    # the snapshot before 'boom' is the one taken after 'fill'
    assert json.loads(journal.snapshot_before(done.run_id, 2))['count'] == 1


@pytest.mark.both_databases
def test_a_value_that_cannot_be_saved_fails_the_step_and_the_run_rolls_back(
    journal: Journal,
) -> None:
    class Unsavable:
        pass

    def store_object(context: RichContext) -> StepResult:
        context.extra = {'handle': Unsavable()}
        return StepResult(rollback_data={'made': 1})

    undone: list[dict[str, Any]] = []
    step = FnStep(
        'load',
        execute=store_object,
        rollback=lambda c, result: undone.append(result.rollback_data),
    )
    after = FnStep('after')
    done = dispatch(make_action(FnStep('before'), step, after, context_class=RichContext), journal)

    assert isinstance(done.error, StepExecutionError)
    message = str(done.error)
    assert "Step 'load' failed" in message
    assert 'SnapshotError' in message
    assert "RichContext['extra']['handle']" in message  # names the field
    assert 'Unsavable' in message  # and the type
    assert "field(..., metadata={'snapshot': False})" in message  # and the way out
    assert after.calls == []
    assert undone == [{'made': 1}]  # the step's work was undone

    run = journal.get_run(done.run_id)
    assert run.status == 'rolled_back'
    assert run.error is not None and "RichContext['extra']['handle']" in run.error
    steps = {s.name: s for s in journal.steps(done.run_id)}
    assert steps['before'].status == 'rolled_back'
    assert steps['load'].status == 'rolled_back'
    assert steps['load'].error is not None and 'SnapshotError' in steps['load'].error
    assert not steps['load'].has_snapshot
    assert steps['after'].status == 'pending'


@pytest.mark.both_databases
def test_result_data_that_cannot_be_saved_fails_the_step(journal: Journal) -> None:
    step = FnStep('load', execute=lambda c: StepResult(data={'conn': object()}))
    done = dispatch(make_action(step), journal)
    assert isinstance(done.error, StepExecutionError)
    assert "step 'load' result.data['conn']" in str(done.error)
    assert journal.get_run(done.run_id).status == 'rolled_back'


def test_snapshot_error_names_the_field_and_the_way_out() -> None:
    context = fresh()
    context.extra = [1, object()]
    with pytest.raises(SnapshotError) as caught:
        snapshot(context)
    text = str(caught.value)
    assert "RichContext['extra'][1]" in text
    assert 'builtins.object' in text
    assert "metadata={'snapshot': False}" in text
    assert isinstance(caught.value, TypeError)


def test_a_dict_with_a_key_that_is_not_a_string_is_refused_by_name() -> None:
    context = fresh()
    context.nested = {1: 'one'}
    with pytest.raises(SnapshotError, match=r"RichContext\['nested'\] has a key 1"):
        snapshot(context)


@pytest.mark.parametrize(
    'value',
    [
        None,
        True,
        0,
        -7,
        2.5,
        float('-inf'),
        'text',
        [1, [2, 3]],
        {'a': {'b': [1]}},
        (1, (2, 3)),
        (),
        {1, 2, 3},
        {(1, 2), (3, 4)},
        frozenset({'x'}),
        Path('/a/b'),
        PurePosixPath('rel/path'),
        WHEN,
        datetime(2024, 5, 6, 7, 8, 9),
        {'when': [WHEN], 'where': (Path('.'),)},
    ],
    ids=repr,
)
def test_values_round_trip(value: Any) -> None:
    context = fresh()
    context.extra = value
    restored = fresh()
    restore(restored, snapshot(context))
    assert restored.extra == value
    # a frozenset comes back as a set, a pure path as a concrete Path; the rest as they were
    expected = {frozenset: set, PurePosixPath: Path}.get(type(value), type(value))
    assert isinstance(restored.extra, expected)


def test_nan_round_trips() -> None:
    context = fresh()
    context.ratio = float('nan')
    restored = fresh()
    restore(restored, snapshot(context))
    assert restored.ratio != restored.ratio


def test_restore_ignores_fields_the_context_no_longer_has() -> None:
    restored = fresh()
    restore(restored, json.dumps({'count': 5, 'gone': 1}))
    assert restored.count == 5
    assert not hasattr(restored, 'gone')
