"""Run an action in this process with the default runtime."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.journal import Journal
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
            result = action.dispatch(
                params, runtime, listeners=listeners, journal=self.journal, origin=origin
            )
        if self.journal is not None:
            result['run_id'] = runtime.job_id
        return result
