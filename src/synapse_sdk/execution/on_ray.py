"""Run whole actions on Ray, and ``context.map(..., backend='ray')``.

Needs the ``ray`` extra (``pip install 'synapse-sdk[ray]'``). The run itself
happens in a Ray actor; the driver shows its progress and events live and
keeps the journal's view; the worker writes the run journal directly, so the
journal must be reachable from the workers: a PostgreSQL journal
(``SYNAPSE_DATABASE_URL``) from anywhere, an SQLite file from the local Ray
instance and clusters on a shared filesystem.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

try:
    import ray
    from ray.exceptions import RayActorError, RayTaskError
except ImportError as error:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "running on Ray needs the 'ray' extra: pip install 'synapse-sdk[ray]'"
    ) from error

from synapse_sdk.journal import Journal, JournalError
from synapse_sdk.plugins.actions import ActionError, ActionOrigin, BaseAction
from synapse_sdk.plugins.steps import (
    BaseStepContext,
    RunCancelledError,
    RunSummary,
    StepExecutionError,
    StepInfo,
    StepResult,
    register_backend,
)
from synapse_sdk.plugins.steps.fanout import windowed
from synapse_sdk.runtime import Logger, RuntimeContext

from .local import default_runtime, run_action
from .recovery import rollback_run

Event = tuple[Any, ...]


# --- starting Ray --------------------------------------------------------------
def ensure_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    working_dir: str | Path | None = None,
) -> None:
    """Connect to ``address``, or start a local Ray instance (the embedded default).

    ``ray.init`` takes over SIGTERM (an exit with a stack dump); a handler the
    caller installed (the graceful cancel of ``synapse plugin run``) is put back.
    Where there was none, Ray's stays: it stops the local instance's processes.
    """
    if ray.is_initialized():
        return
    runtime_env: dict[str, Any] = {}
    if working_dir is not None:
        runtime_env['working_dir'] = str(working_dir)
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    ray.init(
        address=address,
        num_cpus=num_cpus if address is None else None,
        runtime_env=runtime_env or None,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    for signum, handler in previous.items():
        if handler not in (signal.SIG_DFL, None):
            signal.signal(signum, handler)


def _ship_by_value(obj: object) -> None:
    """The user's own code (a plugin module, a test file) travels pickled by value:
    the workers may not be able to import it. Installed packages travel by name."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    name = getattr(obj, '__module__', None) or ''
    module = sys.modules.get(name)
    top = name.split('.')[0]
    if module is None or top in sys.stdlib_module_names or top in ('synapse_sdk', '__main__'):
        return
    path = getattr(module, '__file__', None) or ''
    if 'site-packages' in path or 'dist-packages' in path:
        return
    ray.cloudpickle.register_pickle_by_value(module)


# --- the worker side -----------------------------------------------------------
class RelayLogger(Logger):
    """Collects what the run shows (events, progress, metrics, step lifecycle) for the driver.

    Consecutive progress updates of one category are folded into the latest,
    so a step reporting every item costs the relay nothing.
    """

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def drain(self) -> list[Event]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def _add(self, event: Event) -> None:
        with self._lock:
            events = self._events
            if (
                event[0] == 'progress'
                and events
                and events[-1][0] == 'progress'
                and events[-1][3] == event[3]
            ):
                events[-1] = event
            else:
                events.append(event)

    def log(self, event: str, data: dict[str, Any], file: str | None, level: str) -> None:
        self._add(('log', event, data, file, level))

    def progress(self, current: float, total: float, category: str) -> None:
        self._add(('progress', current, total, category))

    def metrics(self, value: dict[str, Any], category: str) -> None:
        self._add(('metrics', value, category))

    def on_run_start(self, context: BaseStepContext, steps: Sequence[StepInfo]) -> None:
        self._add(('on_run_start', [tuple(asdict(s).values()) for s in steps]))

    def on_step_start(self, context: BaseStepContext, step: StepInfo) -> None:
        self._add(('on_step_start', _info(step)))

    def on_step_end(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        self._add(('on_step_end', _info(step), _result(result)))

    def on_step_skip(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        self._add(('on_step_skip', _info(step), _result(result)))

    def on_step_reused(self, context: BaseStepContext, step: StepInfo, result: StepResult) -> None:
        self._add(('on_step_reused', _info(step), _result(result)))

    def on_rollback_start(
        self, context: BaseStepContext, step: StepInfo, result: StepResult
    ) -> None:
        self._add(('on_rollback_start', _info(step), _result(result)))

    def on_rollback_end(
        self, context: BaseStepContext, step: StepInfo, error: BaseException | None
    ) -> None:
        self._add(('on_rollback_end', _info(step), None if error is None else str(error)))

    def on_step_retry(
        self,
        context: BaseStepContext,
        step: StepInfo,
        attempt: int,
        result: StepResult,
        delay: float,
    ) -> None:
        self._add(('on_step_retry', _info(step), attempt, _result(result), delay))

    def on_step_overdue(self, context: BaseStepContext, step: StepInfo, limit: float) -> None:
        self._add(('overdue', step.name, limit))

    def on_run_end(self, context: BaseStepContext, summary: RunSummary) -> None:
        fields = {f.name: getattr(summary, f.name) for f in dataclass_fields(summary)}
        error = fields['error']
        fields['error'] = None if error is None else _portable_any(error)
        self._add(('on_run_end', fields))


def _portable_any(error: BaseException) -> BaseException:
    if isinstance(error, Exception):
        return _portable(error)
    return RuntimeError(f'{type(error).__name__}: {error}')


def _first_line(error: BaseException) -> str:
    text = re.sub(r'\x1b\[[0-9;]*m', '', str(error))  # no terminal colours in a message
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _info(step: StepInfo) -> tuple[int, str, float]:
    return (step.index, step.name, step.weight)


def _result(result: StepResult) -> dict[str, Any]:
    return {
        'success': result.success,
        'error': result.error,
        'skipped': result.skipped,
        'duration_seconds': result.duration_seconds,
        'step_name': result.step_name,
    }


@ray.remote(max_concurrency=4)
class RunHost:
    """Runs one action in a Ray worker; the driver drains its events and may cancel it."""

    def __init__(self) -> None:
        self.relay = RelayLogger()
        self.runtime: RuntimeContext | None = None

    def run(
        self,
        shipped_action: bytes,
        params: dict[str, Any],
        run_id: str,
        client: Any,
        journal_path: str | None,
        origin: ActionOrigin | None,
        driver: tuple[str, str],
    ) -> dict[str, Any]:
        host, cwd = driver
        if host == socket.gethostname() and os.path.isdir(cwd):
            os.chdir(cwd)  # same machine: relative paths mean what they mean to the driver
        folder = origin.plugin_path if origin is not None else None
        if folder and os.path.isdir(folder) and folder not in sys.path:
            sys.path.insert(0, folder)  # its sibling modules import as they do locally
        # unpickled here, after the path is set: the class may import its siblings
        action: type[BaseAction[Any]] = ray.cloudpickle.loads(shipped_action)
        self.runtime = RuntimeContext(logger=[self.relay], client=client, run_id=run_id)
        journal = Journal(journal_path) if journal_path else None
        try:
            result = run_action(action, params, self.runtime, journal=journal, origin=origin)
        except RunCancelledError as error:
            return _outcome('cancelled', error)
        except StepExecutionError as error:
            return _outcome('failed', error)
        except (KeyboardInterrupt, SystemExit) as error:
            return {'status': 'cancelled', 'message': f'stopped by {type(error).__name__}'}
        except Exception as error:  # bad params, a plain execute() raising: as themselves
            return {'status': 'error', 'error': _portable(error)}
        return {'status': 'succeeded', 'result': result}

    def drain(self) -> list[Event]:
        return self.relay.drain()

    def cancel(self, reason: str) -> None:
        if self.runtime is not None:
            self.runtime.cancel(reason)


def _portable(error: Exception) -> Exception:
    """The exception if it survives pickling, else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f'{type(error).__name__}: {error}')
    return error


def _outcome(status: str, error: StepExecutionError) -> dict[str, Any]:
    return {
        'status': status,
        'step': error.step_name,
        'error': error.result.error,
        'rollback_errors': list(error.rollback_errors),
        'reason': getattr(error, 'reason', None),
    }


# --- the driver side -----------------------------------------------------------
class RayExecutor:
    """Runs actions on Ray: ``RayExecutor(address=None).run(ActionClass, params)``.

    With no address a local Ray instance is started. Progress, events and
    metrics reach the driver's loggers (the same display as a local run).
    Cancelling the driver's runtime (Ctrl-C under ``synapse plugin run``)
    cancels the remote run; the driver waits up to ``stop_timeout`` seconds
    for the worker's rollback. If the worker dies mid-run, the driver rolls
    the run back from the journal and reports the step that was running.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        journal: Journal | None = None,
        console: bool = True,
        stop_timeout: float = 60.0,
        poll_interval: float = 0.1,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.journal = journal if journal is not None else Journal()
        self.console = console
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval

    def run(
        self,
        action: type[BaseAction[Any]],
        params: Mapping[str, Any],
        *,
        ctx: RuntimeContext | None = None,
        origin: ActionOrigin | None = None,
    ) -> dict[str, Any]:
        values = action.validate_params(params).model_dump(mode='json')  # bad input stays local
        ctx = ctx if ctx is not None else default_runtime(console=self.console)
        # Starting Ray here: the plugin folder travels as the job's working_dir.
        # Ray already up: a worker on this machine finds the folder where it is.
        working_dir = origin.plugin_path if origin is not None else None
        ensure_ray(self.address, num_cpus=self.num_cpus, working_dir=working_dir)
        _ship_by_value(action)
        host = RunHost.remote()  # type: ignore[attr-defined]
        with ctx:
            driver = (socket.gethostname(), os.getcwd())
            ref = host.run.remote(
                ray.cloudpickle.dumps(action),
                values,
                ctx.run_id,
                ctx.client,
                str(self.journal.location),
                origin,
                driver,
            )
            outcome = self._follow(host, ref, ctx)
        return self._conclude(outcome, ctx, action)

    def _follow(self, host: Any, ref: Any, ctx: RuntimeContext) -> dict[str, Any]:
        cancelled_at: float | None = None
        try:
            while True:
                ready, _ = ray.wait([ref], timeout=self.poll_interval)
                events = ray.get(host.drain.remote())
                self._replay(events, ctx)
                if ready:
                    return dict(ray.get(ref))
                overdue = [e for e in events if e[0] == 'overdue']
                if overdue:  # stuck past its timeout where no thread can stop it: end it
                    ray.kill(host)
                    _, step, limit = overdue[0]
                    return {
                        'status': 'killed',
                        'message': f"step '{step}' exceeded its timeout of {limit:g}s and "
                        'did not stop; its Ray worker was killed',
                    }
                if ctx.cancel_token.cancelled and cancelled_at is None:
                    cancelled_at = time.monotonic()
                    host.cancel.remote(ctx.cancel_token.reason or 'cancelled')
                if cancelled_at is not None and time.monotonic() - cancelled_at > self.stop_timeout:
                    ray.kill(host)
                    return {'status': 'killed', 'message': 'the worker did not stop in time'}
        except RayActorError as error:
            return {'status': 'crashed', 'message': _first_line(error)}
        except RayTaskError as error:  # raised by Ray around the run, not by a step
            return {'status': 'error', 'error': _cause(error)}
        except (KeyboardInterrupt, SystemExit):
            ray.kill(host)
            self._mark_pending(ctx.run_id)
            raise

    def _replay(self, events: list[Event], runtime: RuntimeContext) -> None:
        context = BaseStepContext(runtime_ctx=runtime)
        for event in events:
            kind = event[0]
            if kind == 'overdue':
                continue
            if kind == 'log':
                runtime.log(event[1], event[2], event[3], event[4])
            elif kind == 'progress':
                runtime.set_progress(event[1], event[2], event[3])
            elif kind == 'metrics':
                runtime.set_metrics(event[1], event[2])
            else:
                for logger in runtime.loggers:
                    _replay_lifecycle(logger, kind, event[1:], context)

    def _conclude(
        self, outcome: dict[str, Any], ctx: RuntimeContext, action: type[BaseAction[Any]]
    ) -> dict[str, Any]:
        status = outcome['status']
        if status == 'error':
            raise outcome['error']
        if status == 'succeeded':
            result = dict(outcome['result'])
            result['run_id'] = ctx.run_id
            return result
        if status in ('failed', 'cancelled'):
            failed = StepResult(success=False, error=outcome['error'], step_name=outcome['step'])
            if status == 'cancelled' and outcome.get('step'):
                raise RunCancelledError(
                    outcome['step'], failed, outcome['rollback_errors'], outcome['reason'] or ''
                )
            if status == 'failed':
                raise StepExecutionError(outcome['step'], failed, outcome['rollback_errors'])
            raise KeyboardInterrupt(outcome.get('message', 'cancelled'))
        # the worker died or was killed: roll back from the journal, here
        step = self._running_step(ctx.run_id) or '?'
        report = self._rollback_after_crash(ctx)
        if status == 'killed':
            failed = StepResult(success=False, error=outcome['message'], step_name=step)
            if ctx.cancel_token.reason is None:  # killed for its timeout: a failure
                raise StepExecutionError(step, failed, report)
            raise RunCancelledError(step, failed, report, ctx.cancel_token.reason)
        failed = StepResult(
            success=False,
            error=f'the Ray worker died while running it ({outcome.get("message")})',
            step_name=step,
        )
        raise StepExecutionError(step, failed, report)

    def _running_step(self, run_id: str) -> str | None:
        try:
            steps = self.journal.steps(run_id)
        except JournalError:
            return None
        started = [s.name for s in steps if s.status in ('started', 'failed')]
        return started[-1] if started else None

    def _rollback_after_crash(self, ctx: RuntimeContext) -> list[str]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the worker process may take a moment to go
            try:
                record = self.journal.get_run(ctx.run_id)
            except JournalError:
                return ['the run was not journaled: nothing to roll back from']
            if not record.active:
                break
            time.sleep(0.1)
        try:
            report = rollback_run(self.journal, ctx.run_id, ctx)
        except (JournalError, ActionError) as error:
            return [f'rollback after the crash failed: {error}']
        return list(report['errors'])

    def _mark_pending(self, run_id: str) -> None:
        try:
            if self.journal.get_run(run_id).active:
                self.journal.set_run_status(
                    run_id,
                    'cancelled',
                    f'stopped on the driver; roll back with: synapse runs rollback {run_id}',
                )
        except JournalError:
            pass


def _replay_lifecycle(
    logger: Logger, kind: str, args: tuple[Any, ...], context: BaseStepContext
) -> None:
    if kind == 'on_run_start':
        logger.on_run_start(context, [StepInfo(*s) for s in args[0]])
    elif kind in ('on_step_start',):
        logger.on_step_start(context, StepInfo(*args[0]))
    elif kind in ('on_step_end', 'on_step_skip', 'on_step_reused', 'on_rollback_start'):
        getattr(logger, kind)(context, StepInfo(*args[0]), StepResult(**args[1]))
    elif kind == 'on_rollback_end':
        error = None if args[1] is None else RuntimeError(args[1])
        logger.on_rollback_end(context, StepInfo(*args[0]), error)
    elif kind == 'on_step_retry':
        info, attempt, result, delay = args
        logger.on_step_retry(context, StepInfo(*info), attempt, StepResult(**result), delay)
    elif kind == 'on_run_end':
        fields = dict(args[0])
        fields['rollback_errors'] = tuple(fields['rollback_errors'])
        logger.on_run_end(context, RunSummary(**fields))


# --- context.map(..., backend='ray') -------------------------------------------
class RayMapBackend:
    """Items as Ray tasks; results collected in batches as they finish."""

    def run(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        max_workers: int | None,
        stop: threading.Event,
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        ensure_ray()
        _ship_by_value(fn)
        shipped = ray.put(fn)  # once, not with every item
        caller = (socket.gethostname(), os.getcwd())
        return windowed(
            items,
            max_workers or len(items) or 1,
            stop,
            lambda item: _apply.remote(shipped, item, caller),
            _settle,
            ray.cancel,
        )


@ray.remote  # type: ignore[untyped-decorator]
def _apply(fn: Callable[[Any], Any], item: Any, caller: tuple[str, str]) -> Any:
    """``fn(item)`` in the caller's cwd when on its host: relative paths then mean
    what they mean to the caller (a task's own cwd is the job's working_dir)."""
    host, cwd = caller
    here = os.getcwd()
    if host != socket.gethostname() or cwd == here or not os.path.isdir(cwd):
        return fn(item)
    os.chdir(cwd)
    try:
        return fn(item)
    finally:
        os.chdir(here)  # the worker runs the job's other tasks next


def _cause(error: RayTaskError) -> BaseException:
    """The item's own exception, not Ray's wrapper with the remote traceback in its text."""
    cause = getattr(error, 'cause', None)
    return cause if isinstance(cause, BaseException) else error.as_instanceof_cause()


def _settle(refs: list[Any]) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Wait for one task, take all that are done by then, fetch their results in one go."""
    ready, rest = ray.wait(refs, num_returns=1)
    if rest:
        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
        ready += more
    try:
        values = ray.get(ready)
    except RayTaskError:  # one of them failed: find which, one by one
        for ref in ready:
            try:
                yield ref, ray.get(ref), None
            except RayTaskError as error:
                yield ref, None, _cause(error)
        return
    yield from ((ref, value, None) for ref, value in zip(ready, values, strict=True))


register_backend('ray', RayMapBackend)  # the class builds a backend: a factory
