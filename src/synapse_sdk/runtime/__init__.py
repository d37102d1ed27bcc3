"""The runtime layer: what a running step talks to."""

from ._context import RuntimeContext
from .loggers import ConsoleLogger, JsonLinesLogger, Logger, MemoryLogger

__all__ = ['ConsoleLogger', 'JsonLinesLogger', 'Logger', 'MemoryLogger', 'RuntimeContext']
