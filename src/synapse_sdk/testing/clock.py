"""Time that passes only when told: retry delays without waiting."""

from __future__ import annotations


class FakeClock:
    """Pass ``clock.sleep`` as ``RuntimeContext(sleep=...)`` or ``Orchestrator(sleep=...)``.

    Every sleep returns at once; ``sleeps`` lists the requested delays and
    ``now`` is the total time that would have passed.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
