"""Run an action in this process: with the default runtime, and journaled when asked."""

from __future__ import annotations

import os
import sys
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from synapse_sdk._paths import run_log_path
from synapse_sdk.clients import PartialWrites, choose_storage, open_storage
from synapse_sdk.journal import Heartbeat, Holder, Journal, JournalError, JournalListener
from synapse_sdk.otel import joined_trace, otel_requested
from synapse_sdk.plugins.actions import ActionOrigin, BaseAction
from synapse_sdk.plugins.loader import Plugin, PluginError
from synapse_sdk.plugins.steps import (
    BaseStepContext,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunListener,
)
from synapse_sdk.plugins.steps.support import describe_exception
from synapse_sdk.runtime import ConsoleLogger, JsonLinesLogger, LineLogger, Logger, RuntimeContext

from ._journal_log import JournalLogLines, logging_to_journal


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
    otel: bool | None = None,
    plugin: str | None = None,
    action: str | None = None,
    log_format: str = 'auto',
    log_level: str = 'info',
    storage: str | None = None,
) -> RuntimeContext:
    """The run shown on stderr (``console``; see :func:`display`), a JSON-lines log under
    ``$SYNAPSE_HOME/logs``, the storage at ``storage`` (a folder path or URL; default:
    ``SYNAPSE_STORAGE``, else ``$SYNAPSE_HOME/storage``) unless ``client`` is given, its
    writes announced under the run (``for_run``); an OpenTelemetry trace of the run when
    ``otel`` (None: when the ``OTEL_*`` variables ask for one, see
    :func:`synapse_sdk.otel.otel_requested`), named by ``plugin``/``action``.

    ``otel=True`` without the ``otel`` extra raises ``ImportError`` (naming the
    extra); asked for by the environment only, it is a warning and the run goes on.
    """
    run_id = run_id or new_run_id()
    if client is None:
        client = open_storage(choose_storage(storage), run_id=run_id)
    shown = display(log_format, level=log_level, run_id=run_id)
    loggers: list[Logger] = [shown] if console else []
    loggers.append(JsonLinesLogger(run_log_path(run_id), run_id=run_id))
    tracer = _otel_listener(otel, plugin, action)
    if tracer is not None:
        loggers.append(tracer)
    return RuntimeContext(logger=loggers, client=client, run_id=run_id)


def _otel_listener(otel: bool | None, plugin: str | None, action: str | None) -> Logger | None:
    if otel is False or (otel is None and not otel_requested(os.environ)):
        return None
    try:
        from synapse_sdk.otel import OtelListener
    except ImportError as error:
        if otel:
            raise
        warnings.warn(f'OTEL_* variables ask for traces, but {error}', RuntimeWarning, stacklevel=3)
        return None
    listener: Logger = OtelListener(plugin=plugin, action=action)
    return listener


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
    is recorded ``failed`` with its cause (not left ``running``, later ``crashed``).

    The run holds a lease from its first record on, renewed by a heartbeat
    thread until it ends; a lease that cannot be renewed cancels the run
    (another machine may recover it now: see ``journal.lease``), and so does a
    cancel request in the journal (``cancel_run``), which the same thread reads.
    That thread also writes the run's log lines to the journal (``JournalLogLines``).
    """
    run_id = action.ctx.run_id
    storage = bind_storage(action.ctx)
    holder = str(Holder.new(time.time()))
    journal.start_run(
        run_id,
        entrypoint=action.entrypoint(),
        params=action.params.model_dump(mode='json'),
        action=origin.action if origin else None,
        plugin_path=os.path.abspath(origin.plugin_path) if origin else None,
        cwd=os.getcwd(),  # relative paths in the params mean files here: recovery runs here
        plugin=plugin_code(origin),
        storage=storage,
        lease_owner=holder,
    )
    ctx = action.ctx
    with logging_to_journal(ctx, journal) as lines:
        beat = Heartbeat(
            journal, run_id, holder, on_lost=ctx.cancel, on_cancel=ctx.cancel, log=lines.buffer
        )
        with beat:
            with _ends_run_if_raising(journal, run_id, lines):
                prepared = action.prepare_run()
            if not prepared.plain:  # the steps' listener records the rest, the run's end too
                reports = RollbackReports(journal, run_id, prepared.context)
                listening = [*listeners, JournalListener(journal, run_id), reports]
                return prepared.run(listeners=listening)
            with _ends_run_if_raising(journal, run_id, lines):
                result = prepared.run()
            lines.flush()  # before the end: who sees the run ended has seen its lines
            journal.set_run_status(run_id, 'succeeded')
    return result


class RollbackReports(RunListener):
    """A rollback that returns, having said in ``context.errors`` what it could not undo (the
    spec's pattern), has not undone its work: its step is journaled ``rollback_failed`` (so
    ``synapse runs rollback`` retries it), and so is a run that ended failed. Goes after the
    ``JournalListener``, whose record it corrects; ``errors`` lists what the rollbacks said."""

    listens_to = (RollbackStarted, RollbackEnded, RunEnded)

    def __init__(self, journal: Journal, run_id: str, context: BaseStepContext | None) -> None:
        self.journal = journal
        self.run_id = run_id
        self.context = context
        self.errors: list[str] = []
        self._before = 0

    def on_event(self, event: RunEvent) -> None:
        said = self.context.errors if self.context is not None else []
        match event:
            case RollbackStarted():
                self._before = len(said)
            case RollbackEnded(step=step, error=None) if len(said) > self._before:
                message = f"rollback of step '{step.name}' did not undo everything: " + '; '.join(
                    said[self._before :]
                )
                self.errors.append(message)
                self.journal.set_step_status(self.run_id, step.index, 'rollback_failed', message)
            case RunEnded(summary=summary) if self.errors and not summary.success:
                if not (summary.interrupted or summary.cancelled):
                    self.journal.set_run_status(self.run_id, 'rollback_failed')


def bind_storage(ctx: RuntimeContext) -> str | None:
    """Give the run the storage client bound to it, so that what a kill leaves half-written
    can be removed by recovery (``PartialWrites``); the storage's URL, without credentials."""
    client = ctx.client
    if isinstance(client, PartialWrites):
        ctx.client = client = client.for_run(ctx.run_id)
    url = getattr(client, 'url', None)
    return url if isinstance(url, str) else None


def plugin_code(origin: ActionOrigin | None) -> str | None:
    """The plugin's code (config.yaml): as the origin says, else read from its folder."""
    if origin is None or origin.plugin is not None:
        return origin.plugin if origin else None
    try:
        return Plugin.load(origin.plugin_path).config.code
    except PluginError:
        return None


@contextmanager
def _ends_run_if_raising(journal: Journal, run_id: str, lines: JournalLogLines) -> Iterator[None]:
    try:
        yield
    except BaseException as error:
        lines.flush()  # before the end: who sees the run ended has seen its lines
        status = 'failed' if isinstance(error, Exception) else 'cancelled'
        journal.set_run_status(run_id, status, describe_exception(error))
        raise


def open_traces(ctx: RuntimeContext) -> dict[str, str]:
    """The trace context of the run's span, opened now by the runtime's OpenTelemetry
    listener (if it has one) for the code of the steps to join, here or in a Ray
    worker; empty without one."""
    for logger in ctx.loggers:
        open_run = getattr(logger, 'open_run', None)  # OtelListener, loaded only if in use
        if open_run is not None:
            carrier: dict[str, str] = open_run()
            return carrier
    return {}


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
        journaled, the result carries the ``run_id``."""
        if ctx is None:
            named = origin.action if origin is not None else action.__name__
            ctx = default_runtime(console=self.console, action=named)
        with ctx:
            try:
                with joined_trace(open_traces(ctx)):  # the steps' own spans join the run's
                    result = run_action(
                        action,
                        params,
                        ctx,
                        journal=self.journal,
                        listeners=listeners,
                        origin=origin,
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
