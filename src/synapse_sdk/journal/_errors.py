"""The journal's exceptions: all ``JournalError``s, so one ``except`` covers the journal.

Each is bad input to whoever asked (a run id, a status, a journal file, a
context value the journal cannot keep): see docs/errors.md.
"""

from __future__ import annotations

from synapse_sdk.plugins.steps import ErrorKind, SynapseError


class JournalError(SynapseError):
    """A journal request that cannot be met (unknown run, wrong state)."""

    kind = ErrorKind.BAD_INPUT


class UnknownRunError(JournalError, KeyError):
    """No run with that id in the journal; a ``KeyError`` too, as for any missing key."""

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError.__str__ would quote the message


class JournalVersionError(JournalError, RuntimeError):
    """The database is not a journal this version can read."""


class JournalUnavailableError(JournalError):
    """The journal's database cannot be reached: a malformed URL, a server that does not
    answer, a wrong password, a missing database, or the connection lost mid-run."""


class JournalDamagedError(JournalError):
    """The journal's file has damaged pages; the message names it and what to do."""


class SnapshotError(JournalError, TypeError):
    """A value the journal cannot save; the message names it and says what to do."""


class RecoveryInProgressError(JournalError):
    """Another process holds the run's recovery (rollback or resume); the message says
    who, since when, and when its lease expires if that process is gone."""


class RunAlreadyEndedError(JournalError):
    """A cancel asked of a run that is no longer running; ``status`` says how it ended
    (the message, one line, says so too, and what to do about a crashed run)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status
