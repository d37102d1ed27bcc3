"""A logger that appends one JSON object per line to a file: the run's record on disk."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from synapse_sdk.plugins.steps import BaseStepContext, RunSummary, StepInfo, StepResult

from .base import Logger


class JsonLinesLogger(Logger):
    """Appends events, progress changes, metrics and step lifecycle as JSON lines.

    Progress is written when its whole percentage changes (per category), so
    a step reporting every item does not turn the log into a progress dump.
    Each line is flushed: a crashed run's log ends at its last event.
    """

    def __init__(self, path: str | os.PathLike[str], run_id: str | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self._file: IO[str] | None = None
        self._last_percent: dict[str, int] = {}

    def log(self, event: str, data: dict[str, Any], file: str | None, level: str) -> None:
        record: dict[str, Any] = {'type': 'event', 'event': event, 'level': level, 'data': data}
        if file is not None:
            record['file'] = file
        self._write(record)

    def progress(self, current: float, total: float, category: str) -> None:
        percent = int(100 * current / total)
        if self._last_percent.get(category) == percent:
            return
        self._last_percent[category] = percent
        self._write(
            {
                'type': 'progress',
                'category': category,
                'current': current,
                'total': total,
                'percent': percent,
            }
        )

    def metrics(self, value: dict[str, Any], category: str) -> None:
        self._write({'type': 'metrics', 'category': category, 'value': value})

    def on_step_start(self, context: BaseStepContext, step: StepInfo) -> None:
        self._write({'type': 'step_start', 'step': step.name, 'index': step.index})

    def on_step_end(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        self._write(
            {
                'type': 'step_end',
                'step': step.name,
                'success': result.success,
                'error': result.error,
                'duration_seconds': result.duration_seconds,
            }
        )

    def on_step_skip(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        self._write({'type': 'step_skip', 'step': step.name})

    def on_rollback_end(
        self, context: BaseStepContext, step: StepInfo, error: BaseException | None
    ) -> None:
        self._write(
            {'type': 'rollback', 'step': step.name, 'error': None if error is None else str(error)}
        )

    def on_run_end(self, context: BaseStepContext, summary: RunSummary) -> None:
        self._write(
            {
                'type': 'run_end',
                'success': summary.success,
                'failed_step': summary.failed_step,
                'rollback_errors': list(summary.rollback_errors),
            }
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open('a', encoding='utf-8')
        line = {'ts': datetime.now(UTC).isoformat(), 'run_id': self.run_id, **record}
        self._file.write(json.dumps(line, default=str) + '\n')
        self._file.flush()
