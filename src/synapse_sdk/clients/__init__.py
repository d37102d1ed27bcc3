"""Storage clients that plugin steps use through ``context.client``."""

from synapse_sdk.clients._errors import (
    ClientError,
    FileNotFoundInStorageError,
    SourceFileError,
    StorageIndexError,
    StorageIntegrityError,
)
from synapse_sdk.clients._local import (
    BackendClient,
    FileInfo,
    LocalBackendClient,
    PartialWrites,
    download_target,
    index_database,
    stored_name,
)

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
    'download_target',
    'index_database',
    'stored_name',
]
