"""Run an action in this process: with the default runtime, and journaled when asked."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.journal import Journal, JournalError, JournalListener
from synapse_sdk.paths import synapse_home
from synapse_sdk.plugins.actions import ActionOrigin, BaseAction
from synapse_sdk.plugins.steps import RunListener
from synapse_sdk.plugins.steps.result import describe_exception
from synapse_sdk.runtime import ConsoleLogger, JsonLinesLogger, LineLogger, Logger, RuntimeContext


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


LOG_FORMATS = ('auto', 'plain', 'json')
"""How the run is shown on stderr: ``auto`` (live bars on a terminal, plain lines
otherwise), ``plain`` (one line per event, with its level) or ``json`` (JSON lines)."""


def display(log_format: str = 'auto', *, level: str = 'info', run_id: str | None = None) -> Logger:
    """The logger that shows a run on stderr in ``log_format`` (one of ``LOG_FORMATS``);
    ``log()`` events below ``level`` are left out, but for ``json``, which keeps them all."""
    if log_format == 'auto':
        return ConsoleLogger(level=level)
    if log_format == 'plain':
        return LineLogger(level=level)
    if log_format == 'json':
        return JsonLinesLogger(sys.stderr, run_id=run_id)
    raise ValueError(f'log format must be one of {", ".join(LOG_FORMATS)}, got {log_format!r}')


def default_runtime(
    run_id: str | None = None,
    *,
    console: bool = True,
    client: Any = None,
    log_format: str = 'auto',
    log_level: str = 'info',
) -> RuntimeContext:
    """The run shown on stderr (``console``; see :func:`display`), a JSON-lines log under
    ``$SYNAPSE_HOME/logs``, local storage."""
    run_id = run_id or new_run_id()
    loggers: list[Logger] = [display(log_format, level=log_level, run_id=run_id)] if console else []
    loggers.append(JsonLinesLogger(synapse_home() / 'logs' / f'{run_id}.jsonl', run_id=run_id))
    return RuntimeContext(
        logger=loggers,
        client=client if client is not None else LocalBackendClient(),
        run_id=run_id,
    )


def run_action(
    action: type[BaseAction[Any]],
    params: Mapping[str, Any],
    ctx: RuntimeContext | None = None,
    *,
    journal: Journal | None = None,
    listeners: Iterable[RunListener] = (),
    origin: ActionOrigin | None = None,
) -> dict[str, Any]:
    """``action.dispatch(params, ctx, listeners=...)``, recorded in ``journal`` when given one.

    The run is recorded under ``ctx.run_id``, write-ahead, so a crash leaves what
    ``synapse runs rollback/resume`` needs; ``origin`` says where to rebuild the
    action from. Without ``ctx``, a default runtime is made and closed after the run.
    """
    if journal is None:
        return action.dispatch(params, ctx, listeners=listeners)
    instance = action(params, ctx)
    if ctx is not None:
        return _run_journaled(instance, journal, listeners, origin)
    with instance.ctx:
        return _run_journaled(instance, journal, listeners, origin)


def _run_journaled(
    action: BaseAction[Any],
    journal: Journal,
    listeners: Iterable[RunListener],
    origin: ActionOrigin | None,
) -> dict[str, Any]:
    """Start the record before the action's setup code runs, so that a setup that raises
    is recorded ``failed`` with its cause (not left ``running``, later ``crashed``)."""
    run_id = action.ctx.run_id
    journal.start_run(
        run_id,
        entrypoint=action.entrypoint(),
        params=action.params.model_dump(mode='json'),
        action=origin.action if origin else None,
        plugin_path=origin.plugin_path if origin else None,
    )
    with _ends_run_if_raising(journal, run_id):
        prepared = action.prepare_run()
    if not prepared.plain:  # the steps' listener records the rest, the run's end included
        return prepared.run(listeners=[*listeners, JournalListener(journal, run_id)])
    with _ends_run_if_raising(journal, run_id):
        result = prepared.run()
    journal.set_run_status(run_id, 'succeeded')
    return result


@contextmanager
def _ends_run_if_raising(journal: Journal, run_id: str) -> Iterator[None]:
    try:
        yield
    except BaseException as error:
        status = 'failed' if isinstance(error, Exception) else 'cancelled'
        journal.set_run_status(run_id, status, describe_exception(error))
        raise


class LocalExecutor:
    """Runs actions in the calling process, journaled when given a journal."""

    def __init__(self, *, console: bool = True, journal: Journal | None = None) -> None:
        self.console = console
        self.journal = journal

    def run(
        self,
        action: type[BaseAction[Any]],
        params: Mapping[str, Any],
        *,
        ctx: RuntimeContext | None = None,
        listeners: Iterable[RunListener] = (),
        origin: ActionOrigin | None = None,
    ) -> dict[str, Any]:
        """Run ``action`` on ``ctx`` (default: :func:`default_runtime`), closed afterwards;
        the result (``RunResult.to_dict()``) names the run by its ``run_id``."""
        ctx = ctx if ctx is not None else default_runtime(console=self.console)
        with ctx:
            try:
                result = run_action(
                    action, params, ctx, journal=self.journal, listeners=listeners, origin=origin
                )
            except (KeyboardInterrupt, SystemExit):
                self._record_interrupted_rollback(ctx)
                raise
        return result

    def _record_interrupted_rollback(self, ctx: RuntimeContext) -> None:
        """Stopped during rollback: say in the journal that the rest of it is pending."""
        journal = self.journal
        if journal is None:
            return
        try:
            record = journal.get_run(ctx.run_id)
        except JournalError:
            return  # interrupted before the run was recorded
        if record.active:
            journal.set_run_status(
                ctx.run_id,
                'cancelled',
                'interrupted during rollback; the rest is pending: '
                f'synapse runs rollback {ctx.run_id}',
            )
