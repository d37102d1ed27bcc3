"""The unit of work."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from ._context import BaseStepContext
from ._policies import RetryPolicy
from ._result import StepResult

C = TypeVar('C', bound=BaseStepContext)


class BaseStep(ABC, Generic[C]):
    """One named, weighted unit of work, with an optional skip test and rollback.

    ``retry`` and ``timeout`` are plain attributes (set them on the class):
    ``retry = RetryPolicy(max_attempts=3)``, ``timeout = 30.0`` seconds.
    ``execute``, ``can_skip`` and ``rollback`` may be ``async def``.
    """

    retry: RetryPolicy | None = None
    timeout: float | None = None

    @property
    def resumable(self) -> bool:
        """False when the step's effect lives only in memory (e.g. a loaded data set), so a
        resumed run must execute it again rather than reuse its earlier result."""
        return True

    @property
    def can_rollback(self) -> bool:
        """Whether :meth:`rollback` undoes anything: by default, whether a subclass overrides
        it. Read once, at registration; the console and the run's result say "rolled back"
        only of the steps that can."""
        return type(self).rollback is not BaseStep.rollback

    @property
    @abstractmethod
    def name(self) -> str:
        """Unique identifier of the step within a registry."""

    @property
    @abstractmethod
    def progress_weight(self) -> float:
        """Relative share of the run's progress; weights are normalized over the run."""

    @abstractmethod
    def execute(self, context: C) -> StepResult:
        """Do the work."""

    def can_skip(self, context: C) -> bool | str:
        """Return True to skip the step; a skipped step counts as done and is not rolled back.

        A non-empty string skips it too and says why (``'already exported'``): the
        console, the logs and the run's result show the reason.
        """
        return False

    def rollback(self, context: C, result: StepResult) -> None:
        """Undo the step's work; ``result.rollback_data`` holds what it recorded."""

    def __repr__(self) -> str:
        return f'<{type(self).__name__} {self.name!r}>'
