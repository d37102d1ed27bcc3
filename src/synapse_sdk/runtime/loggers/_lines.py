"""What a run says to people, line by line: the wording the console and plain logs share.

:class:`Narrator` turns lifecycle events into lines (a level and a rich ``Text``);
the live console prints them above its bars, :class:`LineLogger` writes them as
plain text, one line each, for a log that is not a terminal (a file, a pipe, CI).
"""

from __future__ import annotations

import sys
from time import monotonic
from typing import IO, Any

from rich.text import Text

from synapse_sdk.plugins.steps import (
    LIFECYCLE_EVENTS,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunStarted,
    RunSummary,
    StepEnded,
    StepOverdue,
    StepRetrying,
    StepReused,
    StepSkipped,
    StepStarted,
)

from ._base import LEVELS, OVERALL, Logger

Line = tuple[str, Text]
"""A line to show: its level (one of ``LEVELS``) and its text."""


class Narrator:
    """The line (if any) each lifecycle event is told as, and the run's closing summary.

    Keeps what the summary needs: which steps the rollback really undid (a step without
    a ``rollback()`` is never said to be rolled back).
    """

    def __init__(self) -> None:
        self.rolled_back: list[str] = []

    def line(self, event: RunEvent) -> Line | None:
        match event:
            case RunStarted(steps=steps):
                self.rolled_back = []
                names = ', '.join(s.name for s in steps)
                return 'info', Text.assemble(('run', 'bold'), f' {len(steps)} steps: {names}')
            case StepStarted(step=step):
                return 'info', Text.assemble(('>', 'bold blue'), f' {step.name}')
            case StepEnded(step=step, result=result) if result.success:
                took = result.duration_seconds
                timing = f' ({took:.2f}s)' if took is not None else ''
                return 'info', Text.assemble(('ok', 'green'), f' {step.name}{timing}')
            case StepEnded(step=step, result=result):
                return 'error', Text.assemble(
                    ('failed', 'bold red'), f' {step.name}: {result.error}'
                )
            case StepRetrying(step=step, attempt=attempt, result=result, delay=delay):
                return 'warning', Text.assemble(
                    (f'retry {step.name}', 'yellow'),
                    f' (attempt {attempt} failed: {result.error or "failed"}; '
                    f'next in {delay:.1f}s)',
                )
            case StepSkipped(step=step, reason=reason):
                why = f' ({reason})' if reason else ''
                return 'info', Text(f'skipped {step.name}{why}', style='dim')
            case StepReused(step=step):
                return 'info', Text(f'reused {step.name} (from the earlier attempt)', style='dim')
            case StepOverdue(step=step, limit=limit):
                return 'error', Text(
                    f'{step.name} is past its {limit:g}s timeout and blocked where it cannot be '
                    'interrupted; it stops when that call returns',
                    style='bold red',
                )
        return self._rollback_or_end(event)

    def _rollback_or_end(self, event: RunEvent) -> Line | None:
        match event:
            case RollbackStarted(step=step) if step.can_rollback:
                return 'warning', Text.assemble(('rolling back', 'yellow'), f' {step.name}')
            case RollbackEnded(step=step, error=error) if error is not None:
                return 'error', Text.assemble(
                    (f'rollback of {step.name} failed:', 'bold red'), f' {error}'
                )
            case RollbackEnded(step=step) if step.can_rollback:
                self.rolled_back.append(step.name)
            case RunEnded(summary=summary):
                return self.summary(summary)
        return None

    def summary(self, summary: RunSummary) -> Line:
        """The run's last line: how it ended and what its rollback really undid."""
        if summary.success:
            counts = [f'{summary.steps_executed} executed']
            if summary.steps_skipped:
                counts.append(f'{summary.steps_skipped} skipped')
            if summary.steps_reused:
                counts.append(f'{summary.steps_reused} reused')
            return 'info', Text.assemble(('done', 'bold green'), f': {", ".join(counts)}')
        if summary.interrupted:
            verb = f'stopped by {type(summary.error).__name__}'
        else:
            verb = 'cancelled' if summary.cancelled else 'failed'
        where = f' at {summary.failed_step}' if summary.failed_step else ''
        undone = []
        if self.rolled_back:
            undone.append(f'rolled back: {", ".join(self.rolled_back)}')
        if summary.rollback_errors:
            count = len(summary.rollback_errors)
            undone.append(f'{count} rollback error{"s" if count > 1 else ""} (see above)')
        if not undone:
            undone.append('nothing to roll back')
        level = 'error' if verb == 'failed' or summary.rollback_errors else 'warning'
        return level, Text.assemble(
            (f'run {verb}{where}', 'bold red' if level == 'error' else 'yellow'),
            f'; {"; ".join(undone)}',
        )


def event_text(event: str, data: dict[str, Any], file: str | None, limit: int = 300) -> Text:
    """A ``log()`` call as a line: the event, its data (shortened past ``limit``), the file."""
    text = Text(event)
    if data:
        shown = repr(data)
        text.append(' ' + (shown if len(shown) <= limit else shown[: limit - 3] + '...'))
    if file:
        text.append(f' ({file})', style='dim')
    return text


def metrics_text(value: dict[str, Any], category: str) -> Text:
    figures = ' '.join(f'{k}={_fmt(v)}' for k, v in value.items())
    return Text.assemble(('metrics', 'cyan'), f' [{category}] {figures}')


def level_rank(level: str) -> int:
    """``level``'s place in ``LEVELS``; an unknown level is an error that names them."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValueError(f'log level must be one of {LEVELS}, got {level!r}') from None


class LineLogger(Logger):
    """Plain lines on a stream (default: stderr), each ``LEVEL   text`` on a line of its own.

    For output that is not a terminal: no colours, no bars and no wrapping (a line
    break inside a message is written ``\\n``), so each event stays one line in a
    file, a pipe or a CI log. ``log()`` events below ``level`` are left out. Progress
    of a step's own category is a line at each tenth of the way, with the count and
    an estimate of the time left, once the step has run ``quiet_for`` seconds (a
    quick step's lines are enough); the overall figure is told by the step lines.
    """

    listens_to = LIFECYCLE_EVENTS

    def __init__(
        self, stream: IO[str] | None = None, *, level: str = 'info', quiet_for: float = 2.0
    ) -> None:
        self.stream = stream
        self.level = level
        self.quiet_for = quiet_for
        self._threshold = level_rank(level)
        self._narrator = Narrator()
        self._tenths: dict[str, int] = {}
        self._since = monotonic()  # the running step's start: what the time left is told from

    def write(self, level: str, text: Text | str) -> None:
        """One line: the level, then the text with any line break in it escaped."""
        plain = text.plain if isinstance(text, Text) else text
        plain = plain.replace('\r', '\\r').replace('\n', '\\n')
        out = self.stream if self.stream is not None else sys.stderr
        out.write(f'{level.upper():<7} {plain}\n')
        out.flush()

    def log(self, event: str, data: dict[str, Any], file: str | None, level: str) -> None:
        if LEVELS.index(level) >= self._threshold:
            self.write(level, event_text(event, data, file))

    def metrics(self, value: dict[str, Any], category: str) -> None:
        self.write('info', metrics_text(value, category))

    def progress(self, current: float, total: float, category: str) -> None:
        # Hot path (a step may report every item): one division and a compare.
        tenth = int(10 * current / total)
        if tenth <= self._tenths.get(category, 0) or category == OVERALL:
            return
        self._tenths[category] = tenth
        spent = monotonic() - self._since
        if spent < self.quiet_for:
            return
        line = f'{category} {int(100 * current / total)}% ({_fmt(current)}/{_fmt(total)})'
        if current < total:
            line += f' eta {clock_time(spent * (total - current) / current)}'
        self.write('info', line)

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, StepStarted):  # each step's categories are told afresh
            self._tenths.clear()
            self._since = monotonic()
        said = self._narrator.line(event)
        if said is not None:
            self.write(*said)


def clock_time(seconds: float) -> str:
    """``H:MM:SS``."""
    whole = int(seconds)
    return f'{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}'


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:g}' if value.is_integer() else f'{value:.4g}'
    return str(value)
