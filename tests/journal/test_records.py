"""What the journal records about a run and its steps, for every way a run can end
(on SQLite and on PostgreSQL)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from synapse_sdk.journal import RUN_STATUSES, STEP_STATUSES, Journal, JournalError, JournalListener
from synapse_sdk.plugins.actions import ActionOrigin
from synapse_sdk.plugins.steps import StepExecutionError, StepResult

from .conftest import FnStep, dispatch, make_action, peek_run, peek_steps

pytestmark = pytest.mark.both_databases


def when(text: str | None) -> datetime:
    assert text is not None
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, f'{text} has no time zone'
    return value


@pytest.mark.sqlite_only  # no database
def test_the_status_vocabulary_is_the_promised_one() -> None:
    assert set(RUN_STATUSES) == {
        'running',
        'succeeded',
        'failed',
        'rolled_back',
        'rollback_failed',
        'cancelled',
        'crashed',
        'submitted',
    }
    assert set(STEP_STATUSES) == {
        'pending',
        'started',
        'succeeded',
        'skipped',
        'failed',
        'rolled_back',
        'rollback_failed',
        'reused',
    }


def test_a_succeeded_run_records_run_and_steps(journal: Journal) -> None:
    load = FnStep(
        'load',
        1,
        execute=lambda c: StepResult(data={'rows': 3}, rollback_data={'table': 'rows_v1'}),
    )
    transform = FnStep('transform', 3, execute=lambda c: StepResult(data={'kept': [1, 2]}))
    action = make_action(load, transform)
    origin = ActionOrigin('/plugins/etl', 'etl')
    before = datetime.now(UTC)
    done = dispatch(action, journal, {'tag': 'nightly'}, origin=origin)
    after = datetime.now(UTC)
    assert done.error is None, done.error

    run = journal.get_run(done.run_id)
    assert run.id == done.run_id
    assert run.entrypoint == action.entrypoint() == f'{action.__module__}:{action.__qualname__}'
    assert (run.action, run.plugin_path) == ('etl', '/plugins/etl')
    assert run.params == {'tag': 'nightly'}
    assert run.status == 'succeeded'
    assert run.progress == 100
    assert run.error is None
    assert run.pid == os.getpid()
    assert run.attempts == 1
    assert not run.active
    assert before <= when(run.started_at) <= when(run.ended_at) <= after

    steps = journal.steps(done.run_id)
    assert [(s.index, s.name, s.weight) for s in steps] == [(0, 'load', 1.0), (1, 'transform', 3.0)]
    assert [s.status for s in steps] == ['succeeded', 'succeeded']
    assert [s.attempts for s in steps] == [1, 1]
    assert [s.error for s in steps] == [None, None]
    assert steps[0].data == {'rows': 3}
    assert steps[0].rollback_data == {'table': 'rows_v1'}
    assert steps[1].data == {'kept': [1, 2]}
    assert steps[1].rollback_data == {}
    assert all(s.has_snapshot for s in steps)
    for s in steps:
        assert before <= when(s.started_at) <= when(s.ended_at) <= after
        assert s.duration is not None and 0 <= s.duration <= (after - before).total_seconds()
    assert when(steps[0].ended_at) <= when(steps[1].started_at)

    assert [r.id for r in journal.list_runs()] == [done.run_id]
    assert [r.id for r in journal.list_runs(status='succeeded')] == [done.run_id]
    assert journal.list_runs(status='failed') == []


def test_an_action_without_origin_is_recorded_by_its_entrypoint(journal: Journal) -> None:
    done = dispatch(make_action(FnStep('only')), journal)
    run = journal.get_run(done.run_id)
    assert (run.action, run.plugin_path) == (None, None)
    assert run.entrypoint.endswith(':make_action.<locals>.InTestAction')


@pytest.mark.parametrize('how', ['raises', 'returns failure'])
def test_a_failed_run_is_rolled_back_and_says_where_it_failed(journal: Journal, how: str) -> None:
    seen_during_rollback: dict[str, Any] = {}

    def fail(context: Any) -> StepResult:
        if how == 'raises':
            raise ValueError('disk full')
        return StepResult(success=False, error='disk full')

    def look(context: Any, result: StepResult) -> None:
        # written ahead: while the failed step is rolled back, the DB already says so
        run_id = context.runtime_ctx.run_id
        seen_during_rollback['run'] = peek_run(journal, run_id)
        seen_during_rollback['steps'] = peek_steps(journal, run_id)

    first = FnStep('first', 1, execute=lambda c: StepResult(data={'n': 1}))
    second = FnStep('second', 1, execute=fail, rollback=look)
    third = FnStep('third', 2)
    done = dispatch(make_action(first, second, third), journal)

    assert isinstance(done.error, StepExecutionError)
    assert ('execute', 'third') not in third.calls
    run = journal.get_run(done.run_id)
    assert run.status == 'rolled_back'
    assert run.error is not None and "Step 'second' failed" in run.error
    assert 'disk full' in run.error
    assert run.progress == 25  # 'first' (1 of weight 4) was done when 'second' failed
    assert run.ended_at is not None and not run.active

    steps = {s.name: s for s in journal.steps(done.run_id)}
    assert steps['first'].status == 'rolled_back'
    assert steps['first'].data == {'n': 1}
    assert steps['first'].error is None
    assert steps['second'].status == 'rolled_back'  # its partial work was undone as well
    assert steps['second'].error is not None and 'disk full' in steps['second'].error
    assert steps['second'].attempts == 1
    assert not steps['second'].has_snapshot
    assert steps['third'].status == 'pending'
    assert steps['third'].attempts == 0
    assert steps['third'].started_at is None

    # while it was being rolled back: run 'failed' (still active), the step 'failed'
    during = seen_during_rollback
    assert during['run']['status'] == 'failed'
    assert during['run']['ended_at'] is None
    assert during['steps']['second']['status'] == 'failed'
    assert 'disk full' in during['steps']['second']['error']
    assert during['steps']['first']['status'] == 'succeeded'


def test_a_rollback_that_raises_leaves_the_run_rollback_failed(journal: Journal) -> None:
    def cannot_undo(context: Any, result: StepResult) -> None:
        raise OSError('bucket is read-only')

    first = FnStep(
        'first', execute=lambda c: StepResult(rollback_data={'ids': [7]}), rollback=cannot_undo
    )
    second = FnStep('second', execute=lambda c: 1 / 0)
    done = dispatch(make_action(first, second), journal)

    assert isinstance(done.error, StepExecutionError)
    assert done.error.rollback_errors
    run = journal.get_run(done.run_id)
    assert run.status == 'rollback_failed'
    assert run.error is not None and "Step 'second' failed" in run.error
    assert run.ended_at is not None
    steps = {s.name: s for s in journal.steps(done.run_id)}
    assert steps['first'].status == 'rollback_failed'
    assert steps['first'].error == 'OSError: bucket is read-only'
    assert steps['first'].rollback_data == {'ids': [7]}
    assert steps['second'].status == 'rolled_back'
    assert steps['second'].error is not None and 'ZeroDivisionError' in steps['second'].error


def test_a_skipped_step_is_recorded_skipped(journal: Journal) -> None:
    skipped = FnStep('maybe', 1, skip=lambda c: True)
    done = dispatch(make_action(FnStep('a'), skipped, FnStep('b')), journal)
    assert done.error is None
    assert skipped.calls == []
    assert journal.get_run(done.run_id).status == 'succeeded'
    steps = {s.name: s for s in journal.steps(done.run_id)}
    assert [s.status for s in steps.values()] == ['succeeded', 'skipped', 'succeeded']
    assert steps['maybe'].attempts == 0
    assert steps['maybe'].started_at is None
    assert steps['maybe'].error is None


def test_a_skipped_step_is_not_rolled_back_when_a_later_step_fails(journal: Journal) -> None:
    skipped = FnStep('maybe', 1, skip=lambda c: True)
    done = dispatch(
        make_action(FnStep('a'), skipped, FnStep('b', execute=lambda c: 1 / 0)), journal
    )
    assert isinstance(done.error, StepExecutionError)
    assert ('rollback', 'maybe') not in skipped.calls
    statuses = [s.status for s in journal.steps(done.run_id)]
    assert statuses == ['rolled_back', 'skipped', 'rolled_back']
    assert journal.get_run(done.run_id).status == 'rolled_back'


def test_keyboard_interrupt_in_a_step_leaves_the_run_cancelled(journal: Journal) -> None:
    def interrupt(context: Any) -> None:
        raise KeyboardInterrupt

    first = FnStep('first')
    second = FnStep('second', execute=interrupt)
    done = dispatch(make_action(first, second, FnStep('third')), journal)

    assert isinstance(done.error, KeyboardInterrupt | StepExecutionError), done.error
    run = journal.get_run(done.run_id)
    assert run.status == 'cancelled'
    assert run.error is not None and 'KeyboardInterrupt' in run.error
    assert run.ended_at is not None and not run.active
    assert ('rollback', 'first') in first.calls
    statuses = {s.name: s.status for s in journal.steps(done.run_id)}
    assert statuses == {'first': 'rolled_back', 'second': 'rolled_back', 'third': 'pending'}


def test_progress_is_recorded_while_the_run_goes(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # written at most every PROGRESS_INTERVAL seconds; with 0, at every change
    monkeypatch.setattr(JournalListener, 'PROGRESS_INTERVAL', 0.0)
    seen: list[int] = []

    def halfway(context: Any) -> None:
        context.set_progress(1, 2)
        seen.append(peek_run(journal, context.runtime_ctx.run_id)['progress'])

    def look(context: Any) -> None:
        seen.append(peek_run(journal, context.runtime_ctx.run_id)['progress'])

    done = dispatch(
        make_action(FnStep('a', 2, execute=halfway), FnStep('b', 2, execute=look)), journal
    )
    assert done.error is None
    assert seen == [25, 50]
    assert journal.get_run(done.run_id).progress == 100


def test_each_run_has_its_own_records(journal: Journal) -> None:
    action = make_action(FnStep('a'), FnStep('b'))
    ids = [dispatch(action, journal, {'tag': str(i)}).run_id for i in range(3)]
    assert len(set(ids)) == 3
    assert {r.id: r.params['tag'] for r in journal.list_runs()} == {
        ids[i]: str(i) for i in range(3)
    }
    assert [r.id for r in journal.list_runs(limit=2)] == ids[:0:-1]
    for run_id in ids:
        assert [s.name for s in journal.steps(run_id)] == ['a', 'b']


def test_the_journal_is_read_back_by_a_new_journal_object(journal: Journal) -> None:
    done = dispatch(make_action(FnStep('a', execute=lambda c: StepResult(data={'x': 1}))), journal)
    journal.close()
    again = Journal(journal.location)
    try:
        assert again.get_run(done.run_id).status == 'succeeded'
        assert again.steps(done.run_id)[0].data == {'x': 1}
    finally:
        again.close()


def test_a_run_that_takes_time_records_plausible_timings(journal: Journal) -> None:
    import time

    done = dispatch(make_action(FnStep('nap', execute=lambda c: time.sleep(0.05))), journal)
    step = journal.steps(done.run_id)[0]
    assert step.duration is not None and step.duration >= 0.05
    elapsed = when(step.ended_at) - when(step.started_at)
    assert timedelta(seconds=0.05) <= elapsed < timedelta(seconds=5)


def test_progress_writes_are_throttled(journal: Journal) -> None:
    seen: list[int] = []

    def report(context: Any) -> None:
        for i in range(1, 101):
            context.set_progress(i, 100)
        seen.append(peek_run(journal, context.runtime_ctx.run_id)['progress'])

    done = dispatch(make_action(FnStep('a', 1, execute=report), FnStep('b', 1)), journal)
    assert done.error is None
    assert seen == [1]  # the first change (1%) is written at once; 2..50% wait their turn
    assert journal.get_run(done.run_id).progress == 100


def test_a_submitted_run_is_taken_over_by_the_process_that_starts_it(journal: Journal) -> None:
    journal.start_run('sub1', entrypoint='m:A', params={'a': 1}, cwd='/there', status='submitted')
    submitted = journal.get_run('sub1')
    assert submitted.status == 'submitted' and not submitted.active
    assert submitted.lease_owner is None and submitted.cwd == '/there'
    assert [r.id for r in journal.list_runs(status='submitted')] == ['sub1']
    journal.start_run('sub1', entrypoint='m:A', params={'a': 1}, cwd='/here', lease_owner='me')
    started = journal.get_run('sub1')
    assert started.status == 'running' and started.active
    assert started.cwd == '/here' and started.lease_owner == 'me'
    assert started.lease_until is not None
    with pytest.raises(JournalError, match="a run 'sub1' is already in the journal"):
        journal.start_run('sub1', entrypoint='m:A', params={})  # only a submitted one is
    assert journal.get_run('sub1').lease_owner == 'me'


def test_a_cancel_asked_of_a_submitted_run_is_kept_for_the_process_that_starts_it(
    journal: Journal,
) -> None:
    journal.start_run('sub2', entrypoint='m:A', params={}, status='submitted')
    asked = journal.request_cancel('sub2', by='me')
    assert asked.status == 'submitted'
    journal.start_run('sub2', entrypoint='m:A', params={}, lease_owner='worker')
    started = journal.get_run('sub2')
    assert started.status == 'running'
    assert started.cancel_requested_by == 'me' and started.cancel_requested_at is not None


def test_a_detached_run_ended_before_its_job_started_it_says_so_to_the_job(
    journal: Journal,
) -> None:
    job = ('synapse-sub3', 'http://127.0.0.1:8265')
    journal.start_run('sub3', entrypoint='m:A', params={}, status='submitted', ray_job=job)
    assert journal.end_submitted('sub3', 'cancelled', 'cancelled before it started')
    with pytest.raises(JournalError) as caught:  # the job's process, starting late
        journal.start_run('sub3', entrypoint='m:A', params={}, lease_owner='worker')
    assert str(caught.value) == (
        "run 'sub3' already ended (cancelled) before this process could start it; nothing"
        ' to run (`synapse runs show` says why)'
    )
    assert journal.get_run('sub3').status == 'cancelled'
    journal.start_run('plain', entrypoint='m:A', params={})  # no Ray job: the usual words
    journal.set_run_status('plain', 'failed')
    with pytest.raises(JournalError, match="a run 'plain' is already in the journal"):
        journal.start_run('plain', entrypoint='m:A', params={})
