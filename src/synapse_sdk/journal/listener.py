"""Writes a run's lifecycle into the journal, ahead of the work it describes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synapse_sdk.plugins.steps import BaseStepContext, RunListener, RunSummary, StepInfo, StepResult

from .codec import snapshot, to_json
from .store import Journal, now


class JournalListener(RunListener):
    """One run's recorder.

    - ``on_step_start`` commits the step as ``started`` before it executes;
    - rollback data recorded mid-step is committed as it is recorded, so a
      process killed in the middle of a loop still knows what it did;
    - ``on_step_end`` commits the result, its rollback data and a snapshot
      of the context before the next step starts.
    """

    def __init__(self, journal: Journal, run_id: str) -> None:
        self.journal = journal
        self.run_id = run_id
        self._recorded: set[int] = set()  # steps with rows in rollback_items
        self._progress_at = 0.0

    def on_run_start(self, context: BaseStepContext, steps: Sequence[StepInfo]) -> None:
        with self.journal.transaction() as db:
            db.executemany(
                'INSERT INTO steps (run_id, idx, name, weight, status) VALUES (?, ?, ?, ?, ?)'
                ' ON CONFLICT (run_id, idx) DO UPDATE SET name = excluded.name,'
                ' weight = excluded.weight',
                [(self.run_id, s.index, s.name, s.weight, 'pending') for s in steps],
            )

    def on_step_start(self, context: BaseStepContext, step: StepInfo) -> None:
        self.journal.db.execute(
            "UPDATE steps SET status = 'started', started_at = ?, ended_at = NULL, error = NULL,"
            ' attempts = attempts + 1 WHERE run_id = ? AND idx = ?',
            (now(), self.run_id, step.index),
        )

    def on_rollback_data(
        self,
        context: BaseStepContext,
        step: StepInfo,
        values: dict[str, Any],
        append_to: str | None,
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

    def on_step_retry(
        self,
        context: BaseStepContext,
        step: StepInfo,
        attempt: int,
        result: StepResult,
        delay: float,
    ) -> None:
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

    def on_progress(self, context: BaseStepContext, current: int, total: int) -> None:
        self.journal.db.execute(
            'UPDATE runs SET progress = ? WHERE id = ?', (current * 100 // total, self.run_id)
        )

    def on_step_end(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        where = f"step '{step.name}'"
        data = to_json(result.data, f'{where} result.data')
        rollback_data = to_json(result.rollback_data, f'{where} result.rollback_data')
        state = snapshot(context) if result.success else None
        with self.journal.transaction() as db:
            db.execute(
                'UPDATE steps SET status = ?, ended_at = ?, duration = ?, data = ?,'
                ' rollback_data = ?, error = ?, snapshot = ? WHERE run_id = ? AND idx = ?',
                (
                    'succeeded' if result.success else 'failed',
                    now(),
                    result.duration_seconds,
                    data,
                    rollback_data,
                    result.error,
                    state,
                    self.run_id,
                    step.index,
                ),
            )
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

    def on_step_skip(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        self._mark(step, 'skipped')

    def on_step_reused(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        self._mark(step, 'reused')

    def on_rollback_end(
        self, context: BaseStepContext, step: StepInfo, error: BaseException | None
    ) -> None:
        if error is None:
            self._mark(step, 'rolled_back')
        else:
            self._mark(step, 'rollback_failed', f'{type(error).__name__}: {error}')

    def on_run_end(self, context: BaseStepContext, summary: RunSummary) -> None:
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
        self.journal.set_run_status(self.run_id, status, error)
        if summary.success:
            self.journal.db.execute('UPDATE runs SET progress = 100 WHERE id = ?', (self.run_id,))

    def _mark(self, step: StepInfo, status: str, error: str | None = None) -> None:
        self.journal.set_step_status(self.run_id, step.index, status, error)
