"""What the journal holds about a run and its steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RUN_STATUSES = (
    'running',
    'succeeded',
    'failed',
    'rolled_back',
    'rollback_failed',
    'cancelled',
    'crashed',
    'submitted',  # a detached run, not started yet (synapse plugin run --detach)
)
STEP_STATUSES = (
    'pending',
    'started',
    'succeeded',
    'skipped',
    'reused',
    'failed',
    'rolled_back',
    'rollback_failed',
)
ACTIVE = ('running', 'failed')  # with no end time: the owner process may still be at work
DONE_STEP = ('succeeded', 'reused')  # a step whose work stands
UNDONE_WORK = ('started', 'succeeded', 'reused', 'failed', 'rollback_failed')  # to roll back


@dataclass(frozen=True)
class RunRecord:
    id: str
    entrypoint: str
    action: str | None
    plugin_path: str | None
    params: dict[str, Any]
    status: str
    started_at: str
    ended_at: str | None
    progress: int
    error: str | None
    host: str
    pid: int
    attempts: int
    cwd: str | None = None  # the run's working directory: recovery runs there
    plugin: str | None = None  # the plugin's code (config.yaml), for listings
    storage: str | None = None  # the storage URL, never with credentials
    lease_owner: str | None = None  # who renews the run's lease (host:pid)
    lease_until: float | None = None  # epoch seconds; past it, the run is crashed
    recoverer: str | None = None  # who holds the run's rollback/resume now
    recoverer_until: float | None = None
    cancel_requested_at: str | None = None  # when someone asked the run to stop (UTC ISO)
    cancel_requested_by: str | None = None  # who asked (host:pid, or what the caller said)
    ray_job_id: str | None = None  # a detached run's Ray job (synapse-RUN_ID)
    ray_address: str | None = None  # its job server (http://HEAD:8265), without credentials

    @property
    def active(self) -> bool:
        """Its process is (as far as the journal knows) still working on it."""
        return self.status in ACTIVE and self.ended_at is None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StepRecord:
    index: int
    name: str
    weight: float
    status: str
    started_at: str | None
    ended_at: str | None
    duration: float | None
    data: dict[str, Any] | None
    rollback_data: dict[str, Any] | None
    error: str | None
    attempts: int
    has_snapshot: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
