"""Small server-side SVG charts for the report: a Gantt chart and line charts.

Drawn here rather than by a charting library: the report must open with no
network, and the two shapes it needs are a few dozen lines each (pygal has no
Gantt chart and links its tooltip script from a CDN by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from ._timeline import Span

ROW = 22  # px per Gantt row
LABEL = 190  # px for the labels left of the bars
PLOT = 640  # px for the bars / the plot
COLORS = {
    'succeeded': '#2e9d57',
    'failed': '#d6453d',
    'interrupted': '#d6453d',
    'running': '#3b7dd8',
    'rolled_back': '#e0a030',
    'rollback_failed': '#8b1e1e',
    'waiting': '#b8b8b8',
    'skipped': '#9a9a9a',
    'reused': '#17a2b8',
}


def ticks(extent: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``extent`` (1, 2 or 5 times a power of ten)."""
    if extent <= 0:
        return [0.0, 1.0]
    raw = extent / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(extent / step - 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f'{value:g}' if abs(value) < 1e5 else f'{value:.3g}'


def gantt_svg(spans: Sequence[Span], extent: float, labels: Sequence[str]) -> str:
    """A bar per span on a shared time axis (seconds); ``labels[i]`` names span ``i``."""
    axis = ticks(extent)
    scale = PLOT / (axis[-1] or 1.0)
    height = ROW * len(spans) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" width="{LABEL + PLOT + 20}" '
        f'height="{height}" role="img" aria-label="timeline">'
    ]
    for value in axis:
        x = LABEL + value * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 22}" class="grid"/>'
            f'<text x="{x:.1f}" y="{height - 8}" class="tick">{_fmt(value)}s</text>'
        )
    for row, (span, label) in enumerate(zip(spans, labels, strict=True)):
        y = row * ROW + 4
        parts.append(f'<text x="{LABEL - 8}" y="{y + 13}" class="label">{escape(label)}</text>')
        parts.append(_span_shape(span, y, scale, extent))
    parts.append('</svg>')
    return ''.join(parts)


def _span_shape(span: Span, y: int, scale: float, extent: float) -> str:
    color = COLORS.get(span.status, '#666')
    x = LABEL + span.start * scale
    tip = f'{span.step} {span.kind} {span.status}'
    if span.duration is not None:
        tip += f' {span.duration:.3f}s'
    if span.note:
        tip += f': {span.note}'
    title = f'<title>{escape(tip)}</title>'
    classes = f'bar {span.kind} {span.status}'
    if span.kind in ('skipped', 'reused'):
        return (
            f'<circle cx="{x:.1f}" cy="{y + 9}" r="6" fill="{color}" class="{classes}">'
            f'{title}</circle>'
        )
    end = extent if span.end is None else span.end
    width = max(2.0, (end - span.start) * scale)
    dash = ' stroke-dasharray="3 2" fill-opacity="0.35"' if span.kind == 'wait' else ''
    return (
        f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{ROW - 6}" rx="3" '
        f'fill="{color}" stroke="{color}"{dash} class="{classes}">{title}</rect>'
    )


def line_svg(points: Sequence[tuple[float, float]], label: str, width: int = 420) -> str:
    """A line chart of (seconds, value) points, with both axes ticked."""
    height, left, bottom, top = 200, 48, 26, 10
    xs = ticks(max((p[0] for p in points), default=0.0))
    low = min(0.0, *(p[1] for p in points)) if points else 0.0
    ys = ticks(max((p[1] - low for p in points), default=0.0) or 1.0, 4)
    ys = [low + y for y in ys]
    plot_w, plot_h = width - left - 10, height - bottom - top

    def at(x: float, y: float) -> str:
        px = left + x / (xs[-1] or 1.0) * plot_w
        py = top + plot_h - (y - low) / ((ys[-1] - low) or 1.0) * plot_h
        return f'{px:.1f},{py:.1f}'

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(label)}">'
    ]
    for value in ys:
        y = at(0, value).split(',')[1]
        parts.append(
            f'<line x1="{left}" y1="{y}" x2="{width - 10}" y2="{y}" class="grid"/>'
            f'<text x="{left - 6}" y="{float(y) + 4:.1f}" class="ytick">{_fmt(value)}</text>'
        )
    for value in xs:
        x = at(value, low).split(',')[0]
        parts.append(f'<text x="{x}" y="{height - 8}" class="tick">{_fmt(value)}s</text>')
    line = ' '.join(at(x, y) for x, y in points)
    parts.append(f'<polyline points="{line}" class="line"/>')
    parts.extend(
        f'<circle cx="{at(x, y).split(",")[0]}" cy="{at(x, y).split(",")[1]}" r="2.5" '
        f'class="dot"><title>{_fmt(y)} at {x:.3f}s</title></circle>'
        for x, y in points[-200:]
    )
    parts.append('</svg>')
    return ''.join(parts)
