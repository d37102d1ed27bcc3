"""Runs a registry's steps in order, with weighted progress, retries, timeouts and rollback.

The run goes down a chain of methods, each doing one thing (as httpx's
``send -> _send_handling_auth -> _send_handling_redirects -> _send_single_request``)::

    execute                  the runner of async steps is closed afterwards
      _run                   once: open the run, its steps, the final 100, RunEnded
        _run_steps           each step reused, skipped or executed; a failure goes to _fail
          _run_guarded       a step with a retry policy or a timeout: attempts, _retry between
            _attempt         one attempt, within the step's timeout
        _fail                the failed result (_failure), undo what ran, RunEnded, raise
          _undo              the failed step first, then every step whose work stands
            _rollback        each rollback(), newest first; one failing stops no other

The run's state lives in :class:`ActiveRun`, which makes the changes to it (but for
the plain step's path in ``_run_steps``: see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from time import time
from typing import Any, Generic, NoReturn

from ._base import BaseStep, C
from ._cancellation import CancelToken, StepCancelled, StepInterrupted, StepTimeoutError
from ._clock import Clock, clock_of, reader
from ._errors import RunCancelledError, StepExecutionError
from ._events import (
    Progress,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunStarted,
    RunSummary,
    StepEnded,
    StepInfo,
    StepOverdue,
    StepRetrying,
    StepStarted,
)
from ._listeners import RunListener
from ._registry import Guard, StepRegistry
from ._result import StepResult, describe_exception
from ._run_state import ActiveRun, ProgressCallback

# what a failure undoes: the step, as listeners see it, and the result rollback() gets
Undo = tuple[BaseStep[Any], StepInfo, StepResult]


class Orchestrator(Generic[C]):
    """Runs every step of ``registry`` against ``context``; on failure, rolls back.

    ``progress_callback(current, total)`` receives the overall percentage
    (``total`` is always 100): weighted, only ever increasing, each value
    once, ending at exactly 100 on success.

    ``listeners`` receive the run's lifecycle events (see :mod:`.events`).
    ``completed`` maps step names to results of an earlier run of the same
    workflow: those steps are not executed again but count as done and are
    rolled back with their old result if a later step fails (this is how a
    run is resumed).

    ``cancel_token`` lets the outside stop the run (``cancel()`` does the
    same); ``rng`` draws the retry jitter.

    ``clock`` is the run's time (:class:`~.clock.Clock`): read for durations,
    spent by the wait between retry attempts; tests pass a ``FakeClock``. By
    default ``time.perf_counter`` and a wait a cancel cuts short. ``sleep``
    replaces only the waits (what ``RuntimeContext(sleep=...)`` passes on).

    ``timing``: whether to measure each result's ``duration_seconds``.
    By default a run measures when it has listeners (the loggers and the
    journal show durations; every action run has them) and skips the clock
    otherwise, as it is a good part of the per-step cost of a bare run.
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
        clock: Clock | Callable[[], float] | None = None,
    ) -> None:
        self.registry = registry
        self.context = context
        self.progress_callback = progress_callback
        self.listeners: list[RunListener] = list(listeners)
        self.completed: dict[str, StepResult] = dict(completed or {})
        self.cancel_token = cancel_token if cancel_token is not None else CancelToken()
        self.clock: Clock = clock_of(clock, sleep, self.cancel_token)
        self._rng = rng
        self.timing = timing
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
            return self._run()
        finally:
            if self._runner is not None:
                self._runner.close()
                self._runner = None

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
        run = ActiveRun(self.context, plan, None, self.listeners)
        entries: list[Undo] = [
            (step, run.info(index), results[name])
            for index, step, name, _ in reversed(plan.entries)
            if name in results
        ]
        return self._rollback(run, entries)

    # the run, down the chain ------------------------------------------------------
    def _run(self) -> dict[str, Any]:
        """Once: open the run, run its steps, report the final 100; listeners hear how it ended."""
        if self._started:
            raise RuntimeError(
                'this Orchestrator has already run; create a new Orchestrator '
                '(with a fresh context) for each run'
            )
        self._started = True
        listeners = self.listeners
        timed = self.timing if self.timing is not None else bool(listeners)
        read = reader(self.clock) if timed else None
        run = ActiveRun(self.context, self.registry.plan(), self.progress_callback, listeners, read)
        if listeners:
            run.deliver(RunStarted(run.run_id, time(), tuple(run.infos())))
        run.open(self.cancel_token)
        try:
            self._run_steps(run)
            self._conclude(run)
            summary = run.summary()
            if listeners:
                run.deliver_safely(RunEnded(run.run_id, time(), summary))
        finally:
            run.close(self.cancel_token)
        return {
            'success': True,
            'steps_executed': summary.steps_executed,
            'steps_total': summary.steps_total,
            'steps_skipped': summary.steps_skipped,
            'steps_reused': summary.steps_reused,
        }

    def _run_steps(self, run: ActiveRun) -> None:
        """Each step in order: reused, skipped or executed; the first failure undoes what ran.

        This loop runs once per step, so the path of a plain step (no retry, no timeout)
        is written out here and sets the run's per-step fields (``index``, ``result``,
        ``outcomes``) itself: a method call per step would cost a good part of the
        orchestrator's overhead (``benchmarks/orchestrator_overhead.py``). Every other
        change to the run is a method of :class:`ActiveRun`. Listener events are only
        made when there are listeners (the list is live: a listener may add another).
        """
        context, completed, listeners = self.context, self.completed, self.listeners
        record, outcomes, timed = run.record, run.outcomes, run.read is not None
        marks = zip(run.progress.mark_steps, run.progress.mark_percents, strict=True)
        next_mark, percent = next(marks, (-1, 0))
        for index, step, name, guard in run.plan.entries:
            context.current_step = name
            run.result = None
            try:
                if run.stop is not None:  # set by a cancel
                    raise StepCancelled(self.cancel_token.reason or 'cancelled', before_step=True)
                if completed and name in completed:
                    run.reuse(index, completed[name])
                elif (skip := step.can_skip(context)) is False or not (skip := _answer(skip, self)):
                    run.index = index
                    if listeners:
                        run.tell(StepStarted, index)
                    if guard is None:
                        result = step.execute(context)
                        if not isinstance(result, StepResult):
                            result = self._settle(name, result)
                    else:
                        result = self._run_guarded(run, index, step, guard)
                    if timed:
                        run.time_step(result)
                    result.step_name = name
                    run.index = None
                    if run.partial:  # recorded on the way: part of what the step did
                        run.take_partial(result)
                    record(result)
                    run.result = result
                    if not result.success:
                        raise _ReturnedFailure
                    outcomes[index] = result
                    if listeners:
                        run.tell_ended(index, result)
                else:
                    run.skip(index, skip)
                if index == next_mark:
                    run.emit(percent)
                    next_mark, percent = next(marks, (-1, 0))
            except BaseException as exc:
                self._fail(run, index, exc)

    def _run_guarded(
        self, run: ActiveRun, index: int, step: BaseStep[C], guard: Guard
    ) -> StepResult:
        """``step.execute`` under its retry policy: attempts until one works or may not retry."""
        policy, timeout = guard
        info = run.info(index)
        while True:
            try:
                return run.attempts_done(self._attempt(run, info, step, timeout))
            except (Exception, _HardStop) as exc:
                error = _timeout_of(exc, run, info, timeout)
                if (
                    policy is None
                    or isinstance(error, StepCancelled)
                    or not policy.should_retry(error, run.attempt)
                ):
                    raise error from (None if error is exc else exc)
                self._retry(run, info, step, error, policy.delay(run.attempt, self.rng))

    def _attempt(
        self, run: ActiveRun, info: StepInfo, step: BaseStep[C], timeout: float | None
    ) -> StepResult:
        """One attempt, within the step's timeout; a result that comes too late is not trusted."""
        with _Deadline(self, run, info, timeout):
            returned = step.execute(self.context)
            if not isinstance(returned, StepResult):
                returned = self._settle(info.name, returned, timeout)
        if run.stop is not None and not isinstance(run.stop, StepCancelled):
            run.keep_rollback_data(returned)  # out of time: what it says to undo still counts
            raise run.stop
        return returned

    def _retry(
        self, run: ActiveRun, info: StepInfo, step: BaseStep[C], error: Exception, delay: float
    ) -> None:
        """Undo the failed attempt's partial work, tell the listeners, wait."""
        failed = run.failed_attempt(info.index, error)
        # Undo the attempt first: if that raises, the retries end and the run's
        # rollback still has this attempt's data (in memory and in the journal).
        self._call(step.rollback, self.context, failed)
        run.next_attempt()
        if self.listeners:
            run.tell(StepRetrying, info.index, failed.attempts, failed, delay)
        self.clock.sleep(delay)
        if self.cancel_token.reason is not None:
            raise StepCancelled(self.cancel_token.reason)

    def _conclude(self, run: ActiveRun) -> None:
        """After the last step: a cancel that came while it ran, then the final 100.

        A cancel the last step did not heed still cancels the run, as it would have
        between two steps; an interrupt in the final report rolls back like one
        anywhere else. ``execute()`` raises only after rolling back.
        """
        last = len(run.outcomes) - 1
        try:
            if run.stop is not None and last >= 0:
                raise StepCancelled(self.cancel_token.reason or 'cancelled')
            self._report_done(run)
        except BaseException as exc:
            if last < 0:  # no steps: nothing ran, nothing to undo
                if self.listeners:
                    summary = RunSummary(False, 0, 0, 0, 0, error=exc)
                    run.deliver_safely(RunEnded(run.run_id, time(), summary))
                raise
            self._fail(run, last, exc)

    def _report_done(self, run: ActiveRun) -> None:
        """The final 100: every step succeeded, so a failing report is noted, not fatal."""
        if not run.reach_100():
            return
        if run.callback is not None:
            try:
                run.callback(100, 100)
            except Exception as exc:
                message = f'progress callback failed: {describe_exception(exc)}'
                self.context.errors.append(message)
        if self.listeners:
            run.deliver_safely(Progress(run.run_id, time(), 100, 100))

    # the failure path ---------------------------------------------------------------
    def _fail(self, run: ActiveRun, index: int, exc: BaseException) -> NoReturn:
        """Step ``index`` failed with ``exc``: its failed result, undo what ran, raise."""
        result, undo, cause = self._failure(run, index, exc)
        run.abandon()
        undone: list[str] = []
        errors = tuple(self._undo(run, index, undo, undone))
        if self.listeners:
            summary = run.summary(index, cause, errors)
            run.deliver_safely(RunEnded(run.run_id, time(), summary))
        if cause is not None and not isinstance(cause, Exception):
            raise cause  # KeyboardInterrupt / SystemExit: rolled back, now re-raised as is
        name = run.names[index]
        if isinstance(cause, StepCancelled):
            raise RunCancelledError(name, result, list(errors), cause.reason, undone) from cause
        raise StepExecutionError(name, result, list(errors), undone) from cause

    def _failure(
        self, run: ActiveRun, index: int, exc: BaseException
    ) -> tuple[StepResult, StepResult | None, BaseException | None]:
        """Whatever went wrong as the step's failed result; what of the step to undo first
        (None: nothing of it); the cause to report."""
        result = run.result
        if isinstance(exc, _ReturnedFailure):
            assert result is not None
            if not result.error:
                result.error = 'the step returned success=False without an error message'
            return result, result, result.exception  # kept by a wrapper that caught a raise
        if result is None:  # raised by can_skip, execute, or a listener before it
            began = not (isinstance(exc, StepCancelled) and exc.before_step)
            result = run.raised(index, exc, began)
            return result, (result if began else None), exc
        name = run.names[index]
        if self.completed.get(name) is result:
            # reused, then its report failed: it stays among the steps to undo, with the
            # caller's result untouched; the failure gets a result of its own
            failed = StepResult.from_exception(exc)
            failed.step_name = name
            self.context.step_results.append(failed)
            return failed, None, exc
        # finished (or skipped), then a listener or the progress report raised
        run.unstand(index)
        result.success = False
        result.error = describe_exception(exc)
        result.exception = exc
        return result, (None if result.skipped else result), exc  # a skipped step did nothing

    def _undo(
        self, run: ActiveRun, index: int, failed: StepResult | None, undone: list[str]
    ) -> list[str]:
        """Roll back the failed step (``failed``: what it did, if anything), then every step
        whose work stands, newest first; the rollback errors (``undone`` gets the names of
        the steps whose rollback undid their work)."""
        plan, outcomes, completed = run.plan, run.outcomes, self.completed

        def standing(i: int) -> StepResult | None:
            """What step ``i`` is undone with, if its work stands: what this run did or
            reused, or what an earlier run completed and this one had not reached yet."""
            return outcomes[i] or (completed.get(plan.names[i]) if i >= index else None)

        entries: list[Undo] = [
            (plan.steps[i], run.info(i), earlier)
            for i in reversed(range(len(outcomes)))
            if (earlier := standing(i)) is not None
        ]
        if failed is not None:
            if self.listeners and run.hearers(StepEnded):
                run.deliver_safely(run.ended(index, failed))
            entries.insert(0, (plan.steps[index], run.info(index), failed))
        return self._rollback(run, entries, undone)

    def _rollback(
        self, run: ActiveRun, entries: list[Undo], undone: list[str] | None = None
    ) -> list[str]:
        """Roll back every entry in the given order; one failure never stops the others.
        ``undone`` gets the names of the steps that can roll back and did."""
        context, listeners, run_id = self.context, self.listeners, run.run_id
        errors: list[str] = []
        for step, info, result in entries:
            context.current_step = info.name
            if listeners:
                run.deliver_safely(RollbackStarted(run_id, time(), info, result), errors)
            error: Exception | None = None
            try:
                self._call(step.rollback, context, result)
            except Exception as exc:
                error = exc
                message = f"rollback of step '{info.name}' failed: {describe_exception(exc)}"
                context.errors.append(message)
                errors.append(message)
            if listeners:
                run.deliver_safely(RollbackEnded(run_id, time(), info, error), errors)
            if undone is not None and error is None and info.can_rollback:
                undone.append(info.name)
        context.current_step = None
        return errors

    # async steps ------------------------------------------------------------------
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


class _ReturnedFailure(Exception):
    """Internal signal: the step returned ``success=False``."""


class _HardStop(BaseException):
    """Raised inside a step that ignored its timeout past the grace period (see ``_Deadline``)."""


def _answer(value: object, orchestrator: Orchestrator[Any]) -> bool | str:
    """``can_skip``'s answer (true, or a string saying why); an async ``can_skip`` is awaited."""
    if inspect.isawaitable(value):
        value = orchestrator._await(value)
    return value if isinstance(value, str) else bool(value)


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
                self.run.interrupt(StepTimeoutError(self.info.name, self.limit))
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
            for listener in list(self.run.hearers(StepOverdue)):
                with contextlib.suppress(Exception):  # a timer thread: nobody to tell
                    listener.on_event(event)
