"""Run an action in this process: with the default runtime, and journaled when asked."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from synapse_sdk.clients import choose_storage, open_storage
from synapse_sdk.journal import Journal, JournalError, JournalListener
from synapse_sdk.paths import synapse_home
from synapse_sdk.plugins.actions import ActionOrigin, BaseAction
from synapse_sdk.plugins.steps import RunListener
from synapse_sdk.plugins.steps.result import describe_exception
from synapse_sdk.runtime import ConsoleLogger, JsonLinesLogger, Logger, RuntimeContext


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def default_runtime(
    run_id: str | None = None,
    *,
    console: bool = True,
    client: Any = None,
    storage: str | None = None,
) -> RuntimeContext:
    """Live display on stderr, a JSON-lines log under ``$SYNAPSE_HOME/logs``, and the
    storage at ``storage`` (a folder path or URL; default: ``SYNAPSE_STORAGE``, else
    ``$SYNAPSE_HOME/storage``), its uploads kept apart per run (``client.for_run``)."""
    run_id = run_id or new_run_id()
    if client is None:
        client = open_storage(choose_storage(storage), run_id=run_id)
    loggers: list[Logger] = [ConsoleLogger()] if console else []
    loggers.append(JsonLinesLogger(synapse_home() / 'logs' / f'{run_id}.jsonl', run_id=run_id))
    return RuntimeContext(logger=loggers, client=client, run_id=run_id)


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
        storage=storage_url(action.ctx.client),
    )
    with _ends_run_if_raising(journal, run_id):
        prepared = action.prepare_run()
    if not prepared.plain:  # the steps' listener records the rest, the run's end included
        return prepared.run(listeners=[*listeners, JournalListener(journal, run_id)])
    with _ends_run_if_raising(journal, run_id):
        result = prepared.run()
    journal.set_run_status(run_id, 'succeeded')
    return result


def storage_url(client: Any) -> str | None:
    """Where ``client`` stores, as the journal records it (a URL without credentials);
    None for a client that does not say (a test double)."""
    url = getattr(client, 'url', None)
    return url if isinstance(url, str) else None


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
        journaled, the result carries the ``run_id``."""
        ctx = ctx if ctx is not None else default_runtime(console=self.console)
        with ctx:
            try:
                result = run_action(
                    action, params, ctx, journal=self.journal, listeners=listeners, origin=origin
                )
            except (KeyboardInterrupt, SystemExit):
                self._record_interrupted_rollback(ctx)
                raise
        if self.journal is not None:
            result['run_id'] = ctx.run_id
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
