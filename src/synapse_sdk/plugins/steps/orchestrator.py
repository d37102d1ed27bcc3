"""Runs a registry's steps in order, with weighted progress and rollback."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from itertools import accumulate
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


def _progress_marks(starts: list[float], scale: float) -> dict[int, int]:
    """``{step index: percentage}`` for the steps after which the run first reaches a new one.

    ``starts[i + 1]`` is the weight done after step ``i``; its percentage is
    ``int(done * scale + _EPSILON)``, capped at 99. Weights are >= 0, so
    both only ever grow: bisect for the step that reaches each percentage,
    then settle the float rounding of that inverse with the forward formula,
    so the marks are exactly what summing step by step would report. At most
    99 bisections, however many steps there are.
    """
    end = len(starts)
    marks: dict[int, int] = {}
    position = 1  # in ``starts``: the step before it is done
    target = 1
    while target < 100:
        position = bisect_left(starts, (target - _EPSILON) / scale, position)
        while position > 1 and int(starts[position - 1] * scale + _EPSILON) >= target:
            position -= 1
        while position < end and int(starts[position] * scale + _EPSILON) < target:
            position += 1
        if position == end:
            break
        reached = int(starts[position] * scale + _EPSILON)
        marks[position - 1] = min(reached, 99)
        target = reached + 1
    return marks


def _total(weights: list[float]) -> float:
    try:
        return math.fsum(weights)
    except OverflowError:
        return math.inf


class _ActiveRun:
    """Per-run state the context talks to while a step runs: progress and partial rollback data.

    Progress is planned once, before the first step: ``starts[i]`` is the
    weight done before step ``i`` and ``marks`` maps the few step indices
    after which the overall percentage goes up (at most 99 of them) to that
    percentage, so the per-step cost is a single dict lookup.
    """

    __slots__ = (
        '_infos',
        'callback',
        'context',
        'index',
        'last_percent',
        'listeners',
        'marks',
        'names',
        'partial',
        'scale',
        'starts',
        'step_weights',
        'weights',
    )

    def __init__(
        self,
        context: BaseStepContext,
        names: list[str],
        step_weights: list[float],
        callback: ProgressCallback | None,
        listeners: list[RunListener],
    ) -> None:
        weights = step_weights
        total = _total(weights)
        if total <= 0:  # all weights zero: progress by step count
            weights = [1.0] * len(weights)
            total = float(len(weights)) or 1.0
        elif not (math.isfinite(total) and math.isfinite(100.0 / total)):
            peak = max(weights)  # extreme magnitudes: relative to the largest, same shares
            weights = [w / peak for w in weights]
            total = math.fsum(weights)
        scale = 100.0 / total
        # summed left to right, as a running total would be
        starts = list(accumulate(weights, initial=0.0))

        marks = _progress_marks(starts, scale)
        marks.pop(len(weights) - 1, None)  # the last step's 100 is reported when the run ends

        self.names = names
        self.step_weights = step_weights  # as declared; ``weights`` is what progress uses
        self.weights = weights
        self.scale = scale
        self.starts = starts
        self.marks = marks
        self.last_percent = 0
        self.callback = callback
        self.listeners = listeners
        self.context = context
        self.index: int | None = None  # the step executing now, if any
        self.partial: dict[str, Any] = {}
        self._infos: list[StepInfo] | None = None

    def infos(self) -> list[StepInfo]:
        """The steps as listeners see them, built on first need (never, without listeners)."""
        if self._infos is None:
            self._infos = [
                StepInfo(index, name, weight)
                for index, (name, weight) in enumerate(
                    zip(self.names, self.step_weights, strict=True)
                )
            ]
        return self._infos

    def info(self, index: int) -> StepInfo:
        return self.infos()[index]

    # progress ---------------------------------------------------------
    def step_progress(self, fraction: float) -> None:
        index = self.index
        if index is None:
            return
        if self.listeners:
            step = self.info(index)
            for listener in self.listeners:
                listener.on_step_progress(self.context, step, fraction)
        done_weight = self.starts[index] + self.weights[index] * fraction
        percent = int(done_weight * self.scale + _EPSILON)
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
        index = self.index
        if index is None:
            raise RuntimeError('rollback data can only be recorded while a step is executing')
        if self.listeners:
            step = self.info(index)
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
        completed = self.completed
        steps = self.registry.get_steps()
        names = [step.name for step in steps]
        run = _ActiveRun(
            context,
            names,
            [float(step.progress_weight) for step in steps],
            self.progress_callback,
            listeners,
        )
        marks = run.marks
        # (index, result) of executed or reused steps, newest last: what a failure rolls back
        done: list[tuple[int, StepResult]] = []
        executed = skipped = reused = 0

        # The loop below runs once per step: keep it lean. Listener events are
        # guarded by ``if listeners:`` (the list is live: a listener may add
        # another) and StepInfo objects are only built when someone needs them.
        if listeners:
            infos = run.infos()
            for listener in listeners:
                listener.on_run_start(context, infos)
        context._active_run = run
        try:
            for index, step in enumerate(steps):
                name = names[index]
                context.current_step = name
                result: StepResult | None = None
                try:
                    if completed and name in completed:
                        result = completed[name]
                        done.append((index, result))
                        reused += 1
                        if listeners:
                            info = run.info(index)
                            for listener in listeners:
                                listener.on_step_reused(context, info, result)
                    elif step.can_skip(context):
                        result = StepResult(skipped=True, step_name=name)
                        context.step_results.append(result)
                        skipped += 1
                        if listeners:
                            info = run.info(index)
                            for listener in listeners:
                                listener.on_step_skip(context, info, result)
                    else:
                        run.index = index
                        if listeners:
                            info = run.info(index)
                            for listener in listeners:
                                listener.on_step_start(context, info)
                        started = perf_counter()
                        returned = step.execute(context)
                        if not isinstance(returned, StepResult):
                            raise TypeError(
                                f"step '{name}' returned {type(returned).__name__}, "
                                'expected a StepResult'
                            )
                        result = returned
                        result.step_name = name
                        result.duration_seconds = perf_counter() - started
                        if run.partial:
                            result.rollback_data = {**run.partial, **result.rollback_data}
                            run.partial = {}
                        context.step_results.append(result)
                        if not result.success:
                            raise _ReturnedFailure
                        done.append((index, result))
                        executed += 1
                        run.index = None
                        if listeners:
                            info = run.info(index)
                            for listener in listeners:
                                listener.on_step_end(context, info, result)
                    if index in marks:
                        run.emit(marks[index])
                except BaseException as exc:
                    counts = [executed, skipped, reused]
                    self._fail(steps, index, run, done, result, exc, counts)
                    raise  # not reached: _fail always raises

            self._report_done(run)
            summary = RunSummary(True, executed, skipped, reused, len(steps))
            self._notify_safely('on_run_end', None, context, summary)
        finally:
            context._active_run = None
            context.current_step = None
        return {
            'success': True,
            'steps_executed': executed,
            'steps_total': len(steps),
            'steps_skipped': skipped,
            'steps_reused': reused,
        }

    def rollback(self, results: Mapping[str, StepResult]) -> list[str]:
        """Roll back the named steps, newest first, without executing anything.

        For recovering a run whose process died: ``results`` are the steps'
        results as recorded then. Returns the rollback errors (also in
        ``context.errors``); listeners get the rollback events.
        """
        steps = self.registry.get_steps()
        unknown = set(results) - {step.name for step in steps}
        if unknown:
            raise ValueError(f'no such steps in the registry: {", ".join(sorted(unknown))}')
        entries = [
            (step, StepInfo(index, step.name, float(step.progress_weight)), results[step.name])
            for index, step in reversed(list(enumerate(steps)))
            if step.name in results
        ]
        return self._rollback(entries)

    def _fail(
        self,
        steps: list[BaseStep[C]],
        index: int,
        run: _ActiveRun,
        done: list[tuple[int, StepResult]],
        result: StepResult | None,
        exc: BaseException,
        counts: list[int],
    ) -> None:
        """Turn whatever went wrong into the step's failed result, roll back, then raise.

        ``counts`` is ``[executed, skipped, reused]`` so far.
        """
        context = self.context
        info = run.info(index)
        cause: BaseException | None = exc
        if isinstance(exc, _ReturnedFailure):
            assert result is not None
            cause = result.exception  # kept by a wrapper that turned a raise into a result
            if not result.error:
                result.error = 'the step returned success=False without an error message'
        elif result is None:  # raised by can_skip, execute, or a listener before it
            result = StepResult.from_exception(exc, rollback_data=dict(run.partial))
            result.step_name = info.name
            context.step_results.append(result)
        else:  # the step had finished; a listener or the progress report raised afterwards
            if done and done[-1][1] is result:
                done.pop()
                counts[2 if info.name in self.completed else 0] -= 1
            result.success = False
            result.error = describe_exception(exc)
            result.exception = exc
        run.partial = {}
        run.index = None
        self._notify_safely('on_step_end', None, context, info, result)

        entries = [(steps[i], run.info(i), done_result) for i, done_result in reversed(done)]
        rollback_errors = self._rollback([(steps[index], info, result), *entries])
        summary = RunSummary(
            False,
            counts[0],
            counts[1],
            counts[2],
            len(steps),
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

    def _report_done(self, run: _ActiveRun) -> None:
        """The final 100: every step succeeded, so a failing report is noted, not fatal."""
        if run.last_percent >= 100:
            return
        run.last_percent = 100
        if run.callback is not None:
            try:
                run.callback(100, 100)
            except Exception as exc:
                message = f'progress callback failed: {describe_exception(exc)}'
                self.context.errors.append(message)
        self._notify_safely('on_progress', None, self.context, 100, 100)

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
