"""The run journal: durable run history, crash detection, data for rollback and resume.

Written through the orchestrator's lifecycle listener protocol; the steps
core does not know it exists.
"""

from ._codec import SNAPSHOT, restore, snapshot
from ._errors import (
    JournalDamagedError,
    JournalError,
    JournalVersionError,
    SnapshotError,
    UnknownRunError,
)
from ._listener import JournalListener
from ._records import DONE_STEP, RUN_STATUSES, STEP_STATUSES, UNDONE_WORK, RunRecord, StepRecord
from ._schema import SCHEMA_VERSION
from ._store import Journal, Pruned

__all__ = [
    'DONE_STEP',
    'RUN_STATUSES',
    'SCHEMA_VERSION',
    'SNAPSHOT',
    'STEP_STATUSES',
    'UNDONE_WORK',
    'Journal',
    'JournalDamagedError',
    'JournalError',
    'JournalListener',
    'JournalVersionError',
    'Pruned',
    'RunRecord',
    'SnapshotError',
    'StepRecord',
    'UnknownRunError',
    'restore',
    'snapshot',
]
