"""A run in the terminal (rich): the whole record, and the timeline as a Gantt chart."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._timeline import Span
from ._view import RunView

STATUS_STYLE = {
    'succeeded': 'green',
    'running': 'blue',
    'started': 'blue',
    'failed': 'red',
    'crashed': 'bold red',
    'rollback_failed': 'bold red',
    'cancelled': 'yellow',
    'rolled_back': 'yellow',
    'interrupted': 'red',
    'skipped': 'dim',
    'reused': 'cyan',
    'waiting': 'dim',
}
BAR = {'step': '█', 'attempt': '█', 'wait': '┄', 'rollback': '▓'}
MARK = {'skipped': '○', 'reused': '◆'}
LABEL_WIDTH = 32


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ''))


def seconds(value: float | None) -> str:
    if value is None:
        return '-'
    return f'{value:.3f}s' if value < 60 else f'{int(value // 60)}m{value % 60:04.1f}s'


def record_lines(view: RunView) -> RenderableType:
    """The run's header: what ran, with which params, where, when, and how it ended."""
    r = view.record
    head = Text.assemble((f'run {r.id}', 'bold'), '  ', status_text(r.status), f'  {r.progress}%')
    rows: list[tuple[str, str]] = [
        (
            'plugin',
            ' '.join(
                x for x in (r.plugin or '', f'({r.plugin_path})' if r.plugin_path else '') if x
            )
            or '-',
        ),
        ('action', f'{r.action or "-"} ({r.entrypoint})'),
        ('params', json.dumps(r.params, default=str)),
        ('host', f'{r.host} (pid {r.pid})'),
        ('cwd', r.cwd or '-'),
        ('storage', r.storage or '-'),
        ('started', r.started_at),
        ('ended', f'{r.ended_at or "-"}   duration {seconds(view.duration)}'),
        ('attempts', _attempts_line(view)),
        ('log', _log_source(view)),
    ]
    if r.cancel_requested_at:
        rows.append(('cancel', f'requested by {r.cancel_requested_by} at {r.cancel_requested_at}'))
    if r.error:
        rows.append(('error', r.error))
    table = Table.grid(padding=(0, 2))
    table.add_column(style='dim')
    table.add_column(overflow='fold')
    for name, value in rows:
        table.add_row(name, value)
    return Group(head, table)


def _attempts_line(view: RunView) -> str:
    story = '; '.join(a.summary for a in view.attempts)
    return f'{view.record.attempts}' + (f'  [{story}]' if story else '')


def steps_table(view: RunView) -> Table:
    """Each step: start offset, duration, status, attempts, and why it did not run or how
    its rollback went."""
    table = Table('#', 'step', 'status', 'start', 'duration', 'attempts', 'notes')
    for s in view.steps:
        data = view.step_dict(s)
        notes = [x for x in (data['skip_reason'], data['rollback'], s.error) if x]
        keys = sorted(data['rollback_data'] or {})
        if keys and s.status not in ('skipped', 'pending'):
            notes.append(f'rollback data: {", ".join(keys)}')
        start = data['start_offset']
        table.add_row(
            str(s.index + 1),
            s.name,
            status_text(s.status),
            '-' if start is None else f'+{seconds(start)}',
            seconds(s.duration),
            str(s.attempts),
            '; '.join(dict.fromkeys(notes)),
        )
    return table


def metrics_table(view: RunView) -> Table | None:
    latest = view.last_metrics()
    if not latest:
        return None
    table = Table('metrics', 'values', title=None)
    for category, values in latest.items():
        table.add_row(category, ', '.join(f'{k}={_short(v)}' for k, v in values.items()))
    return table


def _short(value: Any) -> str:
    text = f'{value:.4g}' if isinstance(value, float) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + '...'


def show(view: RunView) -> list[RenderableType]:
    """``synapse runs show``: the header, the steps, the metrics."""
    parts: list[RenderableType] = [record_lines(view), steps_table(view)]
    metrics = metrics_table(view)
    if metrics is not None:
        parts.append(metrics)
    return parts


def span_label(span: Span) -> str:
    match span.kind:
        case 'attempt':
            return f'{span.step} #{span.attempt}'
        case 'wait':
            return f'{span.step} wait'
        case 'rollback':
            return f'{span.step} ↶ rollback'
        case 'skipped' | 'reused':
            return f'{span.step} ({span.kind})'
    return span.step


def gantt(view: RunView, width: int = 60) -> Group:
    """The timeline: a line per span, its bar placed on a shared time axis.

    Plain lines rather than a rich ``Table``: a run of a thousand steps has
    thousands of spans, and a table's layout would take a second to draw them.
    """
    extent = view.extent or 1.0
    labels = [span_label(s) for s in view.spans]
    pad = min(max([4, *map(len, labels)]), LABEL_WIDTH)
    head = Text.assemble('span'.ljust(pad), '  ', _axis(extent, width), '  status')
    lines = [head]
    for span, label in zip(view.spans, labels, strict=True):
        bar = _bar(span, extent, width)
        bar.pad_right(width + 1 - bar.cell_len)
        took = '' if span.kind in MARK else '  ' + seconds(span.duration)
        status = status_text(span.status)
        status.pad_right(15 - len(span.status))
        name = label if len(label) <= pad else label[: pad - 1] + '…'
        lines.append(Text.assemble(name.ljust(pad), '  ', bar, ' ', status, took))
    return Group(*lines)


def _bar(span: Span, extent: float, width: int) -> Text:
    scale = width / extent
    first = min(width - 1, int(span.start * scale))
    style = STATUS_STYLE.get(span.status, '')
    if span.kind in MARK:
        return Text(' ' * first + MARK[span.kind], style=style)
    end = extent if span.end is None else span.end
    length = max(1, round(end * scale) - first)
    length = min(length, width - first)
    tail = '▸' if span.end is None else ''
    return Text(' ' * first + BAR.get(span.kind, '█') * length + tail, style=style)


def _axis(extent: float, width: int) -> Text:
    """``0s`` at the left, the midpoint and the end: the header of the bar column."""
    left, middle, right = '0s', seconds(extent / 2), seconds(extent)
    gap = max(1, width // 2 - len(left) - len(middle) // 2)
    line = left + ' ' * gap + middle
    line += ' ' * max(1, width - len(line) - len(right)) + right
    return Text(line, style='dim')


def _log_source(view: RunView) -> str:
    if view.log_from_journal:
        where = f'the journal ({view.log_path} is not on this machine)'
        return where if view.log else f'{where} (none)'
    return f'{view.log_path}' + ('' if view.log else ' (none)')
