"""Storage clients that plugin steps use through ``context.client``."""

from synapse_sdk.clients.errors import (
    ClientError,
    FileNotFoundInStorageError,
    SourceFileError,
    StorageIntegrityError,
)
from synapse_sdk.clients.local import BackendClient, FileInfo, LocalBackendClient

__all__ = [
    'BackendClient',
    'ClientError',
    'FileInfo',
    'FileNotFoundInStorageError',
    'LocalBackendClient',
    'SourceFileError',
    'StorageIntegrityError',
]
