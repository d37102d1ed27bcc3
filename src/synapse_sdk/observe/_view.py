"""Everything known about one run, read once: the journal's rows and the run's log."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synapse_sdk.journal import Journal, RunRecord, StepRecord

from ._log import LogLine, epoch, journal_log, log_path, read_log
from ._timeline import Span, spans_of

OVERALL = 'overall'  # the runtime's category for the run's own progress

SKIP_REASONS = {
    'skipped': 'its can_skip() said yes',
    'reused': 'its result from an earlier attempt of the run was reused (resume)',
}


@dataclass(frozen=True)
class Attempt:
    """One go at the run in its log: the first run, a resume (``synapse runs resume``), or
    a recovery rollback (``synapse runs rollback``; ``kind='rollback'``)."""

    number: int
    started_at: str | None
    ended_at: str | None
    outcome: str  # succeeded, failed, cancelled, running, or died (no end in the log)
    steps_run: tuple[str, ...] = ()
    steps_reused: tuple[str, ...] = ()
    error: str | None = None
    kind: str = 'run'  # or 'rollback': synapse runs rollback undoing what the run left

    @property
    def summary(self) -> str:
        """``2: succeeded (reused prepare)``, ``3: rolled_back (runs rollback)``: one line."""
        notes = [f'reused {", ".join(self.steps_reused)}'] if self.steps_reused else []
        if self.kind == 'rollback':
            notes.append('runs rollback')
        return f'{self.number}: {self.outcome}' + (f' ({"; ".join(notes)})' if notes else '')


@dataclass
class RunView:
    """A run as ``synapse runs show/timeline/report`` tell it (see ``load_run``)."""

    record: RunRecord
    steps: list[StepRecord]
    rollback_data: dict[int, dict[str, Any]]  # step index -> what recovery will use
    log_path: Path
    log: list[LogLine]
    spans: list[Span]
    origin: float  # the run's start, epoch seconds
    attempts: list[Attempt] = field(default_factory=list)
    log_from_journal: bool = False  # the file is not here: the journal's last lines instead

    @property
    def duration(self) -> float | None:
        """Seconds from start to end; None while it runs."""
        end = epoch(self.record.ended_at)
        return None if end is None else max(0.0, end - self.origin)

    @property
    def extent(self) -> float:
        """Seconds the timeline spans: to the run's end, its last span, or now."""
        ends = [s.end if s.end is not None else s.start for s in self.spans]
        if self.duration is not None:
            ends.append(self.duration)
        if any(s.end is None for s in self.spans):
            ends.append(time.time() - self.origin)
        return max([0.0, *ends])

    def offset(self, stamp: str | None) -> float | None:
        moment = epoch(stamp)
        return None if moment is None else moment - self.origin

    def progress_curve(self) -> list[tuple[float, float]]:
        """(seconds since start, overall percent) as the log recorded it."""
        points = [(0.0, 0.0)]
        for line in self.log:
            if line.get('type') == 'progress' and line.get('category') == OVERALL:
                at = self.offset(line.get('ts'))
                if at is not None:
                    points.append((at, float(line.get('percent') or 0)))
        if self.record.status == 'succeeded' and points[-1][1] < 100:
            points.append((self.duration or points[-1][0], 100.0))
        return points

    def metrics(self) -> dict[str, list[tuple[float, dict[str, Any]]]]:
        """category -> [(seconds since start, the values set then)], in order."""
        series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        for line in self.log:
            if line.get('type') == 'metrics' and isinstance(line.get('value'), dict):
                at = self.offset(line.get('ts')) or 0.0
                series.setdefault(str(line.get('category')), []).append((at, line['value']))
        return series

    def last_metrics(self) -> dict[str, dict[str, Any]]:
        """category -> every key's latest value."""
        latest: dict[str, dict[str, Any]] = {}
        for category, points in self.metrics().items():
            for _, values in points:
                latest.setdefault(category, {}).update(values)
        return latest

    def step_dict(self, step: StepRecord) -> dict[str, Any]:
        """A step as ``--json`` shows it: the row, rollback data as recovery will use it,
        its start offset, why it did not run, and how its rollback went."""
        return {
            **step.to_dict(),
            'rollback_data': self.rollback_data.get(step.index) or step.rollback_data,
            'start_offset': self.offset(step.started_at),
            'skip_reason': SKIP_REASONS.get(step.status),
            'rollback': rollback_outcome(step),
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole record as JSON values (``synapse runs show --json``)."""
        return {
            **self.record.to_dict(),
            'duration': self.duration,
            'log_path': str(self.log_path),
            'steps': [self.step_dict(s) for s in self.steps],
            'metrics': self.last_metrics(),
            'attempt_history': [asdict(a) for a in self.attempts],
            'timeline': [{**asdict(s), 'duration': s.duration} for s in self.spans],
        }


def rollback_outcome(step: StepRecord) -> str | None:
    """``rolled back``, ``rollback failed: why``, or None when the step was not rolled back."""
    if step.status == 'rolled_back':
        return 'rolled back'
    if step.status == 'rollback_failed':
        return f'rollback failed: {step.error}' if step.error else 'rollback failed'
    return None


def load_run(journal: Journal, run_id: str, log: Path | None = None) -> RunView:
    """Read run ``run_id`` from ``journal`` and its log (default: where the default runtime
    writes it); raises ``UnknownRunError`` for a run the journal does not have."""
    record = journal.get_run(run_id)
    steps = journal.steps(run_id)
    path = log if log is not None else log_path(run_id)
    lines = read_log(path)
    from_journal = log is None and not path.exists()
    if from_journal:  # the run's log file is on another machine
        lines = journal_log(journal, run_id)
    origin = epoch(record.started_at) or time.time()
    ended = None
    if not record.active:  # open spans were cut off: at the run's last sign of life
        seen = [t for t in (epoch(x.get('ts')) for x in lines) if t is not None]
        ended = max(seen) if seen else epoch(record.ended_at)
    return RunView(
        record=record,
        steps=steps,
        rollback_data={s.index: journal.rollback_data_of(run_id, s) for s in steps},
        log_path=path,
        log=lines,
        spans=spans_of(lines, steps, origin, ended),
        origin=origin,
        attempts=attempts_of(lines, record),
        log_from_journal=from_journal,
    )


def attempts_of(lines: list[LogLine], record: RunRecord) -> list[Attempt]:
    """The run's attempts as its log tells them: each run (the first, a resume) starts with
    a ``run_start`` line; a recovery rollback (``synapse runs rollback``) is an attempt of
    kind ``rollback``: rollback lines after the run ended, or while a step it started
    never ended (its process died), that no ``run_start`` follows (a resume undoes the
    partial work first: that is part of the resume)."""
    history = _History(record)
    for line in lines:
        history.line(line)
    return history.finish()


class _History:
    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.attempts: list[Attempt] = []
        self.current: dict[str, Any] | None = None
        self.open: set[str] = set()  # steps started and not ended, in the current attempt

    def begin(self, line: LogLine, kind: str) -> None:
        if self.current is not None:
            self.attempts.append(_attempt(self.current, self.record, last=False))
        number = len(self.attempts) + 1
        self.current = {
            'n': number,
            'kind': kind,
            'start': line.get('ts'),
            'run': [],
            'reused': [],
            'failed': [],
        }
        self.open.clear()

    def line(self, line: LogLine) -> None:
        kind, step = line.get('type'), str(line.get('step'))
        if kind == 'run_start':
            if self.current is not None and self.current['kind'] == 'rollback':
                self.current['kind'] = 'run'  # a resume: it undid the partial work first
                self.open.clear()
            else:
                self.begin(line, 'run')
        elif self.current is None:
            return
        elif (
            kind == 'rollback_start'
            and self.current['kind'] == 'run'
            and ('end' in self.current or self.open)
        ):
            self.begin(line, 'rollback')
        current = self.current
        if current is None:  # not reached: begin() sets it
            return
        if kind == 'step_start':
            current['run'].append(step)
            self.open.add(step)
        elif kind == 'step_end':
            self.open.discard(step)
        elif kind == 'step_reuse':
            current['reused'].append(step)
        elif kind == 'rollback' and line.get('error'):
            current['failed'].append(f'{step}: {line.get("error")}')
        elif kind == 'run_end':
            current['end'] = line
        current['last'] = line.get('ts')

    def finish(self) -> list[Attempt]:
        if self.current is not None:
            self.attempts.append(_attempt(self.current, self.record, last=True))
        return self.attempts


def _attempt(state: dict[str, Any], record: RunRecord, *, last: bool) -> Attempt:
    end: LogLine | None = state.get('end')
    if state['kind'] == 'rollback':
        failed = state['failed']
        outcome = 'rollback_failed' if failed else 'rolled_back'
        ended, error = state.get('last'), '; '.join(failed) or None
    elif end is not None:
        outcome = 'succeeded' if end.get('success') else 'failed'
        outcome = 'cancelled' if end.get('cancelled') else outcome
        ended, error = end.get('ts'), end.get('error')
    elif last and record.active:
        outcome, ended, error = 'running', None, None
    else:
        outcome, ended, error = 'died', state.get('last'), 'no end in the log: its process died'
    return Attempt(
        state['n'],
        state['start'],
        ended,
        outcome,
        tuple(state['run']),
        tuple(state['reused']),
        error,
        state['kind'],
    )
