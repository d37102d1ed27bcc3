"""Runs a registry's steps in order, with weighted progress and rollback."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from time import perf_counter
from typing import Any, Generic

from .base import BaseStep, C
from .context import BaseStepContext
from .errors import StepExecutionError
from .listeners import RunListener, RunSummary, StepInfo
from .registry import StepRegistry
from .result import StepResult, describe_exception

ProgressCallback = Callable[[int, int], None]

_EPSILON = 1e-9  # absorbs float error so that 0.2 + 0.6 of 1.0 reads 80, not 79


class _ActiveRun:
    """Per-run state the context talks to while a step runs: progress and partial rollback data."""

    __slots__ = (
        'callback',
        'context',
        'done_weight',
        'last_percent',
        'listeners',
        'partial',
        'scale',
        'step',
        'weights',
    )

    def __init__(
        self,
        context: BaseStepContext,
        weights: list[float],
        callback: ProgressCallback | None,
        listeners: list[RunListener],
    ) -> None:
        total = math.fsum(weights)
        if total <= 0:  # all weights zero: progress by step count
            weights = [1.0] * len(weights)
            total = float(len(weights)) or 1.0
        self.weights = weights
        self.scale = 100.0 / total
        self.done_weight = 0.0
        self.last_percent = 0
        self.callback = callback
        self.listeners = listeners
        self.context = context
        self.step: StepInfo | None = None
        self.partial: dict[str, Any] = {}

    # progress ---------------------------------------------------------
    def step_done(self, index: int) -> None:
        self.done_weight += self.weights[index]
        percent = int(self.done_weight * self.scale + _EPSILON)
        if percent > self.last_percent:
            self.emit(min(percent, 99))

    def step_progress(self, fraction: float) -> None:
        step = self.step
        if step is None:
            return
        for listener in self.listeners:
            listener.on_step_progress(self.context, step, fraction)
        weight = self.weights[step.index]
        percent = int((self.done_weight + weight * fraction) * self.scale + _EPSILON)
        if percent > self.last_percent:
            self.emit(min(percent, 99))

    def emit(self, percent: int) -> None:
        # Capped at 99 until the run has finished: a bar at 100 means done.
        if percent <= self.last_percent:
            return
        self.last_percent = percent
        if self.callback is not None:
            self.callback(percent, 100)
        for listener in self.listeners:
            listener.on_progress(self.context, percent, 100)

    # partial rollback data -------------------------------------------
    def record_rollback(self, values: dict[str, Any]) -> None:
        self.partial.update(values)
        self._notify_rollback_data(values, None)

    def append_rollback(self, key: str, item: Any) -> None:
        bucket = self.partial.setdefault(key, [])
        if not isinstance(bucket, list):
            raise TypeError(
                f'append_rollback({key!r}): rollback_data[{key!r}] holds a '
                f'{type(bucket).__name__}, not a list'
            )
        bucket.append(item)
        self._notify_rollback_data({key: item}, key)

    def _notify_rollback_data(self, values: dict[str, Any], append_to: str | None) -> None:
        step = self.step
        if step is None:
            raise RuntimeError('rollback data can only be recorded while a step is executing')
        for listener in self.listeners:
            listener.on_rollback_data(self.context, step, values, append_to)


class Orchestrator(Generic[C]):
    """Runs every step of ``registry`` against ``context``; on failure, rolls back.

    ``progress_callback(current, total)`` receives the overall percentage
    (``total`` is always 100): weighted, only ever increasing, each value
    once, ending at exactly 100 on success.

    ``listeners`` receive the run's lifecycle events (see
    :mod:`.listeners`). ``completed`` maps step names to results of an
    earlier run of the same workflow: those steps are not executed again
    but count as done and are rolled back with their old result if a later
    step fails (this is how a run is resumed).
    """

    def __init__(
        self,
        registry: StepRegistry[C],
        context: C,
        progress_callback: ProgressCallback | None = None,
        *,
        listeners: Iterable[RunListener] = (),
        completed: Mapping[str, StepResult] | None = None,
    ) -> None:
        self.registry = registry
        self.context = context
        self.progress_callback = progress_callback
        self.listeners: list[RunListener] = list(listeners)
        self.completed: dict[str, StepResult] = dict(completed or {})
        self._started = False

    def add_listener(self, listener: RunListener) -> None:
        self.listeners.append(listener)

    def execute(self) -> dict[str, Any]:
        """Run the workflow once.

        Returns ``{'success': True, 'steps_executed', 'steps_total',
        'steps_skipped', 'steps_reused'}``. On a step failure, rolls back and
        raises :class:`StepExecutionError` (a ``RuntimeError``);
        ``KeyboardInterrupt``/``SystemExit`` roll back and are re-raised.
        """
        if self._started:
            raise RuntimeError(
                'this Orchestrator has already run; create a new Orchestrator '
                '(with a fresh context) for each run'
            )
        self._started = True
        context = self.context
        listeners = self.listeners
        steps = self.registry.get_steps()
        infos = [StepInfo(i, s.name, float(s.progress_weight)) for i, s in enumerate(steps)]
        weights = [info.weight for info in infos]
        run = _ActiveRun(context, weights, self.progress_callback, listeners)
        completed = self.completed
        # executed or reused steps, newest last: what a failure rolls back
        done: list[tuple[BaseStep[C], StepInfo, StepResult]] = []
        counts = [0, 0, 0]  # executed, skipped, reused

        for listener in listeners:
            listener.on_run_start(context, infos)
        context._active_run = run
        try:
            for step, info in zip(steps, infos, strict=True):
                context.current_step = info.name
                result: StepResult | None = None
                try:
                    if completed and info.name in completed:
                        result = completed[info.name]
                        done.append((step, info, result))
                        counts[2] += 1
                        for listener in listeners:
                            listener.on_step_reused(context, info, result)
                    elif step.can_skip(context):
                        result = StepResult(skipped=True, step_name=info.name)
                        context.step_results.append(result)
                        counts[1] += 1
                        for listener in listeners:
                            listener.on_step_skip(context, info, result)
                    else:
                        run.step = info
                        for listener in listeners:
                            listener.on_step_start(context, info)
                        started = perf_counter()
                        returned = step.execute(context)
                        if not isinstance(returned, StepResult):
                            raise TypeError(
                                f"step '{info.name}' returned {type(returned).__name__}, "
                                'expected a StepResult'
                            )
                        result = returned
                        result.step_name = info.name
                        result.duration_seconds = perf_counter() - started
                        if run.partial:
                            result.rollback_data = {**run.partial, **result.rollback_data}
                            run.partial = {}
                        context.step_results.append(result)
                        if not result.success:
                            raise _ReturnedFailure
                        done.append((step, info, result))
                        counts[0] += 1
                        run.step = None
                        for listener in listeners:
                            listener.on_step_end(context, info, result)
                    run.step_done(info.index)
                except BaseException as exc:
                    self._fail(step, info, run, done, result, exc, counts)
                    raise  # not reached: _fail always raises

            run.emit(100)
            summary = RunSummary(True, counts[0], counts[1], counts[2], len(steps))
            for listener in listeners:
                listener.on_run_end(context, summary)
        finally:
            context._active_run = None
            context.current_step = None
        return {
            'success': True,
            'steps_executed': counts[0],
            'steps_total': len(steps),
            'steps_skipped': counts[1],
            'steps_reused': counts[2],
        }

    def _fail(
        self,
        step: BaseStep[C],
        info: StepInfo,
        run: _ActiveRun,
        done: list[tuple[BaseStep[C], StepInfo, StepResult]],
        result: StepResult | None,
        exc: BaseException,
        counts: list[int],
    ) -> None:
        """Turn whatever went wrong into the step's failed result, roll back, then raise."""
        context = self.context
        cause: BaseException | None = exc
        if isinstance(exc, _ReturnedFailure):
            assert result is not None
            cause = None
            if not result.error:
                result.error = 'the step returned success=False without an error message'
        elif result is None:  # raised by can_skip, execute, or a listener before it
            result = StepResult.from_exception(exc, rollback_data=dict(run.partial))
            result.step_name = info.name
            context.step_results.append(result)
        else:  # the step had finished; a listener or the progress report raised afterwards
            if done and done[-1][2] is result:
                done.pop()
                counts[2 if info.name in self.completed else 0] -= 1
            result.success = False
            result.error = describe_exception(exc)
            result.exception = exc
        run.partial = {}
        run.step = None
        self._notify_safely('on_step_end', None, context, info, result)

        rollback_errors = self._rollback([(step, info, result), *reversed(done)])
        summary = RunSummary(
            False,
            counts[0],
            counts[1],
            counts[2],
            len(run.weights),
            failed_step=info.name,
            error=cause,
            rollback_errors=tuple(rollback_errors),
        )
        self._notify_safely('on_run_end', None, context, summary)
        if cause is not None and not isinstance(cause, Exception):
            raise cause  # KeyboardInterrupt / SystemExit: rolled back, now re-raised as is
        raise StepExecutionError(info.name, result, rollback_errors) from cause

    def _rollback(self, entries: list[tuple[BaseStep[C], StepInfo, StepResult]]) -> list[str]:
        """Roll back every entry in the given order; one failure never stops the others."""
        context = self.context
        errors: list[str] = []
        for step, info, result in entries:
            context.current_step = info.name
            self._notify_safely('on_rollback_start', errors, context, info, result)
            error: Exception | None = None
            try:
                step.rollback(context, result)
            except Exception as exc:
                error = exc
                message = f"rollback of step '{info.name}' failed: {describe_exception(exc)}"
                context.errors.append(message)
                errors.append(message)
            self._notify_safely('on_rollback_end', errors, context, info, error)
        context.current_step = None
        return errors

    def _notify_safely(self, event: str, errors: list[str] | None, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(*args)
            except Exception as exc:
                message = f'listener {type(listener).__name__} failed: {describe_exception(exc)}'
                self.context.errors.append(message)
                if errors is not None:
                    errors.append(message)


class _ReturnedFailure(Exception):
    """Internal signal: the step returned ``success=False``."""
