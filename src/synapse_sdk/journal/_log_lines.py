"""A run's last log lines, in the journal: what a watcher or the web view on another machine
reads while the run's own log file stays on the machine that wrote it.

The lines are those of the run's JSON-lines log (``runtime.JsonLinesLogger``:
``context.log`` events, the step lifecycle, metrics, progress), one row each
(``log_lines``: run id, ``seq`` from 1, time, level, step, a one-line
message, the record as JSON). A ``LogLineBuffer`` takes them in the run's
thread (an append under a lock) and writes them in batches from the run's
heartbeat thread (``lease.Heartbeat``, every ``POLL_S``) and once when the
run ends: no commit of its own in the run's thread per step. Only the last
``keep`` lines of a run stay (``KEEP_LOG_LINES``); those before the first kept
one were dropped, so ``seq`` of the first kept line says how many.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

from synapse_sdk.db import Connection

__all__ = [
    'KEEP_LOG_LINES',
    'LEVELS',
    'LogLine',
    'LogLineBuffer',
    'LogLines',
    'describe_line',
    'level_of',
    'read_log_lines',
]

KEEP_LOG_LINES = 1000
"""Log lines kept per run in the journal: the newest; the run's log file keeps them all."""

LEVELS = ('debug', 'info', 'warning', 'error')

MAX_RECORD = 32_768  # characters of a line's JSON kept; a longer one keeps its summary
MAX_MESSAGE = 2_000  # characters of its message

Record = dict[str, Any]


@dataclass(frozen=True)
class LogLine:
    """One line of a run's log, as the journal keeps it; ``record`` is the JSON-lines
    record (``type``, ``event``, ``data``, ...), as the run's log file has it."""

    seq: int
    at: str
    level: str
    step: str | None
    message: str
    record: Record

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class LogLines(NamedTuple):
    """A page of a run's log lines: ``lines`` after the ``seq`` asked for, ``dropped``
    (the run's lines no longer kept: the oldest), ``last_seq`` to ask after next."""

    lines: list[LogLine]
    dropped: int
    last_seq: int


def read_log_lines(
    db: Connection, run_id: str, after_seq: int = 0, limit: int | None = None
) -> LogLines:
    """The run's kept lines with ``seq`` above ``after_seq``, oldest first, at most ``limit``."""
    sql = (
        'SELECT seq, at, level, step, message, record FROM log_lines'
        ' WHERE run_id = ? AND seq > ? ORDER BY seq'
    )
    args: list[Any] = [run_id, after_seq]
    if limit is not None:
        sql += ' LIMIT ?'
        args.append(limit)
    lines = [
        LogLine(int(seq), at, level, step, message, _decode(record))
        for seq, at, level, step, message, record in db.fetchall(sql, args)
    ]
    first = db.fetchone('SELECT MIN(seq) FROM log_lines WHERE run_id = ?', (run_id,))
    dropped = int(first[0]) - 1 if first is not None and first[0] is not None else 0
    return LogLines(lines, dropped, lines[-1].seq if lines else after_seq)


def _decode(text: str) -> Record:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {'type': 'unreadable', 'text': text}


class LogLineBuffer:
    """The run's log lines on their way to the journal.

    A text stream for ``JsonLinesLogger`` (``write`` takes one JSON line):
    the run's thread only appends. ``flush(db)`` writes what is pending in one
    transaction (parsed there, consecutive progress lines of a category folded
    into the latest), numbers the lines on from the run's last ``seq`` (a
    resumed run goes on where it stopped) and deletes the lines that fall out of
    the last ``keep``. Flushes take turns, so lines commit in order.
    """

    def __init__(self, run_id: str, keep: int = KEEP_LOG_LINES) -> None:
        self.run_id = run_id
        self.keep = keep
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._last: int | None = None  # the run's last seq in the journal, once read
        self._step: str | None = None  # the step running as of the last line taken
        self._unsent = 0  # lines let go unwritten (the buffer was full): they count as dropped

    def write(self, text: str) -> int:
        with self._lock:
            self._pending.append(text)
            if len(self._pending) > 4 * self.keep:  # not flushed for long: keep the newest
                surplus = len(self._pending) - 2 * self.keep
                del self._pending[:surplus]
                self._unsent += surplus  # counted as dropped all the same
        return len(text)

    def flush(self, db: Connection | None = None) -> None:
        """Write the pending lines (a no-op for a stream's ``flush()``, without ``db``)."""
        if db is None:
            return
        with self._flushing:
            with self._lock:
                texts, self._pending = self._pending, []
                unsent, self._unsent = self._unsent, 0
            if not texts:
                return
            # more than are kept: the older ones would be deleted at once, so are never
            # written (a short run's lines all arrive at its end, in one batch)
            skipped = max(0, len(texts) - self.keep)
            self._follow_steps(texts[:skipped])
            try:
                self._write(db, self._rows(texts[skipped:]), unsent + skipped)
            except BaseException:
                with self._lock:  # tried again at the next flush
                    self._pending[:0] = texts
                    self._unsent += unsent
                raise

    def _write(self, db: Connection, rows: list[tuple[Any, ...]], skipped: int) -> None:
        with db.transaction() as tx:
            last = self._last
            if last is None:
                row = tx.fetchone('SELECT MAX(seq) FROM log_lines WHERE run_id = ?', (self.run_id,))
                last = int(row[0]) if row is not None and row[0] is not None else 0
            last += skipped
            tx.executemany(
                'INSERT INTO log_lines (run_id, seq, at, level, step, message, record)'
                ' VALUES (?, ?, ?, ?, ?, ?, ?)',
                [(self.run_id, last + i, *row) for i, row in enumerate(rows, 1)],
            )
            last += len(rows)
            if last > self.keep:
                tx.execute(
                    'DELETE FROM log_lines WHERE run_id = ? AND seq <= ?',
                    (self.run_id, last - self.keep),
                )
        self._last = last  # committed

    def _follow_steps(self, texts: list[str]) -> None:
        """The step running after ``texts`` (lines not written): its last start or end."""
        for text in reversed(texts):
            if '"type": "step_' in text or '"type": "run_end"' in text:
                record = _decode(text)
                if record.get('type') in ('step_start', 'step_end', 'run_end'):
                    self._rows([text])
                    return

    def _rows(self, texts: list[str]) -> list[tuple[Any, ...]]:
        """``(at, level, step, message, record)`` per line; of the progress lines of one
        category, only the latest of the batch. A line without a step of its own (a
        ``context.log`` event) is the step's that was running then."""
        records = [(text.strip(), _decode(text)) for text in texts]
        latest = {
            record.get('category'): i
            for i, (_, record) in enumerate(records)
            if record.get('type') == 'progress'
        }
        rows = []
        for i, (text, record) in enumerate(records):
            kind = record.get('type')
            if kind == 'progress' and latest[record.get('category')] != i:
                continue
            step = record.get('step')
            if kind == 'step_start':
                self._step = step if isinstance(step, str) else None
            elif kind in ('step_end', 'run_end'):
                self._step = None
            if not isinstance(step, str):
                step = self._step if kind in ('event', 'metrics', 'progress') else None
            rows.append(
                (str(record.get('ts') or ''), level_of(record), step, *_shown(text, record))
            )
        return rows


def _shown(text: str, record: Record) -> tuple[str, str]:
    """The line's message and its JSON, both within bounds."""
    if len(text) > MAX_RECORD:
        kept = ('ts', 'run_id', 'type', 'event', 'step')
        summary = {k: record[k] for k in kept if k in record}
        text = json.dumps({**summary, 'truncated': len(text)})
    return describe_line(record)[:MAX_MESSAGE], text


# what a line says --------------------------------------------------------------------
def level_of(line: Record) -> str:
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


def describe_line(line: Record) -> str:
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


def _describe_other(line: Record) -> str:
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
