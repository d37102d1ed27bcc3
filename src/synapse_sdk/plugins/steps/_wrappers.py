"""Steps that wrap other steps, and a step made from a function.

A wrapper is the wrapped step as far as the registry and the orchestrator
can tell: same ``name``, ``progress_weight``, ``can_skip`` and ``rollback``,
so ``insert_before('upload', ...)`` still finds a wrapped ``upload``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from time import perf_counter

from ._base import BaseStep, C
from ._result import StepResult, describe_exception


class StepWrapper(BaseStep[C]):
    """Delegates everything to ``inner``; subclasses override ``execute``."""

    def __init__(self, inner: BaseStep[C]) -> None:
        if not isinstance(inner, BaseStep):
            raise TypeError(
                f'{type(self).__name__} wraps a BaseStep instance, got {type(inner).__name__}'
            )
        self.inner = inner
        self.retry = inner.retry
        self.timeout = inner.timeout

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def progress_weight(self) -> float:
        return self.inner.progress_weight

    @property
    def resumable(self) -> bool:
        return self.inner.resumable

    @property
    def can_rollback(self) -> bool:
        """The inner step's, unless a subclass gives the wrapper a rollback of its own."""
        if type(self).rollback is StepWrapper.rollback:
            return self.inner.can_rollback
        return True

    def execute(self, context: C) -> StepResult:
        return self.inner.execute(context)

    def can_skip(self, context: C) -> bool | str:
        return self.inner.can_skip(context)

    def rollback(self, context: C, result: StepResult) -> None:
        # returned, not dropped: an async inner rollback must reach the orchestrator
        undo: Callable[[C, StepResult], object] = self.inner.rollback
        return undo(context, result)  # type: ignore[return-value]

    def unwrap(self) -> BaseStep[C]:
        """The innermost step, through any number of wrappers."""
        step: BaseStep[C] = self.inner
        while isinstance(step, StepWrapper):
            step = step.inner
        return step

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.inner!r})'


class LoggingStep(StepWrapper[C]):
    """Logs ``step_start`` and ``step_end`` (with elapsed seconds) around the step.

    At ``level`` ``'debug'`` by default: the loggers already show every step's start and
    end, so a console at its default level shows one line per step, not two (the run's
    log file keeps every level).
    """

    def __init__(self, inner: BaseStep[C], *, level: str = 'debug') -> None:
        super().__init__(inner)
        self.level = level

    def execute(self, context: C) -> StepResult:
        context.log('step_start', {'step': self.name}, level=self.level)
        started = perf_counter()
        try:
            result = self.inner.execute(context)
        except BaseException as exc:
            self._log_end(context, started, exc)
            raise
        if inspect.isawaitable(result):
            return self._finish_async(context, started, result)  # type: ignore[return-value]
        self._log_end(context, started, result)
        return result

    async def _finish_async(
        self, context: C, started: float, pending: Awaitable[StepResult]
    ) -> StepResult:
        try:
            result = await pending
        except BaseException as exc:
            self._log_end(context, started, exc)
            raise
        self._log_end(context, started, result)
        return result

    def _log_end(self, context: C, started: float, outcome: object) -> None:
        end: dict[str, object] = {
            'step': self.name,
            'elapsed': round(perf_counter() - started, 6),
            'success': isinstance(outcome, StepResult) and outcome.success,
        }
        if isinstance(outcome, BaseException):
            end['error'] = describe_exception(outcome)
        elif not isinstance(outcome, StepResult):
            end['error'] = f'returned {type(outcome).__name__}, expected a StepResult'
        elif not outcome.success:
            end['error'] = outcome.error
        context.log('step_end', end, level=self.level)


class TimingStep(StepWrapper[C]):
    """Puts ``duration_seconds`` into ``result.data``, on failure too.

    An exception from the inner step becomes a failed result (keeping the
    exception) so that its duration has somewhere to go;
    ``KeyboardInterrupt`` and ``SystemExit`` pass through untouched.
    """

    def execute(self, context: C) -> StepResult:
        started = perf_counter()
        try:
            result = self.inner.execute(context)
        except Exception as exc:
            result = StepResult.from_exception(exc)
        if inspect.isawaitable(result):
            return self._finish_async(started, result)  # type: ignore[return-value]
        return self._timed(started, result)

    async def _finish_async(self, started: float, pending: Awaitable[StepResult]) -> StepResult:
        try:
            result = await pending
        except Exception as exc:
            result = StepResult.from_exception(exc)
        return self._timed(started, result)

    @staticmethod
    def _timed(started: float, result: StepResult) -> StepResult:
        if isinstance(result, StepResult):
            result.data['duration_seconds'] = perf_counter() - started
        return result


Validator = Callable[[C], 'tuple[bool, str | None]']


class ValidationStep(BaseStep[C]):
    """A step made from a check: ``validator(context) -> (ok, message)``."""

    def __init__(
        self,
        validator: Validator[C],
        name: str = 'validation',
        progress_weight: float = 0.0,
    ) -> None:
        if not callable(validator):
            raise TypeError(f'validator must be callable, got {type(validator).__name__}')
        self.validator = validator
        self._name = name
        self._weight = progress_weight

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return self._weight

    def execute(self, context: C) -> StepResult:
        try:
            ok, message = self.validator(context)
        except Exception as exc:
            return StepResult.from_exception(exc)
        if ok:
            return StepResult(success=True, data={'message': message} if message else {})
        return StepResult(success=False, error=message or f"validation '{self._name}' failed")
