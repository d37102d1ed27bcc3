"""Live progress bars and event lines on the terminal (stderr), drawn with rich."""

from __future__ import annotations

from time import monotonic
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from synapse_sdk.plugins.steps import (
    LIFECYCLE_EVENTS,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunStarted,
    StepEnded,
    StepInfo,
    StepOverdue,
    StepResult,
    StepRetrying,
    StepReused,
    StepSkipped,
    StepStarted,
)

from ._base import Logger

_LEVEL_STYLE = {'debug': 'dim', 'info': '', 'warning': 'yellow', 'error': 'bold red'}


class ConsoleLogger(Logger):
    """One bar for the run overall and one per progress category, with event lines above.

    The bars are redrawn at most once per ``min_interval`` seconds (the
    latest value of each category is kept and drawn at the next chance, and
    always at a step's start, retry and end), so a step may report progress
    for every item it handles at almost no cost (``benchmarks/console_progress.py``).
    A retried attempt gets a ``retry <step> (attempt N failed: ...; next in Ds)`` line.
    """

    listens_to = LIFECYCLE_EVENTS

    def __init__(self, console: Console | None = None, *, min_interval: float = 0.1) -> None:
        self.console = console if console is not None else Console(stderr=True)
        self.min_interval = min_interval
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._next_draw = 0.0
        self._pending: dict[str, tuple[float, float]] = {}

    # events --------------------------------------------------------------
    def log(self, event: str, data: dict[str, Any], file: str | None, level: str) -> None:
        style = _LEVEL_STYLE.get(level, '')
        text = f'{escape(event)} {escape(_short(data))}' if data else escape(event)
        if file:
            text += f' [dim]({escape(file)})[/dim]'
        self.console.print(f'[{style}]{text}[/{style}]' if style else text, highlight=False)

    def metrics(self, value: dict[str, Any], category: str) -> None:
        figures = ' '.join(f'{k}={_fmt(v)}' for k, v in value.items())
        self.console.print(f'[cyan]metrics[/cyan] {escape(f"[{category}]")} {escape(figures)}')

    # progress ------------------------------------------------------------
    def progress(self, current: float, total: float, category: str) -> None:
        # Hot path (a step may report every item): remember the value; redraw at
        # most once per ``min_interval`` (drawing is what costs, not the report).
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
                TextColumn('{task.description:<16}'),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
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
            task = self._tasks[category] = self._bars.add_task(category, total=total)
        self._bars.update(task, completed=current, total=total)

    # lifecycle -----------------------------------------------------------
    def on_event(self, event: RunEvent) -> None:
        match event:
            case RunStarted(steps=steps):
                names = ', '.join(s.name for s in steps)
                self.console.print(f'[bold]run[/bold] {len(steps)} steps: {escape(names)}')
            case StepStarted(step=step):
                # The overall figure reached at the previous step's end arrives after that
                # step's StepEnded and may still be pending (throttled): draw it now, or a
                # step that reports no progress of its own runs with the bar stuck behind.
                self._flush()
                self.console.print(f'[bold blue]>[/bold blue] {escape(step.name)}')
            case StepEnded():
                self._flush()
                self._print_end(event.step, event.result)
            case StepRetrying(step=step, attempt=attempt, result=result, delay=delay):
                self._flush()
                self.console.print(
                    f'[yellow]retry {escape(step.name)}[/yellow] (attempt {attempt} failed: '
                    f'{escape(result.error or "failed")}; next in {delay:.1f}s)',
                    highlight=False,
                )
            case StepSkipped(step=step):
                self.console.print(f'[dim]skipped {escape(step.name)}[/dim]')
            case StepReused(step=step):
                self.console.print(
                    f'[dim]reused {escape(step.name)} (from the earlier attempt)[/dim]'
                )
            case StepOverdue(step=step, limit=limit):
                self.console.print(
                    f'[bold red]{escape(step.name)} is past its {limit:g}s timeout and blocked '
                    'where it cannot be interrupted; it stops when that call returns[/bold red]'
                )
            case RollbackStarted(step=step):
                self.console.print(f'[yellow]rolling back[/yellow] {escape(step.name)}')
            case RollbackEnded(step=step, error=error) if error is not None:
                self.console.print(
                    f'[bold red]rollback of {escape(step.name)} failed:[/bold red] '
                    f'{escape(str(error))}'
                )
            case RunEnded():
                self._flush()

    def _print_end(self, step: StepInfo, result: StepResult) -> None:
        took = f' ({result.duration_seconds:.2f}s)' if result.duration_seconds is not None else ''
        if result.success:
            self.console.print(f'[green]ok[/green] {escape(step.name)}{took}')
        else:
            self.console.print(
                f'[bold red]failed[/bold red] {escape(step.name)}: {escape(str(result.error))}'
            )

    def close(self) -> None:
        self._flush()
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
            self._tasks.clear()


def _fmt(value: Any) -> str:
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def _short(data: dict[str, Any], limit: int = 300) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[: limit - 3] + '...'
