"""Storage clients that plugin steps use through ``context.client``.

``open_storage(url)`` gives the client for a folder path or a URL (``s3://``,
``az://``, ``gs://``, ``sftp://``, ``memory://``): see docs/storage.md.
"""

from synapse_sdk.clients._errors import (
    ClientError,
    FileNotFoundInStorageError,
    SourceFileError,
    StorageAccessError,
    StorageConfigError,
    StorageIndexError,
    StorageIntegrityError,
    StorageUnavailableError,
)
from synapse_sdk.clients._index import index_database
from synapse_sdk.clients._local import LocalBackendClient
from synapse_sdk.clients._storage import (
    BackendClient,
    FileInfo,
    PartialWrites,
    StorageClient,
    download_target,
    open_storage,
    stored_name,
)
from synapse_sdk.clients._urls import choose_storage, parse_storage, redact

__all__ = [
    'BackendClient',
    'ClientError',
    'FileInfo',
    'FileNotFoundInStorageError',
    'LocalBackendClient',
    'PartialWrites',
    'SourceFileError',
    'StorageAccessError',
    'StorageClient',
    'StorageConfigError',
    'StorageIndexError',
    'StorageIntegrityError',
    'StorageUnavailableError',
    'choose_storage',
    'download_target',
    'index_database',
    'open_storage',
    'parse_storage',
    'redact',
    'stored_name',
]
