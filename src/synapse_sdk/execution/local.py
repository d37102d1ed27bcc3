"""Run an action in this process with the default runtime."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.journal import Journal, JournalError
from synapse_sdk.paths import synapse_home
from synapse_sdk.plugins.actions import ActionOrigin, BaseAction
from synapse_sdk.plugins.steps import RunListener
from synapse_sdk.runtime import ConsoleLogger, JsonLinesLogger, Logger, RuntimeContext


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def default_runtime(
    run_id: str | None = None, *, console: bool = True, client: Any = None
) -> RuntimeContext:
    """Live display on stderr, a JSON-lines log under ``$SYNAPSE_HOME/logs``, local storage."""
    run_id = run_id or new_run_id()
    loggers: list[Logger] = [ConsoleLogger()] if console else []
    loggers.append(JsonLinesLogger(synapse_home() / 'logs' / f'{run_id}.jsonl', run_id=run_id))
    return RuntimeContext(
        logger=loggers,
        client=client if client is not None else LocalBackendClient(),
        job_id=run_id,
    )


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
        runtime = ctx if ctx is not None else default_runtime(console=self.console)
        with runtime:
            try:
                result = action.dispatch(
                    params, runtime, listeners=listeners, journal=self.journal, origin=origin
                )
            except (KeyboardInterrupt, SystemExit):
                self._record_interrupted_rollback(runtime)
                raise
        if self.journal is not None:
            result['run_id'] = runtime.job_id
        return result

    def _record_interrupted_rollback(self, runtime: RuntimeContext) -> None:
        """Stopped during rollback: say in the journal that the rest of it is pending."""
        journal = self.journal
        if journal is None:
            return
        try:
            record = journal.get_run(runtime.job_id)
        except JournalError:
            return  # interrupted before the run was recorded
        if record.active:
            journal.set_run_status(
                runtime.job_id,
                'cancelled',
                'interrupted during rollback; the rest is pending: '
                f'synapse runs rollback {runtime.job_id}',
            )
