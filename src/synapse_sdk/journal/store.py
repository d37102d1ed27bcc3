"""The run journal: a database written ahead of every step (SQLite by default)."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from synapse_sdk.db import Connection, Database, is_url, open_database
from synapse_sdk.paths import database_url, synapse_home

from .codec import from_json, to_json
from .errors import JournalError, UnknownRunError
from .process import Owner
from .records import ACTIVE, RUN_STATUSES, RunRecord, StepRecord
from .schema import INSERTION_ORDER, journal_schema


def now() -> str:
    return datetime.now(UTC).isoformat()


class Journal:
    """Run history: ``$SYNAPSE_HOME/runs.db`` (SQLite), or the database that
    ``SYNAPSE_DATABASE_URL`` names (``postgresql://...``), or ``location`` (a path or
    a URL).

    SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit survives the
    process being killed (SIGKILL, OOM); only a power loss or OS crash can lose the
    last few commits, never corrupt the file. ``durable=True`` selects
    ``synchronous=FULL`` (an fsync per commit) for that too; a PostgreSQL server's
    durability is its own configuration.

    The database is reached only through ``synapse_sdk.db``'s interface
    (``self.database``, ``self.db``). One connection per process; safe to
    pickle (the connection is reopened; a URL travels with its password).
    """

    def __init__(
        self, location: str | os.PathLike[str] | None = None, *, durable: bool = False
    ) -> None:
        url = database_url() if location is None else None
        if location is None:
            location = url or synapse_home() / 'runs.db'
        self.location = location
        self.durable = durable
        self.database: Database = open_database(
            location, journal_schema(), durable=durable, require_url=url is not None
        )
        # the SQLite file (None for a database server)
        self.path = None if is_url(location) else Path(location)
        self._connection: Connection | None = None
        self._pid = 0

    def __getstate__(self) -> dict[str, Any]:
        return {'location': self.location, 'durable': self.durable}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state['location'], durable=state['durable'])  # type: ignore[misc]

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
    ) -> None:
        """Record a new run; ``cwd``, ``plugin_path`` and ``storage`` say where recovery acts."""
        owner = Owner.current()
        try:
            self.db.execute(
                'INSERT INTO runs (id, entrypoint, action, plugin_path, params, status, started_at,'
                ' host, pid, pid_started, cwd, plugin, storage)'
                ' VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (
                    run_id,
                    entrypoint,
                    action,
                    plugin_path,
                    to_json(params, 'params'),
                    'running',
                    now(),
                    owner.host,
                    owner.pid,
                    owner.started,
                    cwd,
                    plugin,
                    storage,
                ),
            )
        except self.database.IntegrityError as error:  # runs.id is the primary key
            raise JournalError(
                f"a run '{run_id}' is already in the journal {self.database.describe()}; give"
                ' each run its own run_id (RuntimeContext(run_id=...), or none: a fresh one is'
                ' made up)'
            ) from error

    def claim_run(self, run_id: str, status: str = 'running', *, keep_error: bool = False) -> None:
        """This process takes the run over (resume, rollback): active again, owned by us.

        A resume starts afresh; a rollback keeps the error that says why the run
        is being undone (``keep_error=True``).
        """
        owner = Owner.current()
        self.db.execute(
            'UPDATE runs SET status = ?, ended_at = NULL,'
            ' error = CASE WHEN ? THEN error END, host = ?,'
            ' pid = ?, pid_started = ?, attempts = attempts + 1 WHERE id = ?',
            (status, keep_error, owner.host, owner.pid, owner.started, run_id),
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

    def get_run(self, run_id: str) -> RunRecord:
        self.detect_crashed()
        row = self.db.fetchone(f'SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?', (run_id,))
        if row is None:
            raise UnknownRunError(
                f"no run '{run_id}' in the journal {self.database.describe()};"
                ' `synapse runs list` shows the runs'
            )
        return _run(row)

    def list_runs(
        self, status: str | None = None, limit: int | None = None, since: datetime | None = None
    ) -> list[RunRecord]:
        """Newest first; ``since``: runs started then or later (the started_at index
        answers it, and the newest ``limit``, however many runs the journal holds)."""
        self.detect_crashed()
        sql = f'SELECT {_RUN_COLUMNS} FROM runs'
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            if status not in RUN_STATUSES:
                raise JournalError(f'unknown status {status!r}; one of: {", ".join(RUN_STATUSES)}')
            where.append('status = ?')
            args.append(status)
        if since is not None:
            where.append('started_at >= ?')
            args.append(_utc(since).isoformat())
        if where:
            sql += ' WHERE ' + ' AND '.join(where)
        db = self.db
        sql += f' ORDER BY started_at DESC, {INSERTION_ORDER[db.dialect]} DESC'
        if limit is not None:
            sql += ' LIMIT ?'
            args.append(limit)
        return [_run(row) for row in db.fetchall(sql, args)]

    def detect_crashed(self) -> list[str]:
        """Mark as ``crashed`` the active runs whose process is gone; returns their ids."""
        rows = self.db.fetchall(
            'SELECT id, host, pid, pid_started FROM runs WHERE status IN (?, ?)'
            ' AND ended_at IS NULL',
            ACTIVE,
        )
        crashed = [
            run_id
            for run_id, host, pid, started in rows
            if not Owner(host, pid, started).is_alive()
        ]
        for run_id in crashed:
            self.db.execute(
                "UPDATE runs SET status = 'crashed', ended_at = ?,"
                " error = COALESCE(error, 'the process running it died') WHERE id = ? AND"
                ' status IN (?, ?) AND ended_at IS NULL',
                (now(), run_id, *ACTIVE),
            )
        return crashed

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


def _utc(moment: datetime) -> datetime:
    """As ``started_at`` is written: in UTC (a naive time is taken to be UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_RUN_COLUMNS = (
    'id, entrypoint, action, plugin_path, params, status, started_at, ended_at, progress, error,'
    ' host, pid, attempts, cwd, plugin, storage, lease_owner, lease_until, recoverer,'
    ' recoverer_until'
)


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
    )
