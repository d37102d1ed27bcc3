"""Where a run's events, progress and metrics go."""

from ._base import OVERALL, Logger
from ._console import ConsoleLogger
from ._jsonl import JsonLinesLogger
from ._memory import LoggedEvent, MemoryLogger

__all__ = ['OVERALL', 'ConsoleLogger', 'JsonLinesLogger', 'LoggedEvent', 'Logger', 'MemoryLogger']
