"""One error tree: every public exception is a SynapseError, keeps its built-in base, has a kind.

The drawing in ``synapse_sdk.errors``' docstring is read back and compared
with the classes, so the one place the tree is documented cannot drift.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import re
from pathlib import Path

import pytest

import synapse_sdk
import synapse_sdk.errors as errors
from synapse_sdk.errors import ErrorKind, SynapseError

BAD_INPUT, FAILED, CANCELLED = ErrorKind.BAD_INPUT, ErrorKind.FAILED, ErrorKind.CANCELLED

# name -> (SDK parent, the built-in base its callers rely on, kind)
TREE: dict[str, tuple[str, type[BaseException], ErrorKind]] = {
    'SynapseError': ('Exception', Exception, FAILED),
    'StepExecutionError': ('SynapseError', RuntimeError, FAILED),  # the spec: a RuntimeError
    'RunCancelledError': ('StepExecutionError', RuntimeError, CANCELLED),
    'StepInterrupted': ('SynapseError', Exception, FAILED),
    'StepCancelled': ('StepInterrupted', Exception, CANCELLED),
    'StepTimeoutError': ('StepInterrupted', TimeoutError, FAILED),
    'MapItemError': ('SynapseError', RuntimeError, FAILED),
    'ClientError': ('SynapseError', Exception, FAILED),
    'FileNotFoundInStorageError': ('ClientError', KeyError, FAILED),
    'SourceFileError': ('ClientError', FileNotFoundError, FAILED),
    'StorageIntegrityError': ('ClientError', Exception, FAILED),
    'StorageIndexError': ('ClientError', Exception, BAD_INPUT),  # the file is at fault
    'StorageConfigError': ('ClientError', ValueError, BAD_INPUT),
    'StorageAccessError': ('ClientError', Exception, BAD_INPUT),  # retrying cannot help
    'StorageUnavailableError': ('ClientError', ConnectionError, FAILED),  # retry later
    'RecoveryFailed': ('SynapseError', RuntimeError, FAILED),
    'RayUnavailableError': ('SynapseError', ConnectionError, FAILED),
    'ActionError': ('SynapseError', Exception, BAD_INPUT),
    'ActionDefinitionError': ('ActionError', TypeError, BAD_INPUT),
    'ParamsValidationError': ('ActionError', ValueError, BAD_INPUT),
    'PluginError': ('SynapseError', Exception, BAD_INPUT),
    'UnreadableTextError': ('SynapseError', ValueError, BAD_INPUT),
    'JournalError': ('SynapseError', Exception, BAD_INPUT),
    'UnknownRunError': ('JournalError', KeyError, BAD_INPUT),
    'JournalVersionError': ('JournalError', RuntimeError, BAD_INPUT),
    'JournalDamagedError': ('JournalError', Exception, BAD_INPUT),
    'JournalUnavailableError': ('JournalError', Exception, BAD_INPUT),
    'SnapshotError': ('JournalError', TypeError, BAD_INPUT),
    'RecoveryError': ('JournalError', Exception, BAD_INPUT),
    'RecoveryInProgressError': ('JournalError', Exception, BAD_INPUT),
    'RunAlreadyEndedError': ('JournalError', Exception, BAD_INPUT),
}


def exported(name: str) -> type[SynapseError]:
    value = getattr(errors, name)
    assert isinstance(value, type) and issubclass(value, SynapseError), name
    return value


def test_the_module_exports_exactly_the_tree() -> None:
    assert sorted(errors.__all__) == sorted([*TREE, 'ErrorKind'])
    assert set(errors.__all__) <= set(dir(errors))


@pytest.mark.parametrize('name', TREE)
def test_each_error_has_its_place_base_and_kind(name: str) -> None:
    parent, builtin, kind = TREE[name]
    cls = exported(name)
    assert cls.__bases__[0].__name__ == parent
    assert issubclass(cls, builtin)
    assert cls.kind is kind


@pytest.mark.parametrize('name', TREE)
def test_the_same_class_where_it_is_defined(name: str) -> None:
    cls = exported(name)
    assert getattr(importlib.import_module(cls.__module__), name) is cls


def test_the_package_exports_the_root() -> None:
    assert synapse_sdk.SynapseError is SynapseError
    assert 'SynapseError' in synapse_sdk.__all__
    with pytest.raises(AttributeError, match='no attribute'):
        _ = synapse_sdk.NoSuchError  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match='no attribute'):
        _ = errors.NoSuchError


def sdk_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(synapse_sdk.__path__, 'synapse_sdk.')
        if not info.name.endswith('__main__')
    ]


def test_every_public_exception_of_the_sdk_is_in_the_tree() -> None:
    found = {}
    for module_name in sdk_modules():
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module_name
                and not name.startswith('_')
            ):
                found[f'{module_name}.{name}'] = value
    assert len(found) > len(TREE)  # the walk saw them (and the CLI's own BadInput)
    outside = [where for where, cls in found.items() if not issubclass(cls, SynapseError)]
    assert outside == []
    unlisted = sorted(where for where, cls in found.items() if cls.__name__ not in TREE)
    assert unlisted == ['synapse_sdk.cli.main.BadInput']  # the command line's own, bad input
    assert found['synapse_sdk.cli.main.BadInput'].kind is BAD_INPUT


# -- the drawing --------------------------------------------------------------------

LINE = re.compile(
    r'^ {4}(?P<indent>(?:[│ ] {3})*)(?:[├└]── )?(?P<name>\w+Error|\w+Interrupted|\w+Cancelled'
    r'|RecoveryFailed)\s+(?:(?P<kind>failed|cancelled|bad input)\s+)?(?P<also>[A-Z]\w+Error\b)?'
)


def drawn() -> dict[str, tuple[str, str | None, str | None]]:
    """name -> (parent, kind shown, built-in shown), read from the module docstring."""
    assert errors.__doc__ is not None
    tree: dict[str, tuple[str, str | None, str | None]] = {}
    path: list[str] = []
    for line in errors.__doc__.splitlines():
        match = LINE.match(line)
        if match is None:
            continue
        depth = len(match['indent']) // 4 + (0 if match['name'] == 'SynapseError' else 1)
        path[depth:] = [match['name']]
        parent = path[depth - 1] if depth else 'Exception'
        tree[match['name']] = (parent, match['kind'], match['also'])
    return tree


def test_the_docstring_draws_the_tree_as_it_is() -> None:
    tree = drawn()
    assert sorted(tree) == sorted(TREE)
    for name, (parent, kind, also) in tree.items():
        cls = exported(name)
        assert parent == cls.__bases__[0].__name__, name
        # a kind is shown for the root's children, and where it differs from the parent's
        shown = {'bad input': BAD_INPUT, 'failed': FAILED, 'cancelled': CANCELLED}
        if kind is not None:
            assert shown[kind] is cls.kind, name
        elif cls is not SynapseError:  # the root's line heads the columns instead
            assert cls.kind is cls.__bases__[0].kind, name  # type: ignore[attr-defined]
        builtins = [b.__name__ for b in cls.__bases__[1:]]
        assert builtins == ([also] if also else []), name


def test_the_docs_show_the_same_drawing() -> None:
    assert errors.__doc__ is not None
    docstring = [line[4:] for line in errors.__doc__.splitlines() if LINE.match(line)]
    page = (Path(__file__).resolve().parents[1] / 'docs' / 'errors.md').read_text('utf-8')
    assert '\n'.join(docstring) in page
    assert len(docstring) == len(TREE)


def test_the_drawing_is_read_as_drawn() -> None:
    assert drawn()['RunCancelledError'] == ('StepExecutionError', 'cancelled', None)
    assert drawn()['SnapshotError'] == ('JournalError', None, 'TypeError')
    assert drawn()['SynapseError'] == ('Exception', None, None)


# -- behaviour the bases promise ----------------------------------------------------------


def test_callers_that_know_only_the_built_ins_still_catch_them() -> None:
    from synapse_sdk.journal import UnknownRunError
    from synapse_sdk.plugins.steps import StepExecutionError, StepResult

    failed = StepResult(success=False, error='OSError: disk full', step_name='upload')
    with pytest.raises(RuntimeError, match="Step 'upload' failed: OSError: disk full"):
        raise StepExecutionError('upload', failed, [])
    with pytest.raises(KeyError) as caught:
        raise UnknownRunError("no run 'x' in the journal")
    assert str(caught.value) == "no run 'x' in the journal"  # not KeyError's quoted repr


@pytest.mark.parametrize('name', ['FileNotFoundInStorageError', 'SourceFileError'])
def test_storage_errors_still_cross_processes(name: str) -> None:
    cls = exported(name)
    error = cls(7) if name == 'FileNotFoundInStorageError' else cls('/x', 'missing')
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls and str(back) == str(error)
    assert isinstance(back, SynapseError)


class QuotaExceeded(SynapseError):
    """A plugin's own error joins the tree and chooses its kind."""

    kind = ErrorKind.BAD_INPUT


def test_your_own_errors_join_the_tree() -> None:
    assert QuotaExceeded.kind is BAD_INPUT
    assert SynapseError.kind is FAILED  # the default for a subclass that says nothing
    assert issubclass(QuotaExceeded, Exception)
