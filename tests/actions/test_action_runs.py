"""What a run of an action leaves behind: journal records, results, params, the terminal.

Param types that JSON does not know, setup code that raises, a plain execute()
that forgets to return, a reused run id, secrets, and a dispatch() that makes
its own runtime.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import os
import pty
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, HttpUrl, SecretStr, ValidationError

from synapse_sdk.execution import LocalExecutor, resume_run, rollback_run, run_action
from synapse_sdk.execution.recovery import RecoveryError
from synapse_sdk.journal import Journal, JournalError
from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.actions import ActionDefinitionError, ParamsValidationError
from synapse_sdk.plugins.steps import BaseStepContext, StepExecutionError, StepRegistry
from synapse_sdk.testing import FunctionStep, RecordingRuntime


class NoParams(BaseModel):
    pass


# --- params the journal has to carry ------------------------------------------------------


class Mode(enum.Enum):
    COPY = 'copy'
    MOVE = 'move'


class TypedParams(BaseModel):
    """Ordinary pydantic field types a plugin's params use."""

    since: datetime.date | None = None
    mode: Mode | None = None
    batch: uuid.UUID | None = None
    price: decimal.Decimal | None = None
    endpoint: HttpUrl | None = None


class TypedAction(BaseUploadAction[TypedParams]):
    seen: list[Any] = []

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        def look(context: Any) -> None:
            TypedAction.seen.append(dict(context.params))

        registry.register(FunctionStep('discover', execute=look))
        registry.register(FunctionStep('upload'))


@pytest.mark.parametrize(
    ('params', 'value'),
    [
        ({'since': '2024-05-01'}, datetime.date(2024, 5, 1)),
        ({'mode': 'move'}, Mode.MOVE),
        (
            {'batch': '12345678-1234-5678-1234-567812345678'},
            uuid.UUID('12345678-1234-5678-1234-567812345678'),
        ),
        ({'price': '9.99'}, decimal.Decimal('9.99')),
    ],
    ids=['date', 'enum', 'uuid', 'decimal'],
)
def test_a_journaled_step_run_takes_params_json_does_not_know(
    tmp_path: Path, params: dict[str, Any], value: Any
) -> None:
    """The steps see the params as pydantic made them; the journal keeps them as JSON
    with the run (they are input, not part of the context's snapshot)."""
    TypedAction.seen = []
    journal = Journal(tmp_path / 'runs.db')
    result = run_action(TypedAction, params, RecordingRuntime(run_id='typed'), journal=journal)
    assert result['success'] is True
    assert journal.get_run('typed').status == 'succeeded'
    [field] = params
    assert TypedAction.seen == [{**dict.fromkeys(TypedParams.model_fields), field: value}]


def test_a_journaled_step_run_takes_a_url_param(tmp_path: Path) -> None:
    journal = Journal(tmp_path / 'runs.db')
    params = {'endpoint': 'https://example.com/api'}
    result = run_action(TypedAction, params, RecordingRuntime(run_id='url'), journal=journal)
    assert result['success'] is True
    assert journal.get_run('url').params['endpoint'] == 'https://example.com/api'


class SecretParams(BaseModel):
    token: SecretStr


class SecretAction(BaseUploadAction[SecretParams]):
    """Fails in 'use' on its first run; records the token each run of 'use' sees."""

    seen: list[str] = []
    failures_left = 1

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        def use(context: Any) -> None:
            SecretAction.seen.append(self.params.token.get_secret_value())
            if SecretAction.failures_left:
                SecretAction.failures_left -= 1
                raise ConnectionError('service unreachable')

        registry.register(FunctionStep('prepare'))
        registry.register(FunctionStep('use', execute=use))


def test_a_secret_param_is_not_journaled_and_recovery_asks_for_it(tmp_path: Path) -> None:
    SecretAction.seen = []
    SecretAction.failures_left = 1
    journal = Journal(tmp_path / 'runs.db')
    with pytest.raises(StepExecutionError, match="Step 'use' failed: ConnectionError"):
        run_action(
            SecretAction, {'token': 'hunter2'}, RecordingRuntime(run_id='s1'), journal=journal
        )
    assert 'hunter2' not in str(journal.get_run('s1').params)

    with pytest.raises(RecoveryError, match=r"params token are secrets.*secrets=\{'token'"):
        resume_run(journal, 's1', RecordingRuntime(run_id='s1'))
    assert SecretAction.seen == ['hunter2']  # nothing ran with the journal's mask
    # rolled back already, in process: nothing to undo, so no secret is needed for that
    assert rollback_run(journal, 's1', RecordingRuntime(run_id='s1'))['rolled_back'] == []

    result = resume_run(journal, 's1', RecordingRuntime(run_id='s1'), secrets={'token': 'hunter2'})
    assert result['success'] is True
    assert SecretAction.seen == ['hunter2', 'hunter2']


# --- setup code that raises, a plain execute() that forgets to return ----------------------


class SetupFails(BaseUploadAction[NoParams]):
    where = 'setup_steps'

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        if self.where == 'setup_steps':
            raise KeyError('source_path')
        registry.register(FunctionStep('a'))

    def create_context(self) -> BaseStepContext:
        raise KeyError('source_path')


class CreateContextFails(SetupFails):
    where = 'create_context'


@pytest.mark.parametrize('action', [SetupFails, CreateContextFails])
def test_a_journaled_run_whose_setup_raises_is_recorded_as_failed_with_the_cause(
    tmp_path: Path, action: type[SetupFails]
) -> None:
    """Not left 'running' (later: 'crashed, the process died') with the cause nowhere."""
    journal = Journal(tmp_path / 'runs.db')
    with pytest.raises(KeyError, match='source_path'):
        run_action(action, {}, RecordingRuntime(run_id='setup-fails'), journal=journal)
    record = journal.get_run('setup-fails')
    assert record.status == 'failed'
    assert record.error == "KeyError: 'source_path'"


class NoneResult(BaseUploadAction[NoParams]):
    def execute(self) -> dict[str, Any]:
        self.ctx.log('did the work')
        return None  # type: ignore[return-value]  # forgot to return the result


def test_a_plain_execute_returning_none_is_an_error_that_says_what_to_return(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / 'runs.db')
    runtime = RecordingRuntime(run_id='plain-none')
    with pytest.raises(ActionDefinitionError, match=r'returned NoneType; return a dict'):
        LocalExecutor(console=False, journal=journal).run(NoneResult, {}, ctx=runtime)
    record = journal.get_run('plain-none')
    assert record.status == 'failed'
    assert 'returned NoneType' in (record.error or '')


class Plain(BaseUploadAction[NoParams]):
    def execute(self) -> dict[str, Any]:
        return {'done': True}


def test_a_reused_run_id_is_a_clear_error(tmp_path: Path) -> None:
    """RecordingRuntime's run_id is always 'test-run'; users name runs: a second journaled
    run under the same id says so instead of an SQLite integrity error."""
    journal = Journal(tmp_path / 'runs.db')
    assert run_action(Plain, {}, RecordingRuntime(), journal=journal) == {'done': True}
    with pytest.raises(JournalError, match="a run 'test-run' is already in the journal .*run_id"):
        run_action(Plain, {}, RecordingRuntime(), journal=journal)
    assert journal.get_run('test-run').status == 'succeeded'  # the first run is untouched


class PlainFails(BaseUploadAction[NoParams]):
    def execute(self) -> dict[str, Any]:
        raise ConnectionError('backend down')


def test_a_failed_plain_run_is_not_resumed_as_if_it_had_steps(tmp_path: Path) -> None:
    """No steps, so nothing to resume from: refused, not 'succeeded' after running nothing."""
    journal = Journal(tmp_path / 'runs.db')
    with pytest.raises(ConnectionError):
        run_action(PlainFails, {}, RecordingRuntime(run_id='plain-ko'), journal=journal)
    with pytest.raises(RecoveryError, match=r"run 'plain-ko' ran .*PlainFails in plain execute"):
        resume_run(journal, 'plain-ko', RecordingRuntime(run_id='plain-ko'))
    assert journal.get_run('plain-ko').status == 'failed'
    assert rollback_run(journal, 'plain-ko', RecordingRuntime())['rolled_back'] == []


class SetupInterrupted(BaseUploadAction[NoParams]):
    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        raise KeyboardInterrupt


def test_a_journaled_run_stopped_in_its_setup_is_recorded_as_cancelled(tmp_path: Path) -> None:
    journal = Journal(tmp_path / 'runs.db')
    with pytest.raises(KeyboardInterrupt):
        run_action(SetupInterrupted, {}, RecordingRuntime(run_id='stopped'), journal=journal)
    record = journal.get_run('stopped')
    assert (record.status, record.error) == ('cancelled', 'KeyboardInterrupt')


# --- describe_steps() -------------------------------------------------------------------------


class NeedsPaths(BaseModel):
    paths: list[str]


class PathsAction(BaseUploadAction[NeedsPaths]):
    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        for path in self.params.paths:
            registry.register(FunctionStep(path))


def test_describe_steps_keeps_the_pydantic_cause_of_its_params_error() -> None:
    with pytest.raises(ParamsValidationError) as direct:
        PathsAction.validate_params({})
    assert isinstance(direct.value.__cause__, ValidationError)
    with pytest.raises(ParamsValidationError) as planned:
        PathsAction.describe_steps()
    assert isinstance(planned.value.__cause__, ValidationError)


# --- dispatch() without a runtime, on a terminal ------------------------------------------------

DISPATCH_SCRIPT = """
import json
from pydantic import BaseModel
from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepResult

class Params(BaseModel):
    n: int = 3

class Count(BaseStep):
    name, progress_weight = 'count', 1.0
    def execute(self, context):
        for i in range(1, 4):
            context.set_progress(i, 3)
        return StepResult(data={'counted': 3})

class Act(BaseUploadAction[Params]):
    def setup_steps(self, registry):
        registry.register(Count())

result = Act.dispatch({})           # the README's in-process call, no ctx
print('RESULT', json.dumps(result['steps']))
"""


def run_with_terminal_stderr(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (as in an interactive shell), stdout on a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(10)
    os.close(master)
    return proc.returncode, out.decode(), b''.join(chunks).decode(errors='replace')


def test_dispatch_without_a_runtime_gives_stdout_back_when_done(tmp_path: Path) -> None:
    """The runtime dispatch() makes is closed after the run: the live display ends, so
    ``python script.py > result.json`` writes the result to the file, not the terminal."""
    script = tmp_path / 'script.py'
    script.write_text(DISPATCH_SCRIPT, encoding='utf-8')
    env = {**os.environ, 'SYNAPSE_HOME': str(tmp_path / 'home'), 'TERM': 'xterm-256color'}
    for name in ('FORCE_COLOR', 'TTY_COMPATIBLE', 'TTY_INTERACTIVE', 'NO_COLOR'):
        env.pop(name, None)
    code, out, err = run_with_terminal_stderr([sys.executable, str(script)], env)
    assert code == 0, err
    assert 'RESULT {"count": {"counted": 3}}' in out, f'stdout: {out!r}\nstderr: {err!r}'
