"""Points in time as the command line takes them: ``7d``, ``2h30m`` ago, or an ISO date."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 7 * 86400}
_DURATION = re.compile(r'(?:\d+[smhdw])+')
_PART = re.compile(r'(\d+)([smhdw])')


def parse_duration(text: str) -> timedelta | None:
    """``30d``, ``2h``, ``1d12h``, ``90s``, ``2w`` (``m`` is minutes); None if not one."""
    compact = text.strip().lower()
    if not _DURATION.fullmatch(compact):
        return None
    seconds = sum(int(n) * UNITS[unit] for n, unit in _PART.findall(compact))
    return timedelta(seconds=seconds)


def parse_moment(text: str, option: str, now: datetime | None = None) -> datetime:
    """A duration back from ``now``, or an ISO date or date-time (UTC unless it has an
    offset, as the journal shows times). ``ValueError`` naming ``option`` otherwise."""
    duration = parse_duration(text)
    if duration is not None:
        return (now or datetime.now(UTC)) - duration
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f'{option} takes a duration back from now (30m, 2h, 7d, 2w, 1d12h) or an ISO'
            f' date or time in UTC (2024-05-01, 2024-05-01T12:00), got {text!r}'
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
