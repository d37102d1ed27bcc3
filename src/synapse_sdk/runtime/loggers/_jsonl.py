"""A logger that appends one JSON object per line to a file: the run's record on disk."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from synapse_sdk.plugins.steps import (
    LIFECYCLE_EVENTS,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunStarted,
    RunSummary,
    StepEnded,
    StepRetrying,
    StepReused,
    StepSkipped,
    StepStarted,
)
from synapse_sdk.plugins.steps.support import describe_exception

from ._base import Logger


class JsonLinesLogger(Logger):
    """Appends events, progress changes, metrics and step lifecycle as JSON lines.

    ``path`` is a file (appended to, created with its folder on the first line) or
    an open text stream such as ``sys.stderr`` (written to, never closed: what
    ``synapse plugin run --log-format json`` uses).

    Progress is written when its whole percentage changes (per category), so
    a step reporting every item does not turn the log into a progress dump.
    Each line is flushed: a crashed run's log ends at its last event. A lifecycle
    line's ``ts`` is when the event happened (``event.at``), so events relayed
    from a Ray worker keep their own times; ``synapse runs timeline`` and
    ``report`` draw the run from these lines. Lines are
    strict JSON: a NaN or infinite float (a diverged loss) is written as ``null``,
    a value JSON has no type for as its ``str()``.
    """

    listens_to = LIFECYCLE_EVENTS

    def __init__(self, path: str | os.PathLike[str] | IO[str], run_id: str | None = None) -> None:
        self.path: Path | None = None
        self._stream: IO[str] | None = None
        if isinstance(path, str | os.PathLike):
            self.path = Path(path)
        else:
            self._stream = path
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

    def on_event(self, event: RunEvent) -> None:
        record = _record_of(event)
        if record is not None:
            self._write(record, event.at)

    def close(self) -> None:
        if self._file is not None and self._stream is None:
            self._file.close()
        self._file = None

    def _write(self, record: dict[str, Any], at: float | None = None) -> None:
        if self._file is None:
            if self._stream is not None:
                self._file = self._stream
            else:
                assert self.path is not None
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open('a', encoding='utf-8')
        moment = datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)
        line = {'ts': moment.isoformat(), 'run_id': self.run_id, **record}
        try:
            text = json.dumps(line, default=str, allow_nan=False)
        except ValueError as error:
            if 'float' not in str(error):  # e.g. a circular reference: not ours to mend
                raise
            # a NaN or infinity somewhere: rare, so only then look for it
            text = json.dumps(_finite(line), default=str, allow_nan=False)
        self._file.write(text + '\n')
        self._file.flush()


def _record_of(event: RunEvent) -> dict[str, Any] | None:
    """The line a lifecycle event is written as; None for the events the log leaves out."""
    match event:
        case RunStarted(steps=steps):
            plan = [
                {
                    'step': s.name,
                    'index': s.index,
                    'weight': s.weight,
                    'can_rollback': s.can_rollback,
                }
                for s in steps
            ]
            return {'type': 'run_start', 'steps': plan}
        case StepStarted(step=step):
            return {'type': 'step_start', 'step': step.name, 'index': step.index}
        case StepEnded(step=step, result=result):
            return {
                'type': 'step_end',
                'step': step.name,
                'success': result.success,
                'error': result.error,
                'duration_seconds': result.duration_seconds,
            }
        case StepRetrying(step=step, attempt=attempt, result=result, delay=delay):
            return {
                'type': 'step_retry',
                'step': step.name,
                'attempt': attempt,
                'error': result.error,
                'delay': delay,
            }
        case StepSkipped(step=step, reason=reason):
            return {'type': 'step_skip', 'step': step.name, 'reason': reason}
        case StepReused(step=step):
            return {'type': 'step_reuse', 'step': step.name}
        case RollbackStarted(step=step):
            return {'type': 'rollback_start', 'step': step.name}
        case RollbackEnded(step=step, error=error):
            return {'type': 'rollback', 'step': step.name, 'error': _text(error)}
        case RunEnded(summary=summary):
            return _run_end(summary)
    return None


def _run_end(summary: RunSummary) -> dict[str, Any]:
    return {
        'type': 'run_end',
        'success': summary.success,
        'failed_step': summary.failed_step,
        'rollback_errors': list(summary.rollback_errors),
        'cancelled': summary.cancelled,
        'error': None if summary.error is None else describe_exception(summary.error),
    }


def _text(error: BaseException | None) -> str | None:
    return None if error is None else str(error)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {
            (str(k) if isinstance(k, float) and not math.isfinite(k) else k): _finite(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
