"""Every exception the SDK raises on purpose, in one tree under ``SynapseError``.

Each also keeps the built-in base its callers rely on (the spec's
``except RuntimeError`` around a run, ``except ValueError`` around params,
``except KeyError`` around a lookup), and says what it means in ``kind``
(an ``ErrorKind``), which the ``synapse`` command turns into its exit code::

    SynapseError                       kind      also a
    ├── StepExecutionError             failed    RuntimeError       a step failed; run rolled back
    │   └── RunCancelledError          cancelled                    run cancelled; rolled back too
    ├── StepInterrupted                failed                       inside a step: asked to stop
    │   ├── StepCancelled              cancelled                    the run is being cancelled
    │   └── StepTimeoutError           failed    TimeoutError       past the step's timeout
    ├── MapItemError                   failed    RuntimeError       an item of context.map() failed
    ├── ClientError                    failed                       storage:
    │   ├── FileNotFoundInStorageError           KeyError           no file with that id
    │   ├── SourceFileError                      FileNotFoundError  a file to upload is unusable
    │   ├── StorageIntegrityError                                   a blob is missing or damaged
    │   ├── StorageIndexError          bad input                    its index file is unusable
    │   ├── StorageConfigError         bad input ValueError         a storage URL it cannot use
    │   ├── StorageAccessError         bad input                    no such bucket, access denied
    │   └── StorageUnavailableError    failed    ConnectionError    unreachable after retries
    ├── RecoveryFailed                 failed    RuntimeError       rollback/resume of a run failed
    ├── RayUnavailableError            failed    ConnectionError    Ray cannot be started or reached
    ├── ActionError                    bad input                    before any step ran:
    │   ├── ActionDefinitionError                TypeError          the action class is incomplete
    │   └── ParamsValidationError                ValueError         params do not fit its model
    ├── PluginError                    bad input                    config.yaml, action, entrypoint
    ├── UnreadableTextError            bad input ValueError         a named file is not UTF-8 text
    └── JournalError                   bad input                    the run journal:
        ├── UnknownRunError                      KeyError           no run with that id
        ├── JournalVersionError                  RuntimeError       not a journal this SDK reads
        ├── JournalDamagedError                                     its file has damaged pages
        ├── JournalUnavailableError                                 its server cannot be reached
        ├── SnapshotError                        TypeError          a context value it cannot keep
        ├── RecoveryError                                           cannot roll back/resume that run
        ├── RecoveryInProgressError                                 another process is recovering it
        └── RunAlreadyEndedError                                    cannot cancel: it is not running

A subclass has its parent's kind unless shown. The command line's own
``BadInput`` (bad JSON in ``--params``, ...) is a ``SynapseError`` of kind
bad input too. Exit codes (``synapse``): bad input 2, failed 1, cancelled 130
(143 when SIGTERM stopped it); docs/errors.md.

The root, ``ErrorKind`` and the steps core's errors are defined in the steps
core (the lowest layer, so that every layer can derive from them) and loaded
with this module; the others on first use, so ``from synapse_sdk.errors
import SynapseError`` costs only the standard-library-only steps core.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from synapse_sdk.plugins.steps import (
    ErrorKind,
    MapItemError,
    RunCancelledError,
    StepCancelled,
    StepExecutionError,
    StepInterrupted,
    StepTimeoutError,
    SynapseError,
)

if TYPE_CHECKING:
    from synapse_sdk._paths import UnreadableTextError
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
    from synapse_sdk.execution._errors import RayUnavailableError
    from synapse_sdk.execution._recovery import RecoveryError, RecoveryFailed
    from synapse_sdk.journal._errors import (
        JournalDamagedError,
        JournalError,
        JournalUnavailableError,
        JournalVersionError,
        RecoveryInProgressError,
        RunAlreadyEndedError,
        SnapshotError,
        UnknownRunError,
    )
    from synapse_sdk.plugins.actions._errors import (
        ActionDefinitionError,
        ActionError,
        ParamsValidationError,
    )
    from synapse_sdk.plugins.loader import PluginError

# name -> the module that defines it, imported on first use
_LAZY = {
    'ClientError': 'synapse_sdk.clients._errors',
    'FileNotFoundInStorageError': 'synapse_sdk.clients._errors',
    'SourceFileError': 'synapse_sdk.clients._errors',
    'StorageAccessError': 'synapse_sdk.clients._errors',
    'StorageConfigError': 'synapse_sdk.clients._errors',
    'StorageIndexError': 'synapse_sdk.clients._errors',
    'StorageIntegrityError': 'synapse_sdk.clients._errors',
    'StorageUnavailableError': 'synapse_sdk.clients._errors',
    'RecoveryError': 'synapse_sdk.execution._recovery',
    'RecoveryFailed': 'synapse_sdk.execution._recovery',
    'JournalDamagedError': 'synapse_sdk.journal._errors',
    'JournalError': 'synapse_sdk.journal._errors',
    'JournalVersionError': 'synapse_sdk.journal._errors',
    'SnapshotError': 'synapse_sdk.journal._errors',
    'UnknownRunError': 'synapse_sdk.journal._errors',
    'UnreadableTextError': 'synapse_sdk._paths',
    'ActionDefinitionError': 'synapse_sdk.plugins.actions._errors',
    'ActionError': 'synapse_sdk.plugins.actions._errors',
    'ParamsValidationError': 'synapse_sdk.plugins.actions._errors',
    'RayUnavailableError': 'synapse_sdk.execution._errors',
    'RecoveryInProgressError': 'synapse_sdk.journal._errors',
    'RunAlreadyEndedError': 'synapse_sdk.journal._errors',
    'JournalUnavailableError': 'synapse_sdk.journal._errors',
    'PluginError': 'synapse_sdk.plugins.loader',
}

__all__ = [
    'ActionDefinitionError',
    'ActionError',
    'ClientError',
    'ErrorKind',
    'FileNotFoundInStorageError',
    'JournalDamagedError',
    'JournalError',
    'JournalUnavailableError',
    'JournalVersionError',
    'MapItemError',
    'ParamsValidationError',
    'PluginError',
    'RayUnavailableError',
    'RecoveryError',
    'RecoveryFailed',
    'RecoveryInProgressError',
    'RunAlreadyEndedError',
    'RunCancelledError',
    'SnapshotError',
    'SourceFileError',
    'StepCancelled',
    'StepExecutionError',
    'StepInterrupted',
    'StepTimeoutError',
    'StorageAccessError',
    'StorageConfigError',
    'StorageIndexError',
    'StorageIntegrityError',
    'StorageUnavailableError',
    'SynapseError',
    'UnknownRunError',
    'UnreadableTextError',
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
