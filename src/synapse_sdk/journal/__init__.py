"""The run journal: durable run history, crash detection, data for rollback and resume.

Written through the orchestrator's lifecycle listener protocol; the steps
core does not know it exists.
"""

from ._codec import SNAPSHOT, restore, snapshot
from ._errors import (
    JournalDamagedError,
    JournalError,
    JournalUnavailableError,
    JournalVersionError,
    RecoveryInProgressError,
    SnapshotError,
    UnknownRunError,
)
from ._lease import LEASE_MARGIN_S, Heartbeat, Holder
from ._listener import JournalListener
from ._pages import RunPage
from ._records import DONE_STEP, RUN_STATUSES, STEP_STATUSES, UNDONE_WORK, RunRecord, StepRecord
from ._schema import SCHEMA_VERSION
from ._store import Journal, Pruned

__all__ = [
    'DONE_STEP',
    'LEASE_MARGIN_S',
    'RUN_STATUSES',
    'SCHEMA_VERSION',
    'SNAPSHOT',
    'STEP_STATUSES',
    'UNDONE_WORK',
    'Heartbeat',
    'Holder',
    'Journal',
    'JournalDamagedError',
    'JournalError',
    'JournalListener',
    'JournalUnavailableError',
    'JournalVersionError',
    'Pruned',
    'RecoveryInProgressError',
    'RunPage',
    'RunRecord',
    'SnapshotError',
    'StepRecord',
    'UnknownRunError',
    'restore',
    'snapshot',
]
