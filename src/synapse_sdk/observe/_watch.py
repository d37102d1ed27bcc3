"""Following a run from the journal, wherever it runs: its log lines, replayed as events.

The run's process writes its log lines into the journal (``log_lines``, about
every half second); a watcher reads the new ones every ``interval`` and hands
each to a runtime ``Logger`` as the event or call it was made from
(``RunStarted``, ``StepEnded``, ``log()``, ``progress()``, ...), so that
``synapse runs watch`` shows the run with the very console display a
foreground run has: no second renderer. What a line does not carry (a step's
data, the context) is left empty; the logger never needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from synapse_sdk.journal import Journal, LogLine, RunRecord
from synapse_sdk.plugins.steps import (
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunStarted,
    RunSummary,
    StepEnded,
    StepInfo,
    StepResult,
    StepRetrying,
    StepReused,
    StepSkipped,
    StepStarted,
)
from synapse_sdk.runtime import Logger

from ._log import epoch

__all__ = ['RunFollower']

Record = dict[str, Any]


class RunFollower:
    """Replays run ``run_id``'s journal into ``logger``: ``poll()`` once, ``follow()`` until
    the run ends (its last lines included). ``missed``: lines the journal no longer kept
    when they were due (more than ``KEEP_LOG_LINES`` between two polls)."""

    def __init__(self, journal: Journal, run_id: str, logger: Logger) -> None:
        self.journal = journal
        self.run_id = run_id
        self.logger = logger
        self.missed = 0
        self._after = 0
        self._steps: dict[str, StepInfo] = {}

    def poll(self) -> RunRecord:
        """Show the lines written since the last poll; the run's record as it was before
        they were read (so that a run seen ended has had all its lines shown)."""
        record = self.journal.get_run(self.run_id)
        page = self.journal.log_lines(self.run_id, self._after)
        if page.lines and page.lines[0].seq > self._after + 1:
            self.missed += page.lines[0].seq - self._after - 1
        self._after = page.last_seq
        for line in page.lines:
            self.show(line)
        return record

    def follow(
        self,
        interval: float = 0.3,
        sleep: Callable[[float], None] = time.sleep,
        check: Callable[[RunRecord], RunRecord] | None = None,
    ) -> RunRecord:
        """Poll every ``interval`` seconds until the run has ended; its final record.
        ``check`` sees each record first (it may end a detached run whose job ended)."""
        while True:
            record = self.poll()
            record = check(record) if check is not None else record
            if not record.active and record.status != 'submitted':  # a detached run starts
                return record
            sleep(interval)

    def show(self, line: LogLine) -> None:
        """Hand one line to the logger as what it was made from."""
        record = line.record
        kind = record.get('type')
        logger = self.logger
        if kind == 'event':
            data = record.get('data')
            level = record.get('level') if record.get('level') in _LEVELS else 'info'
            logger.log(
                str(record.get('event')),
                data if isinstance(data, dict) else {},
                record.get('file'),
                str(level),
            )
        elif kind == 'progress':
            logger.progress(
                float(record.get('current') or 0),
                float(record.get('total') or 1),
                str(record.get('category')),
            )
        elif kind == 'metrics':
            value = record.get('value')
            logger.metrics(value if isinstance(value, dict) else {}, str(record.get('category')))
        else:
            event = self.event_of(record)
            if event is not None and isinstance(event, logger.listens_to):
                logger.on_event(event)

    def event_of(self, record: Record) -> RunEvent | None:
        """The lifecycle event a line was written for; None for a line of another kind."""
        run_id, at = self.run_id, epoch(record.get('ts')) or time.time()
        kind = record.get('type')
        if kind == 'run_start':
            return RunStarted(run_id, at, tuple(self._plan(record.get('steps') or [])))
        if kind == 'run_end':
            return RunEnded(run_id, at, self._summary(record))
        step = self._step(str(record.get('step')))
        failed = StepResult(success=False, error=record.get('error'), step_name=step.name)
        match kind:
            case 'step_start':
                return StepStarted(run_id, at, step)
            case 'step_end':
                result = StepResult(
                    success=bool(record.get('success')),
                    error=record.get('error'),
                    step_name=step.name,
                    duration_seconds=record.get('duration_seconds'),
                )
                return StepEnded(run_id, at, step, result, {}, '')
            case 'step_retry':
                attempt, delay = int(record.get('attempt') or 1), record.get('delay') or 0.0
                return StepRetrying(run_id, at, step, attempt, failed, float(delay))
            case 'step_skip':
                skipped = StepResult(skipped=True, step_name=step.name)
                return StepSkipped(run_id, at, step, skipped, record.get('reason'))
            case 'step_reuse':
                return StepReused(run_id, at, step, StepResult(step_name=step.name))
            case 'rollback_start':
                return RollbackStarted(run_id, at, step, StepResult(step_name=step.name))
            case 'rollback':
                error = record.get('error')
                return RollbackEnded(run_id, at, step, RuntimeError(error) if error else None)
        return None

    def _plan(self, plan: list[Record]) -> list[StepInfo]:
        steps = [
            StepInfo(
                int(s.get('index', i)),
                str(s.get('step')),
                float(s.get('weight') or 0.0),
                bool(s.get('can_rollback', True)),
            )
            for i, s in enumerate(plan)
        ]
        self._steps = {s.name: s for s in steps}
        return steps

    def _step(self, name: str) -> StepInfo:
        """The step as the run planned it: from its ``run_start`` line, else the journal."""
        if name not in self._steps:
            for s in self.journal.steps(self.run_id):
                self._steps.setdefault(s.name, StepInfo(s.index, s.name, s.weight))
        return self._steps.get(name) or StepInfo(-1, name, 0.0)

    def _summary(self, record: Record) -> RunSummary:
        """How the run ended, counted from the journal's steps (the line does not count)."""
        statuses = [s.status for s in self.journal.steps(self.run_id)]
        error = record.get('error')
        return RunSummary(
            success=bool(record.get('success')),
            steps_executed=sum(s in ('succeeded', 'failed', 'rolled_back') for s in statuses),
            steps_skipped=statuses.count('skipped'),
            steps_reused=statuses.count('reused'),
            steps_total=len(statuses),
            failed_step=record.get('failed_step'),
            error=RuntimeError(error) if error else None,
            rollback_errors=tuple(record.get('rollback_errors') or ()),
            cancelled=bool(record.get('cancelled')),
        )


_LEVELS = ('debug', 'info', 'warning', 'error')
