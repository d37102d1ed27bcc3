"""Where a run's events, progress and metrics go."""

from .base import OVERALL, Logger
from .console import ConsoleLogger
from .jsonl import JsonLinesLogger
from .memory import LoggedEvent, MemoryLogger

__all__ = ['OVERALL', 'ConsoleLogger', 'JsonLinesLogger', 'LoggedEvent', 'Logger', 'MemoryLogger']
