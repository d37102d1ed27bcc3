"""A run as spans on a time axis: built once from its log and journal rows, drawn twice
(the terminal's Gantt chart and the HTML report's SVG)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from synapse_sdk.journal import StepRecord

from ._log import LogLine, epoch

SPAN_KINDS = ('step', 'attempt', 'wait', 'rollback', 'skipped', 'reused')


@dataclass(frozen=True)
class Span:
    """One bar: a step's run (``step``; ``attempt`` when it was tried more than once),
    the wait before a retry, a rollback, or a mark for a skipped or reused step.

    ``start`` and ``end`` are seconds since the run started; ``end`` is None for a
    span that never ended (still running, or its process died).
    """

    step: str
    kind: str
    start: float
    end: float | None
    status: str
    attempt: int = 1
    run_attempt: int = 1
    note: str = ''

    @property
    def duration(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)


@dataclass
class _Open:
    start: float
    attempt: int


class _Builder:
    """Walks the log's lifecycle lines in order, opening and closing spans."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.spans: list[Span] = []
        self.steps: dict[str, _Open] = {}
        self.rollbacks: dict[str, float] = {}
        self.run_attempt = 0
        self.last_seen: float | None = None  # the latest line of any kind: a sign of life

    def add(
        self,
        step: str,
        kind: str,
        start: float,
        end: float | None,
        status: str,
        attempt: int = 1,
        note: str = '',
    ) -> None:
        self.spans.append(Span(step, kind, start, end, status, attempt, self.run_attempt, note))

    def line(self, line: LogLine, at: float) -> None:
        step = str(line.get('step'))
        match line.get('type'):
            case 'run_start':
                # the attempt before ended without a word (its process died): cut off where
                # it was last heard of
                self.close_all(self.last_seen if self.last_seen is not None else at)
                self.run_attempt += 1
            case 'step_start':
                self.steps[step] = _Open(at, 1)
            case 'step_retry':
                self.retry(step, line, at)
            case 'step_end':
                self.step_end(step, line, at)
            case 'step_skip' | 'step_reuse':
                kind = 'skipped' if line['type'] == 'step_skip' else 'reused'
                self.add(step, kind, at, at, kind)
            case 'rollback_start':
                if self.steps:  # a step never ended: its process died; this is a recovery
                    self.close_all(self.last_seen if self.last_seen is not None else at)
                self.rollbacks[step] = at
            case 'rollback':
                error = line.get('error')
                status = 'rollback_failed' if error else 'rolled_back'
                start = self.rollbacks.pop(step, at)
                self.add(step, 'rollback', start, at, status, note=str(error or ''))
            case 'run_end':
                self.close_all(at)

    def retry(self, step: str, line: LogLine, at: float) -> None:
        began = self.steps.get(step, _Open(at, int(line.get('attempt') or 1)))
        attempt = int(line.get('attempt') or began.attempt)
        self.add(step, 'attempt', began.start, at, 'failed', attempt, str(line.get('error')))
        delay = float(line.get('delay') or 0.0)
        if delay > 0:
            self.add(step, 'wait', at, at + delay, 'waiting', attempt)
        self.steps[step] = _Open(at + delay, attempt + 1)

    def step_end(self, step: str, line: LogLine, at: float) -> None:
        began = self.steps.pop(step, None)
        start = began.start if began else at - float(line.get('duration_seconds') or 0.0)
        attempt = began.attempt if began else 1
        status = 'succeeded' if line.get('success') else 'failed'
        kind = 'attempt' if attempt > 1 else 'step'
        self.add(step, kind, start, at, status, attempt, str(line.get('error') or ''))

    def close_all(self, at: float | None, status: str = 'interrupted') -> None:
        """Steps and rollbacks still open: cut off at ``at`` (None: open still)."""
        for step, began in self.steps.items():
            kind = 'attempt' if began.attempt > 1 else 'step'
            self.add(step, kind, began.start, at, status, began.attempt)
        for step, start in self.rollbacks.items():
            self.add(step, 'rollback', start, at, status)
        self.steps.clear()
        self.rollbacks.clear()


def spans_of(
    log: Sequence[LogLine],
    steps: Sequence[StepRecord],
    origin: float,
    ended: float | None = None,
) -> list[Span]:
    """The run's spans, from its log when it has one, else from the journal's step rows.

    Times are seconds since ``origin`` (the run's start, epoch seconds). A span still
    open at the log's end is ``running`` with ``end=None``, or, when the run has
    ``ended`` (epoch seconds; its process died), ``interrupted`` there.
    """
    if not any(line.get('type') in _STEP_LINES for line in log):
        return _spans_of_rows(steps, origin)
    builder = _Builder(origin)
    builder.run_attempt = 0 if any(x.get('type') == 'run_start' for x in log) else 1
    for line in log:
        at = epoch(line.get('ts'))
        if at is None:
            continue
        if line.get('type') in _LIFECYCLE:
            builder.line(line, at - origin)
        builder.last_seen = at - origin
    if ended is None:
        builder.close_all(None, 'running')
    else:
        builder.close_all(ended - origin)
    return builder.spans


_STEP_LINES = ('step_start', 'step_skip', 'step_reuse')
_LIFECYCLE = (
    'run_start',
    *_STEP_LINES,
    'step_retry',
    'step_end',
    'rollback_start',
    'rollback',
    'run_end',
)


def _spans_of_rows(steps: Sequence[StepRecord], origin: float) -> list[Span]:
    """Without a log: one span per step the journal has times for."""
    spans = []
    for step in steps:
        start = epoch(step.started_at)
        if start is None:
            continue
        end = epoch(step.ended_at)
        status = step.status if end is not None or step.status != 'started' else 'running'
        stop = None if end is None else end - origin
        attempts = max(step.attempts, 1)
        spans.append(
            Span(step.name, 'step', start - origin, stop, status, attempts, 1, step.error or '')
        )
    return spans
