"""Exceptions raised by storage clients.

Each error also derives from the matching built-in (``KeyError``,
``FileNotFoundError``) so callers that do not know this package still catch
them naturally. Every error defines ``__reduce__`` because they cross process
boundaries (multiprocessing, Ray), and exceptions whose ``__init__`` differs
from ``args`` do not unpickle otherwise.
"""

from __future__ import annotations

from typing import Any

from synapse_sdk.plugins.steps import ErrorKind, SynapseError

__all__ = [
    'ClientError',
    'FileNotFoundInStorageError',
    'SourceFileError',
    'StorageAccessError',
    'StorageConfigError',
    'StorageIndexError',
    'StorageIntegrityError',
    'StorageUnavailableError',
]


class ClientError(SynapseError):
    """Base class, so one ``except`` clause covers every storage failure."""


class FileNotFoundInStorageError(ClientError, KeyError):
    """The file id is not in the index (never uploaded, or already deleted)."""

    def __init__(self, file_id: int, root: str | None = None) -> None:
        self.file_id = file_id
        self.root = root
        where = f' in storage at {root}' if root else ''
        super().__init__(
            f'No file with id {file_id}{where}; call list_files() to see the stored files.'
        )

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and wrap it in quotes.
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.file_id, self.root))


class SourceFileError(ClientError, FileNotFoundError):
    """The path given to upload is missing, unreadable or not a regular file."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f'Cannot upload {path!r}: {reason}.')

    def __str__(self) -> str:
        # OSError.__str__ formats errno/filename, which are not set here.
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.reason))


class StorageIntegrityError(ClientError):
    """Stored data disagrees with the index: a blob is missing or corrupted.

    Raised instead of returning bad bytes, since silently handing a plugin a
    damaged file is worse than failing loudly.
    """


class StorageIndexError(ClientError):
    """The storage's index cannot be used: not a database, another program's, written by
    a newer synapse-sdk, or damaged. The file is at fault (bad input, as a bad journal
    is); the message names it and what to do."""

    kind = ErrorKind.BAD_INPUT


class StorageConfigError(ClientError, ValueError):
    """A storage URL that cannot be used as written: an unknown scheme or option, a
    credential in the URL, or the extra its provider needs is not installed. Nothing was
    sent anywhere; the message says what to write or install instead."""

    kind = ErrorKind.BAD_INPUT


class StorageAccessError(ClientError):
    """The storage answered, and will not do it: no such bucket or container, access
    denied, credentials refused, an endpoint that is not a storage service. Retrying the
    same thing cannot help; the message names the storage (without secrets) and the fix."""

    kind = ErrorKind.BAD_INPUT


class StorageUnavailableError(ClientError, ConnectionError):
    """The storage could not be reached, or kept failing (5xx, throttling, resets), after
    the client's own retries with backoff. A ``ConnectionError``, so a step's
    ``RetryPolicy(retry_on=(ConnectionError,))`` tries again later; a rollback that meets it
    leaves the run ``rollback_failed``, to be retried with ``synapse runs rollback``."""
