"""The CLI's one table from what went wrong to the exit code, and the errors it reads kinds from."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from synapse_sdk.cli.main import EXIT_CODES, BadInput, _exit_code
from synapse_sdk.errors import (
    ActionDefinitionError,
    ErrorKind,
    FileNotFoundInStorageError,
    JournalVersionError,
    MapItemError,
    ParamsValidationError,
    PluginError,
    RecoveryError,
    RecoveryFailed,
    RunCancelledError,
    SnapshotError,
    StepCancelled,
    StepExecutionError,
    StepTimeoutError,
    SynapseError,
    UnknownRunError,
    UnreadableTextError,
)
from synapse_sdk.execution._signals import SignalState
from synapse_sdk.plugins.steps import StepResult

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_the_table() -> None:
    assert EXIT_CODES == {
        ErrorKind.BAD_INPUT: 2,
        ErrorKind.FAILED: 1,
        ErrorKind.CANCELLED: 130,
    }


FAILED = StepResult(success=False, error='OSError: disk full', step_name='upload')

CODES = [
    pytest.param(BadInput('give --params or --params-file, not both'), 2, id='BadInput'),
    pytest.param(ParamsValidationError('Act', [('n', 'required')]), 2, id='params'),
    pytest.param(ActionDefinitionError('no params model'), 2, id='definition'),
    pytest.param(PluginError('no config.yaml'), 2, id='PluginError'),
    pytest.param(UnreadableTextError('not UTF-8'), 2, id='UnreadableTextError'),
    pytest.param(UnknownRunError("no run 'x'"), 2, id='UnknownRunError'),
    pytest.param(JournalVersionError('not a journal'), 2, id='JournalVersionError'),
    pytest.param(SnapshotError('cannot save'), 2, id='SnapshotError'),
    pytest.param(RecoveryError('still running'), 2, id='RecoveryError'),
    pytest.param(StepExecutionError('upload', FAILED, []), 1, id='StepExecutionError'),
    pytest.param(StepTimeoutError('upload', 1.0), 1, id='StepTimeoutError'),
    pytest.param(MapItemError(3, 'a.txt', OSError('gone')), 1, id='MapItemError'),
    pytest.param(RecoveryFailed('undoing failed'), 1, id='RecoveryFailed'),
    pytest.param(FileNotFoundInStorageError(7), 1, id='FileNotFoundInStorageError'),
    pytest.param(ValueError('from the action itself'), 1, id='not-ours'),
    pytest.param(RunCancelledError('upload', FAILED, [], 'SIGINT'), 130, id='RunCancelledError'),
    pytest.param(StepCancelled('SIGINT'), 130, id='StepCancelled'),
    pytest.param(KeyboardInterrupt(), 130, id='KeyboardInterrupt'),
    pytest.param(SystemExit(), 130, id='SystemExit'),
]


@pytest.mark.parametrize(('error', 'code'), CODES)
def test_each_error_exits_by_its_kind(error: BaseException, code: int) -> None:
    assert _exit_code(error) == code
    assert _exit_code(error, SignalState()) == code  # no signal came: cancelled otherwise


@pytest.mark.parametrize(('error', 'code'), CODES)
def test_sigterm_changes_only_the_code_of_a_cancelled_run(error: BaseException, code: int) -> None:
    signals = SignalState()
    signals.first = 'SIGTERM'
    assert _exit_code(error, signals) == (143 if code == 130 else code)


def test_a_subclass_takes_its_kind_from_where_it_joins() -> None:
    class Quota(SynapseError):
        kind = ErrorKind.BAD_INPUT

    class Mine(SynapseError):
        pass

    assert _exit_code(Quota('over quota')) == 2
    assert _exit_code(Mine('broke')) == 1


# -- end to end: errors a plain execute() raises -------------------------------------------

CONFIG = """\
name: Kinds
code: kinds
version: 0.1.0
category: upload
actions:
  not_a_dict:
    entrypoint: kinds:NotADict
  storage:
    entrypoint: kinds:MissingFile
  quota:
    entrypoint: kinds:OverQuota
"""

PLUGIN = """\
from pydantic import BaseModel

from synapse_sdk.clients import FileNotFoundInStorageError
from synapse_sdk.errors import ErrorKind, SynapseError
from synapse_sdk.plugins import BaseUploadAction


class Params(BaseModel):
    pass


class QuotaExceeded(SynapseError):
    kind = ErrorKind.BAD_INPUT


class NotADict(BaseUploadAction[Params]):
    def execute(self):
        return ['a']


class MissingFile(BaseUploadAction[Params]):
    def execute(self):
        raise FileNotFoundInStorageError(7)


class OverQuota(BaseUploadAction[Params]):
    def execute(self):
        raise QuotaExceeded('the upload quota is used up: free some space and run again')
"""


@pytest.fixture
def kinds(tmp_path: Path) -> Path:
    folder = tmp_path / 'kinds'
    folder.mkdir()
    (folder / 'config.yaml').write_text(CONFIG, encoding='utf-8')
    (folder / 'kinds.py').write_text(PLUGIN, encoding='utf-8')
    return folder


@pytest.mark.parametrize(
    ('action', 'code', 'line'),
    [
        (
            'not_a_dict',
            2,
            "error: NotADict.execute() returned list; return a dict, the action's result "
            '({} for nothing to report)',
        ),
        (
            'storage',
            1,
            "error: action 'storage' failed: FileNotFoundInStorageError: No file with id 7; "
            'call list_files() to see the stored files.',
        ),
        ('quota', 2, 'error: the upload quota is used up: free some space and run again'),
    ],
)
def test_an_error_raised_by_the_run_exits_by_its_kind(
    cli: Cli, kinds: Path, action: str, code: int, line: str
) -> None:
    proc = cli('plugin', 'run', action, '--path', kinds, '--no-journal')
    assert proc.returncode == code, proc.stderr
    result = json.loads(proc.stdout)  # the run started: its result is printed
    assert result['success'] is False and result['status'] == 'failed'
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == line
