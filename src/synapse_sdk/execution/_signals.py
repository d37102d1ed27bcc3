"""Ctrl-C and SIGTERM during a run: cancel cleanly first, stop at once if asked again."""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from synapse_sdk.plugins.steps import CancelToken

# A run stopped by a signal exits 128 + its number, as the shell reports it; the
# CLI's table (cli/main.py EXIT_CODES) gives a cancelled run the SIGINT code.
SIGNAL_EXIT_CODES = {'SIGINT': 130, 'SIGTERM': 143}


class SignalState:
    """Which signal arrived first, if any (its name decides the exit code)."""

    def __init__(self) -> None:
        self.first: str | None = None

    @property
    def exit_code(self) -> int:
        """The code for the signal that came first; SIGINT's if none did (cancelled otherwise)."""
        return SIGNAL_EXIT_CODES[self.first or 'SIGINT']


@contextmanager
def cancel_on_signals(token: CancelToken, *, grace: float | None = 10.0) -> Iterator[SignalState]:
    """While the block runs (in the main thread), SIGINT and SIGTERM cancel ``token``.

    The first signal asks the run to stop: the running step is interrupted at
    its next ``set_progress()`` / ``raise_if_cancelled()`` and the run rolls
    back. A step that does not stop within ``grace`` seconds gets a
    ``KeyboardInterrupt``, and so does everything after a second signal: a
    second Ctrl-C during rollback stops it at once (the run journal then keeps
    the rest of the rollback for ``synapse runs rollback``). ``grace=None``: no
    forced stop (a Ray driver waits for its worker's rollback by itself).

    A cancel that comes another way while the block runs (``synapse runs cancel``
    through the journal, a lost lease) gets the same grace; a signal after it
    stops at once, as a second Ctrl-C does.
    """
    state = SignalState()
    timers: list[threading.Timer] = []

    def arm(reason: str) -> None:  # the token's first cancel, whoever made it
        if grace is not None:
            timer = threading.Timer(grace, _thread.interrupt_main)
            timer.daemon = True
            timers.append(timer)
            timer.start()

    def handler(signum: int, frame: FrameType | None) -> None:
        if state.first is None and not token.cancelled:
            state.first = signal.Signals(signum).name
            token.cancel(state.first)
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, handler) for s in watched}
    token.subscribe(arm)
    try:
        yield state
    finally:
        token.unsubscribe(arm)
        for timer in timers:
            timer.cancel()
        for s, old in previous.items():
            signal.signal(s, old)
