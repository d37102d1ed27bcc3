"""Storage clients that plugin steps use through ``context.client``."""

from synapse_sdk.clients.errors import (
    ClientError,
    FileNotFoundInStorageError,
    SourceFileError,
    StorageIndexError,
    StorageIntegrityError,
)
from synapse_sdk.clients.local import BackendClient, FileInfo, LocalBackendClient, PartialWrites

__all__ = [
    'BackendClient',
    'ClientError',
    'FileInfo',
    'FileNotFoundInStorageError',
    'LocalBackendClient',
    'PartialWrites',
    'SourceFileError',
    'StorageIndexError',
    'StorageIntegrityError',
]
