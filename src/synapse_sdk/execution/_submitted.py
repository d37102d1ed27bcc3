"""A detached run that has not started yet (``submitted``), seen through its Ray job.

The journal keeps the job's id and job server (``runs.ray_job_id``,
``ray_address``). A job that ends before its process has started the run (its
``pip`` failed, its entrypoint crashed) would leave the run ``submitted``
forever: whoever waits for the run (``runs watch``, ``runs cancel --wait``)
asks the job server now and then, and ends such a run ``failed`` with why.
A cancel of a run not started yet ends it ``cancelled`` and stops its job.
Ray is imported only when a job is asked about (it is an optional extra).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from synapse_sdk.journal import Journal, RunRecord

from ._errors import RayUnavailableError

__all__ = ['JOB_CHECK_S', 'SubmittedRunCheck', 'cancel_submitted']

JOB_CHECK_S = 3.0
"""How often a waiter asks the job server about a submitted run's job (an HTTP call)."""

PROBE_S = 3.0
"""How long the job server has to accept a connection (Ray's client has no timeout)."""

ENDED = ('FAILED', 'STOPPED', 'SUCCEEDED')
LOG_TAIL = 3  # last lines of the job's log quoted in the run's error


class SubmittedRunCheck:
    """Called with a run's record while someone waits for it: for a ``submitted`` run with
    a Ray job, asks the job's status every ``every`` seconds; a job that ended without
    starting the run ends the run ``failed`` (the record returned says so, its error
    names the job and ``ray job logs``). A job server that does not answer raises
    :class:`RayUnavailableError` in one line."""

    def __init__(
        self,
        journal: Journal,
        every: float = JOB_CHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.every = every
        self.clock = clock
        self._last: float | None = None

    def __call__(self, record: RunRecord) -> RunRecord:
        if record.status != 'submitted' or not (record.ray_job_id and record.ray_address):
            return record
        now = self.clock()
        if self._last is not None and now - self._last < self.every:
            return record
        self._last = now
        status, message, log = job_state(record.ray_address, record.ray_job_id, record.id)
        if status not in ENDED:
            return record
        error = unstarted_error(record.ray_job_id, record.ray_address, status, message, log)
        self.journal.end_submitted(record.id, 'failed', error)
        return self.journal.get_run(record.id)  # ended so, or started meanwhile


def unstarted_error(job_id: str, address: str, status: str, message: str, log: str) -> str:
    """One line: the job ended before the run started, why, and where its whole log is."""
    why = _gist(message)
    tail = ' | '.join(line.strip() for line in log.strip().splitlines()[-LOG_TAIL:])
    return (
        f'its Ray job {job_id} ended {status} before the run started'
        + (f': {why}' if why else '')
        + (f'; last log lines: {tail}' if tail else '')
        + f'; the whole log: `ray job logs {job_id} --address {address}`'
    )


def _gist(message: str) -> str:
    """Ray's message in one line: its first line, and its last (past a traceback, the
    error itself, e.g. pip's), each shortened."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) < 2:
        return _one_line(message)
    return f'{_one_line(lines[0], 150)} ... {_one_line(lines[-1], 200)}'


def _one_line(text: str, limit: int = 300) -> str:
    line = ' '.join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + '...'


def job_state(address: str, job_id: str, run_id: str) -> tuple[str, str, str]:
    """The job's status, its message and (once it has ended) the end of its log."""
    client = _client(address, job_id, run_id)
    try:
        info = client.get_job_info(job_id)
        status = str(getattr(info.status, 'value', info.status))
        log = client.get_job_logs(job_id) if status in ENDED else ''
    except Exception as error:
        if 'does not exist' in str(error):  # not submitted yet (it is journaled first)
            return 'PENDING', '', ''
        raise _unavailable(address, job_id, run_id, error) from error
    return status, str(info.message or ''), str(log or '')[-4000:]


def cancel_submitted(journal: Journal, record: RunRecord) -> RunRecord:
    """Cancel a detached run before it has started: the journal says ``cancelled`` at
    once (its job's process can then no longer start it) and its Ray job is stopped;
    a run that started meanwhile keeps the cancel request, which it reads as usual."""
    by = record.cancel_requested_by or 'another process'
    why = f'the run was cancelled before it started (cancel requested by {by})'
    if not journal.end_submitted(record.id, 'cancelled', why):
        return journal.get_run(record.id)
    job_id, address = record.ray_job_id, record.ray_address
    if job_id and address:
        try:
            _client(address, job_id, record.id).stop_job(job_id)
            why += f'; its Ray job {job_id} was told to stop'  # a job setting up: once set up
        except Exception as error:
            why += (
                f'; its Ray job {job_id} could not be stopped ({_one_line(str(error))}):'
                f' `ray job stop {job_id} --address {address}`'
            )
        journal.set_run_status(record.id, 'cancelled', why)
    return journal.get_run(record.id)


def _client(address: str, job_id: str, run_id: str) -> Any:
    """Ray's job client for ``address``, once something there accepts a connection."""
    parts = urlsplit(address)
    port = parts.port or (443 if parts.scheme == 'https' else 80)
    try:
        socket.create_connection((parts.hostname or '', port), timeout=PROBE_S).close()
        from ._detach import job_client  # imports Ray
    except (OSError, ImportError) as error:
        raise _unavailable(address, job_id, run_id, error) from error
    try:
        return job_client(address)
    except RayUnavailableError as error:
        raise _unavailable(address, job_id, run_id, error) from error


def _unavailable(address: str, job_id: str, run_id: str, error: BaseException) -> Exception:
    first = _one_line(str(error) or type(error).__name__, 200)
    return RayUnavailableError(
        f'cannot ask the Ray job server at {address} about Ray job {job_id} of run {run_id},'
        f' which has not started: {first}; try again once it answers, or'
        f' `synapse runs cancel {run_id}`'
    )
