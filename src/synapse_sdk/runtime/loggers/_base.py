"""What a logger receives: events, progress, metrics, and the run's lifecycle."""

from __future__ import annotations

from typing import Any

from synapse_sdk.plugins.steps import RunListener

OVERALL = 'overall'
"""Category under which the run's overall progress is reported."""

LEVELS = ('debug', 'info', 'warning', 'error')
"""The levels of ``log()`` events, lowest first."""


class Logger(RunListener):
    """Base for loggers; every method is a no-op so a logger implements what it shows.

    A logger is also a :class:`RunListener`, so it sees steps start, end,
    skip and roll back without the steps having to log anything.
    """

    def log(self, event: str, data: dict[str, Any], file: str | None, level: str) -> None: ...

    def progress(self, current: float, total: float, category: str) -> None: ...

    def metrics(self, value: dict[str, Any], category: str) -> None: ...

    def close(self) -> None:
        """Flush and release what the logger holds; called once when the run is over."""
