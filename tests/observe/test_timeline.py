"""The timeline and the attempt history, built from log lines and journal rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from synapse_sdk.journal import RunRecord, StepRecord
from synapse_sdk.observe import Span, at_least, level_of, read_log, spans_of
from synapse_sdk.observe._view import attempts_of

T0 = 1_800_000_000.0


def line(at: float, kind: str, **fields: Any) -> dict[str, Any]:
    return {'ts': datetime.fromtimestamp(T0 + at, UTC).isoformat(), 'type': kind, **fields}


def shape(spans: list[Span]) -> list[tuple[Any, ...]]:
    return [
        (s.step, s.kind, round(s.start, 3), None if s.end is None else round(s.end, 3), s.status)
        for s in spans
    ]


def record(status: str, ended_at: str | None = 'x') -> RunRecord:
    return RunRecord(
        id='r', entrypoint='m:A', action='a', plugin_path=None, params={}, status=status,
        started_at=datetime.fromtimestamp(T0, UTC).isoformat(), ended_at=ended_at, progress=0,
        error=None, host='h', pid=1, attempts=1,
    )  # fmt: skip


RETRY_AND_ROLLBACK = [
    line(0.0, 'run_start', steps=[]),
    line(0.1, 'step_start', step='prepare'),
    line(0.2, 'step_end', step='prepare', success=True),
    line(0.2, 'step_start', step='store'),
    line(0.5, 'step_retry', step='store', attempt=1, error='ConnectionError: gone', delay=0.25),
    line(1.0, 'step_end', step='store', success=True),
    line(1.0, 'step_start', step='finalize'),
    line(1.1, 'step_end', step='finalize', success=False, error='RuntimeError: no'),
    line(1.1, 'rollback_start', step='finalize'),
    line(1.1, 'rollback', step='finalize', error=None),
    line(1.2, 'rollback_start', step='store'),
    line(1.5, 'rollback', step='store', error='cannot undo'),
    line(1.6, 'run_end', success=False),
]


def test_retries_waits_and_rollbacks_are_bars_of_their_own() -> None:
    spans = spans_of(RETRY_AND_ROLLBACK, [], T0)
    assert shape(spans) == [
        ('prepare', 'step', 0.1, 0.2, 'succeeded'),
        ('store', 'attempt', 0.2, 0.5, 'failed'),
        ('store', 'wait', 0.5, 0.75, 'waiting'),
        ('store', 'attempt', 0.75, 1.0, 'succeeded'),
        ('finalize', 'step', 1.0, 1.1, 'failed'),
        ('finalize', 'rollback', 1.1, 1.1, 'rolled_back'),
        ('store', 'rollback', 1.2, 1.5, 'rollback_failed'),
    ]
    assert [s.attempt for s in spans if s.step == 'store' and s.kind == 'attempt'] == [1, 2]
    assert spans[1].note == 'ConnectionError: gone' and spans[-1].note == 'cannot undo'


CRASHED_THEN_RESUMED = [
    line(0.0, 'run_start', steps=[]),
    line(0.0, 'step_start', step='prepare'),
    line(1.0, 'step_end', step='prepare', success=True),
    line(1.0, 'step_start', step='store'),
    line(1.5, 'progress', category='overall', percent=40),  # its last sign of life
    line(10.0, 'run_start', steps=[]),  # the resume
    line(10.0, 'step_reuse', step='prepare'),
    line(10.0, 'step_start', step='store'),
    line(11.0, 'step_end', step='store', success=True),
    line(11.0, 'run_end', success=True),
]


def test_a_crashed_attempt_is_cut_off_where_it_was_last_heard_of() -> None:
    spans = spans_of(CRASHED_THEN_RESUMED, [], T0)
    assert shape(spans) == [
        ('prepare', 'step', 0.0, 1.0, 'succeeded'),
        ('store', 'step', 1.0, 1.5, 'interrupted'),
        ('prepare', 'reused', 10.0, 10.0, 'reused'),
        ('store', 'step', 10.0, 11.0, 'succeeded'),
    ]
    assert [s.run_attempt for s in spans] == [1, 1, 2, 2]


def test_the_attempt_history_says_which_attempt_died_and_what_was_reused() -> None:
    attempts = attempts_of(CRASHED_THEN_RESUMED, record('succeeded'))
    assert [(a.number, a.outcome, a.steps_run, a.steps_reused) for a in attempts] == [
        (1, 'died', ('prepare', 'store'), ()),
        (2, 'succeeded', ('store',), ('prepare',)),
    ]
    assert attempts[0].ended_at == CRASHED_THEN_RESUMED[4]['ts']


def test_an_open_step_is_running_while_the_run_is_and_interrupted_after() -> None:
    log = CRASHED_THEN_RESUMED[:5]
    assert shape(spans_of(log, [], T0))[-1] == ('store', 'step', 1.0, None, 'running')
    ended = shape(spans_of(log, [], T0, ended=T0 + 1.5))
    assert ended[-1] == ('store', 'step', 1.0, 1.5, 'interrupted')
    assert [a.outcome for a in attempts_of(log, record('running', None))] == ['running']


def test_without_a_log_the_journal_rows_give_the_steps() -> None:
    def row(index: int, name: str, start: float | None, end: float | None, status: str) -> Any:
        def iso(t: float | None) -> str | None:
            return None if t is None else datetime.fromtimestamp(T0 + t, UTC).isoformat()

        return StepRecord(index, name, 1.0, status, iso(start), iso(end), None, None, None,
                          None, 1, False)  # fmt: skip

    steps = [row(0, 'a', 0.0, 2.0, 'succeeded'), row(1, 'b', None, None, 'skipped'),
             row(2, 'c', 2.0, None, 'started')]  # fmt: skip
    assert shape(spans_of([], steps, T0)) == [
        ('a', 'step', 0.0, 2.0, 'succeeded'),
        ('c', 'step', 2.0, None, 'running'),
    ]


def test_a_line_cut_off_by_a_crash_is_kept_and_levels_filter(tmp_path: Any) -> None:
    path = tmp_path / 'r.jsonl'
    path.write_text(
        '{"type": "event", "event": "hello", "level": "debug", "data": {}}\n'
        '{"type": "step_end", "step": "a", "success": false, "error": "x"}\n'
        '{"type": "step_start", "st',
        encoding='utf-8',
    )
    lines = read_log(path)
    assert [level_of(x) for x in lines] == ['debug', 'error', 'warning']
    assert lines[-1] == {'type': 'unreadable', 'text': '{"type": "step_start", "st'}
    assert [x['type'] for x in lines if at_least('warning')(x)] == ['step_end', 'unreadable']
    assert read_log(tmp_path / 'none.jsonl') == []
    with pytest.raises(ValueError, match='one of debug, info, warning, error'):
        at_least('loud')


CRASHED_THEN_ROLLED_BACK = [
    *CRASHED_THEN_RESUMED[:5],
    line(5.0, 'rollback_start', step='store'),  # synapse runs rollback, later
    line(5.5, 'rollback', step='store', error=None),
    line(5.5, 'rollback_start', step='prepare'),
    line(5.6, 'rollback', step='prepare', error='cannot undo'),
]


def test_a_recovery_rollback_is_an_attempt_of_its_own() -> None:
    spans = spans_of(CRASHED_THEN_ROLLED_BACK, [], T0, ended=T0 + 5.6)
    assert shape(spans) == [
        ('prepare', 'step', 0.0, 1.0, 'succeeded'),
        ('store', 'step', 1.0, 1.5, 'interrupted'),  # not stretched to the rollback
        ('store', 'rollback', 5.0, 5.5, 'rolled_back'),
        ('prepare', 'rollback', 5.5, 5.6, 'rollback_failed'),
    ]
    attempts = attempts_of(CRASHED_THEN_ROLLED_BACK, record('rollback_failed'))
    assert [(a.kind, a.outcome, a.ended_at) for a in attempts] == [
        ('run', 'died', CRASHED_THEN_ROLLED_BACK[4]['ts']),
        ('rollback', 'rollback_failed', CRASHED_THEN_ROLLED_BACK[-1]['ts']),
    ]
    assert attempts[1].summary == '2: rollback_failed (runs rollback)'
    assert attempts[1].error == 'prepare: cannot undo'


def test_a_resume_that_first_undoes_partial_work_is_one_attempt() -> None:
    undo = [line(9.0, 'rollback_start', step='store'), line(9.5, 'rollback', step='store')]
    log = [*CRASHED_THEN_RESUMED[:5], *undo, *CRASHED_THEN_RESUMED[5:]]
    attempts = attempts_of(log, record('succeeded'))
    assert [(a.kind, a.outcome, a.started_at) for a in attempts] == [
        ('run', 'died', log[0]['ts']),
        ('run', 'succeeded', undo[0]['ts']),
    ]
    assert attempts[1].summary == '2: succeeded (reused prepare)'
