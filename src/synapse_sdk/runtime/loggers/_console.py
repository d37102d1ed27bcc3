"""Live progress bars and event lines on the terminal (stderr), drawn with rich."""

from __future__ import annotations

from time import monotonic
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.progress_bar import ProgressBar
from rich.text import Text

from synapse_sdk.plugins.steps import (
    LIFECYCLE_EVENTS,
    RollbackEnded,
    RunEnded,
    RunEvent,
    StepEnded,
    StepRetrying,
    StepStarted,
)

from ._base import LEVELS, OVERALL, Logger
from ._lines import LineLogger, Narrator, clock_time, event_text, level_rank, metrics_text

_LEVEL_STYLE = {'debug': 'dim', 'info': '', 'warning': 'yellow', 'error': 'bold red'}

# How a bar ended, when not simply done: its colour, and the word shown in place of the time.
_STATE_STYLE = {
    'failed': 'red',
    'cancelled': 'yellow',
    'rolled back': 'yellow',
    'rollback failed': 'bold red',
}


class ConsoleLogger(Logger):
    """One bar for the run overall and one per progress category, with event lines above.

    Each bar shows its percentage, the count (``250/1000``) for a step's own
    category, and the time left while it moves (then the time it took). When a run
    fails, the bars say what happened: the failed step's ``failed``, a rolled-back
    step's ``rolled back``, the overall bar ``failed`` (or ``cancelled``) where it
    stopped; the last line sums the run up. Only steps with a ``rollback()`` are said
    to be rolled back; a skipped step's line gives the reason ``can_skip()`` returned.

    The bars are redrawn at most once per ``min_interval`` seconds (the
    latest value of each category is kept and drawn at the next chance, and
    always at a step's start, retry and end), so a step may report progress
    for every item it handles at almost no cost (``benchmarks/console_progress.py``).
    ``log()`` events below ``level`` are not shown.

    On a console that is not a terminal (output redirected to a file or a pipe), it
    writes plain lines instead, as :class:`LineLogger` does: no bars, no wrapping,
    each line with its level.
    """

    listens_to = LIFECYCLE_EVENTS

    def __init__(
        self, console: Console | None = None, *, min_interval: float = 0.1, level: str = 'info'
    ) -> None:
        self.console = console if console is not None else Console(stderr=True)
        self.min_interval = min_interval
        self.level = level
        self._threshold = level_rank(level)
        live = self.console.is_terminal or self.console.is_jupyter
        self._lines = None if live else LineLogger(self.console.file, level=level)
        self._narrator = Narrator()
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._next_draw = 0.0
        self._pending: dict[str, tuple[float, float]] = {}
        self._step: str | None = None  # the step running now
        self._failed: str | None = None  # the step the run failed at: its bars stay 'failed'
        self._owner: dict[str, str | None] = {}  # category -> the step that reported it first

    # events --------------------------------------------------------------
    def log(self, event: str, data: dict[str, Any], file: str | None, level: str) -> None:
        if self._lines is not None:
            self._lines.log(event, data, file, level)
        elif LEVELS.index(level) >= self._threshold:
            text = event_text(event, data, file)
            text.stylize(_LEVEL_STYLE.get(level, ''))
            self.console.print(text, highlight=False)

    def metrics(self, value: dict[str, Any], category: str) -> None:
        if self._lines is not None:
            self._lines.metrics(value, category)
        else:
            self.console.print(metrics_text(value, category), highlight=False)

    # progress ------------------------------------------------------------
    def progress(self, current: float, total: float, category: str) -> None:
        # Hot path (a step may report every item): remember the value; redraw at
        # most once per ``min_interval`` (drawing is what costs, not the report).
        if self._lines is not None:
            self._lines.progress(current, total, category)
            return
        self._pending[category] = (current, total)
        now = monotonic()
        if now >= self._next_draw or current >= total:
            self._next_draw = now + self.min_interval
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        bars = self._bars
        if bars is None:
            bars = self._bars = Progress(
                TextColumn('{task.description:<16}', markup=False),
                _Bar(),
                TaskProgressColumn(),
                _Count(),
                _Time(),
                console=self.console,
                transient=False,
                auto_refresh=False,
            )
            bars.start()
        for category, (current, total) in self._pending.items():
            self._draw(category, current, total)
        self._pending.clear()
        bars.refresh()

    def _draw(self, category: str, current: float, total: float) -> None:
        assert self._bars is not None
        task = self._tasks.get(category)
        if task is None:
            counts = category != OVERALL
            task = self._tasks[category] = self._bars.add_task(
                category, total=total, counts=counts, state=None
            )
            self._owner[category] = self._step if counts else None
        self._bars.update(task, completed=current, total=total)

    def _mark(self, step: str | None, state: str) -> None:
        """The bars of ``step`` (``None``: the overall bar) end in ``state``."""
        if self._bars is None:
            return
        for category, task in self._tasks.items():
            if (category == OVERALL) if step is None else (self._owner.get(category) == step):
                self._bars.update(task, state=state)
        self._bars.refresh()

    # lifecycle -----------------------------------------------------------
    def on_event(self, event: RunEvent) -> None:
        if self._lines is not None:
            self._lines.on_event(event)
            return
        # Pending values are drawn first, at every step boundary: the overall figure
        # reached at a step's end arrives after its StepEnded and may still be pending
        # (throttled); a step that reports no progress of its own would otherwise run
        # with the bar stuck behind.
        if isinstance(event, StepStarted | StepEnded | StepRetrying | RunEnded):
            self._flush()
        match event:
            case StepStarted(step=step):
                self._step = step.name
            case StepEnded(step=step, result=result):
                self._step = None
                if not result.success:
                    self._failed = step.name
                    self._mark(step.name, 'failed')
            case RollbackEnded(step=step, error=error) if error is not None:
                self._mark(step.name, 'rollback failed')
            case RollbackEnded(step=step) if step.can_rollback and step.name != self._failed:
                self._mark(step.name, 'rolled back')
            case RunEnded(summary=summary) if not summary.success:
                stopped = summary.cancelled or summary.interrupted
                self._mark(None, 'cancelled' if stopped else 'failed')
                if stopped and self._failed is not None:  # the step was stopped, not failed
                    self._mark(self._failed, 'cancelled')
        said = self._narrator.line(event)
        if said is not None:
            self.console.print(said[1], highlight=False)

    def close(self) -> None:
        if self._lines is not None:
            return
        self._flush()
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
            self._tasks.clear()
            self._owner.clear()


class _Bar(BarColumn):
    """The bar, in the colour of how it ended (red: failed; yellow: rolled back, cancelled)."""

    def render(self, task: Task) -> ProgressBar:
        bar = super().render(task)
        style = _STATE_STYLE.get(task.fields.get('state') or '')
        if style:
            bar.complete_style = bar.finished_style = style
        return bar


class _Count(ProgressColumn):
    """``done/total`` for a step's own category (the overall figure is a percentage only)."""

    def render(self, task: Task) -> Text:
        if not task.fields.get('counts'):
            return Text('')
        return Text(f'{_count(task.completed)}/{_count(task.total)}', style='progress.download')


class _Time(ProgressColumn):
    """While the bar moves, the time left (``eta 0:01:05``); once done, the time it took;
    if it ended otherwise, how (``failed``, ``rolled back``, ``cancelled``)."""

    def render(self, task: Task) -> Text:
        state = task.fields.get('state')
        if state:
            return Text(state, style=_STATE_STYLE.get(state, ''))
        if task.finished:
            return Text(clock_time(task.finished_time or 0.0), style='progress.elapsed')
        remaining = task.time_remaining
        shown = '-:--:--' if remaining is None else clock_time(remaining)
        return Text(f'eta {shown}', style='progress.remaining')


def _count(value: float | None) -> str:
    if value is None:
        return '?'
    return str(int(value)) if float(value).is_integer() else f'{value:.4g}'
