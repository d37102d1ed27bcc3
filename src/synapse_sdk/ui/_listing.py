"""The runs list: its query (filters and page in the URL), checked, and its page."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from synapse_sdk.journal import RUN_STATUSES, Journal, RunPage, RunRecord

from ._html import badge, bar, duration, layout, moment, query, run_link

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_TEXT = 200


@dataclass(frozen=True)
class ListQuery:
    status: str | None = None
    plugin: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    before: str | None = None
    after: str | None = None
    raw: tuple[tuple[str, str], ...] = ()

    @property
    def filters(self) -> dict[str, str]:
        """The filters as they were given (for links that keep them)."""
        names = ('status', 'plugin', 'action', 'since', 'until', 'limit')
        return {k: v for k, v in self.raw if k in names and v}


def parse_query(params: Mapping[str, str]) -> ListQuery:
    """The list's query parameters, checked: a ``ValueError`` (a 422 page) names the one at
    fault."""
    text = {k: params.get(k, '').strip() for k in params}
    for name, value in text.items():
        if len(value) > MAX_TEXT:
            raise ValueError(f'{name}: longer than {MAX_TEXT} characters')
    status = text.get('status') or None
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(
            f'status: {status!r} is not a run status; one of {", ".join(RUN_STATUSES)}'
        )
    if text.get('before') and text.get('after'):
        raise ValueError('give before or after (a page cursor), not both')
    return ListQuery(
        status=status,
        plugin=text.get('plugin') or None,
        action=text.get('action') or None,
        since=_moment(text.get('since'), 'since'),
        until=_moment(text.get('until'), 'until'),
        limit=_limit(text.get('limit')),
        before=text.get('before') or None,
        after=text.get('after') or None,
        raw=tuple(text.items()),
    )


def _moment(value: str | None, name: str) -> datetime | None:
    """An ISO date or time (``2026-12-07``, ``2026-12-07T09:30``); without a zone, UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'{name}: {value!r} is not a date or time (2026-12-07T09:30)') from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _limit(value: str | None) -> int:
    if not value:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise ValueError(f'limit: {value!r} is not a whole number') from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f'limit: {limit} is not between 1 and {MAX_LIMIT}')
    return limit


def fetch(journal: Journal, wanted: ListQuery) -> tuple[RunPage, int]:
    """The page of runs and how many the filters select in all."""
    w = wanted
    page = journal.runs_page(
        w.limit,
        status=w.status,
        plugin=w.plugin,
        action=w.action,
        since=w.since,
        until=w.until,
        before=w.before,
        after=w.after,
    )
    total = journal.count_runs(
        status=w.status, plugin=w.plugin, action=w.action, since=w.since, until=w.until
    )
    return page, total


def render_list(wanted: ListQuery, page: RunPage, total: int, where: str) -> str:
    rows = ''.join(_row(r) for r in page.runs)
    head = ''.join(
        f'<th>{h}</th>'
        for h in ('run', 'status', 'plugin', 'action', 'started (UTC)', 'duration', 'progress')
    )
    table = (
        f'<table class="runs"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        if page.runs
        else '<p class="empty">No run matches.</p>'
    )
    body = (
        f'<h1>Runs <small class="count">{total:,} matching</small></h1>'
        f'<p class="where">journal: {escape(where)}</p>'
        f'{_filter_form(wanted)}{table}{_pager(wanted, page)}'
    )
    refresh = ' data-refresh="1"' if any(r.active for r in page.runs) else ''
    return layout('synapse runs', body, live=refresh)


def _row(r: RunRecord) -> str:
    return (
        f'<tr data-run="{escape(r.id)}"><td><a href="{run_link(r.id)}">{escape(r.id)}</a></td>'
        f'<td>{badge(r.status)}</td><td>{escape(r.plugin or "-")}</td>'
        f'<td>{escape(r.action or r.entrypoint)}</td><td>{moment(r.started_at)}</td>'
        f'<td>{duration(r)}</td><td>{bar(r.progress)}</td></tr>'
    )


def _filter_form(wanted: ListQuery) -> str:
    given = dict(wanted.raw)
    options = ''.join(
        f'<option value="{s}"{" selected" if s == wanted.status else ""}>{s}</option>'
        for s in ('', *RUN_STATUSES)
    )

    def text(name: str, kind: str = 'text') -> str:
        value = escape(given.get(name, ''), quote=True)
        return f'<label>{name} <input type="{kind}" name="{name}" value="{value}"></label>'

    return (
        '<form method="get" action="/" class="filters">'
        f'<label>status <select name="status">{options}</select></label>'
        f'{text("plugin")}{text("action")}{text("since", "datetime-local")}'
        f'{text("until", "datetime-local")}'
        f'<input type="hidden" name="limit" value="{wanted.limit}">'
        '<button type="submit">Filter</button> <a href="/">clear</a></form>'
    )


def _pager(wanted: ListQuery, page: RunPage) -> str:
    links = []
    if wanted.before or wanted.after:
        links.append(f'<a class="newest" href="/{query(wanted.filters)}">newest</a>')
    if page.newer:
        href = query(wanted.filters, after=page.newer)
        links.append(f'<a class="newer" href="/{escape(href)}">&larr; newer</a>')
    if page.older:
        href = query(wanted.filters, before=page.older)
        links.append(f'<a class="older" href="/{escape(href)}">older &rarr;</a>')
    return f'<nav class="pager">{" ".join(links)}</nav>'
