"""The pages' HTML, built from escaped strings (no template engine to install)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from synapse_sdk import observe
from synapse_sdk.journal import RunRecord

from ._security import CSRF_FIELD

STATUS_COLORS = {
    'succeeded': '#2e9d57',
    'running': '#3b7dd8',
    'failed': '#d6453d',
    'crashed': '#b42318',
    'rollback_failed': '#8b1e1e',
    'cancelled': '#b7791f',
    'rolled_back': '#e0a030',
}


def layout(title: str, body: str, *, live: str = '') -> str:
    """A whole page: the shared stylesheet and script, both served by this package."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/static/ui.css">'
        '<script src="/static/ui.js" defer></script></head><body>'
        '<header><a class="home" href="/">synapse runs</a></header>'
        f'<main{live}>{body}</main></body></html>\n'
    )


def error_page(code: int, title: str, detail: str) -> str:
    body = (
        f'<h1 class="error-title">{code} {escape(title)}</h1>'
        f'<p class="error-detail">{escape(detail)}</p><p><a href="/">All runs</a></p>'
    )
    return layout(f'{code} {title}', body)


def badge(status: str) -> str:
    color = STATUS_COLORS.get(status, '#555')
    return f'<span class="badge" style="background:{color}">{escape(status)}</span>'


def bar(percent: int, element_id: str = '') -> str:
    ident = f' id="{element_id}"' if element_id else ''
    return (
        f'<span class="meter"{ident} data-percent="{percent}"><span class="fill" '
        f'style="width:{max(0, min(100, percent))}%"></span>'
        f'<span class="pct">{percent}%</span></span>'
    )


def moment(stamp: str | None) -> str:
    """A journal time as ``2026-12-07 07:31:32`` (UTC), or ``-``."""
    return '-' if not stamp else stamp[:19].replace('T', ' ')


def duration(record: RunRecord) -> str:
    """How long the run took, or has been running; ``-`` without times."""
    start = observe.epoch(record.started_at)
    end = observe.epoch(record.ended_at) if record.ended_at else None
    if start is None:
        return '-'
    if end is None:
        if not record.active:
            return '-'
        end = datetime.now(UTC).timestamp()
    return seconds(max(0.0, end - start))


def seconds(value: float | None) -> str:
    if value is None:
        return '-'
    if value < 60:
        return f'{value:.1f}s'
    minutes, rest = divmod(int(value), 60)
    if minutes < 60:
        return f'{minutes}m {rest:02d}s'
    hours, minutes = divmod(minutes, 60)
    return f'{hours}h {minutes:02d}m'


def run_link(run_id: str) -> str:
    return f'/runs/{quote(run_id, safe="")}'


def query(params: dict[str, str], **changes: str | None) -> str:
    """``?...`` with ``params`` changed by ``changes`` (None removes a key)."""
    merged = {**params, **changes}
    kept = {k: v for k, v in merged.items() if v not in (None, '')}
    return '?' + urlencode(kept) if kept else '?'


def form(action: str, label: str, csrf: str, css: str, fields: dict[str, str] | None = None) -> str:
    """A POST form of one button, with the session's CSRF token."""
    hidden = {CSRF_FIELD: csrf, **(fields or {})}
    inputs = ''.join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in hidden.items()
    )
    return (
        f'<form method="post" action="{escape(action)}" class="inline">{inputs}'
        f'<button type="submit" class="{css}">{escape(label)}</button></form>'
    )


def log_lines_html(lines: list[dict[str, Any]]) -> str:
    """Log lines as the report shows them: time, level, what happened; progress left out."""
    return ''.join(
        f'<span class="{observe.level_of(x)}">{escape(str(x.get("ts", ""))[11:23])} '
        f'{observe.level_of(x):<7} {escape(observe.describe_line(x))}</span>\n'
        for x in lines
        if x.get('type') != 'progress'
    )


def script_data(value: Any) -> str:
    """JSON to put inside an HTML attribute."""
    return escape(json.dumps(value, default=str), quote=True)
