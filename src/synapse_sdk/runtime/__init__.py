"""The runtime layer: what a running step talks to."""

from .context import RuntimeContext
from .loggers import ConsoleLogger, JsonLinesLogger, LineLogger, Logger, MemoryLogger
from .result import ResultRecorder, RollbackOutcome, RunResult

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
