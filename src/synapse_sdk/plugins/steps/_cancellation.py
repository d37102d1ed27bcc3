"""Asking a run to stop: a token the outside sets, errors the steps see."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._errors import ErrorKind, SynapseError


class StepInterrupted(SynapseError):
    """Base of what a step sees when it is asked to stop (cancelled, or out of time)."""


class StepCancelled(StepInterrupted):
    """The run was cancelled (e.g. Ctrl-C, SIGTERM, ``Orchestrator.cancel()``)."""

    kind = ErrorKind.CANCELLED

    def __init__(self, reason: str = 'cancelled', *, before_step: bool = False) -> None:
        super().__init__(f'the run was cancelled ({reason})')
        self.reason = reason
        self.before_step = before_step  # raised between steps: the named step never began


class StepTimeoutError(StepInterrupted, TimeoutError):
    """The step ran past its ``timeout``."""

    def __init__(self, step: str, limit: float) -> None:
        super().__init__(f"step '{step}' exceeded its timeout of {limit:g}s")
        self.step = step
        self.limit = limit


class CancelToken:
    """Thread-safe: ``cancel()`` may be called from a signal handler or another thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[str], None]] = []
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str = 'cancelled') -> None:
        """Ask the run to stop; the first reason given is kept."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            callbacks = list(self._callbacks)
        self._event.set()
        for callback in callbacks:
            callback(reason)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (early) if cancelled meanwhile."""
        return self._event.wait(seconds)

    def subscribe(self, callback: Callable[[str], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)
            reason = self.reason
        if reason is not None:
            callback(reason)

    def unsubscribe(self, callback: Callable[[str], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
