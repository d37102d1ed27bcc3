"""One self-contained HTML file about a run: no script, no font, nothing fetched."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from ._log import describe_line, level_of
from ._svg import COLORS, gantt_svg, line_svg
from ._terminal import seconds, span_label
from ._view import RunView

LAST_LOG_LINES = 50

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:28px 0 8px}
table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;vertical-align:top}
th{border-bottom:1px solid #ccc}.facts td:first-child{color:#777}
.status{font-weight:600}.charts{display:flex;flex-wrap:wrap;gap:18px}
svg text{font:11px system-ui,sans-serif;fill:#444}.label{text-anchor:end}
.tick{text-anchor:middle}.ytick{text-anchor:end}.grid{stroke:#eee}
.line{fill:none;stroke:#3b7dd8;stroke-width:2}.dot{fill:#3b7dd8}
pre{background:#f6f6f6;padding:10px;white-space:pre-wrap;font-size:12px}
figure{margin:0}figcaption{font-weight:600;margin-left:48px}
.warning{color:#9a6700}.error{color:#b42318}.legend span{margin-right:14px}
"""


def render_report(view: RunView, last_lines: int = LAST_LOG_LINES) -> str:
    """The report's HTML: the facts, the timeline, the progress curve, the metrics, the
    rollback section and the log's last lines."""
    r = view.record
    parts = report_sections(view, last_lines)
    sections = [
        f'<h1>Run {escape(r.id)} <span class="status" style="color:{_color(r.status)}">'
        f'{escape(r.status)}</span></h1>',
        parts['facts'],
        '<h2>Steps</h2>',
        parts['steps'],
        '<h2 id="timeline">Timeline</h2>',
        parts['timeline'],
        '<h2 id="progress">Progress</h2>',
        parts['progress'],
        '<h2 id="metrics">Metrics</h2>',
        parts['metrics'],
        '<h2 id="rollback">Rollback</h2>',
        parts['rollback'],
        f'<h2 id="log">Last log lines</h2>{parts["log"]}',
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<title>run {escape(r.id)}</title><style>{CSS}</style></head><body>'
        + '\n'.join(sections)
        + '</body></html>\n'
    )


def report_sections(view: RunView, last_lines: int = LAST_LOG_LINES) -> dict[str, str]:
    """The report's parts as HTML fragments (``facts``, ``steps``, ``timeline``,
    ``progress``, ``metrics``, ``rollback``, ``log``), for pages that lay them out
    their own way (``synapse ui``); styled by the classes ``CSS`` styles."""
    return {
        'facts': _facts(view),
        'steps': _steps(view),
        'timeline': _timeline(view),
        'progress': line_svg(view.progress_curve(), 'overall progress, %'),
        'metrics': _metrics(view),
        'rollback': _rollback(view),
        'log': _log_tail(view, last_lines),
    }


def _color(status: str) -> str:
    return COLORS.get(status, '#555')


def _table(head: list[str], rows: list[list[str]], css: str = '') -> str:
    cells = ''.join(f'<th>{escape(h)}</th>' for h in head)
    header = f'<tr>{cells}</tr>' if head else ''
    body = ''.join('<tr>' + ''.join(f'<td>{c}</td>' for c in row) + '</tr>' for row in rows)
    return f'<table class="{css}">{header}{body}</table>'


def _facts(view: RunView) -> str:
    r = view.record
    facts = {
        'plugin': f'{r.plugin or "-"} ({r.plugin_path or "-"})',
        'action': f'{r.action or "-"} ({r.entrypoint})',
        'params': json.dumps(r.params, default=str),
        'host': f'{r.host} (pid {r.pid})',
        'cwd': r.cwd or '-',
        'storage': r.storage or '-',
        'started': r.started_at,
        'ended': f'{r.ended_at or "-"} (duration {seconds(view.duration)})',
        'progress': f'{r.progress}%',
        'attempts': '; '.join(a.summary for a in view.attempts) or str(r.attempts),
        'error': r.error or '-',
        'log': str(view.log_path),
    }
    rows = [[escape(k), escape(v)] for k, v in facts.items()]
    return _table([], rows, 'facts')


def _steps(view: RunView) -> str:
    rows = []
    for s in view.steps:
        data = view.step_dict(s)
        notes = [x for x in (data['skip_reason'], data['rollback'], s.error) if x]
        start = data['start_offset']
        rows.append(
            [
                str(s.index + 1),
                escape(s.name),
                f'<span style="color:{_color(s.status)}">{escape(s.status)}</span>',
                '-' if start is None else f'+{seconds(start)}',
                seconds(s.duration),
                str(s.attempts),
                escape('; '.join(dict.fromkeys(notes))),
            ]
        )
    return _table(['#', 'step', 'status', 'start', 'duration', 'attempts', 'notes'], rows)


def _timeline(view: RunView) -> str:
    if not view.spans:
        return '<p>No step has started.</p>'
    legend = ''.join(
        f'<span style="color:{COLORS[k]}">&#9632; {k.replace("_", " ")}</span>'
        for k in ('succeeded', 'failed', 'waiting', 'rolled_back', 'skipped', 'reused', 'running')
    )
    labels = [span_label(s) for s in view.spans]
    return f'<p class="legend">{legend}</p>' + gantt_svg(view.spans, view.extent, labels)


def _metrics(view: RunView) -> str:
    charts = []
    for category, points in view.metrics().items():
        keys = dict.fromkeys(k for _, values in points for k in values)
        for key in keys:
            series = [(at, float(v[key])) for at, v in points if _number(v.get(key))]
            if series:
                label = f'{category}.{key}'
                caption = f'<figcaption>{escape(label)}</figcaption>'
                charts.append(f'<figure>{caption}{line_svg(series, label)}</figure>')
    if not charts:
        return '<p>The run set no numeric metrics.</p>'
    return f'<div class="charts">{"".join(charts)}</div>'


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _rollback(view: RunView) -> str:
    rows = []
    for s in view.steps:
        outcome = view.step_dict(s)['rollback']
        if outcome is None:
            continue
        data = json.dumps(view.rollback_data.get(s.index) or s.rollback_data or {}, default=str)
        rows.append([escape(s.name), escape(outcome), f'<code>{escape(data[:500])}</code>'])
    lines = [x for x in view.log if x.get('type') in ('rollback_start', 'rollback')]
    if not rows and not lines:
        return '<p>Nothing was rolled back.</p>'
    table = _table(['step', 'outcome', 'rollback data'], rows) if rows else ''
    return table + _lines(lines)


def _log_tail(view: RunView, count: int) -> str:
    shown = [x for x in view.log if x.get('type') != 'progress'][-count:]
    if not shown:
        return f'<p>No log at {escape(str(view.log_path))}.</p>'
    return _lines(shown)


def _lines(lines: list[dict[str, Any]]) -> str:
    text = ''.join(
        f'<span class="{level_of(x)}">{escape(str(x.get("ts", ""))[11:23])} '
        f'{level_of(x):<7} {escape(describe_line(x))}</span>\n'
        for x in lines
    )
    return f'<pre class="log">{text}</pre>'
