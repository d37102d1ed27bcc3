"""Cancelling a run from anywhere: a request in the journal that the run's heartbeat reads.

The run's process (local, a foreground Ray worker, a detached job) renews its
lease from a thread (``journal.Heartbeat``); every ``journal.POLL_S`` that
thread also reads ``runs.cancel_requested_at`` and, once it is set, cancels
the run's token as Ctrl-C does: the running step stops at its next
``set_progress()`` / ``raise_if_cancelled()`` (or, under ``synapse plugin
run``, is interrupted after the same grace as for a signal), the run rolls
back, the journal says ``cancelled``, and ``synapse plugin run`` exits 130
(``ErrorKind.CANCELLED``, as for SIGINT: nothing here sends a signal).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from synapse_sdk.journal import Journal, RunRecord
from synapse_sdk.plugins.steps import ErrorKind

from ._submitted import cancel_submitted


def cancel_run(journal: Journal, run_id: str, *, by: str | None = None) -> RunRecord:
    """Ask run ``run_id`` (or the one run whose id starts with it) to stop, wherever it runs;
    its record, with the request. ``by``: who asks, for the record (default ``host:pid``).

    Returns at once: the run notices within about ``POLL_S`` and then rolls
    back (see :func:`synapse_sdk.execution` ``runs cancel --wait``). Raises
    ``UnknownRunError`` (no such run, or an ambiguous prefix) and
    ``RunAlreadyEndedError`` (it is not running: the message says how it ended).
    A detached run not started yet (``submitted``) with a known Ray job ends
    ``cancelled`` at once and its job is stopped (``cancel_submitted``).
    """
    record = journal.request_cancel(journal.resolve_run_id(run_id), by=by)
    if record.status == 'submitted' and record.ray_job_id:
        return cancel_submitted(journal, record)
    return record


def wait_for_end(
    journal: Journal,
    run_id: str,
    timeout: float | None = None,
    poll: float = 0.2,
    check: Callable[[RunRecord], RunRecord] | None = None,
) -> RunRecord | None:
    """The run's record once it has ended (crashed included: ``get_run`` marks a run
    whose lease expired); None if it still runs after ``timeout`` seconds. ``check``:
    sees each record first (``SubmittedRunCheck``: a detached run whose job ended)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        record = journal.get_run(run_id)
        record = check(record) if check is not None else record
        if not record.active and record.status != 'submitted':  # a detached run starts
            return record
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(poll)


def end_kind(record: RunRecord) -> ErrorKind | None:
    """How ``synapse plugin run`` would have reported a run that ended so: None when it
    succeeded, ``CANCELLED`` when cancelled, else ``FAILED`` (crashed included: the
    command that ran it was killed, or lost its lease)."""
    if record.status == 'succeeded':
        return None
    if record.status == 'cancelled':
        return ErrorKind.CANCELLED
    return ErrorKind.FAILED


def stopped_by_sigterm(record: RunRecord) -> bool:
    """A run cancelled by SIGTERM (``plugin run`` then exits 143, not 130)."""
    return record.status == 'cancelled' and '(SIGTERM)' in (record.error or '')
