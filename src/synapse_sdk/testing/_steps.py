"""A step made of plain functions: the quickest way to write a workflow in a test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synapse_sdk.plugins.steps import BaseStep, RetryPolicy, StepResult

Fn = Callable[..., Any]


class FunctionStep(BaseStep[Any]):
    """``execute``, ``rollback`` and ``skip`` are the given functions (all optional).

    ``execute(context)`` may return a ``StepResult`` or None (a plain success).
    Every call is recorded in ``calls`` as ``('execute' | 'rollback', name)`` (pass
    one list to several steps to see their order), and each result ``rollback()``
    received in ``rollback_results``.
    """

    def __init__(
        self,
        name: str,
        weight: float = 1.0,
        *,
        execute: Fn | None = None,
        rollback: Fn | None = None,
        skip: Fn | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        resumable: bool = True,
        calls: list[tuple[str, str]] | None = None,
    ) -> None:
        self._name = name
        self._weight = weight
        self._execute = execute
        self._rollback = rollback
        self._skip = skip
        self._resumable = resumable
        self.retry = retry
        self.timeout = timeout
        self.calls = calls if calls is not None else []
        self.rollback_results: list[StepResult] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return self._weight

    @property
    def resumable(self) -> bool:
        return self._resumable

    @property
    def can_rollback(self) -> bool:
        """Only with a ``rollback`` function: without one, rolling back undoes nothing."""
        return self._rollback is not None

    def can_skip(self, context: Any) -> bool | str:
        """``skip(context)``: true, or a string saying why, skips the step."""
        if self._skip is None:
            return False
        answer = self._skip(context)
        return answer if isinstance(answer, str) else bool(answer)

    def execute(self, context: Any) -> StepResult:
        self.calls.append(('execute', self._name))
        returned = self._execute(context) if self._execute is not None else None
        return returned if returned is not None else StepResult()

    def rollback(self, context: Any, result: StepResult) -> None:
        self.calls.append(('rollback', self._name))
        self.rollback_results.append(result)
        if self._rollback is not None:
            self._rollback(context, result)
