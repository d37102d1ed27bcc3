"""Leases: whether a run is alive, answered the same on every machine; one recoverer at a time.

A running run's process renews ``runs.lease_until`` every third of the lease
from a thread of its own (``Heartbeat``); once that time is more than
``LEASE_MARGIN_S`` in the past, any reader marks the run ``crashed``. A
recoverer (rollback, resume) first takes ``runs.recoverer`` in one
conditional UPDATE, and renews ``recoverer_until`` the same way.

Every time here is read from the database's clock (``CLOCK``), never the
machine's: with PostgreSQL, machines whose clocks disagree still agree on
whose lease has expired. With SQLite the database's clock is that of the
machine writing the file, which is one machine (SQLite is not for sharing
across machines). A healthy lease always runs at least two thirds of its
length ahead, which also absorbs a clock that is off by less than that.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING

from synapse_sdk.db import Connection

from ._errors import JournalError, RecoveryInProgressError, UnknownRunError
from ._process import Owner
from ._records import ACTIVE

if TYPE_CHECKING:
    from ._log_lines import LogLineBuffer
    from ._store import Journal

__all__ = [
    'DEFAULT_LEASE_SECONDS',
    'LEASE_ENV',
    'LEASE_MARGIN_S',
    'POLL_S',
    'CancelRequest',
    'Heartbeat',
    'Holder',
    'cancel_request',
    'claim_recovery',
    'clock_sql',
    'lease_seconds',
    'release_recovery',
]

LEASE_ENV = 'SYNAPSE_LEASE_SECONDS'
DEFAULT_LEASE_SECONDS = 30.0
LEASE_MARGIN_S = 1.0  # a lease counts as expired this long after its end (commit latency)
RETRY_S = 1.0  # after a failed renewal, try again this soon (at most)
POLL_S = 0.5  # a running run looks for a cancel request (and flushes its log lines) this often

# dialect -> the database's clock, in epoch seconds (a float)
CLOCK = {
    'sqlite': "((julianday('now') - 2440587.5) * 86400.0)",
    'postgresql': 'CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS DOUBLE PRECISION)',
}  # one value within a statement: what one UPDATE sets together ends together

log = logging.getLogger('synapse_sdk.journal')


def clock_sql(dialect: str) -> str:
    """SQL for the database's clock; every lease time is read from it."""
    try:
        return CLOCK[dialect]
    except KeyError:
        raise JournalError(
            f'the run journal does not know the clock of a {dialect!r} database;'
            ' add it to synapse_sdk.journal._lease.CLOCK'
        ) from None


def lease_seconds(value: float | None = None) -> float:
    """The lease length: ``value``, else ``$SYNAPSE_LEASE_SECONDS``, else 30 s."""
    source = 'the lease length'
    if value is None:
        text = os.environ.get(LEASE_ENV, '').strip()
        if not text:
            return DEFAULT_LEASE_SECONDS
        source = f'{LEASE_ENV}={text!r}'
        try:
            value = float(text)
        except ValueError:
            value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise JournalError(
            f'{source} is not a number of seconds above 0; give one such as 30'
            f' (the default: {DEFAULT_LEASE_SECONDS:g})'
        )
    return float(value)


def when(epoch: float) -> str:
    """An epoch time for messages, to the second, in UTC."""
    return datetime.fromtimestamp(epoch, UTC).strftime('%Y-%m-%d %H:%M:%S UTC')


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: ``host:pid since TIME #token``, as stored (the token tells two
    holders of one process apart)."""

    host: str
    pid: int
    since: str
    token: str

    @classmethod
    def new(cls, since: float) -> Holder:
        return cls(socket.gethostname(), os.getpid(), when(since), uuid.uuid4().hex[:8])

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        found = _HOLDER.fullmatch(text)
        if found is None:
            return None
        return cls(found['host'], int(found['pid']), found['since'], found['token'])

    @property
    def process(self) -> str:
        return f'{self.host}:{self.pid}'

    def is_gone(self) -> bool:
        """True only when this machine can tell the holder's process is gone."""
        return not Owner(self.host, self.pid, None).is_alive()

    def __str__(self) -> str:
        return f'{self.process} since {self.since} #{self.token}'


@dataclass(frozen=True)
class CancelRequest:
    """``runs.cancel_requested_at`` / ``_by``: when and by whom the run was asked to stop."""

    at: str | None
    by: str | None

    @property
    def reason(self) -> str:
        """What the run's cancel says (``the run was cancelled (<reason>)``)."""
        return f'cancel requested by {self.by or "another process"}'


# A request counts for the holder of a running run only: a recoverer sees none until its
# resume has claimed the run (``claim_run``, which forgets an earlier request), and a
# rollback (its run ``failed``) none at all.
_CANCEL_COLUMNS = (
    "CASE WHEN status = 'running' AND lease_owner = :me THEN cancel_requested_at END,"
    ' cancel_requested_by'
)
_HOLDER = re.compile(r'(?P<host>.+):(?P<pid>\d+) since (?P<since>.+) #(?P<token>\w+)')


def database_time(db: Connection) -> float:
    row = db.fetchone(f'SELECT {clock_sql(db.dialect)}')
    assert row is not None
    return float(row[0])


# recovery ---------------------------------------------------------------------------
def claim_recovery(db: Connection, run_id: str, seconds: float, where: str) -> str:
    """Take the run's recovery, or raise ``RecoveryInProgressError`` naming its holder.

    One conditional UPDATE: of two recoverers at once, exactly one gets the row.
    A holder whose lease ran out, or whose process this machine sees gone,
    loses it (the latter at once: a compare-and-set on its name).
    """
    now = database_time(db)
    holder = str(Holder.new(now))
    taken = db.execute(
        'UPDATE runs SET recoverer = :me, recoverer_until = :until WHERE id = :run AND'
        ' (recoverer IS NULL OR recoverer_until IS NULL OR recoverer_until < :expired)',
        {'me': holder, 'until': now + seconds, 'run': run_id, 'expired': now - LEASE_MARGIN_S},
    )
    if taken.rowcount == 1:
        return holder
    row = db.fetchone('SELECT recoverer, recoverer_until FROM runs WHERE id = ?', (run_id,))
    if row is None:
        raise UnknownRunError(
            f"no run '{run_id}' in the journal {where}; `synapse runs list` shows the runs"
        )
    current, until = row
    other = Holder.parse(current or '')
    if other is not None and other.host == socket.gethostname() and other.is_gone():
        stolen = db.execute(
            'UPDATE runs SET recoverer = ?, recoverer_until = ? WHERE id = ? AND recoverer = ?',
            (holder, now + seconds, run_id, current),
        )
        if stolen.rowcount == 1:
            return holder
    who = f'{other.process} (since {other.since})' if other else repr(current)
    expiry = f'at {when(until)}' if until is not None else 'when its holder is gone'
    raise RecoveryInProgressError(
        f"run '{run_id}' is being recovered by {who}; wait for it or retry after its"
        f' lease expires {expiry}'
    )


def release_recovery(db: Connection, run_id: str, holder: str) -> None:
    db.execute(
        'UPDATE runs SET recoverer = NULL, recoverer_until = NULL WHERE id = ? AND recoverer = ?',
        (run_id, holder),
    )


# renewal ------------------------------------------------------------------------------
def renew(
    db: Connection, run_id: str, holder: str, seconds: float, *, recovery: bool
) -> CancelRequest | None:
    """Push the lease ``seconds`` past the database's clock; None if it is no longer ours,
    else the run's cancel request as it stands (one round trip: ``RETURNING``).

    A recoverer renews its recovery claim, and the run's lease while it owns
    the run (``claim_run``) and the run has not ended.
    """
    clock = clock_sql(db.dialect)
    if recovery:
        sql = (
            f'UPDATE runs SET recoverer_until = {clock} + :seconds,'
            f' lease_until = CASE WHEN lease_owner = :me AND ended_at IS NULL'
            f' THEN {clock} + :seconds ELSE lease_until END'
            ' WHERE id = :run AND recoverer = :me'
        )
    else:
        sql = (
            f'UPDATE runs SET lease_until = {clock} + :seconds WHERE id = :run'
            f" AND lease_owner = :me AND ended_at IS NULL AND status IN ('{ACTIVE[0]}',"
            f" '{ACTIVE[1]}')"
        )
    # fetchall, not fetchone: SQLite applies the statement fully only once it is read out
    rows = db.fetchall(
        f'{sql} RETURNING {_CANCEL_COLUMNS}', {'seconds': seconds, 'me': holder, 'run': run_id}
    )
    return CancelRequest(*rows[0]) if rows else None


def cancel_request(db: Connection, run_id: str, holder: str) -> CancelRequest:
    """The run's cancel request as it stands (a read: no lock taken)."""
    row = db.fetchone(
        f'SELECT {_CANCEL_COLUMNS} FROM runs WHERE id = :run', {'run': run_id, 'me': holder}
    )
    return CancelRequest(*row) if row is not None else CancelRequest(None, None)


def why_lost(db: Connection, run_id: str, holder: str, *, recovery: bool) -> str | None:
    """Why a renewal found the lease gone; None when the run simply ended."""
    row = db.fetchone(
        'SELECT status, ended_at, lease_owner, recoverer FROM runs WHERE id = ?', (run_id,)
    )
    if row is None:
        return f"run '{run_id}' is no longer in the journal"
    status, ended_at, owner, recoverer = row
    if recovery:
        other = Holder.parse(recoverer or '')
        by = f' by {other.process}' if other else ''
        return (
            f"the recovery of run '{run_id}' was taken over{by}: this process could not"
            ' renew its claim in time (paused, or cut off from the journal)'
        )
    if status == 'crashed':
        return (
            f"run '{run_id}' was declared crashed: its lease expired while this process could"
            ' not renew it (paused, or cut off from the journal); it stops here, and'
            f' `synapse runs rollback {run_id}` finishes undoing it'
        )
    if ended_at is not None:
        return None
    other = Holder.parse(owner or '')
    by = other.process if other else repr(owner)
    return f"run '{run_id}' was taken over by {by}; it stops here"


class Heartbeat:
    """Renews one lease from a daemon thread, with a connection of its own, every third
    of the lease, until ``stop()`` (or the ``with`` block ends).

    A renewal that fails is logged and retried (within ``RETRY_S``). When the
    lease could not be renewed for its whole length, or turns out to be held
    by someone else, ``on_lost`` is called once with a message saying so: the
    caller stops its run (``RuntimeContext.cancel``), since another machine
    may now recover it.

    With ``on_cancel``, it also looks for a cancel request (``Journal.request_cancel``)
    every ``poll`` seconds (default ``POLL_S``; the renewal itself reads it
    too, in the same statement) and calls ``on_cancel`` once with the reason
    when one is made; it goes on renewing while the run rolls back. With
    ``log``, it writes the run's pending log lines (``LogLineBuffer``) as often.
    """

    def __init__(
        self,
        journal: Journal,
        run_id: str,
        holder: str,
        *,
        on_lost: Callable[[str], None],
        on_cancel: Callable[[str], None] | None = None,
        log: LogLineBuffer | None = None,
        recovery: bool = False,
        poll: float = POLL_S,
    ) -> None:
        self.journal = journal
        self.run_id = run_id
        self.holder = holder
        self.recovery = recovery
        self.seconds = journal.lease_seconds
        self.interval = self.seconds / 3
        polls = on_cancel is not None or log is not None
        self.tick = min(self.interval, poll) if polls else self.interval
        self._on_lost = on_lost
        self._on_cancel = on_cancel
        self._log = log
        self._lost = False
        self._cancel_seen = False
        self._stopped = threading.Event()
        self._connection: Connection | None = None
        self._thread: threading.Thread | None = None
        self._last_renewal = monotonic()
        self._failing = False
        self._log_failing = False

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start renewing; the lease was just taken (``start_run``, ``claim_recovery``)."""
        self._last_renewal = monotonic()
        name = f'synapse-lease-{self.run_id}'
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=min(self.interval, RETRY_S))  # a daemon: may outlive
            self._thread = None

    def _loop(self) -> None:
        delay: float | None = self.tick
        try:
            while delay is not None and not self._stopped.wait(delay):
                delay = self._beat()
        finally:
            self._close()

    def _beat(self) -> float | None:
        """One tick: the lease renewed when due (else the cancel request read), the log
        lines written; the delay until the next, or None to stop renewing."""
        sent = monotonic()
        request: CancelRequest | None = None
        try:
            db = self._connect()
            if sent - self._last_renewal >= self.interval - self.tick / 2:
                request = renew(db, self.run_id, self.holder, self.seconds, recovery=self.recovery)
                if request is None:
                    self._not_renewed(db)
                    return None
                self._renewed(sent)
            elif self._on_cancel is not None and not self._cancel_seen:
                request = cancel_request(db, self.run_id, self.holder)
        except Exception as error:  # the database is away: keep trying while the lease lasts
            self._close()
            return self._failed(error)
        self._write_log(db)  # after the lease: what matters first
        if request is not None and request.at is not None:
            self._cancel_asked(request)
        return self.tick

    def _write_log(self, db: Connection) -> None:
        """The pending log lines; a failure is logged, never the lease's concern (a
        database that is away fails the renewal next, on its own)."""
        if self._log is None:
            return
        try:
            self._log.flush(db)
        except Exception as error:
            if not self._log_failing:
                log.warning('cannot write log lines of run %s: %s', self.run_id, error)
            self._log_failing = True
        else:
            self._log_failing = False

    def _not_renewed(self, db: Connection) -> None:
        if self._stopped.is_set():
            return
        reason = why_lost(db, self.run_id, self.holder, recovery=self.recovery)
        if reason is not None:
            self._lose(reason)

    def _cancel_asked(self, request: CancelRequest) -> None:
        if self._cancel_seen or self._on_cancel is None or self._stopped.is_set():
            return
        self._cancel_seen = True
        log.warning('run %s: %s; stopping it', self.run_id, request.reason)
        self._on_cancel(request.reason)

    def _renewed(self, sent: float) -> None:
        self._last_renewal = sent
        if self._failing:
            log.warning('renewed the lease of run %s again', self.run_id)
            self._failing = False

    def _failed(self, error: Exception) -> float:
        cause = f'{type(error).__name__}: {error}'
        if not self._failing:
            log.warning('cannot renew the lease of run %s (%s); retrying', self.run_id, cause)
            self._failing = True
        if monotonic() - self._last_renewal >= self.seconds:
            what = 'recovery of run' if self.recovery else 'run'
            self._lose(
                f"the lease of {what} '{self.run_id}' could not be renewed for"
                f' {self.seconds:g}s ({cause}); another machine may now recover it, so it'
                ' stops here'
            )
        return min(self.tick, RETRY_S)

    def _lose(self, reason: str) -> None:
        if self._lost or self._stopped.is_set():
            return
        self._lost = True
        log.warning('%s', reason)
        self._on_lost(reason)

    def _connect(self) -> Connection:
        if self._connection is None:
            self._connection = self.journal.database.connect()
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            with suppress(Exception):  # a broken connection is being dropped anyway
                self._connection.close()
            self._connection = None
