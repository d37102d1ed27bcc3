"""The run journal: durable run history, crash detection, data for rollback and resume.

Written through the orchestrator's lifecycle listener protocol; the steps
core does not know it exists.
"""

from .codec import SNAPSHOT, restore, snapshot
from .errors import (
    JournalDamagedError,
    JournalError,
    JournalUnavailableError,
    JournalVersionError,
    SnapshotError,
    UnknownRunError,
)
from .listener import JournalListener
from .records import RUN_STATUSES, STEP_STATUSES, RunRecord, StepRecord
from .schema import SCHEMA_VERSION
from .store import Journal

__all__ = [
    'RUN_STATUSES',
    'SCHEMA_VERSION',
    'SNAPSHOT',
    'STEP_STATUSES',
    'Journal',
    'JournalDamagedError',
    'JournalError',
    'JournalListener',
    'JournalUnavailableError',
    'JournalVersionError',
    'RunRecord',
    'SnapshotError',
    'StepRecord',
    'UnknownRunError',
    'restore',
    'snapshot',
]
