"""Runs a registry's steps in order, with weighted progress, retries, timeouts and rollback."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from time import perf_counter, time
from typing import Any, Generic

from .base import BaseStep, C
from .cancellation import CancelToken, StepCancelled, StepInterrupted, StepTimeoutError
from .context import context_state, run_id_of
from .errors import RunCancelledError, StepExecutionError
from .events import (
    Progress,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunStarted,
    RunSummary,
    StepEnded,
    StepInfo,
    StepOverdue,
    StepRetrying,
    StepReused,
    StepSkipped,
    StepStarted,
)
from .listeners import RunListener
from .registry import Guard, RunPlan, StepRegistry
from .result import StepResult, describe_exception
from .run_state import ActiveRun, ProgressCallback


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

    ``cancel_token`` lets the outside stop the run (``cancel()`` does the
    same); ``sleep`` replaces the wait between retry attempts (tests pass a
    fake clock's); ``rng`` draws the retry jitter.

    ``timing``: whether to measure each result's ``duration_seconds``.
    By default a run measures when it has listeners (the loggers and the
    journal show durations; every action run has them) and skips the clock
    otherwise, as it is a good part of the per-step cost of a bare run.
    ``clock`` (seconds, default ``time.perf_counter``) is what it reads.
    """

    def __init__(
        self,
        registry: StepRegistry[C],
        context: C,
        progress_callback: ProgressCallback | None = None,
        *,
        listeners: Iterable[RunListener] = (),
        completed: Mapping[str, StepResult] | None = None,
        cancel_token: CancelToken | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        timing: bool | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.registry = registry
        self.context = context
        self.progress_callback = progress_callback
        self.listeners: list[RunListener] = list(listeners)
        self.completed: dict[str, StepResult] = dict(completed or {})
        self.cancel_token = cancel_token if cancel_token is not None else CancelToken()
        self._sleep = sleep
        self._rng = rng
        self.timing = timing
        self._clock = clock if clock is not None else perf_counter
        self._started = False
        self.timeout_grace = _Deadline.GRACE
        self._runner: asyncio.Runner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the caller's, in execute_async()

    @property
    def rng(self) -> random.Random:
        """Draws the retry jitter; made on first need (seeding one costs more than a step)."""
        if self._rng is None:
            self._rng = random.Random()
        return self._rng

    def cancel(self, reason: str = 'cancelled') -> None:
        """Ask the run to stop (thread-safe): the running step is interrupted, then rollback."""
        self.cancel_token.cancel(reason)

    def add_listener(self, listener: RunListener) -> None:
        self.listeners.append(listener)

    async def execute_async(self) -> dict[str, Any]:
        """Run the workflow with async steps awaited on the caller's event loop.

        Plain steps run in a worker thread meanwhile, so they do not block the
        loop. Cancelling the awaiting task cancels the run (after rollback).
        """
        self._loop = asyncio.get_running_loop()
        worker = asyncio.ensure_future(asyncio.to_thread(self.execute))
        try:
            return await asyncio.shield(worker)
        except asyncio.CancelledError:
            self.cancel('the awaiting task was cancelled')
            with contextlib.suppress(BaseException):
                await worker  # the rollback runs before the caller hears of the cancel
            raise

    def execute(self) -> dict[str, Any]:
        """Run the workflow once.

        Returns ``{'success': True, 'steps_executed', 'steps_total',
        'steps_skipped', 'steps_reused'}``. On a step failure, rolls back and
        raises :class:`StepExecutionError` (a ``RuntimeError``;
        :class:`RunCancelledError` when the run was cancelled);
        ``KeyboardInterrupt``/``SystemExit`` roll back and are re-raised.
        Async steps are run on an event loop of the run's own.
        """
        try:
            return self._execute()
        finally:
            if self._runner is not None:
                self._runner.close()
                self._runner = None

    def _execute(self) -> dict[str, Any]:
        if self._started:
            raise RuntimeError(
                'this Orchestrator has already run; create a new Orchestrator '
                '(with a fresh context) for each run'
            )
        self._started = True
        context = self.context
        listeners = self.listeners
        completed = self.completed
        plan = self.registry.plan()
        progress = plan.progress
        run = ActiveRun(context, plan, self.progress_callback, listeners)
        # the result of each executed or reused step, by index: what a failure rolls back
        outcomes: list[StepResult | None] = [None] * len(plan.steps)
        skipped = reused = 0
        mark_steps = iter(progress.mark_steps)
        mark_percents = iter(progress.mark_percents)
        next_mark = next(mark_steps, -1)

        # The loop below runs once per step: keep it lean. Listener events are
        # guarded by ``if listeners:`` (the list is live: a listener may add
        # another) and StepInfo objects are only built when someone needs them.
        if listeners:
            run.deliver(RunStarted(run.run_id, time(), tuple(run.infos())))
        token = self.cancel_token

        def on_cancel(reason: str) -> None:
            run.stop = StepCancelled(reason)

        token.subscribe(on_cancel)
        context._active_run = run
        # bound once: the loop below is the hot path
        record = context.step_results.append
        clock = self._clock
        result_type = StepResult
        # A step's duration runs from its can_skip() to the return of execute(); on a timed
        # run, the clock reading at one step's end is the next one's start (read again after
        # a skipped or reused step). Time spent in listeners and the progress callback is
        # added up in ``run.excluded`` and taken off.
        timed = self.timing if self.timing is not None else bool(listeners)
        run.clock = clock if timed else None
        last = clock() if timed else 0.0
        try:
            for index, step, name, guard in plan.entries:
                context.current_step = name
                result: StepResult | None = None
                try:
                    if run.stop is not None:  # set by a cancel
                        raise StepCancelled(token.reason or 'cancelled', before_step=True)
                    if completed and name in completed:
                        result = outcomes[index] = completed[name]
                        reused += 1
                        if listeners:
                            run.tell(StepReused, index, result)
                        if timed:
                            last = clock()
                            run.excluded = 0.0
                    elif (skip := step.can_skip(context)) is False or not _is_true(skip, self):
                        run.index = index
                        if listeners:
                            run.tell(StepStarted, index)
                        if guard is None:
                            returned = step.execute(context)
                            if not isinstance(returned, result_type):
                                returned = self._settle(name, returned)
                        else:
                            returned = self._execute_guarded(step, guard, run.info(index), run)
                        result = returned
                        if timed:
                            ended = clock()
                            result.duration_seconds = ended - last - run.excluded
                            run.excluded = 0.0
                            last = ended
                        result.step_name = name
                        run.index = None
                        if run.partial:
                            result.rollback_data = {**run.partial, **result.rollback_data}
                            run.partial = {}
                        record(result)
                        if not result.success:
                            raise _ReturnedFailure
                        outcomes[index] = result
                        if listeners:
                            state = context_state(context)
                            run.tell(StepEnded, index, result, state, type(context).__name__)
                    else:
                        result = StepResult(skipped=True, step_name=name)
                        record(result)
                        skipped += 1
                        if listeners:
                            run.tell(StepSkipped, index, result)
                        if timed:
                            last = clock()
                            run.excluded = 0.0
                    if index == next_mark:
                        run.emit(next(mark_percents))
                        next_mark = next(mark_steps, -1)
                except BaseException as exc:
                    began = last if timed else None
                    self._fail(plan, index, run, outcomes, result, exc, (skipped, reused), began)
                    raise  # not reached: _fail always raises

            self._conclude(plan, run, outcomes, (skipped, reused))
            executed = len(outcomes) - skipped - reused
            summary = RunSummary(True, executed, skipped, reused, len(outcomes))
            self._notify_safely(RunEnded(run.run_id, time(), summary), None)
        finally:
            token.unsubscribe(on_cancel)
            context._active_run = None
            context.current_step = None
        return {
            'success': True,
            'steps_executed': executed,
            'steps_total': len(outcomes),
            'steps_skipped': skipped,
            'steps_reused': reused,
        }

    def _conclude(
        self,
        plan: RunPlan[C],
        run: ActiveRun,
        outcomes: list[StepResult | None],
        counts: tuple[int, int],
    ) -> None:
        """After the last step: a cancel that came while it ran, then the final 100.

        A cancel the last step did not heed still cancels the run, as it would have
        between two steps; an interrupt in the final report rolls back like one
        anywhere else. ``execute()`` raises only after rolling back.
        """
        last = len(outcomes) - 1
        try:
            if run.stop is not None and last >= 0:
                raise StepCancelled(self.cancel_token.reason or 'cancelled')
            self._report_done(run)
        except BaseException as exc:
            if last < 0:  # no steps: nothing ran, nothing to undo
                summary = RunSummary(False, 0, 0, 0, 0, error=exc)
                self._notify_safely(RunEnded(run.run_id, time(), summary), None)
                raise
            result = outcomes[last] or self.context.step_results[-1]
            self._fail(plan, last, run, outcomes, result, exc, counts, None)

    def rollback(self, results: Mapping[str, StepResult]) -> list[str]:
        """Roll back the named steps, newest first, without executing anything.

        For recovering a run whose process died: ``results`` are the steps'
        results as recorded then. Returns the rollback errors (also in
        ``context.errors``); listeners get the rollback events.
        """
        plan = self.registry.plan()
        unknown = set(results) - set(plan.names)
        if unknown:
            raise ValueError(f'no such steps in the registry: {", ".join(sorted(unknown))}')
        entries = [
            (step, StepInfo(index, name, plan.weights[index]), results[name])
            for index, step, name, _ in reversed(plan.entries)
            if name in results
        ]
        return self._rollback(entries)

    # the slow path: retries, timeouts, async -------------------------------------
    def _execute_guarded(
        self, step: BaseStep[C], guard: Guard, info: StepInfo, run: ActiveRun
    ) -> StepResult:
        """``step.execute`` under its retry policy and timeout."""
        policy, timeout = guard
        attempt = 1
        while True:
            run.attempt = attempt
            try:
                with _Deadline(self, run, info, timeout):
                    returned = step.execute(self.context)
                    if not isinstance(returned, StepResult):
                        returned = self._settle(info.name, returned, timeout)
                if run.stop is not None and not isinstance(run.stop, StepCancelled):
                    # out of time, even if it returned: its result is not trusted, but
                    # what it says to undo is
                    run.partial = {**run.partial, **returned.rollback_data}
                    raise run.stop
                returned.attempts = attempt
                run.attempt = 1
                return returned
            except (Exception, _HardStop) as exc:
                error = _timeout_of(exc, run, info, timeout)
                if policy is None or isinstance(error, StepCancelled):
                    raise error from (None if error is exc else exc)
                if not policy.should_retry(error, attempt):
                    raise error from (None if error is exc else exc)
                self._retry(step, info, run, attempt, error, policy.delay(attempt, self.rng))
                attempt += 1

    def _retry(
        self,
        step: BaseStep[C],
        info: StepInfo,
        run: ActiveRun,
        attempt: int,
        error: Exception,
        delay: float,
    ) -> None:
        """Undo the failed attempt's partial work, tell the listeners, wait."""
        failed = StepResult.from_exception(error, rollback_data=dict(run.partial))
        failed.step_name = info.name
        failed.attempts = attempt
        # Undo the attempt first: if that raises, the retries end and the run's
        # rollback still has this attempt's data (in memory and in the journal).
        self._call(step.rollback, self.context, failed)
        run.partial = {}
        run.stop = None
        if self.listeners:
            run.tell(StepRetrying, info.index, attempt, failed, delay)
        if self._sleep is not None:
            self._sleep(delay)
        elif self.cancel_token.wait(delay):
            raise StepCancelled(self.cancel_token.reason or 'cancelled')
        if self.cancel_token.reason is not None:
            raise StepCancelled(self.cancel_token.reason)

    def _call(self, method: Callable[..., object], *args: object) -> object:
        """Call a step method; an ``async def`` one is awaited."""
        outcome = method(*args)
        if outcome is not None and inspect.isawaitable(outcome):
            return self._await(outcome)
        return outcome

    def _settle(self, name: str, value: object, timeout: float | None = None) -> StepResult:
        """An awaitable result is awaited; anything else that is not a StepResult is an error."""
        if inspect.isawaitable(value):
            value = self._await(value, timeout)
        if not isinstance(value, StepResult):
            raise TypeError(f"step '{name}' returned {type(value).__name__}, expected a StepResult")
        return value

    def _await(self, awaitable: Awaitable[Any], timeout: float | None = None) -> Any:
        """Run an async step's coroutine: on the caller's loop, or on a loop of the run's own."""

        async def wait() -> Any:
            if timeout is None:
                return await awaitable
            return await asyncio.wait_for(awaitable, timeout)

        if self._loop is not None:
            return asyncio.run_coroutine_threadsafe(wait(), self._loop).result()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            close = getattr(awaitable, 'close', None)
            if close is not None:
                close()
            raise RuntimeError(
                'an async step cannot run inside a running event loop with execute(); '
                'use `await orchestrator.execute_async()`'
            )
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(wait())

    def _fail(
        self,
        plan: RunPlan[C],
        index: int,
        run: ActiveRun,
        outcomes: list[StepResult | None],
        result: StepResult | None,
        exc: BaseException,
        counts: tuple[int, int],
        began: float | None,
    ) -> None:
        """Turn whatever went wrong into the step's failed result, roll back, then raise.

        ``counts`` is ``(skipped, reused)`` so far; ``began`` is the step's start on
        the run's clock when the run is timed.
        """
        context = self.context
        completed = self.completed
        info = run.info(index)
        cause: BaseException | None = exc
        never_began = isinstance(exc, StepCancelled) and exc.before_step
        # the step to roll back first as the failed one; None: nothing of it to undo here
        undo: StepResult | None = None
        if isinstance(exc, _ReturnedFailure):
            assert result is not None
            cause = result.exception  # kept by a wrapper that turned a raise into a result
            if not result.error:
                result.error = 'the step returned success=False without an error message'
            undo = result
        elif result is None:  # raised by can_skip, execute, or a listener before it
            result = StepResult.from_exception(exc, rollback_data=dict(run.partial))
            result.step_name = info.name
            result.attempts = run.attempt
            if began is not None and not never_began:
                result.duration_seconds = self._clock() - began - run.excluded
            context.step_results.append(result)
            undo = None if never_began else result
        elif outcomes[index] is result and info.name in completed:
            # reused, then its report failed: it stays among the steps to undo, with the
            # caller's result untouched; the failure gets a result of its own
            result = StepResult.from_exception(exc)
            result.step_name = info.name
            context.step_results.append(result)
        else:  # finished (or skipped), then a listener or the progress report raised
            outcomes[index] = None
            result.success = False
            result.error = describe_exception(exc)
            result.exception = exc
            undo = None if result.skipped else result  # a skipped step did nothing
        run.partial = {}
        run.index = None
        run.stop = None
        run.attempt = 1
        skipped, reused = counts
        done = sum(1 for i in range(index + 1) if outcomes[i] is not None)  # executed or reused

        def standing(i: int) -> StepResult | None:
            """What step ``i`` is undone with, if its work stands: what this run did or
            reused, or what an earlier run completed and this one had not reached yet."""
            return outcomes[i] or (completed.get(plan.names[i]) if i >= index else None)

        entries = [
            (plan.steps[i], run.info(i), earlier)
            for i in reversed(range(len(outcomes)))
            if (earlier := standing(i)) is not None
        ]
        if undo is not None:
            state = context_state(context)
            ended = StepEnded(run.run_id, time(), info, undo, state, type(context).__name__)
            self._notify_safely(ended, None)
            entries.insert(0, (plan.steps[index], info, undo))
        rollback_errors = self._rollback(entries)
        cancelled = isinstance(cause, StepCancelled)
        summary = RunSummary(
            False,
            done - reused,
            skipped,
            reused,
            len(outcomes),
            failed_step=info.name,
            error=cause,
            rollback_errors=tuple(rollback_errors),
            cancelled=cancelled,
        )
        self._notify_safely(RunEnded(run.run_id, time(), summary), None)
        if cause is not None and not isinstance(cause, Exception):
            raise cause  # KeyboardInterrupt / SystemExit: rolled back, now re-raised as is
        if cancelled:
            assert isinstance(cause, StepCancelled)
            raise RunCancelledError(info.name, result, rollback_errors, cause.reason) from cause
        raise StepExecutionError(info.name, result, rollback_errors) from cause

    def _rollback(self, entries: list[tuple[BaseStep[C], StepInfo, StepResult]]) -> list[str]:
        """Roll back every entry in the given order; one failure never stops the others."""
        context = self.context
        run_id = run_id_of(context)
        errors: list[str] = []
        for step, info, result in entries:
            context.current_step = info.name
            self._notify_safely(RollbackStarted(run_id, time(), info, result), errors)
            error: Exception | None = None
            try:
                self._call(step.rollback, context, result)
            except Exception as exc:
                error = exc
                message = f"rollback of step '{info.name}' failed: {describe_exception(exc)}"
                context.errors.append(message)
                errors.append(message)
            self._notify_safely(RollbackEnded(run_id, time(), info, error), errors)
        context.current_step = None
        return errors

    def _report_done(self, run: ActiveRun) -> None:
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
        if self.listeners:
            self._notify_safely(Progress(run.run_id, time(), 100, 100), None)

    def _notify_safely(self, event: RunEvent, errors: list[str] | None) -> None:
        for listener in self.listeners:
            try:
                listener.on_event(event)
            except Exception as exc:
                message = f'listener {type(listener).__name__} failed: {describe_exception(exc)}'
                self.context.errors.append(message)
                if errors is not None:
                    errors.append(message)


class _ReturnedFailure(Exception):
    """Internal signal: the step returned ``success=False``."""


class _HardStop(BaseException):
    """Raised inside a step that ignored its timeout past the grace period (see ``_Deadline``)."""


def _is_true(value: object, orchestrator: Orchestrator[Any]) -> bool:
    """``can_skip``'s answer; an async ``can_skip`` is awaited."""
    if value is True or value is False:
        return value
    if inspect.isawaitable(value):
        value = orchestrator._await(value)
    return bool(value)


def _timeout_of(
    exc: BaseException, run: ActiveRun, info: StepInfo, limit: float | None
) -> Exception:
    """The error to report: a timeout, however it surfaced, names the step and the limit."""
    if limit is not None and (
        isinstance(exc, TimeoutError | _HardStop) and not isinstance(exc, StepTimeoutError)
    ):
        return StepTimeoutError(info.name, limit)
    if isinstance(run.stop, StepTimeoutError) and isinstance(exc, StepInterrupted | _HardStop):
        return run.stop
    assert isinstance(exc, Exception)
    return exc


class _Deadline:
    """Enforces a step's timeout.

    At the limit the step is asked to stop: its next ``set_progress()`` or
    ``raise_if_cancelled()`` raises :class:`StepTimeoutError`. If it is still
    running ``grace`` seconds later, the exception is raised inside its thread
    at the next Python instruction. Code blocked in C (a socket read, a
    ``time.sleep``) is only stopped when that call returns: threads cannot be
    killed. If it is *still* running another ``grace`` seconds later,
    listeners get ``StepOverdue``: whoever owns the process (the Ray
    driver) can end it for real. Async steps are cancelled with
    ``asyncio.wait_for`` instead.
    """

    GRACE = 2.0

    def __init__(
        self, owner: Orchestrator[Any], run: ActiveRun, info: StepInfo, limit: float | None
    ) -> None:
        self.run = run
        self.info = info
        self.limit = limit
        self.thread = threading.get_ident()
        self.timers: list[threading.Timer] = []
        self.active = False
        self.lock = threading.Lock()
        self.grace = owner.timeout_grace
        self.owner = owner

    def __enter__(self) -> _Deadline:
        if self.limit is not None:
            self.active = True
            self._start(self.limit, self._expire)
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:  # after this, _force can no longer strike
            self.active = False
        for timer in self.timers:
            timer.cancel()

    def _start(self, seconds: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    def _expire(self) -> None:
        with self.lock:  # not once the step has returned: its run.stop would be stale
            if self.active and self.limit is not None:
                self.run.stop = StepTimeoutError(self.info.name, self.limit)
                self._start(self.grace, self._force)

    def _force(self) -> None:
        with self.lock:
            if self.active:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.thread), ctypes.py_object(_HardStop)
                )
                self._start(self.grace, self._overdue)

    def _overdue(self) -> None:
        if self.active and self.limit is not None:
            event = StepOverdue(self.run.run_id, time(), self.info, self.limit)
            for listener in list(self.owner.listeners):
                with contextlib.suppress(Exception):  # a timer thread: nobody to tell
                    listener.on_event(event)
