"""The ordered list of steps of one workflow."""

from __future__ import annotations

import math
from collections.abc import Iterator
from numbers import Real
from typing import Any, Generic, NamedTuple

from ._base import BaseStep, C
from ._policies import RetryPolicy
from ._progress import ProgressPlan


class Guard(NamedTuple):
    """A step's retry policy and timeout, as read at registration."""

    retry: RetryPolicy | None
    timeout: float | None


class RunPlan(Generic[C]):
    """The registry as a run reads it: built on first need, kept until the registry changes.

    ``entries`` holds ``(index, step, name, guard)`` per step, ``guard``
    being None for a step with neither retry nor timeout (the fast path);
    ``undoes`` says per step whether its ``rollback()`` undoes anything.
    """

    __slots__ = ('entries', 'names', 'progress', 'steps', 'undoes', 'weights')

    def __init__(
        self,
        steps: list[BaseStep[C]],
        names: list[str],
        weights: list[float],
        guards: list[Guard | None],
        undoes: list[bool],
    ) -> None:
        self.steps = tuple(steps)
        self.names = tuple(names)
        self.weights = tuple(weights)
        self.undoes = tuple(undoes)
        self.entries = tuple(zip(range(len(steps)), steps, names, guards, strict=True))
        self.progress = ProgressPlan(weights)


class StepRegistry(Generic[C]):
    """Steps in run order, addressable by name.

    Every step is checked when it is added (name, weight), so a bad step is
    reported where it was written rather than in the middle of a run. Name and
    weight (and ``retry``/``timeout``, ``can_rollback``) are read then, once: a
    run does not ask each step again.
    """

    def __init__(self) -> None:
        self._steps: list[BaseStep[C]] = []
        self._order: list[str] = []  # names, in step order
        self._weights: list[float] = []
        self._guards: list[Guard | None] = []
        self._undoes: list[bool] = []
        self._names: set[str] = set()
        self._plan: RunPlan[C] | None = None

    def register(self, step: BaseStep[C]) -> None:
        """Add a step at the end of the workflow."""
        self._insert(len(self._steps), step)

    def unregister(self, name: str) -> None:
        """Remove the step called ``name``."""
        index = self._index_of(name)
        del self._steps[index], self._order[index], self._weights[index], self._guards[index]
        del self._undoes[index]
        self._names.discard(name)
        self._plan = None

    def insert_before(self, name: str, step: BaseStep[C]) -> None:
        """Insert ``step`` just before the step called ``name``."""
        self._insert(self._index_of(name), step)

    def insert_after(self, name: str, step: BaseStep[C]) -> None:
        """Insert ``step`` just after the step called ``name``."""
        self._insert(self._index_of(name) + 1, step)

    def get_steps(self) -> list[BaseStep[C]]:
        """The steps in order (a copy: changing it does not change the registry)."""
        return list(self._steps)

    def plan(self) -> RunPlan[C]:
        """Steps, names, weights and policies as read at registration, and the progress plan."""
        if self._plan is None:
            self._plan = RunPlan(
                self._steps, self._order, self._weights, self._guards, self._undoes
            )
        return self._plan

    @property
    def names(self) -> list[str]:
        return list(self._order)

    @property
    def total_weight(self) -> float:
        return math.fsum(self._weights)

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[BaseStep[C]]:
        return iter(list(self._steps))

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self._names
        return any(step is item for step in self._steps)

    def __repr__(self) -> str:
        return f'StepRegistry({self.names!r})'

    def _insert(self, index: int, step: BaseStep[C]) -> None:
        name = _checked_name(step)
        weight = step.progress_weight
        _check_weight(name, weight)
        guard = _checked_guard(name, step)
        undoes = step.can_rollback
        if not isinstance(undoes, bool):
            raise ValueError(
                f"step '{name}': can_rollback must be True or False, got {type(undoes).__name__}"
            )
        if name in self._names:
            raise ValueError(
                f"a step named '{name}' is already registered; step names must be unique"
            )
        self._steps.insert(index, step)
        self._order.insert(index, name)
        self._weights.insert(index, float(weight))
        self._guards.insert(index, guard)
        self._undoes.insert(index, undoes)
        self._names.add(name)
        self._plan = None

    def _index_of(self, name: str) -> int:
        if name in self._names:
            return self._order.index(name)
        known = ', '.join(f"'{n}'" for n in self.names) or 'none'
        raise ValueError(f"no step named '{name}' in the registry; registered steps: {known}")


def _checked_name(step: object) -> str:
    if not isinstance(step, BaseStep):
        raise TypeError(f'expected a BaseStep instance, got {type(step).__name__}')
    name = step.name
    if not isinstance(name, str) or not name:
        raise ValueError(f'{type(step).__name__}.name must be a non-empty string, got {name!r}')
    return name


def _finite(number: Real) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int beyond float range
        return False


def _check_weight(name: str, weight: object) -> None:
    if isinstance(weight, bool) or not isinstance(weight, Real):
        raise ValueError(
            f"step '{name}': progress_weight must be a number, got {type(weight).__name__}"
        )
    if not _finite(weight) or weight < 0:
        raise ValueError(
            f"step '{name}': progress_weight must be a finite number >= 0, got {weight!r}"
        )


def _checked_guard(name: str, step: BaseStep[Any]) -> Guard | None:
    timeout = step.timeout
    retry = step.retry
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, Real)
        or not _finite(timeout)
        or timeout <= 0
    ):
        raise ValueError(f"step '{name}': timeout must be a number of seconds > 0, got {timeout!r}")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ValueError(f"step '{name}': retry must be a RetryPolicy, got {type(retry).__name__}")
    if retry is None and timeout is None:
        return None
    return Guard(retry, None if timeout is None else float(timeout))
