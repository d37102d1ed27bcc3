"""Reading a run's JSON-lines log (``$SYNAPSE_HOME/logs/RUN_ID.jsonl``): lines, levels, follow."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from synapse_sdk._paths import synapse_home

LEVELS = ('debug', 'info', 'warning', 'error')

LogLine = dict[str, Any]


def log_path(run_id: str) -> Path:
    """Where the default runtime writes run ``run_id``'s log (resumes append to it)."""
    return synapse_home() / 'logs' / f'{run_id}.jsonl'


def parse_lines(text: str) -> list[LogLine]:
    """The records of a log's text; a line that is not JSON (cut off by a crash) is kept
    as ``{'type': 'unreadable', 'text': ...}`` so that nothing is silently dropped."""
    records: list[LogLine] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        records.append(value if isinstance(value, dict) else {'type': 'unreadable', 'text': raw})
    return records


def read_log(path: Path) -> list[LogLine]:
    """Every record of the log at ``path``; none when the run wrote no log."""
    try:
        return parse_lines(path.read_text(encoding='utf-8', errors='replace'))
    except FileNotFoundError:
        return []


def epoch(stamp: str | None) -> float | None:
    """Seconds since the epoch of an ISO time the journal or the log wrote; None if absent."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def level_of(line: LogLine) -> str:
    """The level a line is shown at: its own for ``context.log`` events; warning for a
    failed attempt or a rollback, error for a failed step or rollback; progress is debug."""
    kind = line.get('type')
    if kind == 'event':
        level = line.get('level')
        return level if level in LEVELS else 'info'
    if kind == 'progress':
        return 'debug'
    if kind in ('step_retry', 'unreadable'):
        return 'warning'
    if kind == 'step_end' and not line.get('success', True):
        return 'error'
    if kind == 'rollback':
        return 'error' if line.get('error') else 'warning'
    if kind == 'run_end' and not line.get('success', True):
        return 'error'
    return 'info'


def at_least(level: str) -> Callable[[LogLine], bool]:
    """A filter keeping the lines at ``level`` or above."""
    if level not in LEVELS:
        raise ValueError(f'log level must be one of {", ".join(LEVELS)}, got {level!r}')
    floor = LEVELS.index(level)
    return lambda line: LEVELS.index(level_of(line)) >= floor


def describe_line(line: LogLine) -> str:
    """One line of text for a record, as ``synapse runs logs`` prints it (without time)."""
    step = f"step '{line.get('step')}'"
    match line.get('type'):
        case 'event':
            data = line.get('data') or {}
            shown = f'{line.get("event")} {json.dumps(data, default=str)}' if data else ''
            return shown or str(line.get('event'))
        case 'run_start':
            return f'run started: {len(line.get("steps") or [])} steps'
        case 'step_start':
            return f'{step} started'
        case 'step_end':
            took = _seconds(line.get('duration_seconds'))
            if line.get('success'):
                return f'{step} succeeded{took}'
            return f'{step} failed{took}: {line.get("error")}'
        case 'step_retry':
            return (
                f'{step} attempt {line.get("attempt")} failed: {line.get("error")};'
                f' again in {line.get("delay", 0):g}s'
            )
        case 'step_skip':
            return f'{step} skipped'
        case 'step_reuse':
            return f'{step} reused (its result from an earlier attempt)'
        case 'rollback_start':
            return f'{step} rollback started'
        case 'rollback':
            error = line.get('error')
            return f'{step} rollback failed: {error}' if error else f'{step} rolled back'
    return _describe_other(line)


def _describe_other(line: LogLine) -> str:
    match line.get('type'):
        case 'run_end':
            if line.get('success'):
                return 'run succeeded'
            verb = 'cancelled' if line.get('cancelled') else 'failed'
            return f'run {verb}: {line.get("error")}'
        case 'progress':
            return f'progress {line.get("category")} {line.get("percent")}%'
        case 'metrics':
            return f'metrics {line.get("category")} {json.dumps(line.get("value"), default=str)}'
        case 'unreadable':
            return f'(unreadable line) {line.get("text", "")[:200]}'
    return json.dumps(line, default=str)


def _seconds(value: Any) -> str:
    return f' in {value:.3f}s' if isinstance(value, int | float) else ''


def follow(path: Path, running: Callable[[], bool], interval: float = 0.2) -> Iterator[LogLine]:
    """The log's records, then those appended while ``running()`` says the run goes on;
    ends (after the last lines) once it says no. A partial last line waits for its end."""
    offset, pending = 0, ''
    while True:
        alive = running()  # asked before reading: the lines written up to the end are read
        try:
            with path.open('rb') as handle:
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = b''
        offset += len(chunk)
        text = pending + chunk.decode('utf-8', errors='replace')
        complete, _, pending = text.rpartition('\n')
        yield from parse_lines(complete)
        if not alive:
            if pending.strip():
                yield from parse_lines(pending)
            return
        time.sleep(interval)
