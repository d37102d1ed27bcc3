"""Reading a run's JSON-lines log (``$SYNAPSE_HOME/logs/RUN_ID.jsonl``): lines, levels, follow."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from synapse_sdk._paths import synapse_home
from synapse_sdk.journal import LEVELS, Journal, describe_line, level_of

__all__ = [
    'LEVELS',
    'LogLine',
    'at_least',
    'describe_line',
    'epoch',
    'follow',
    'follow_journal',
    'journal_log',
    'level_of',
    'log_path',
    'parse_lines',
    'read_log',
]

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


def at_least(level: str) -> Callable[[LogLine], bool]:
    """A filter keeping the lines at ``level`` or above."""
    if level not in LEVELS:
        raise ValueError(f'log level must be one of {", ".join(LEVELS)}, got {level!r}')
    floor = LEVELS.index(level)
    return lambda line: LEVELS.index(level_of(line)) >= floor


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


def journal_log(journal: Journal, run_id: str) -> list[LogLine]:
    """The run's last log lines as the journal keeps them (``KEEP_LOG_LINES``, progress
    folded): what is known of its log on a machine that does not have the file."""
    return [line.record for line in journal.log_lines(run_id).lines]


def follow_journal(
    journal: Journal, run_id: str, running: Callable[[], bool], interval: float = 0.2
) -> Iterator[LogLine]:
    """:func:`follow`, from the journal: the kept lines, then each new one as the run's
    process writes them (in batches, about every ``journal.POLL_S``), until it ends."""
    after = 0
    while True:
        alive = running()  # asked before reading: the lines written up to the end are read
        page = journal.log_lines(run_id, after)
        after = page.last_seq
        yield from (line.record for line in page.lines)
        if not alive:
            return
        time.sleep(interval)
