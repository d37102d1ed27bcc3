"""The runtime layer: what a running step talks to."""

from ._context import RuntimeContext
from ._result import ResultRecorder, RollbackOutcome, RunResult
from .loggers import ConsoleLogger, JsonLinesLogger, LineLogger, Logger, MemoryLogger

__all__ = [
    'ConsoleLogger',
    'JsonLinesLogger',
    'LineLogger',
    'Logger',
    'MemoryLogger',
    'ResultRecorder',
    'RollbackOutcome',
    'RunResult',
    'RuntimeContext',
]
