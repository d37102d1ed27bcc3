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
    RunAlreadyEndedError,
    SnapshotError,
    UnknownRunError,
)
from ._lease import LEASE_MARGIN_S, POLL_S, CancelRequest, Heartbeat, Holder
from ._listener import JournalListener
from ._log_lines import (
    KEEP_LOG_LINES,
    LEVELS,
    LogLine,
    LogLineBuffer,
    LogLines,
    describe_line,
    level_of,
)
from ._pages import RunPage
from ._records import DONE_STEP, RUN_STATUSES, STEP_STATUSES, UNDONE_WORK, RunRecord, StepRecord
from ._schema import SCHEMA_VERSION
from ._store import Journal, Pruned

__all__ = [
    'DONE_STEP',
    'KEEP_LOG_LINES',
    'LEASE_MARGIN_S',
    'LEVELS',
    'POLL_S',
    'RUN_STATUSES',
    'SCHEMA_VERSION',
    'SNAPSHOT',
    'STEP_STATUSES',
    'UNDONE_WORK',
    'CancelRequest',
    'Heartbeat',
    'Holder',
    'Journal',
    'JournalDamagedError',
    'JournalError',
    'JournalListener',
    'JournalUnavailableError',
    'JournalVersionError',
    'LogLine',
    'LogLineBuffer',
    'LogLines',
    'Pruned',
    'RecoveryInProgressError',
    'RunAlreadyEndedError',
    'RunPage',
    'RunRecord',
    'SnapshotError',
    'StepRecord',
    'UnknownRunError',
    'describe_line',
    'level_of',
    'restore',
    'snapshot',
]
