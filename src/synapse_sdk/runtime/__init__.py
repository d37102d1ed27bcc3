"""The runtime layer: what a running step talks to."""

from .context import RuntimeContext
from .loggers import ConsoleLogger, JsonLinesLogger, Logger, MemoryLogger

__all__ = ['ConsoleLogger', 'JsonLinesLogger', 'Logger', 'MemoryLogger', 'RuntimeContext']
