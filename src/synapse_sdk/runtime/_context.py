"""The runtime a plugin action runs in: loggers, backend client, environment, run id."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from synapse_sdk.plugins.steps import CancelToken, RunListener
from synapse_sdk.plugins.steps.support import check_progress, describe_exception

from .loggers import LEVELS, OVERALL, ConsoleLogger, Logger


class RuntimeContext:
    """What ``context.log``, ``set_progress``, ``set_metrics`` and ``client`` reach.

    Every argument is optional: by default events and progress go to the
    terminal, the client is a :class:`~synapse_sdk.clients.LocalBackendClient`
    under ``$SYNAPSE_HOME`` (or the storage ``SYNAPSE_STORAGE`` names; created on
    first use), ``env`` is a copy of the process environment and ``run_id`` a
    fresh random id (the journal, the logs and the result name the run by it).
    """

    def __init__(
        self,
        logger: Logger | Sequence[Logger] | None = None,
        client: Any = None,
        env: Mapping[str, str] | None = None,
        run_id: str | None = None,
        sleep: Callable[[float], None] | None = None,
        *,
        job_id: str | None = None,
    ) -> None:
        """``job_id``: the deprecated name of ``run_id``."""
        if logger is None:
            self.loggers: list[Logger] = [ConsoleLogger()]
        elif isinstance(logger, Logger):
            self.loggers = [logger]
        else:
            self.loggers = list(logger)
        bad = [type(x).__name__ for x in self.loggers if not isinstance(x, Logger)]
        if bad:
            raise TypeError(f'logger must be a Logger or a sequence of Loggers, got {bad}')
        self._client = client
        self.env: dict[str, str] = dict(os.environ if env is None else env)
        self.run_id: str = _run_id(run_id, job_id) or uuid.uuid4().hex[:12]
        self.sleep = sleep
        """How the wait between retry attempts is spent (None: a cancellable real wait);
        tests pass a fake clock's ``sleep``."""
        self.cancel_token = CancelToken()
        """Set it (``cancel_token.cancel('why')``) to stop the action's run; see ``cancel()``."""

    @property
    def job_id(self) -> str:
        """Deprecated name of :attr:`run_id`."""
        warnings.warn('RuntimeContext.job_id is now run_id', DeprecationWarning, stacklevel=2)
        return self.run_id

    def cancel(self, reason: str = 'cancelled') -> None:
        """Stop the running action: its step is interrupted and the run rolled back."""
        self.cancel_token.cancel(reason)

    @property
    def client(self) -> Any:
        if self._client is None:  # its writes announced under the run (for_run)
            from synapse_sdk.clients import choose_storage, open_storage

            self._client = open_storage(choose_storage(None), run_id=self.run_id)
        return self._client

    @client.setter
    def client(self, value: Any) -> None:
        """The execution layer gives a journaled run the client bound to it (``for_run``)."""
        self._client = value

    @property
    def listeners(self) -> list[RunListener]:
        """The loggers, as listeners of the run's step lifecycle."""
        return list(self.loggers)

    def log(
        self,
        event: str,
        data: dict[str, Any] | None = None,
        file: str | None = None,
        level: str = 'info',
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f'log level must be one of {LEVELS}, got {level!r}')
        if data is None:
            payload: dict[str, Any] = {}
        elif isinstance(data, dict):
            payload = data
        else:
            raise TypeError(
                f'log({event!r}): data must be a dict (or None), got {type(data).__name__}'
            )
        for logger in self.loggers:
            logger.log(event, payload, file, level)

    def set_progress(self, current: float, total: float, category: str | None = None) -> None:
        """Progress of ``category``; without one, the run's overall progress."""
        if not (total > 0 and 0 <= current <= total):
            check_progress(current, total)  # raises, with the message
        name = category or OVERALL
        for logger in self.loggers:
            logger.progress(current, total, name)

    def set_metrics(self, value: dict[str, Any], category: str) -> None:
        if not isinstance(value, dict):
            raise TypeError(f'set_metrics: value must be a dict, got {type(value).__name__}')
        for logger in self.loggers:
            logger.metrics(value, category)

    def close(self) -> None:
        """Close every logger, even when one fails; then raise the first error (later ones
        are attached to it as notes)."""
        errors: list[tuple[Logger, BaseException]] = []
        for logger in self.loggers:
            try:
                logger.close()
            except BaseException as error:  # the others still get closed
                errors.append((logger, error))
        if not errors:
            return
        first = errors[0][1]
        for logger, later in errors[1:]:
            first.add_note(
                f'closing {type(logger).__name__} failed too: {describe_exception(later)}'
            )
        raise first

    def __enter__(self) -> RuntimeContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _run_id(run_id: str | None, job_id: str | None) -> str | None:
    if job_id is None:
        return run_id
    message = 'RuntimeContext(job_id=...) is now RuntimeContext(run_id=...)'
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    if run_id is not None and run_id != job_id:
        raise TypeError(
            f'run_id={run_id!r} and job_id={job_id!r} (its deprecated name) disagree; '
            'give run_id only'
        )
    return job_id
