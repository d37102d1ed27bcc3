"""A journaled run's log lines into the journal too, for watchers on other machines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, cast

from synapse_sdk.journal import Journal, LogLineBuffer
from synapse_sdk.plugins.steps import RunEnded, RunEvent
from synapse_sdk.runtime import JsonLinesLogger, RuntimeContext

log = logging.getLogger('synapse_sdk.journal')


class JournalLogLines(JsonLinesLogger):
    """The lines of the run's JSON-lines log (the same records), into the journal's
    ``log_lines`` (``journal.LogLineBuffer``): taken here, written by the run's
    heartbeat thread in batches, and at the run's end before the journal records
    the end (this logger comes before the ``JournalListener``), so a watcher that
    sees the run ended has seen all its lines."""

    def __init__(self, journal: Journal, run_id: str, buffer: LogLineBuffer | None = None) -> None:
        self.journal = journal
        self.buffer = buffer if buffer is not None else LogLineBuffer(run_id)
        super().__init__(cast(IO[str], self.buffer), run_id=run_id)

    def on_event(self, event: RunEvent) -> None:
        super().on_event(event)
        if isinstance(event, RunEnded):
            self.flush()

    def flush(self) -> None:
        """Write what is pending now; the journal away, the lines wait for the next try
        (a log line is never worth failing the run for)."""
        try:
            self.buffer.flush(self.journal.db)
        except Exception as error:
            log.warning('cannot write log lines of run %s to the journal: %s', self.run_id, error)


@contextmanager
def logging_to_journal(
    ctx: RuntimeContext, journal: Journal, buffer: LogLineBuffer | None = None
) -> Iterator[JournalLogLines]:
    """``ctx``'s log lines go to the journal too while the block runs (flushed at its end)."""
    lines = JournalLogLines(journal, ctx.run_id, buffer)
    ctx.loggers.append(lines)
    try:
        yield lines
    finally:
        ctx.loggers.remove(lines)
        lines.flush()
