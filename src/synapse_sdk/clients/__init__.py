"""Storage clients that plugin steps use through ``context.client``.

``open_storage(url)`` gives the client for a folder path or a URL (``s3://``,
``az://``, ``gs://``, ``sftp://``, ``memory://``): see docs/storage.md.
"""

from synapse_sdk.clients.errors import (
    ClientError,
    FileNotFoundInStorageError,
    SourceFileError,
    StorageAccessError,
    StorageConfigError,
    StorageIndexError,
    StorageIntegrityError,
    StorageUnavailableError,
)
from synapse_sdk.clients.local import BackendClient, FileInfo, LocalBackendClient
from synapse_sdk.clients.storage import StorageClient, open_storage
from synapse_sdk.clients.urls import choose_storage, parse_storage, redact

__all__ = [
    'BackendClient',
    'ClientError',
    'FileInfo',
    'FileNotFoundInStorageError',
    'LocalBackendClient',
    'SourceFileError',
    'StorageAccessError',
    'StorageClient',
    'StorageConfigError',
    'StorageIndexError',
    'StorageIntegrityError',
    'StorageUnavailableError',
    'choose_storage',
    'open_storage',
    'parse_storage',
    'redact',
]
