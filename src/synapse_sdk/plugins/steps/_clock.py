"""The one clock a run reads (durations) and spends (the wait between retry attempts)."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Protocol, runtime_checkable

from ._cancellation import CancelToken


@runtime_checkable
class Clock(Protocol):
    """``clock()`` is now, in seconds (only differences count); ``clock.sleep(seconds)``
    spends the wait between retry attempts. ``synapse_sdk.testing.FakeClock`` is one."""

    def __call__(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """``time.perf_counter``; a wait that a cancel of the run cuts short."""

    __slots__ = ('token',)

    def __init__(self, token: CancelToken) -> None:
        self.token = token

    def __call__(self) -> float:
        return perf_counter()

    def sleep(self, seconds: float) -> None:
        self.token.wait(seconds)  # the caller looks at the token afterwards


class _SplitClock:
    """A clock read from one callable and spent by another."""

    __slots__ = ('now', 'wait')

    def __init__(self, now: Callable[[], float], wait: Callable[[float], None]) -> None:
        self.now = now
        self.wait = wait

    def __call__(self) -> float:
        return self.now()

    def sleep(self, seconds: float) -> None:
        self.wait(seconds)


def clock_of(
    clock: Clock | Callable[[], float] | None,
    sleep: Callable[[float], None] | None,
    token: CancelToken,
) -> Clock:
    """The run's clock from the Orchestrator's arguments.

    ``clock`` as given (a ``FakeClock``), or the system clock; ``sleep`` (what a
    ``RuntimeContext(sleep=...)`` passes on) replaces only the waits. A plain callable
    as ``clock`` is read, and the waits are the system clock's.
    """
    if clock is None:  # the common case: no isinstance check against the protocol
        return SystemClock(token) if sleep is None else _SplitClock(perf_counter, sleep)
    if sleep is None and isinstance(clock, Clock):
        return clock
    return _SplitClock(clock, sleep or SystemClock(token).sleep)


def reader(clock: Clock) -> Callable[[], float]:
    """What to call for the time, without a wrapper around the function that tells it."""
    if type(clock) is SystemClock:
        return perf_counter
    if type(clock) is _SplitClock:
        return clock.now
    return clock
