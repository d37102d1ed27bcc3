"""Where a run's events, progress and metrics go."""

from .base import LEVELS, OVERALL, Logger
from .console import ConsoleLogger
from .jsonl import JsonLinesLogger
from .lines import LineLogger
from .memory import LoggedEvent, MemoryLogger

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
