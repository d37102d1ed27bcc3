"""The edges of a run, journaled: what the journal holds and what recovery then does.

Each path the orchestrator gained at the edges of a run (a failing report of a
skipped or reused step, a Ctrl-C in the final report, a cancel the last step
ignores, a resumed run cancelled before its reused steps, durations) is run
with a real ``JournalListener``. Then the journal is checked (run status, each
step's status, error and rollback data) and so is what a later
``rollback_run``/``resume_run`` (or ``synapse runs ...``) does with it.

Every step keeps a ledger (``$SYNAPSE_HOME/ledger.jsonl``, shared with the
``synapse`` subprocesses): the id of each piece of work it does, recorded
before doing it (``append_rollback``), and each id its rollback undoes. "Nothing
done twice, nothing left behind" is then ``sorted(undone) == sorted(made)``.

A crash is simulated in this process: the run goes on a journal of its own
(``live.db``); at the crash point what it committed of the run is copied to the
test's journal with its owner marked dead, which is exactly what a killed
process leaves behind; the in-process run is then abandoned and nothing it does
afterwards reaches the ledger. On SQLite, and on PostgreSQL (the test's journal,
which recovery then reads and writes).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from synapse_sdk._paths import synapse_home
from synapse_sdk.execution import run_action
from synapse_sdk.execution._recovery import resume_run, rollback_run
from synapse_sdk.journal import Journal, JournalListener
from synapse_sdk.plugins.actions import ActionContext, BaseAction
from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    Progress,
    RollbackData,
    RunCancelledError,
    RunEvent,
    RunListener,
    StepEnded,
    StepEvent,
    StepExecutionError,
    StepRegistry,
    StepResult,
    StepReused,
    StepSkipped,
    StepStarted,
)
from synapse_sdk.runtime import Logger, MemoryLogger, RuntimeContext
from synapse_sdk.testing import FakeClock, FunctionStep

from .conftest import Dispatched, copy_run, dispatch, peek_items, run_cli, write

# ------------------------------------------------------------------ the workflow and its ledger


pytestmark = pytest.mark.both_databases


@dataclass
class _State:
    """What the in-process tests tell the steps (reset before each test)."""

    hooks: dict[str, Callable[[Any], None]] = field(default_factory=dict)
    dead: bool = False  # after a simulated crash: the abandoned run leaves no trace


STATE = _State()
ENV_SWITCHES = ('EDGE_PROGRESS_FAIL_AT', 'EDGE_PROGRESS_INTERRUPT_AT', 'EDGE_SIGINT_IN_ROLLBACK_OF')


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    STATE.hooks.clear()
    STATE.dead = False
    yield
    STATE.hooks.clear()
    STATE.dead = False


def _ledger_path() -> Path:
    return synapse_home() / 'ledger.jsonl'


def _note(kind: str, item: str) -> None:
    if STATE.dead:
        return
    path = _ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open('a', encoding='utf-8') as out:
        out.write(json.dumps({kind: item}) + '\n')


def ledger() -> tuple[list[str], list[str]]:
    """``(made, undone)``: work ids in the order they were done and undone."""
    path = _ledger_path()
    lines = path.read_text(encoding='utf-8').splitlines() if path.exists() else []
    entries = [json.loads(line) for line in lines]
    made = [e['made'] for e in entries if 'made' in e]
    undone = [e['undone'] for e in entries if 'undone' in e]
    return made, undone


def assert_everything_undone_once() -> None:
    made, undone = ledger()
    assert sorted(undone) == sorted(made), f'made {made}, undone {undone}'


class EdgeParams(BaseModel):
    skip: list[str] = []


class EdgeStep(BaseStep[ActionContext]):
    """Does one piece of work per execution (its id recorded first), undoes what it is given."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return 1.0

    def can_skip(self, context: ActionContext) -> bool:
        return self._name in context.params.get('skip', [])

    def execute(self, context: ActionContext) -> StepResult:
        made, _ = ledger()
        work = f'{self._name}{sum(1 for m in made if m[0] == self._name) + 1}'
        context.append_rollback('ids', work)  # intent first, then the work
        _note('made', work)
        hook = STATE.hooks.get(self._name)
        if hook is not None:
            hook(context)
        return StepResult(data={'work': work})

    def rollback(self, context: ActionContext, result: StepResult) -> None:
        for work in result.rollback_data.get('ids', []):
            _note('undone', work)
        if os.environ.get('EDGE_SIGINT_IN_ROLLBACK_OF') == self._name:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while `runs resume` undoes this


class ProgressFaults(Logger):
    """Makes the run's overall progress report fail (hooks, or the environment)."""

    def progress(self, current: float, total: float, category: str) -> None:
        if category != 'overall':
            return
        hook = STATE.hooks.get('progress')
        if hook is not None:
            hook(int(current))
        if str(int(current)) == os.environ.get('EDGE_PROGRESS_FAIL_AT'):
            raise OSError('progress bar gone')
        if str(int(current)) == os.environ.get('EDGE_PROGRESS_INTERRUPT_AT'):
            raise KeyboardInterrupt


class EdgeAction(BaseAction[EdgeParams]):
    """Steps a, b, c; the progress report can be made to fail (a logger ahead of the others)."""

    context_class = ActionContext

    def __init__(self, params: Any, ctx: RuntimeContext | None = None) -> None:
        super().__init__(params, ctx)
        self.ctx.loggers.insert(0, ProgressFaults())

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        for name in 'abc':
            registry.register(EdgeStep(name))


class Fails(Logger):
    """Raises on an event of type ``event`` (``StepSkipped``, ``StepReused``) for step ``step``."""

    def __init__(self, event: type[StepEvent], step: str) -> None:
        self.event = event
        self.step = step

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, self.event) and event.step.name == self.step:
            raise RuntimeError(f'cannot report {type(event).__name__}')


def raise_at(percent: int, error: BaseException) -> Callable[[int], None]:
    def hook(current: int) -> None:
        if current == percent:
            raise error

    return hook


def runtime(*loggers: Logger) -> RuntimeContext:
    return RuntimeContext(logger=[MemoryLogger(), *loggers])


# ------------------------------------------------------------------ journal helpers


class _Crash(BaseException):
    """Ends the abandoned in-process run once its journal has been copied."""


def crash_at(live: Journal, target: Journal | Path, run_id: str) -> Callable[[Any], None]:
    """A hook: copy what ``live`` has committed to ``target`` as a crashed run, then stop."""

    def hook(_: Any) -> None:
        copy_run(live, target, run_id)
        # same pid, another process start time: its owner is gone; and the recovery
        # claim it held (a resume in progress) has run out
        write(
            target,
            "UPDATE runs SET pid_started = '1', recoverer_until = recoverer_until - 3600"
            ' WHERE id = ?',
            (run_id,),
        )
        STATE.dead = True
        raise _Crash

    return hook


def crashed_run(journal: Journal, in_step: str = 'c', *, at_progress: int | None = None) -> str:
    """A run of EdgeAction killed inside ``in_step`` (or in the report of ``at_progress``),
    as ``journal`` then holds it."""
    live = Journal(synapse_home() / 'live.db')
    try:
        run_id = 'crashed-run'
        hook = crash_at(live, journal, run_id)
        if at_progress is None:
            STATE.hooks[in_step] = hook
        else:
            STATE.hooks['progress'] = lambda current: hook(None) if current == at_progress else None
        logger = MemoryLogger()
        error: BaseException | None = None
        try:
            run_action(EdgeAction, {}, RuntimeContext(logger=logger, run_id=run_id), journal=live)
        except _Crash as crash:
            error = crash
        assert isinstance(error, _Crash)
    finally:
        live.close()
        STATE.hooks.clear()
        STATE.dead = False
    assert journal.get_run(run_id).status == 'crashed'
    return run_id


def statuses(journal: Journal, run_id: str) -> dict[str, str]:
    return {s.name: s.status for s in journal.steps(run_id)}


def step(journal: Journal, run_id: str, name: str) -> Any:
    (record,) = [s for s in journal.steps(run_id) if s.name == name]
    return record


def assert_nothing_left_open(journal: Journal, run_id: str) -> None:
    """No step claims to be running, and no partial rollback data waits for a step
    that is not running (it would be replayed by the next rollback)."""
    assert 'started' not in statuses(journal, run_id).values()
    assert peek_items(journal, run_id) == []


def rollback_then_resume(journal: Journal, run_id: str) -> dict[str, Any]:
    """What an operator does next: ``rollback_run`` (must find nothing left to undo and
    undo nothing), then ``resume_run`` (must run the whole workflow once more)."""
    before = ledger()
    report = rollback_run(journal, run_id, runtime())
    assert report['rolled_back'] == [] and report['errors'] == []
    assert ledger() == before, 'a rollback of a rolled-back run undid something again'
    assert journal.get_run(run_id).status == 'rolled_back'

    result = resume_run(journal, run_id, runtime())
    assert result['success'] is True
    assert journal.get_run(run_id).status == 'succeeded'
    return result


def dispatched(**params: Any) -> Callable[..., Dispatched]:
    def go(journal: Journal, **kwargs: Any) -> Dispatched:
        return dispatch(EdgeAction, journal, params, **kwargs)

    return go


# ------------------------------------------------------------------ a skipped step's report fails


@pytest.mark.parametrize('trigger', ['StepSkipped', 'progress_callback'])
def test_a_failing_report_of_a_skipped_step_is_journaled_without_undoing_it(
    journal: Journal, trigger: str
) -> None:
    """The run fails at the skipped step b: a is undone once, b (which did nothing) is not
    rolled back and is not left 'started'; c never began. Rollback then finds nothing
    to undo, and a resume runs the workflow (b skipped again)."""
    kwargs: dict[str, Any] = {}
    if trigger == 'StepSkipped':
        kwargs['listeners'] = [Fails(StepSkipped, 'b')]  # before the journal
    else:
        STATE.hooks['progress'] = raise_at(66, OSError('progress bar gone'))  # b's mark
    done = dispatched(skip=['b'])(journal, **kwargs)

    assert isinstance(done.error, StepExecutionError)
    assert done.error.step_name == 'b'
    assert ledger() == (['a1'], ['a1'])
    run = journal.get_run(done.run_id)
    assert run.status == 'rolled_back'
    assert run.ended_at is not None
    records = {s.name: s for s in journal.steps(done.run_id)}
    assert records['a'].status == 'rolled_back'
    assert records['a'].rollback_data == {'ids': ['a1']}
    assert records['a'].error is None
    # the journal may or may not have heard of the skip; either way b did nothing
    skipped = 'pending' if trigger == 'StepSkipped' else 'skipped'
    assert records['b'].status == skipped
    assert (records['b'].rollback_data, records['b'].error) == (None, None)
    assert records['b'].attempts == 0
    assert records['c'].status == 'pending'
    assert (records['c'].started_at, records['c'].attempts) == (None, 0)
    assert_nothing_left_open(journal, done.run_id)

    STATE.hooks.clear()
    result = rollback_then_resume(journal, done.run_id)
    assert result['steps_skipped'] == 1 and result['steps_executed'] == 2
    assert ledger() == (['a1', 'a2', 'c1'], ['a1'])
    assert statuses(journal, done.run_id) == {'a': 'succeeded', 'b': 'skipped', 'c': 'succeeded'}


def test_a_failing_skip_report_after_the_journal_heard_of_the_skip(journal: Journal) -> None:
    """Listeners in the other order: the journal records the skip (and announces c) before
    the other listener fails. b stays 'skipped' and c goes back to 'pending'."""
    run_id = 'journal-first'
    journal.start_run(run_id, entrypoint=EdgeAction.entrypoint(), params={'skip': ['b']})
    prepared = EdgeAction({'skip': ['b']}, runtime()).prepare_run()
    assert prepared.context is not None
    orchestrator = Orchestrator(
        prepared.registry,
        prepared.context,
        listeners=[JournalListener(journal, run_id), Fails(StepSkipped, 'b')],
    )
    with pytest.raises(StepExecutionError) as info:
        orchestrator.execute()
    assert info.value.step_name == 'b'
    assert ledger() == (['a1'], ['a1'])
    assert journal.get_run(run_id).status == 'rolled_back'
    assert statuses(journal, run_id) == {'a': 'rolled_back', 'b': 'skipped', 'c': 'pending'}
    c = step(journal, run_id, 'c')
    assert (c.started_at, c.attempts) == (None, 0)
    assert_nothing_left_open(journal, run_id)

    rollback_then_resume(journal, run_id)
    assert ledger() == (['a1', 'a2', 'c1'], ['a1'])


# ------------------------------------------------------------------ a reused step's report fails


@pytest.mark.parametrize('trigger', ['StepReused', 'progress_callback'])
def test_a_failing_report_of_a_reused_step_undoes_every_standing_step_once(
    journal: Journal, trigger: str
) -> None:
    """Crashed in c; the resume undoes c's partial work, reuses a and b, and b's report
    fails: b and a are undone with their journaled results, each exactly once."""
    run_id = crashed_run(journal, 'c')
    assert ledger() == (['a1', 'b1', 'c1'], [])
    assert statuses(journal, run_id) == {'a': 'succeeded', 'b': 'succeeded', 'c': 'started'}

    loggers: list[Logger] = []
    if trigger == 'StepReused':
        loggers.append(Fails(StepReused, 'b'))
    else:
        STATE.hooks['progress'] = raise_at(66, OSError('progress bar gone'))
    with pytest.raises(StepExecutionError) as info:
        resume_run(journal, run_id, runtime(*loggers))
    assert info.value.step_name == 'b'

    made, undone = ledger()
    assert made == ['a1', 'b1', 'c1']  # nothing ran again
    assert undone == ['c1', 'b1', 'a1']  # the cut-off step first, then newest first
    run = journal.get_run(run_id)
    assert run.status == 'rolled_back'
    records = {s.name: s for s in journal.steps(run_id)}
    assert records['a'].status == 'rolled_back'
    assert records['b'].status == 'rolled_back'
    assert records['a'].rollback_data == {'ids': ['a1']}
    assert records['b'].rollback_data == {'ids': ['b1']}
    assert records['b'].data == {'work': 'b1'}  # the reused result was not rewritten
    # c's partial work was undone before the run began; it did not run again (announced
    # after reused b when the journal heard of b's reuse, then taken back to pending)
    assert records['c'].status == ('rolled_back' if trigger == 'StepReused' else 'pending')
    assert 'started' not in statuses(journal, run_id).values()

    STATE.hooks.clear()
    result = rollback_then_resume(journal, run_id)
    assert result['steps_executed'] == 3 and result['steps_reused'] == 0
    assert ledger() == (['a1', 'b1', 'c1', 'a2', 'b2', 'c2'], ['c1', 'b1', 'a1'])
    assert_nothing_left_open(journal, run_id)


@pytest.mark.parametrize(
    'case',
    ['skip-listener', 'skip-progress', 'reused-listener', 'reused-progress'],
)
def test_a_run_failed_by_a_skipped_or_reused_steps_report_says_why(
    journal: Journal, case: str
) -> None:
    """``synapse runs show`` reads the run's error: a run rolled back because the report
    of step b failed must say so, as a run whose step raised does ("Step 'b' failed:
    ..."). No step row carries the error either (b did nothing, or was reused)."""
    kind, trigger = case.split('-')
    run_id = crashed_run(journal, 'c') if kind == 'reused' else ''
    loggers: list[Logger] = []
    if trigger == 'listener':
        loggers.append(Fails(StepSkipped if kind == 'skip' else StepReused, 'b'))
    else:
        STATE.hooks['progress'] = raise_at(66, OSError('progress bar gone'))
    if kind == 'skip':
        run_id = dispatched(skip=['b'])(journal, listeners=loggers).run_id
    else:
        with pytest.raises(StepExecutionError):
            resume_run(journal, run_id, runtime(*loggers))
    run = journal.get_run(run_id)
    assert run.status == 'rolled_back'
    expected = 'cannot report' if trigger == 'listener' else 'progress bar gone'
    assert run.error is not None, f'run {run.status} with no error: the journal never says why'
    assert "step 'b'" in run.error.lower() and expected in run.error


# ------------------------------------------------------------------ Ctrl-C in the final report


@pytest.mark.parametrize('last', ['executed', 'skipped'])
def test_an_interrupt_in_the_final_report_rolls_back_and_is_journaled_cancelled(
    journal: Journal, last: str
) -> None:
    STATE.hooks['progress'] = raise_at(100, KeyboardInterrupt())
    done = dispatched(skip=['c'] if last == 'skipped' else [])(journal)

    assert isinstance(done.error, KeyboardInterrupt)
    run = journal.get_run(done.run_id)
    assert run.status == 'cancelled'
    assert run.error == 'interrupted by KeyboardInterrupt'
    assert run.ended_at is not None
    records = {s.name: s for s in journal.steps(done.run_id)}
    if last == 'executed':
        assert ledger() == (['a1', 'b1', 'c1'], ['c1', 'b1', 'a1'])
        assert [r.status for r in records.values()] == ['rolled_back'] * 3
        assert records['c'].error == 'KeyboardInterrupt'
        assert records['c'].rollback_data == {'ids': ['c1']}
        assert records['c'].duration is not None
    else:
        assert ledger() == (['a1', 'b1'], ['b1', 'a1'])
        assert statuses(journal, done.run_id) == {
            'a': 'rolled_back',
            'b': 'rolled_back',
            'c': 'skipped',
        }
        assert records['c'].error is None
    assert (records['a'].error, records['b'].error) == (None, None)
    assert records['b'].rollback_data == {'ids': ['b1']}
    assert run.progress < 100
    assert_nothing_left_open(journal, done.run_id)

    STATE.hooks.clear()
    rollback_then_resume(journal, done.run_id)
    if last == 'executed':
        assert ledger() == (['a1', 'b1', 'c1', 'a2', 'b2', 'c2'], ['c1', 'b1', 'a1'])
    else:
        assert ledger() == (['a1', 'b1', 'a2', 'b2'], ['b1', 'a1'])


def test_an_interrupt_in_the_final_report_of_a_fully_reused_resume(journal: Journal) -> None:
    """Crashed in the final report (every step committed); the resume reuses all three,
    then is interrupted in its own final report: all three are undone, once."""
    run_id = crashed_run(journal, at_progress=100)
    assert statuses(journal, run_id) == dict.fromkeys('abc', 'succeeded')
    assert ledger() == (['a1', 'b1', 'c1'], [])

    STATE.hooks['progress'] = raise_at(100, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        resume_run(journal, run_id, runtime())
    assert ledger() == (['a1', 'b1', 'c1'], ['c1', 'b1', 'a1'])
    run = journal.get_run(run_id)
    assert run.status == 'cancelled' and run.error == 'interrupted by KeyboardInterrupt'
    assert statuses(journal, run_id) == dict.fromkeys('abc', 'rolled_back')
    assert_nothing_left_open(journal, run_id)

    STATE.hooks.clear()
    rollback_then_resume(journal, run_id)
    assert ledger() == (['a1', 'b1', 'c1', 'a2', 'b2', 'c2'], ['c1', 'b1', 'a1'])


# ------------------------------------------------------------------ a cancel the last step ignores


def test_a_cancel_the_last_step_ignores_is_journaled_cancelled_and_undone(
    journal: Journal,
) -> None:
    STATE.hooks['c'] = lambda context: context.runtime_ctx.cancel('stop now')
    done = dispatched()(journal)

    assert isinstance(done.error, RunCancelledError)
    assert done.error.step_name == 'c'
    assert ledger() == (['a1', 'b1', 'c1'], ['c1', 'b1', 'a1'])
    run = journal.get_run(done.run_id)
    assert run.status == 'cancelled'
    assert run.error == 'cancelled: the run was cancelled (stop now)'
    assert run.progress < 100
    records = {s.name: s for s in journal.steps(done.run_id)}
    assert [r.status for r in records.values()] == ['rolled_back'] * 3
    assert records['c'].error == 'StepCancelled: the run was cancelled (stop now)'
    assert records['c'].rollback_data == {'ids': ['c1']}
    assert records['c'].duration is not None
    assert_nothing_left_open(journal, done.run_id)

    STATE.hooks.clear()
    rollback_then_resume(journal, done.run_id)
    assert ledger() == (['a1', 'b1', 'c1', 'a2', 'b2', 'c2'], ['c1', 'b1', 'a1'])


def test_a_step_rerun_after_an_edge_rollback_is_undone_with_its_own_rollback_data(
    journal: Journal,
) -> None:
    """The run was cancelled in its last step and rolled back (every row keeps the
    rollback data of what was undone). The resume re-runs a and b, and dies inside b
    after b recorded its new work b2. The rollback must undo b2 (and a2), never b1
    again: the row's old ``rollback_data`` belongs to an attempt already undone."""
    STATE.hooks['c'] = lambda context: context.runtime_ctx.cancel('stop now')
    run_id = dispatched()(journal).run_id
    assert ledger() == (['a1', 'b1', 'c1'], ['c1', 'b1', 'a1'])

    STATE.hooks.clear()
    crash_db = synapse_home() / 'crash.db'
    STATE.hooks['b'] = crash_at(journal, crash_db, run_id)
    with pytest.raises(_Crash):
        resume_run(journal, run_id, runtime())
    STATE.hooks.clear()
    STATE.dead = False
    assert ledger() == (['a1', 'b1', 'c1', 'a2', 'b2'], ['c1', 'b1', 'a1'])

    crashed = Journal(crash_db)
    try:
        assert crashed.get_run(run_id).status == 'crashed'
        assert statuses(crashed, run_id)['b'] == 'started'
        assert crashed.partial_rollback_data(run_id, 1) == {'ids': ['b2']}
        rollback_run(crashed, run_id, runtime())
        assert crashed.get_run(run_id).status == 'rolled_back'
    finally:
        crashed.close()
    _, undone = ledger()
    assert undone.count('b1') == 1, f'b1 undone twice: {undone}'
    assert 'b2' in undone, f'b2 left behind: {undone}'
    assert_everything_undone_once()


def test_a_step_cut_off_twice_has_its_first_partial_work_undone_once(journal: Journal) -> None:
    """Crashed in c (c1 recorded); the resume undoes c1, re-runs c, which records c2 and
    dies too. The rollback must undo c2, b1 and a1, and not c1 a second time: the
    partial records of the attempt the resume undid must not be replayed."""
    run_id = crashed_run(journal, 'c')
    crash_db = synapse_home() / 'crash.db'
    STATE.hooks['c'] = crash_at(journal, crash_db, run_id)
    with pytest.raises(_Crash):
        resume_run(journal, run_id, runtime())
    STATE.hooks.clear()
    STATE.dead = False
    assert ledger() == (['a1', 'b1', 'c1', 'c2'], ['c1'])

    crashed = Journal(crash_db)
    try:
        assert statuses(crashed, run_id) == {'a': 'reused', 'b': 'reused', 'c': 'started'}
        rollback_run(crashed, run_id, runtime())
    finally:
        crashed.close()
    _, undone = ledger()
    assert undone.count('c1') == 1, f'c1 undone twice: {undone}'
    assert_everything_undone_once()


# ------------------------------------------------------------------ cancelled before reused steps


def test_a_resume_cancelled_before_its_reused_steps_undoes_them_once(journal: Journal) -> None:
    """Ctrl-C arrives while the resume undoes the cut-off step c: that undo finishes, then
    a and b, whose work stood, are undone too (newest first), nothing runs."""
    run_id = crashed_run(journal, 'c')
    ctx = runtime()
    ctx.cancel('SIGINT')
    with pytest.raises(RunCancelledError) as info:
        resume_run(journal, run_id, ctx)
    assert info.value.step_name == 'a'
    assert ledger() == (['a1', 'b1', 'c1'], ['c1', 'b1', 'a1'])
    run = journal.get_run(run_id)
    assert run.status == 'cancelled'
    assert run.error == 'cancelled: the run was cancelled (SIGINT)'
    records = {s.name: s for s in journal.steps(run_id)}
    assert [r.status for r in records.values()] == ['rolled_back'] * 3
    assert records['a'].rollback_data == {'ids': ['a1']}
    assert records['b'].rollback_data == {'ids': ['b1']}

    rollback_then_resume(journal, run_id)
    assert ledger() == (['a1', 'b1', 'c1', 'a2', 'b2', 'c2'], ['c1', 'b1', 'a1'])
    assert_nothing_left_open(journal, run_id)


@pytest.mark.parametrize('case', ['reused-report-fails', 'cancelled-before-reused'])
def test_a_step_announced_but_never_begun_keeps_its_attempts(journal: Journal, case: str) -> None:
    """The journal announces the next step 'started' (attempts + 1) ahead of it and takes
    that back when the step does not begin (skipped, reused, run ended). A reused step
    the run rolls back without reaching (or whose reuse the journal never heard of)
    must not keep that phantom attempt: it ran once, in the crashed run."""
    run_id = crashed_run(journal, 'c')
    assert {s.name: s.attempts for s in journal.steps(run_id)} == {'a': 1, 'b': 1, 'c': 1}
    if case == 'reused-report-fails':
        with pytest.raises(StepExecutionError):
            resume_run(journal, run_id, runtime(Fails(StepReused, 'b')))
    else:
        ctx = runtime()
        ctx.cancel('SIGINT')
        with pytest.raises(RunCancelledError):
            resume_run(journal, run_id, ctx)
    attempts = {s.name: s.attempts for s in journal.steps(run_id)}
    assert attempts == {'a': 1, 'b': 1, 'c': 1}, attempts


# ------------------------------------------------------------------ durations


def test_journaled_durations_leave_out_listener_time_and_cover_a_raising_step(
    journal: Journal,
) -> None:
    clock = FakeClock()

    class Slow(RunListener):
        """Every event it hears costs (fake) time that no step should be charged."""

        COSTS: ClassVar[dict[type[RunEvent], float]] = {
            StepStarted: 100,
            RollbackData: 10,
            StepEnded: 1000,
            StepSkipped: 50,
            Progress: 10000,
        }

        def on_event(self, event: RunEvent) -> None:
            clock.sleep(self.COSTS.get(type(event), 0))

    def works(context: BaseStepContext) -> None:
        clock.sleep(2)
        context.record_rollback(k=1)
        clock.sleep(1)

    def raises(context: BaseStepContext) -> None:
        clock.sleep(3)
        context.append_rollback('ids', 1)
        clock.sleep(4)
        raise OSError('disk full')

    registry: StepRegistry[Any] = StepRegistry()
    registry.register(FunctionStep('a', execute=works))
    registry.register(FunctionStep('s', skip=lambda context: True))
    registry.register(FunctionStep('b', execute=raises))
    registry.register(FunctionStep('never'))
    run_id = 'timed'
    journal.start_run(run_id, entrypoint='tests:timed', params={})
    context = BaseStepContext(runtime_ctx=RuntimeContext(logger=[]))
    listeners = [JournalListener(journal, run_id), Slow()]
    with pytest.raises(StepExecutionError):
        Orchestrator(registry, context, listeners=listeners, clock=clock).execute()

    records = {s.name: s for s in journal.steps(run_id)}
    assert records['a'].duration == 3.0
    assert records['s'].duration is None
    assert records['b'].duration == 7.0  # raised: it has a duration all the same
    assert records['b'].status == 'rolled_back'
    assert records['b'].error == 'OSError: disk full'
    assert records['b'].rollback_data == {'ids': [1]}
    assert records['never'].duration is None and records['never'].status == 'pending'
    assert journal.get_run(run_id).error == "Step 'b' failed: OSError: disk full"


def test_an_action_step_that_raises_has_its_duration_journaled(journal: Journal) -> None:
    def boom(context: Any) -> None:
        raise ConnectionError('backend gone')

    STATE.hooks['b'] = boom
    done = dispatched()(journal)
    assert isinstance(done.error, StepExecutionError)
    records = {s.name: s for s in journal.steps(done.run_id)}
    assert records['b'].status == 'rolled_back'
    assert records['b'].duration is not None and records['b'].duration >= 0
    assert records['b'].rollback_data == {'ids': ['b1']}
    assert ledger() == (['a1', 'b1'], ['b1', 'a1'])


# ------------------------------------------------------------------ the command line


def _module_root() -> Path:
    """What goes on PYTHONPATH for ``synapse`` to import this module by its entrypoint."""
    return Path(__file__).resolve().parents[len(__name__.split('.')) - 1]


def cli(home: Path, *args: str, **env: str) -> Any:
    # this module's root, after the caller's own path (the package under test may be there)
    path = os.pathsep.join(filter(None, [os.environ.get('PYTHONPATH'), str(_module_root())]))
    return run_cli(home, *args, PYTHONPATH=path, **env)


def shown(home: Path, run_id: str) -> dict[str, Any]:
    done = cli(home, 'runs', 'show', run_id, '--json')
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def assert_show_matches_the_journal(home: Path, journal: Journal, run_id: str) -> dict[str, Any]:
    view = shown(home, run_id)
    record = journal.get_run(run_id)
    assert {k: view[k] for k in ('status', 'error', 'progress', 'attempts')} == {
        'status': record.status,
        'error': record.error,
        'progress': record.progress,
        'attempts': record.attempts,
    }
    expected = [json.loads(json.dumps(s.to_dict(), default=str)) for s in journal.steps(run_id)]
    # each step's row as the journal holds it (show adds offsets, skip reasons, rollback outcome)
    assert [{k: step[k] for k in row} for step, row in zip(view['steps'], expected)] == expected
    assert len(view['steps']) == len(expected)
    return view


def test_cli_after_a_cancel_the_last_step_ignored(home: Path, journal: Journal) -> None:
    STATE.hooks['c'] = lambda context: context.runtime_ctx.cancel('stop now')
    run_id = dispatched()(journal).run_id
    STATE.hooks.clear()

    view = assert_show_matches_the_journal(home, journal, run_id)
    assert view['status'] == 'cancelled'
    assert view['error'] == 'cancelled: the run was cancelled (stop now)'
    assert [s['status'] for s in view['steps']] == ['rolled_back'] * 3
    assert view['steps'][2]['error'] == 'StepCancelled: the run was cancelled (stop now)'

    rolled = cli(home, 'runs', 'rollback', run_id)
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout) == {
        'run_id': run_id,
        'status': 'rolled_back',
        'rolled_back': [],
        'errors': [],
    }
    assert ledger() == (['a1', 'b1', 'c1'], ['c1', 'b1', 'a1'])

    resumed = cli(home, 'runs', 'resume', run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)['steps_executed'] == 3
    assert ledger() == (['a1', 'b1', 'c1', 'a2', 'b2', 'c2'], ['c1', 'b1', 'a1'])
    view = assert_show_matches_the_journal(home, journal, run_id)
    assert view['status'] == 'succeeded' and view['progress'] == 100
    assert [s['status'] for s in view['steps']] == ['succeeded'] * 3


def test_cli_resume_interrupted_before_its_reused_steps(home: Path, journal: Journal) -> None:
    """``synapse runs resume`` gets SIGINT while undoing the cut-off step c: c's undo
    finishes, a and b are undone, exit 130; the journal shows all three rolled back."""
    run_id = crashed_run(journal, 'c')
    resumed = cli(home, 'runs', 'resume', run_id, EDGE_SIGINT_IN_ROLLBACK_OF='c')
    assert resumed.returncode == 130, (resumed.stdout, resumed.stderr)
    assert ledger() == (['a1', 'b1', 'c1'], ['c1', 'b1', 'a1'])
    view = assert_show_matches_the_journal(home, journal, run_id)
    assert view['status'] == 'cancelled'
    assert [s['status'] for s in view['steps']] == ['rolled_back'] * 3

    rolled = cli(home, 'runs', 'rollback', run_id)
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)['rolled_back'] == []
    assert ledger() == (['a1', 'b1', 'c1'], ['c1', 'b1', 'a1'])


def test_cli_resume_whose_reused_step_report_fails(home: Path, journal: Journal) -> None:
    """``synapse runs resume`` where the progress report after reused b fails: exit 1, a and
    b undone once, and ``runs show`` says the run was rolled back and why."""
    run_id = crashed_run(journal, 'c')
    resumed = cli(home, 'runs', 'resume', run_id, EDGE_PROGRESS_FAIL_AT='66')
    assert resumed.returncode == 1, (resumed.stdout, resumed.stderr)
    assert "Step 'b' failed: OSError: progress bar gone" in resumed.stderr
    assert ledger() == (['a1', 'b1', 'c1'], ['c1', 'b1', 'a1'])
    view = assert_show_matches_the_journal(home, journal, run_id)
    assert view['status'] == 'rolled_back'
    assert 'started' not in [s['status'] for s in view['steps']]
    assert view['error'] is not None and 'progress bar gone' in view['error'], view['error']


def test_cli_resume_interrupted_in_its_final_report(home: Path, journal: Journal) -> None:
    run_id = crashed_run(journal, 'b')
    resumed = cli(home, 'runs', 'resume', run_id, EDGE_PROGRESS_INTERRUPT_AT='100')
    assert resumed.returncode == 130, (resumed.stdout, resumed.stderr)
    # b's partial work (b1) undone before b ran again; then b2, c1 and a1 undone
    made, undone = ledger()
    assert made == ['a1', 'b1', 'b2', 'c1']
    assert undone == ['b1', 'c1', 'b2', 'a1']
    view = assert_show_matches_the_journal(home, journal, run_id)
    assert view['status'] == 'cancelled'
    assert view['error'] == 'interrupted by KeyboardInterrupt'
    assert [s['status'] for s in view['steps']] == ['rolled_back'] * 3
    assert_nothing_left_open(journal, run_id)
