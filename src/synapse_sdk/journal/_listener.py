"""Writes a run's lifecycle into the journal, ahead of the work it describes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from time import monotonic
from typing import Any

from synapse_sdk.plugins.steps import (
    LIFECYCLE_EVENTS,
    Progress,
    RollbackData,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunListener,
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
from synapse_sdk.plugins.steps.support import describe_exception

from ._codec import snapshot_of, to_json
from ._store import Journal, now


class JournalListener(RunListener):
    """One run's recorder.

    - a step is committed as ``started`` before it executes: in the same
      transaction that records the previous step's end (or the run's start),
      so each step costs one commit;
    - rollback data recorded mid-step is committed as it is recorded, so a
      process killed in the middle of a loop still knows what it did;
    - a step's result, its rollback data and a snapshot of the context are
      committed before the next step starts;
    - the run's overall progress is written at most every half second.
    """

    PROGRESS_INTERVAL = 0.5
    listens_to = (*LIFECYCLE_EVENTS, RollbackData, Progress)  # not StepProgress

    def __init__(self, journal: Journal, run_id: str) -> None:
        self.journal = journal
        self.run_id = run_id
        self._recorded: set[int] = set()  # steps with rows in rollback_items
        self._steps = 0
        self._premarked: int | None = None  # the step already committed as started
        self._progress_at = 0.0
        self._progress: int | None = None  # not yet written

    def on_event(self, event: RunEvent) -> None:
        match event:
            case StepStarted(step=step):
                self._step_started(step)
            case RollbackData(step=step, values=values, append_to=append_to):
                self._rollback_data(step, values, append_to)
            case Progress(current=current, total=total):
                self._progress_moved(current, total)
            case StepEnded():
                self._step_ended(event)
            case StepSkipped(step=step):
                self._conclude(step, None, 'skipped')
            case StepReused(step=step):
                self._conclude(step, None, 'reused')
            case StepRetrying(step=step, attempt=attempt, result=result):
                self._step_retrying(step, attempt, result)
            case RollbackStarted(step=step):
                if step.index == self._premarked:  # announced, never begun: take it back
                    self._unannounce()
            case RollbackEnded(step=step, error=error):
                self._rolled_back(step, error)
            case RunStarted(steps=steps):
                self._run_started(steps)
            case RunEnded(summary=summary):
                self._run_ended(summary)

    def _run_started(self, steps: Sequence[StepInfo]) -> None:
        self._steps = len(steps)
        with self.journal.transaction() as db:
            db.executemany(
                'INSERT INTO steps (run_id, idx, name, weight, status) VALUES (?, ?, ?, ?, ?)'
                ' ON CONFLICT (run_id, idx) DO UPDATE SET name = excluded.name,'
                ' weight = excluded.weight',
                [(self.run_id, s.index, s.name, s.weight, 'pending') for s in steps],
            )
            if steps:
                db.execute(_START_STEP, (now(), self.run_id, 0))
                self._premarked = 0

    def _step_started(self, step: StepInfo) -> None:
        if self._premarked != step.index:  # not announced ahead: write it now
            self.journal.db.execute(_START_STEP, (now(), self.run_id, step.index))
        self._premarked = None

    def _rollback_data(
        self, step: StepInfo, values: Mapping[str, Any], append_to: str | None
    ) -> None:
        rows = [
            (
                self.run_id,
                step.index,
                key,
                to_json(value, f'rollback data {key!r}'),
                key == append_to,
            )
            for key, value in values.items()
        ]
        self.journal.db.executemany(
            'INSERT INTO rollback_items (run_id, idx, key, value, append) VALUES (?, ?, ?, ?, ?)',
            rows,
        )
        self._recorded.add(step.index)

    def _step_retrying(self, step: StepInfo, attempt: int, result: StepResult) -> None:
        # The failed attempt's partial work is rolled back before the next one, so its
        # recorded rollback data is cleared with it; the next attempt records its own.
        with self.journal.transaction() as db:
            db.execute(
                'UPDATE steps SET attempts = attempts + 1, error = ? WHERE run_id = ? AND idx = ?',
                (f'attempt {attempt}: {result.error}', self.run_id, step.index),
            )
            db.execute(
                'DELETE FROM rollback_items WHERE run_id = ? AND idx = ?',
                (self.run_id, step.index),
            )

    def _progress_moved(self, current: int, total: int) -> None:
        self._progress = current * 100 // total
        moment = monotonic()
        if moment - self._progress_at >= self.PROGRESS_INTERVAL:
            self._write_progress()
            self._progress_at = moment

    def _write_progress(self) -> None:
        if self._progress is not None:
            self.journal.db.execute(
                'UPDATE runs SET progress = ? WHERE id = ?', (self._progress, self.run_id)
            )
            self._progress = None

    def _step_ended(self, event: StepEnded) -> None:
        step, result = event.step, event.result
        where = f"step '{step.name}'"
        data = to_json(result.data, f'{where} result.data')
        rollback_data = to_json(result.rollback_data, f'{where} result.rollback_data')
        state = snapshot_of(event.context_state, event.context_type) if result.success else None
        row = (
            'succeeded' if result.success else 'failed',
            now(),
            result.duration_seconds,
            data,
            rollback_data,
            result.error,
            state,
            self.run_id,
            step.index,
        )
        if result.success and step.index not in self._recorded:
            # one statement, its own transaction: this step's end, the next one's start
            self._conclude(step, row)
            return
        with self.journal.transaction() as db:
            if result.success:
                self._conclude(step, row)
            else:
                db.execute(_END_STEP, row)
            if step.index in self._recorded:  # now part of the final rollback_data
                db.execute(
                    'DELETE FROM rollback_items WHERE run_id = ? AND idx = ?',
                    (self.run_id, step.index),
                )
                self._recorded.discard(step.index)
            if not result.success:
                db.execute(
                    "UPDATE runs SET status = 'failed', error = ? WHERE id = ?",
                    (f"Step '{step.name}' failed: {result.error}", self.run_id),
                )

    def _conclude(
        self, step: StepInfo, row: tuple[Any, ...] | None, status: str = 'succeeded'
    ) -> None:
        """End ``step`` and announce the next one as started, in one statement."""
        following = step.index + 1 if step.index + 1 < self._steps else -1
        moment = now()
        if row is None:  # skipped or reused: nothing new to record but the status
            values: dict[str, Any] = {
                'status': status,
                'ended': moment,
                'duration': None,
                'data': None,
                'rollback_data': None,
                'error': None,
                'snapshot': None,
                'undo_start': 1,  # it was announced as started: take that back
            }
        else:
            status, ended, duration, data, rollback_data, error, state, _, _ = row
            values = {
                'status': status,
                'ended': ended,
                'duration': duration,
                'data': data,
                'rollback_data': rollback_data,
                'error': error,
                'snapshot': state,
                'undo_start': 0,
            }
        values.update(run=self.run_id, index=step.index, next=following, now=moment)
        self.journal.db.execute(_CONCLUDE_STEP, values)
        self._premarked = following if following >= 0 else None

    def _rolled_back(self, step: StepInfo, error: BaseException | None) -> None:
        if error is None:
            self._mark(step, 'rolled_back')
        else:
            self._mark(step, 'rollback_failed', f'{type(error).__name__}: {error}')

    def _run_ended(self, summary: RunSummary) -> None:
        self._write_progress()
        if self._premarked is not None:  # announced, but the run ended before it began
            self._unannounce()
        if summary.success:
            status = 'succeeded'
        elif summary.interrupted or summary.cancelled:
            status = 'cancelled'
        elif summary.rollback_errors:
            status = 'rollback_failed'
        else:
            status = 'rolled_back'
        error = None
        if summary.error is not None and (summary.interrupted or summary.cancelled):
            error = (
                f'cancelled: {summary.error}'
                if summary.cancelled
                else (f'interrupted by {type(summary.error).__name__}')
            )
        elif not summary.success and summary.failed_step is not None:
            # a failure no step end recorded (a report about a skipped or reused step)
            cause = describe_exception(summary.error) if summary.error is not None else 'failed'
            self.journal.db.execute(
                'UPDATE runs SET error = COALESCE(error, ?) WHERE id = ?',
                (f"Step '{summary.failed_step}' failed: {cause}", self.run_id),
            )
        self.journal.set_run_status(self.run_id, status, error)
        if summary.success:
            self.journal.db.execute('UPDATE runs SET progress = 100 WHERE id = ?', (self.run_id,))

    def _unannounce(self) -> None:
        """The step committed as started ahead of time never began: it is pending again."""
        self.journal.db.execute(
            "UPDATE steps SET status = 'pending', started_at = NULL,"
            " attempts = attempts - 1 WHERE run_id = ? AND idx = ? AND status = 'started'",
            (self.run_id, self._premarked),
        )
        self._premarked = None

    def _mark(self, step: StepInfo, status: str, error: str | None = None) -> None:
        self.journal.set_step_status(self.run_id, step.index, status, error)


_START_STEP = (
    "UPDATE steps SET status = 'started', started_at = ?, ended_at = NULL, error = NULL,"
    ' attempts = attempts + 1 WHERE run_id = ? AND idx = ?'
)
# Ends step :index (keeping what a skipped or reused step already holds) and marks
# step :next started, in one statement and so one commit.
_CONCLUDE_STEP = """
UPDATE steps SET
    status = CASE idx WHEN :index THEN :status ELSE 'started' END,
    started_at = CASE idx WHEN :index THEN
        CASE :undo_start WHEN 1 THEN NULL ELSE started_at END ELSE :now END,
    ended_at = CASE idx WHEN :index THEN
        CASE :undo_start WHEN 1 THEN NULL ELSE :ended END ELSE NULL END,
    duration = CASE idx WHEN :index THEN COALESCE(:duration, duration) ELSE duration END,
    data = CASE idx WHEN :index THEN COALESCE(:data, data) ELSE data END,
    rollback_data = CASE idx WHEN :index THEN COALESCE(:rollback_data, rollback_data)
        ELSE rollback_data END,
    error = CASE idx WHEN :index THEN :error ELSE NULL END,
    snapshot = CASE idx WHEN :index THEN COALESCE(:snapshot, snapshot) ELSE snapshot END,
    attempts = CASE idx WHEN :index THEN attempts - :undo_start ELSE attempts + 1 END
WHERE run_id = :run AND idx IN (:index, :next)
"""
_END_STEP = (
    'UPDATE steps SET status = ?, ended_at = ?, duration = ?, data = ?,'
    ' rollback_data = ?, error = ?, snapshot = ? WHERE run_id = ? AND idx = ?'
)
