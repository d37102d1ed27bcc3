"""The state object every step of a run shares."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ._fanout import MapItemError, backend_named
from ._result import StepResult

T = TypeVar('T')
R = TypeVar('R')

if TYPE_CHECKING:
    from ._run_state import ActiveRun


def check_progress(current: float, total: float) -> None:
    """A bad progress figure is a bug in the caller: an error, not a silent clamp."""
    if not total > 0:
        raise ValueError(f'set_progress: total must be > 0, got {total!r}')
    if not 0 <= current <= total:
        raise ValueError(f'set_progress: current must be within 0..{total}, got {current!r}')


@runtime_checkable
class RuntimeContextLike(Protocol):
    """What a step context needs from the runtime: the core names no concrete class."""

    def log(
        self,
        event: str,
        data: dict[str, Any] | None = None,
        file: str | None = None,
        level: str = 'info',
    ) -> None:
        """Record one event at ``level`` (``debug``, ``info``, ``warning``, ``error``)."""

    def set_progress(self, current: float, total: float, category: str | None = None) -> None:
        """Report progress of the running step (or of a named category)."""

    def set_metrics(self, value: dict[str, Any], category: str) -> None:
        """Record metrics under a category."""

    @property
    def client(self) -> Any:
        """The storage backend the steps talk to."""


@dataclass(kw_only=True)
class BaseStepContext:
    """Shared state for one workflow; extend it with a dataclass of your own.

    Keyword-only so that a subclass may declare fields without defaults.
    ``current_step`` is kept up to date by the orchestrator.
    """

    runtime_ctx: RuntimeContextLike
    step_results: list[StepResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    current_step: str | None = field(default=None, init=False)
    _active_run: ActiveRun | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def client(self) -> Any:
        """The runtime's backend client (the spec's complete example relies on it)."""
        return self.runtime_ctx.client

    def log(
        self,
        event: str,
        data: dict[str, Any] | None = None,
        file: str | None = None,
        level: str = 'info',
    ) -> None:
        """Log an event through the runtime context, at ``level``: ``'debug'``, ``'info'``
        (the default), ``'warning'`` or ``'error'``.

        An ``info`` event is passed on as the spec's ``log(event, data, file)``, so a
        runtime written to the spec's three arguments still takes it.
        """
        payload = data if data is not None else {}
        if level == 'info':
            self.runtime_ctx.log(event, payload, file)
        else:
            self.runtime_ctx.log(event, payload, file, level)

    def set_progress(self, current: float, total: float, category: str | None = None) -> None:
        """Report the running step's own progress; it also moves the overall figure.

        ``total`` must be positive and ``current`` within ``0..total``: a bad
        figure here is a bug in the step, so it is an error, not a clamp.
        Without a category the runtime shows it under the step's name.
        """
        if not (total > 0 and 0 <= current <= total):
            check_progress(current, total)  # raises, with the message
        self.runtime_ctx.set_progress(current, total, category or self.current_step)
        run = self._active_run
        if run is not None:
            run.step_progress(current / total)

    def set_metrics(self, value: dict[str, Any], category: str) -> None:
        """Record metrics through the runtime context."""
        self.runtime_ctx.set_metrics(value, category)

    @property
    def cancelled(self) -> bool:
        """True once the run is cancelled or the running step is out of time."""
        run = self._active_run
        return run is not None and run.stop is not None

    def raise_if_cancelled(self) -> None:
        """Raise StepCancelled / StepTimeoutError if the step should stop; call it in long loops."""
        run = self._active_run
        if run is not None and run.stop is not None:
            raise run.stop

    def record_rollback(self, **values: Any) -> None:
        """Save rollback data while the step is still running.

        If the step then raises (or the process dies, with a journal
        attached), its ``rollback()`` still receives what was recorded in
        ``result.rollback_data``. Values set here are merged under the
        ``rollback_data`` of the result the step returns.
        """
        run = self._require_run('record_rollback')
        run.record_rollback(values)

    def append_rollback(self, key: str, item: Any) -> None:
        """Append one item to the list ``rollback_data[key]``; cheap enough to call per file."""
        run = self._require_run('append_rollback')
        run.append_rollback(key, item)

    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        backend: str = 'threads',
        max_workers: int | None = None,
        rollback_key: str | None = None,
        category: str | None = None,
    ) -> list[R]:
        """``[fn(item) for item in items]``, run concurrently; results in item order.

        As items finish, the step's progress advances (``category``, default the
        step's name) and, with ``rollback_key``, each result is appended to
        ``rollback_data[rollback_key]`` (journaled as it happens), so a failure or
        a crash rolls back exactly the items that were done. The first item that
        raises stops the rest (items already running finish and are recorded)
        and the step fails with :class:`MapItemError` naming that item.
        ``backend``: ``'threads'`` (default), ``'serial'``, or ``'ray'`` (needs the
        ``ray`` extra; loaded on first use). A cancel or timeout stops
        the rest the same way, after recording the items that ran.
        """
        sequence = list(items)
        results: list[Any] = [None] * len(sequence)
        total = len(sequence)
        done = 0
        failure: tuple[int, BaseException] | None = None
        interrupted: Exception | None = None
        stop = threading.Event()
        runner = backend_named(backend).run(fn, sequence, max_workers, stop)
        try:
            for index, value, error in runner:
                if error is not None:
                    if failure is None:
                        failure = (index, error)
                    stop.set()
                    continue
                results[index] = value
                done += 1
                if rollback_key is not None:
                    self.append_rollback(rollback_key, value)  # even while stopping
                if interrupted is None:
                    try:
                        self.set_progress(done, total, category)
                    except Exception as exc:  # asked to stop: let the running items land
                        interrupted = exc
                        stop.set()
        finally:
            close = getattr(runner, 'close', None)
            if close is not None:
                close()
        if failure is not None:
            index, error = failure
            raise MapItemError(index, sequence[index], error) from error
        if interrupted is not None:
            raise interrupted
        return results

    def _require_run(self, what: str) -> ActiveRun:
        run = self._active_run
        if run is None:
            raise RuntimeError(
                f'context.{what}() was called outside a running step; '
                'call it from a step executed by an Orchestrator'
            )
        return run


STATE = 'snapshot'
"""Field metadata key: ``field(..., metadata={'snapshot': False})`` keeps a field out of the
context's state (what ``StepEnded`` carries and the run journal snapshots)."""

_BASE_FIELDS = frozenset(f.name for f in dataclasses.fields(BaseStepContext))
_STATE_FIELDS: dict[type, tuple[str, ...]] = {}


def state_fields(context: BaseStepContext) -> tuple[str, ...]:
    """The context's own fields that make up its state (not the runtime, not the bookkeeping)."""
    cls = type(context)
    names = _STATE_FIELDS.get(cls)
    if names is None:
        names = _STATE_FIELDS[cls] = tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in _BASE_FIELDS and f.metadata.get(STATE, True)
        )
    return names


def context_state(context: BaseStepContext) -> dict[str, Any]:
    """The context's state: its own fields' values (the objects themselves, not copies)."""
    return {name: getattr(context, name) for name in state_fields(context)}


def run_id_of(context: BaseStepContext) -> str | None:
    """The run's id as the runtime names it (``run_id``; ``job_id``, its old name, for a
    runtime that has only that); None for a runtime that names none."""
    runtime = context.runtime_ctx
    run_id = getattr(runtime, 'run_id', None)
    if run_id is None:
        run_id = getattr(runtime, 'job_id', None)
    return run_id if isinstance(run_id, str) else None
