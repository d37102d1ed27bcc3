"""Time that passes only when told: retry delays without waiting, exact step durations."""

from __future__ import annotations


class FakeClock:
    """Pass ``clock.sleep`` as ``RuntimeContext(sleep=...)`` or ``Orchestrator(sleep=...)``,
    and the clock itself as ``Orchestrator(clock=...)``.

    Every sleep returns at once; ``sleeps`` lists the requested delays and
    ``now`` (also what calling the clock returns) is the total time that
    would have passed, so a step that "sleeps" 2 seconds takes exactly 2.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
