"""Time that passes only when told: retry delays without waiting, exact step durations."""

from __future__ import annotations


class FakeClock:
    """A :class:`~synapse_sdk.plugins.steps.Clock`: pass it as ``Orchestrator(clock=...)``
    (durations are read from it, the waits between retry attempts spent on it), or its
    ``sleep`` as ``RuntimeContext(sleep=...)``.

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
