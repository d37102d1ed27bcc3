"""Where a run's events, progress and metrics go."""

from ._base import LEVELS, OVERALL, Logger
from ._console import ConsoleLogger
from ._jsonl import JsonLinesLogger
from ._lines import LineLogger
from ._memory import LoggedEvent, MemoryLogger

__all__ = [
    'LEVELS',
    'OVERALL',
    'ConsoleLogger',
    'JsonLinesLogger',
    'LineLogger',
    'LoggedEvent',
    'Logger',
    'MemoryLogger',
]
