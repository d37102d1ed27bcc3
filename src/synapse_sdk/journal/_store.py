"""The run journal: a database written ahead of every step (SQLite by default)."""

from __future__ import annotations

import os
import socket
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from synapse_sdk._paths import database_url, synapse_home
from synapse_sdk.db import Connection, Database, is_url, open_database

from . import _lease as lease
from . import _pages as pages
from ._codec import from_json, to_json
from ._errors import JournalError, RunAlreadyEndedError, UnknownRunError
from ._log_lines import LogLines, read_log_lines
from ._pages import RunFilter, RunPage
from ._process import Owner
from ._records import ACTIVE, RUN_STATUSES, UNDONE_WORK, RunRecord, StepRecord
from ._schema import INSERTION_ORDER, journal_schema


def now() -> str:
    return datetime.now(UTC).isoformat()


def utc_text(moment: datetime) -> str:
    """``moment`` as the journal writes times (UTC ISO 8601), so that text compares as time;
    a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


class Pruned(NamedTuple):
    """What :meth:`Journal.prune` removed, and the old runs it kept for their pending undo."""

    removed: list[RunRecord]
    kept: list[RunRecord]


_CANDIDATES = 5  # run ids an ambiguous prefix lists
_RUN_TABLES = (
    ('rollback_items', 'run_id'),
    ('log_lines', 'run_id'),
    ('steps', 'run_id'),
    ('runs', 'id'),
)


# a submitted run's record, taken over by the process that starts it (start_run)
_TAKE_OVER = ', '.join(
    f'{column} = excluded.{column}'
    for column in (
        'entrypoint', 'action', 'plugin_path', 'params', 'status', 'started_at', 'host', 'pid',
        'pid_started', 'cwd', 'plugin', 'storage', 'lease_owner', 'lease_until',
    )
)  # fmt: skip


def _marks(values: Any) -> str:
    return ', '.join('?' for _ in values)


class Journal:
    """Run history at ``$SYNAPSE_HOME/runs.db`` (WAL mode, ``synchronous=NORMAL``).

    ``synchronous=NORMAL`` in WAL mode: a commit survives the process being
    killed (SIGKILL, OOM); only a power loss or OS crash can lose the last
    few commits, never corrupt the file. ``durable=True`` selects
    ``synchronous=FULL`` (an fsync per commit) for that too.

    The database is reached only through ``synapse_sdk.db``'s interface
    (``self.database``, ``self.db``). One connection per process; safe to
    pickle (the connection is reopened).

    ``lease_seconds``: how long a run's (or a recoverer's) lease lasts without
    renewal; default ``$SYNAPSE_LEASE_SECONDS``, else 30 (see ``journal.lease``).
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        durable: bool = False,
        lease_seconds: float | None = None,
    ) -> None:
        url = database_url() if location is None else None
        if location is None:
            location = url or synapse_home() / 'runs.db'
        if url is None and not is_url(location):  # the same file after a chdir (recovery)
            location = Path(os.path.abspath(location))
        self.location = location
        self.durable = durable
        self.database: Database = open_database(
            location, journal_schema(), durable=durable, require_url=url is not None
        )
        # the SQLite file (None for a database server)
        self.path = None if is_url(location) else Path(location)
        self._connection: Connection | None = None
        self._pid = 0
        self._lease_seconds = lease_seconds
        self._lease: float | None = None  # the lease length, once read

    def __getstate__(self) -> dict[str, Any]:
        state = {'location': self.location, 'durable': self.durable}
        return {**state, 'lease_seconds': self._lease_seconds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state['location'], durable=state['durable'], lease_seconds=state.get('lease_seconds')
        )

    @property
    def db(self) -> Connection:
        if self._connection is None or self._pid != os.getpid():
            self._connection, self._pid = self.database.connect(), os.getpid()
        return self._connection

    def check(self) -> None:
        """Read the whole journal, so that a damaged one is refused
        (``JournalDamagedError``) before a run or a recovery writes to it."""
        self.db.check()

    def close(self) -> None:
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None

    def transaction(self) -> AbstractContextManager[Connection]:
        return self.db.transaction()

    # runs ----------------------------------------------------------------
    def start_run(
        self,
        run_id: str,
        *,
        entrypoint: str,
        params: dict[str, Any],
        action: str | None = None,
        plugin_path: str | None = None,
        cwd: str | None = None,
        plugin: str | None = None,
        storage: str | None = None,
        lease_owner: str | None = None,
        status: str = 'running',
        ray_job: tuple[str, str] | None = None,
    ) -> None:
        """Record a new run; ``cwd``, ``plugin_path`` and ``storage`` say where recovery acts.

        ``lease_owner``: the run's lease is taken at once, in the same statement,
        for whoever will renew it (``lease.Heartbeat``); without one, only this
        host's pid check can tell that the run's process is gone.

        ``status='submitted'``: a detached run, recorded by the command that
        submitted it (not active: no process works on it yet); the process that
        runs it later starts it under the same id, taking that record over.
        ``ray_job``: its Ray job's id and job server (without credentials), kept
        when the record is taken over, so that the job can be found again.
        """
        owner = Owner.current()
        leased = self._lease_sql(lease_owner)
        try:
            cursor = self.db.execute(
                'INSERT INTO runs (id, entrypoint, action, plugin_path, params, status, started_at,'
                ' host, pid, pid_started, cwd, plugin, storage, lease_owner, lease_until)'
                f' VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {leased})'
                f' ON CONFLICT (id) DO UPDATE SET {_TAKE_OVER}'
                " WHERE runs.status = 'submitted'",
                (
                    run_id,
                    entrypoint,
                    action,
                    plugin_path,
                    to_json(params, 'params'),
                    status,
                    now(),
                    owner.host,
                    owner.pid,
                    owner.started,
                    cwd,
                    plugin,
                    storage,
                    lease_owner,
                ),
            )
        except self.database.IntegrityError as error:  # runs.id is the primary key
            raise self._taken(run_id) from error
        if cursor.rowcount != 1:  # there, and not a submitted run waiting to start
            raise self._taken(run_id)
        self._keep_ray_job(run_id, ray_job)

    def _keep_ray_job(self, run_id: str, ray_job: tuple[str, str] | None) -> None:
        """Record the Ray job of a detached run (its id, its job server)."""
        if ray_job is not None:
            self.db.execute(
                'UPDATE runs SET ray_job_id = ?, ray_address = ? WHERE id = ?', (*ray_job, run_id)
            )

    def _taken(self, run_id: str) -> JournalError:
        row = self.db.fetchone('SELECT status, ray_job_id FROM runs WHERE id = ?', (run_id,))
        if row is not None and row[0] in ('cancelled', 'failed') and row[1] is not None:
            # a detached run ended before its job started it (end_submitted): say that
            return JournalError(
                f"run '{run_id}' already ended ({row[0]}) before this process could start it;"
                ' nothing to run (`synapse runs show` says why)'
            )
        return JournalError(
            f"a run '{run_id}' is already in the journal {self.database.describe()}; give"
            ' each run its own run_id (RuntimeContext(run_id=...), or none: a fresh one is'
            ' made up)'
        )

    def claim_run(
        self,
        run_id: str,
        status: str = 'running',
        *,
        keep_error: bool = False,
        lease_owner: str | None = None,
    ) -> None:
        """This process takes the run over (resume, rollback): active again, owned by us.

        A resume starts afresh (a cancel asked of the run before is forgotten); a
        rollback keeps the error that says why the run is being undone
        (``keep_error=True``). ``lease_owner``: the recoverer's name
        (``claim_recovery``); the run's lease and the recovery claim then run out
        together, so that the run cannot be declared crashed while its recoverer
        still holds it.
        """
        owner = Owner.current()
        leased = self._lease_sql(lease_owner)
        self.db.execute(
            'UPDATE runs SET status = ?, ended_at = NULL,'
            ' error = CASE WHEN ? THEN error END, host = ?,'
            ' pid = ?, pid_started = ?, attempts = attempts + 1, lease_owner = ?,'
            ' cancel_requested_at = NULL, cancel_requested_by = NULL,'
            f' lease_until = {leased}, recoverer_until = CASE WHEN recoverer = ? THEN'
            f' {leased} ELSE recoverer_until END WHERE id = ?',
            (
                status,
                keep_error,
                owner.host,
                owner.pid,
                owner.started,
                lease_owner,
                lease_owner,
                run_id,
            ),
        )

    def set_run_status(
        self, run_id: str, status: str, error: str | None = None, *, final: bool = True
    ) -> None:
        """``final=False`` keeps the run active (e.g. ``failed`` while its rollback runs)."""
        if status not in RUN_STATUSES:
            raise ValueError(f'unknown run status {status!r}')
        ended = now() if final and status != 'running' else None
        self.db.execute(
            'UPDATE runs SET status = ?, ended_at = ?, error = COALESCE(?, error) WHERE id = ?',
            (status, ended, error, run_id),
        )

    def end_submitted(self, run_id: str, status: str, error: str) -> bool:
        """End a detached run that never started (its Ray job ended first, or it was
        cancelled before it started); False if it has started (or ended) meanwhile. Once
        ended, the job's process can no longer start it (``start_run`` refuses)."""
        if status not in RUN_STATUSES:
            raise ValueError(f'unknown run status {status!r}')
        cursor = self.db.execute(
            'UPDATE runs SET status = ?, ended_at = ?, error = ?'
            " WHERE id = ? AND status = 'submitted'",
            (status, now(), error, run_id),
        )
        return cursor.rowcount == 1

    def request_cancel(self, run_id: str, *, by: str | None = None) -> RunRecord:
        """Ask the running run ``run_id`` to stop; its record, the request in it.

        The run's own process reads the request when it next renews its lease
        (``lease.Heartbeat``, about every half second) and stops as on Ctrl-C:
        rolled back, ``cancelled``. ``by`` says who asked (default: this
        ``host:pid``); asking again keeps the first request. Raises
        ``UnknownRunError``, and ``RunAlreadyEndedError`` for a run that is not
        running (ended, crashed, or rolling back after a failure). A detached run
        not started yet (``submitted``) keeps the request: the process that starts
        it takes its record over with the request in it, and stops at once.
        """
        self.detect_crashed()  # a run whose process is gone is crashed, not cancellable
        asked = self.db.execute(
            'UPDATE runs SET cancel_requested_at = COALESCE(cancel_requested_at, ?),'
            ' cancel_requested_by = COALESCE(cancel_requested_by, ?)'
            " WHERE id = ? AND status IN ('running', 'submitted') AND ended_at IS NULL",
            (now(), by or f'{socket.gethostname()}:{os.getpid()}', run_id),
        )
        record = self.get_run(run_id)
        if asked.rowcount != 1:
            raise RunAlreadyEndedError(_not_cancellable(record), record.status)
        return record

    def get_run(self, run_id: str) -> RunRecord:
        self.detect_crashed()
        row = self.db.fetchone(f'SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?', (run_id,))
        if row is None:
            raise UnknownRunError(
                f"no run '{run_id}' in the journal {self.database.describe()};"
                ' `synapse runs list` shows the runs'
            )
        return _run(row)

    def resolve_run_id(self, run_id: str) -> str:
        """The full id of the run that ``run_id`` names: itself, or the one run whose id
        starts with it (``75d8``). None or several: an ``UnknownRunError`` that says so
        (listing the candidates)."""
        if run_id and self.db.fetchone('SELECT id FROM runs WHERE id = ?', (run_id,)):
            return run_id
        rows = self.db.fetchall(  # substr, not LIKE: case-sensitive and portable
            'SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY started_at DESC LIMIT ?',
            (len(run_id), run_id, _CANDIDATES + 1),
        )
        if run_id and len(rows) == 1:
            return str(rows[0][0])
        if not run_id or not rows:
            raise UnknownRunError(
                f"no run '{run_id}' in the journal {self.database.describe()};"
                ' `synapse runs list` shows the runs'
            )
        shown = ', '.join(str(row[0]) for row in rows[:_CANDIDATES])
        more = ', ...' if len(rows) > _CANDIDATES else ''
        raise UnknownRunError(
            f"run id '{run_id}' is ambiguous: it starts {shown}{more}; give more of the id"
        )

    def list_runs(
        self,
        status: str | None = None,
        limit: int | None = None,
        *,
        plugin: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
    ) -> list[RunRecord]:
        """The runs, newest first: of a status, a plugin (its code), an action (its name),
        started at ``since`` or later (a naive datetime is UTC, as the journal's times)."""
        self.detect_crashed()
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            if status not in RUN_STATUSES:
                raise JournalError(f'unknown status {status!r}; one of: {", ".join(RUN_STATUSES)}')
            where.append('status = ?')
            args.append(status)
        for column, value in (('plugin', plugin), ('action', action)):
            if value is not None:
                where.append(f'{column} = ?')
                args.append(value)
        if since is not None:
            where.append('started_at >= ?')
            args.append(utc_text(since))
        db = self.db
        sql = f'SELECT {_RUN_COLUMNS} FROM runs'
        if where:
            sql += ' WHERE ' + ' AND '.join(where)
        sql += f' ORDER BY started_at DESC, {INSERTION_ORDER[db.dialect]} DESC'
        if limit is not None:
            sql += ' LIMIT ?'
            args.append(limit)
        return [_run(row) for row in db.fetchall(sql, args)]

    def runs_page(
        self,
        limit: int = 50,
        *,
        status: str | None = None,
        plugin: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: str | None = None,
        after: str | None = None,
    ) -> RunPage:
        """A page of runs, newest first, as ``list_runs`` filters them (``until``: started
        before it); ``before``/``after``: a cursor of another page (its ``older``/``newer``),
        so that paging reads the index from where the last page ended, however deep."""
        wanted = RunFilter(status, plugin, action, since, until)
        return pages.runs_page(self, wanted, limit, before, after)

    def count_runs(
        self,
        *,
        status: str | None = None,
        plugin: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many runs ``runs_page`` would page through with these filters."""
        return pages.count_runs(self, RunFilter(status, plugin, action, since, until))

    def prune(
        self, before: datetime, *, dry_run: bool = False, unrecovered: bool = False
    ) -> Pruned:
        """Delete the runs that ended before ``before``, with their steps and rollback data.

        Never a run still active. A run with work left to undo (crashed, cancelled or
        failed with steps whose work stands) is kept, unless ``unrecovered``: its
        rollback data would go with it. ``dry_run``: only say what would go.
        """
        self.detect_crashed()
        with self.transaction() as db:  # no run can be taken up between choosing and deleting
            rows = db.fetchall(
                f'SELECT {_RUN_COLUMNS}, CASE WHEN status <> ? AND EXISTS (SELECT 1 FROM steps'
                f' WHERE steps.run_id = runs.id AND steps.status IN ({_marks(UNDONE_WORK)}))'
                ' THEN 1 ELSE 0 END FROM runs WHERE ended_at IS NOT NULL AND ended_at < ?'
                ' ORDER BY started_at',
                ('succeeded', *UNDONE_WORK, utc_text(before)),
            )
            pending = [_run(row) for row in rows if row[-1]]
            removed = [_run(row) for row in rows if unrecovered or not row[-1]]
            if not dry_run:
                ids = [run.id for run in removed]
                for start in range(0, len(ids), 500):  # within every driver's parameter limit
                    chunk = ids[start : start + 500]
                    for table, column in _RUN_TABLES:
                        db.execute(
                            f'DELETE FROM {table} WHERE {column} IN ({_marks(chunk)})', chunk
                        )
        return Pruned(removed=removed, kept=[] if unrecovered else pending)

    def detect_crashed(self) -> list[str]:
        """Mark as ``crashed`` the active runs whose process is gone; returns their ids.

        Gone: its lease expired (by the database's clock, so every machine
        agrees), or, answered at once on the run's own host, its pid is.
        Each mark is conditional on what was seen, so a renewal or a
        recoverer's takeover in between wins.
        """
        db = self.db
        clock = lease.clock_sql(db.dialect)
        expired = f'lease_until < {clock} - {lease.LEASE_MARGIN_S!r}'
        rows = db.fetchall(
            f'SELECT id, host, pid, pid_started, lease_owner, lease_until, {expired}'
            ' FROM runs WHERE status IN (?, ?) AND ended_at IS NULL',
            ACTIVE,
        )
        crashed = []
        for run_id, host, pid, started, owner, until, lapsed in rows:
            if lapsed:
                holder = lease.Holder.parse(owner or '')
                by = f' ({holder.process})' if holder else ''
                error = (
                    f'the process running it{by} stopped renewing its lease, which expired'
                    f' at {lease.when(until)}'
                )
                condition, args = expired, [run_id]
            elif not Owner(host, pid, started).is_alive():
                error = 'the process running it died'
                condition, args = 'host = ? AND pid = ?', [run_id, host, pid]
            else:
                continue
            marked = db.execute(
                "UPDATE runs SET status = 'crashed', ended_at = ?, error = COALESCE(error, ?)"
                f' WHERE id = ? AND {condition} AND status IN (?, ?) AND ended_at IS NULL',
                (now(), error, *args, *ACTIVE),
            )
            if marked.rowcount:
                crashed.append(run_id)
        return crashed

    # leases (see journal/lease.py) ---------------------------------------------------
    @property
    def lease_seconds(self) -> float:
        """Read when first needed, so that only what takes a lease refuses a bad value."""
        if self._lease is None:
            self._lease = lease.lease_seconds(self._lease_seconds)
        return self._lease

    def _lease_sql(self, holder: str | None) -> str:
        """The SQL for a new lease's end: the database's clock plus the lease, or NULL."""
        if holder is None:
            return 'NULL'
        return f'{lease.clock_sql(self.db.dialect)} + {self.lease_seconds!r}'

    def claim_recovery(self, run_id: str) -> str:
        """Become the run's one recoverer; returns our name in ``runs.recoverer``.

        Raises ``RecoveryInProgressError`` (naming the holder and when its lease
        expires) when another process holds it; ``UnknownRunError``.
        """
        return lease.claim_recovery(self.db, run_id, self.lease_seconds, self.database.describe())

    def release_recovery(self, run_id: str, holder: str) -> None:
        lease.release_recovery(self.db, run_id, holder)

    # log lines (see journal/_log_lines.py) ---------------------------------------------
    def log_lines(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> LogLines:
        """The run's last log lines kept here (``KEEP_LOG_LINES``) with ``seq`` above
        ``after_seq``, oldest first, at most ``limit``; ``last_seq`` to continue from,
        and how many older lines were dropped. A run unknown or without lines: none."""
        return read_log_lines(self.db, run_id, after_seq, limit)

    # steps ---------------------------------------------------------------
    def steps(self, run_id: str) -> list[StepRecord]:
        rows = self.db.fetchall(
            'SELECT idx, name, weight, status, started_at, ended_at, duration, data, rollback_data,'
            ' error, attempts, snapshot IS NOT NULL FROM steps WHERE run_id = ? ORDER BY idx',
            (run_id,),
        )
        return [
            StepRecord(
                index=r[0],
                name=r[1],
                weight=r[2],
                status=r[3],
                started_at=r[4],
                ended_at=r[5],
                duration=r[6],
                data=from_json(r[7]),
                rollback_data=from_json(r[8]),
                error=r[9],
                attempts=r[10],
                has_snapshot=bool(r[11]),
            )
            for r in rows
        ]

    def partial_rollback_data(self, run_id: str, index: int) -> dict[str, Any]:
        """What a step recorded while running, replayed in order."""
        data: dict[str, Any] = {}
        for key, value, append in self.db.fetchall(
            'SELECT key, value, append FROM rollback_items WHERE run_id = ? AND idx = ?'
            ' ORDER BY seq',
            (run_id, index),
        ):
            if append:
                data.setdefault(key, []).append(from_json(value))
            else:
                data[key] = from_json(value)
        return data

    def rollback_data_of(self, run_id: str, step: StepRecord) -> dict[str, Any]:
        """The step's final rollback data, or what it recorded before it was cut off."""
        partial = self.partial_rollback_data(run_id, step.index)
        return {**partial, **(step.rollback_data or {})}

    def snapshot_before(self, run_id: str, index: int) -> str | None:
        """The context snapshot taken after the last step before ``index`` that has one."""
        row = self.db.fetchone(
            'SELECT snapshot FROM steps WHERE run_id = ? AND idx < ? AND snapshot IS NOT NULL'
            ' ORDER BY idx DESC LIMIT 1',
            (run_id, index),
        )
        return None if row is None else str(row[0])

    def forget_steps_from(self, run_id: str, index: int) -> None:
        """Steps ``index`` on are to run again, their earlier work undone: what they
        recorded then (results, rollback data, snapshots) must not be undone twice."""
        with self.transaction() as db:
            db.execute(
                'UPDATE steps SET data = NULL, rollback_data = NULL, duration = NULL,'
                ' snapshot = NULL, error = NULL WHERE run_id = ? AND idx >= ?',
                (run_id, index),
            )
            db.execute('DELETE FROM rollback_items WHERE run_id = ? AND idx >= ?', (run_id, index))

    def set_step_status(
        self, run_id: str, index: int, status: str, error: str | None = None
    ) -> None:
        self.db.execute(
            'UPDATE steps SET status = ?, error = COALESCE(?, error) WHERE run_id = ? AND idx = ?',
            (status, error, run_id, index),
        )


_RUN_COLUMNS = (
    'id, entrypoint, action, plugin_path, params, status, started_at, ended_at, progress, error,'
    ' host, pid, attempts, cwd, plugin, storage, lease_owner, lease_until, recoverer,'
    ' recoverer_until, cancel_requested_at, cancel_requested_by, ray_job_id, ray_address'
)


def _not_cancellable(run: RunRecord) -> str:
    """Why ``run`` cannot be cancelled, in one line, with what to do instead."""
    if run.status == 'crashed':
        return (
            f'run {run.id} already ended (crashed: {run.error or "its process is gone"});'
            f' nothing to cancel; `synapse runs rollback {run.id}` undoes what it did'
        )
    if run.active:  # failed, its rollback under way
        return f'run {run.id} failed and is rolling back; nothing to cancel'
    return f'run {run.id} already ended ({run.status}); nothing to cancel'


def _run(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        id=row[0],
        entrypoint=row[1],
        action=row[2],
        plugin_path=row[3],
        params=from_json(row[4]),
        status=row[5],
        started_at=row[6],
        ended_at=row[7],
        progress=row[8],
        error=row[9],
        host=row[10],
        pid=row[11],
        attempts=row[12],
        cwd=row[13],
        plugin=row[14],
        storage=row[15],
        lease_owner=row[16],
        lease_until=row[17],
        recoverer=row[18],
        recoverer_until=row[19],
        cancel_requested_at=row[20],
        cancel_requested_by=row[21],
        ray_job_id=row[22],
        ray_address=row[23],
    )
