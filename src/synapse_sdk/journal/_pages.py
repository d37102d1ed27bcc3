"""The runs a page at a time, newest first, walked by a cursor over the index (keyset).

An offset would make the database step over every run before the page; the
cursor (a run's start time and insertion order, the index's own key) starts
the scan where the last page ended, so the 2,000th page of 100,000 runs costs
what the first does (``synapse ui``'s runs list, docs/benchmarks.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from ._errors import JournalError
from ._records import RUN_STATUSES, RunRecord
from ._schema import INSERTION_ORDER

if TYPE_CHECKING:
    from ._store import Journal


class RunPage(NamedTuple):
    """One page of runs, newest first, and the cursors of the pages around it (None: none)."""

    runs: list[RunRecord]
    older: str | None  # pass as ``before`` for the next page
    newer: str | None  # pass as ``after`` for the page before


class RunFilter(NamedTuple):
    status: str | None = None
    plugin: str | None = None
    action: str | None = None
    since: datetime | None = None  # started at or after
    until: datetime | None = None  # started before


def where_clause(wanted: RunFilter, status: str = 'status') -> tuple[list[str], list[Any]]:
    """SQL conditions (joined with AND) and their arguments for ``wanted``; ``status``: how
    the status column is named (``+status``: not through its index, on SQLite)."""
    from ._store import utc_text

    where: list[str] = []
    args: list[Any] = []
    if wanted.status is not None:
        if wanted.status not in RUN_STATUSES:
            raise JournalError(
                f'unknown status {wanted.status!r}; one of: {", ".join(RUN_STATUSES)}'
            )
        where.append(f'{status} = ?')
        args.append(wanted.status)
    for column, value in (('plugin', wanted.plugin), ('action', wanted.action)):
        if value is not None:
            where.append(f'{column} = ?')
            args.append(value)
    if wanted.since is not None:
        where.append('started_at >= ?')
        args.append(utc_text(wanted.since))
    if wanted.until is not None:
        where.append('started_at < ?')
        args.append(utc_text(wanted.until))
    return where, args


def parse_cursor(cursor: str) -> tuple[str, int]:
    """``started_at|order`` -> its parts; anything else is a ``JournalError``."""
    started, _, order = cursor.rpartition('|')
    try:
        datetime.fromisoformat(started)
        return started, int(order)
    except ValueError:
        raise JournalError(f'{cursor!r} is not a page cursor of the runs list') from None


def runs_page(
    journal: Journal,
    wanted: RunFilter,
    limit: int,
    before: str | None = None,
    after: str | None = None,
) -> RunPage:
    """See ``Journal.runs_page``."""
    from ._store import _RUN_COLUMNS, _run

    if limit < 1:
        raise JournalError(f'a page holds at least one run, not {limit}')
    if before is not None and after is not None:
        raise JournalError('a page is either before a cursor or after one, not both')
    journal.detect_crashed()
    db = journal.db
    order = INSERTION_ORDER[db.dialect]
    # SQLite, without statistics, would take the status index and sort every run of that
    # status (65 ms for 90,000 of 100,000); walking the start index and skipping the
    # others costs at most one pass over the index (25 ms), and much less for a page
    where, args = where_clause(wanted, '+status' if db.dialect == 'sqlite' else 'status')
    cursor = before if before is not None else after
    if cursor is not None:
        where.append(f'(started_at, {order}) {"<" if after is None else ">"} (?, ?)')
        args.extend(parse_cursor(cursor))
    direction = 'ASC' if after is not None else 'DESC'
    sql = f'SELECT {_RUN_COLUMNS}, {order} FROM runs'
    if where:
        sql += ' WHERE ' + ' AND '.join(where)
    sql += f' ORDER BY started_at {direction}, {order} {direction} LIMIT ?'
    rows = db.fetchall(sql, [*args, limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    if after is not None:
        rows.reverse()
    keys = [f'{row[6]}|{row[-1]}' for row in rows]
    runs = [_run(row[:-1]) for row in rows]
    if not rows:
        return RunPage(runs, None, None)
    older = keys[-1] if (more if after is None else True) else None
    newer = keys[0] if (cursor is not None if after is None else more) else None
    return RunPage(runs, older, newer)


def count_runs(journal: Journal, wanted: RunFilter) -> int:
    """How many runs ``wanted`` selects."""
    where, args = where_clause(wanted)
    sql = 'SELECT count(*) FROM runs' + (' WHERE ' + ' AND '.join(where) if where else '')
    row = journal.db.fetchone(sql, args)
    return int(row[0]) if row else 0
