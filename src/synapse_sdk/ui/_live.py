"""What a run's page shows live: its state now, and its log lines read on from a cursor.

The log lines come from the run's JSON-lines log file when this machine has
it (the cursor: a byte offset into it, ``1234``), else from the journal's
copy of the run's last lines (``Journal.log_lines``; the cursor: the last
line's ``seq``, ``j56``): a run on another machine, or on Ray, shows live
too. A reconnecting stream (``Last-Event-ID``) goes on where it stopped, with
no line twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synapse_sdk import observe
from synapse_sdk.journal import Journal, RunRecord, StepRecord

from ._actions import Job
from ._html import duration

OVERALL = 'overall'  # the runtime's category for the run's own progress
MAX_CHUNK = 1 << 20  # at most this much of the log per read


def read_lines(
    path: Path, offset: int, most: int | None = MAX_CHUNK
) -> tuple[list[dict[str, Any]], int]:
    """The complete lines of the log from byte ``offset`` on (at most ``most`` bytes of
    them; None: all), and the offset after them (a line being written waits for its end)."""
    try:
        with path.open('rb') as handle:
            handle.seek(offset)
            chunk = handle.read(-1 if most is None else most)
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b'\n')
    if end < 0:
        return [], offset
    lines = observe.parse_lines(chunk[: end + 1].decode('utf-8', errors='replace'))
    return lines, offset + end + 1


def cursor_ok(cursor: str) -> bool:
    """``1234`` (a byte offset into the log file) or ``j56`` (a journal line's seq)."""
    # ASCII digits, few enough for a file offset or a BIGINT (isdigit takes '²' too)
    return re.fullmatch(r'j?[0-9]{1,15}', cursor) is not None


def read_on(
    journal: Journal, run_id: str, cursor: str, most: int | None = MAX_CHUNK
) -> tuple[list[dict[str, Any]], str]:
    """The run's log records after ``cursor``, and the cursor after them: from the file
    when this machine has it, else from the journal (a ``j`` cursor stays there, but for
    ``j0``, nothing read yet, once the file appears)."""
    path = observe.log_path(run_id)
    here = path.exists()
    if cursor.startswith('j') and not (cursor == 'j0' and here):
        page = journal.log_lines(run_id, int(cursor[1:]))
        return [line.record for line in page.lines], f'j{page.last_seq}'
    if here:
        lines, offset = read_lines(path, int(cursor.removeprefix('j')), most)
        return lines, str(offset)
    if cursor == '0':  # nothing read yet, and no file here: the journal's lines
        return read_on(journal, run_id, 'j0', most)
    return [], cursor  # the file read so far is gone (the run was pruned)


@dataclass
class Progress:
    """The overall percent the log reported last (the journal writes it every 0.5 s),
    and each step's own percent."""

    overall: int = 0
    steps: dict[str, int] = field(default_factory=dict)

    def read(self, lines: list[dict[str, Any]]) -> None:
        for line in lines:
            if line.get('type') != 'progress':
                continue
            percent = int(line.get('percent') or 0)
            category = str(line.get('category'))
            if category == OVERALL:
                self.overall = percent
            else:
                self.steps[category] = percent


def state(
    record: RunRecord, steps: list[StepRecord], progress: Progress, job: Job | None
) -> dict[str, Any]:
    """The run's state as the page's script applies it (JSON)."""
    percent = record.progress
    if record.active:
        percent = max(percent, progress.overall)
    return {
        'status': record.status,
        'active': record.active,
        'progress': percent,
        'error': record.error,
        'ended_at': record.ended_at,
        'duration': duration(record),
        'steps': [
            {
                'index': s.index,
                'name': s.name,
                'status': s.status,
                'attempts': s.attempts,
                'percent': progress.steps.get(s.name),
            }
            for s in steps
        ],
        'job': job.to_dict() if job is not None else None,
    }


def step_key(steps: list[StepRecord]) -> tuple[tuple[str, int], ...]:
    """What changes when the steps table and the timeline must be drawn again."""
    return tuple((s.status, s.attempts) for s in steps)


def sections(journal: Journal, run_id: str) -> dict[str, str]:
    """The page's parts drawn from the whole record (after a step started or ended)."""
    view = observe.load_run(journal, run_id)
    return observe.report_sections(view)
