"""The testing kit itself (``synapse_sdk.testing``): what plugin authors rely on."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from synapse_sdk.clients import FileNotFoundInStorageError, LocalBackendClient, SourceFileError
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    RetryPolicy,
    RunCancelledError,
    RunEvent,
    RunListener,
    StepExecutionError,
    StepResult,
    StepStarted,
)
from synapse_sdk.runtime import MemoryLogger, RuntimeContext
from synapse_sdk.testing import (
    CancelAt,
    FakeBackend,
    FakeClock,
    FaultyStep,
    RecordingRuntime,
    WorkflowRun,
    assert_progress_monotonic,
    assert_rolled_back,
    assert_run_status,
    assert_steps_ran,
    run_workflow,
)

from .conftest import FnStep, journaled


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / 'src'
    folder.mkdir()
    paths = []
    for name, content in [('a.txt', b'alpha'), ('b.txt', b'bravo!'), ('c.bin', b'\x00\x01')]:
        path = folder / name
        path.write_bytes(content)
        paths.append(path)
    return paths


# --------------------------------------------------------------- FakeBackend


def test_fake_backend_upload_get_list_download(files: list[Path], tmp_path: Path) -> None:
    backend = FakeBackend()
    ids = [backend.upload_file(path) for path in files]
    assert ids == [1, 2, 3]

    info = backend.get_file(2)
    assert set(info) == {'id', 'name', 'size', 'checksum', 'created_at', 'path'}
    assert (info['id'], info['name'], info['size']) == (2, 'b.txt', 6)
    assert info['checksum'] == hashlib.sha256(b'bravo!').hexdigest()
    assert [f['name'] for f in backend.list_files()] == ['a.txt', 'b.txt', 'c.bin']

    out = tmp_path / 'out'
    out.mkdir()
    into_dir = backend.download_file(1, out)
    assert into_dir == out / 'a.txt' and into_dir.read_bytes() == b'alpha'
    to_file = backend.download_file(3, out / 'renamed.bin')
    assert to_file.read_bytes() == b'\x00\x01'
    assert backend.calls == [('upload_file', str(path)) for path in files]


def test_fake_backend_keys_make_uploads_idempotent(files: list[Path]) -> None:
    backend = FakeBackend()
    assert backend.find_file('run:a') is None
    first = backend.upload_file(files[0], key='run:a')
    again = backend.upload_file(files[0], key='run:a')
    assert first == again and len(backend.list_files()) == 1
    assert backend.find_file('run:a') == first
    backend.delete_file(first)
    assert backend.find_file('run:a') is None  # the key goes with the file
    assert backend.upload_file(files[0], key='run:a') != first


def test_fake_backend_delete_and_missing_files(files: list[Path], tmp_path: Path) -> None:
    backend = FakeBackend()
    file_id = backend.upload_file(files[0])
    backend.delete_file(file_id)
    assert backend.list_files() == []
    with pytest.raises(FileNotFoundInStorageError) as caught:
        backend.delete_file(file_id)
    assert isinstance(caught.value, KeyError)  # the contract of the real client
    with pytest.raises(FileNotFoundInStorageError):
        backend.get_file(99)
    with pytest.raises(FileNotFoundInStorageError):
        backend.download_file(99, tmp_path)
    with pytest.raises(SourceFileError) as missing:
        backend.upload_file(tmp_path / 'nope.txt')
    assert isinstance(missing.value, FileNotFoundError)
    with pytest.raises(SourceFileError):
        backend.upload_file(tmp_path)  # a folder is not a file
    assert backend.calls[-1] == ('upload_file', str(tmp_path))


def test_fake_backend_injected_upload_failures(files: list[Path]) -> None:
    backend = FakeBackend(fail_upload_at={2, 4})
    assert backend.upload_file(files[0]) == 1
    with pytest.raises(ConnectionError, match=r'upload 2 failed \(injected\)'):
        backend.upload_file(files[1])
    assert backend.upload_file(files[1]) == 2  # the 3rd call works
    with pytest.raises(ConnectionError, match='upload 4'):
        backend.upload_file(files[2])
    assert [f['name'] for f in backend.list_files()] == ['a.txt', 'b.txt']
    assert len(backend.calls) == 4  # failed calls are recorded too

    custom = FakeBackend(fail_upload_at={1}, upload_error=TimeoutError('too slow'))
    with pytest.raises(TimeoutError, match='too slow'):
        custom.upload_file(files[0])


def test_fake_backend_injected_delete_failures(files: list[Path]) -> None:
    backend = FakeBackend(fail_delete_of={1})
    backend.upload_file(files[0])
    backend.upload_file(files[1])
    with pytest.raises(OSError, match=r'delete of 1 failed \(injected\)'):
        backend.delete_file(1)
    backend.delete_file(2)
    assert [f['id'] for f in backend.list_files()] == [1]  # the failed delete kept the file
    assert backend.calls[-2:] == [('delete_file', 1), ('delete_file', 2)]


def test_recording_runtime_uses_a_fake_backend_unless_given_a_client() -> None:
    runtime = RecordingRuntime()
    assert isinstance(runtime.client, FakeBackend)
    assert isinstance(runtime.memory, MemoryLogger) and runtime.listeners == [runtime.memory]
    assert runtime.run_id == 'test-run' and runtime.env == {} and runtime.sleep is None
    other = object()
    clock = FakeClock()
    custom = RecordingRuntime(other, sleep=clock.sleep, run_id='run-7')
    assert custom.client is other and custom.run_id == 'run-7' and custom.sleep == clock.sleep
    with pytest.warns(DeprecationWarning, match=r'RecordingRuntime\(run_id=\.\.\.\)'):
        assert RecordingRuntime(job_id='old-name').run_id == 'old-name'
    assert isinstance(custom, RuntimeContext)


def test_fake_backend_names_a_non_utf8_file_as_the_local_client_does(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b'/caf\xe9.txt'
    try:
        with open(raw, 'wb') as handle:
            handle.write(b'data')
    except OSError as exc:  # e.g. macOS file systems accept UTF-8 names only
        pytest.skip(f'this file system refuses non-UTF-8 names: {exc}')
    source = os.fsdecode(raw)
    fake, local = FakeBackend(), LocalBackendClient(tmp_path / 'storage')
    fake_info = fake.get_file(fake.upload_file(source))
    local_info = local.get_file(local.upload_file(source))
    assert fake_info['name'] == local_info['name'] == 'caf\\xe9.txt'
    for backend, info in [(fake, fake_info), (local, local_info)]:
        out = tmp_path / f'out-{type(backend).__name__}'
        out.mkdir()
        assert backend.download_file(info['id'], out) == out / 'caf\\xe9.txt'


def test_fake_backend_download_into_a_missing_directory_is_refused(
    files: list[Path], tmp_path: Path
) -> None:
    backend = FakeBackend()
    file_id = backend.upload_file(files[0])
    with pytest.raises(NotADirectoryError, match='exports'):
        backend.download_file(file_id, str(tmp_path / 'exports') + os.sep)
    assert not (tmp_path / 'exports').exists()


# --------------------------------------------------------------- FakeClock


def test_fake_clock_records_sleeps_without_waiting() -> None:
    clock = FakeClock()
    assert (clock.now, clock.sleeps) == (0.0, [])
    clock.sleep(1.5)
    clock.sleep(0)
    clock.sleep(3600)
    assert clock.sleeps == [1.5, 0, 3600]
    assert clock.now == 3601.5


# --------------------------------------------------------------- FaultyStep


def test_faulty_step_fails_on_the_chosen_attempts_and_counts_them() -> None:
    inner = FnStep('upload', weight=3.0, retry=RetryPolicy(max_attempts=1))
    faulty = FaultyStep(inner, fail_on_attempts=[1, 3])
    context = BaseStepContext(runtime_ctx=RecordingRuntime())

    assert (faulty.name, faulty.progress_weight, faulty.retry) == ('upload', 3.0, inner.retry)
    with pytest.raises(ConnectionError, match=r"step 'upload' failed on attempt 1 \(injected\)"):
        faulty.execute(context)
    assert faulty.execute(context).success
    with pytest.raises(ConnectionError, match='attempt 3'):
        faulty.execute(context)
    assert faulty.execute(context).success
    assert faulty.attempts == 4
    assert inner.calls == [('execute', 'upload'), ('execute', 'upload')]  # only when not failing


def test_faulty_step_custom_error_and_failure_as_a_result() -> None:
    context = BaseStepContext(runtime_ctx=RecordingRuntime())
    custom = FaultyStep(FnStep('s'), error=PermissionError('read-only'))
    with pytest.raises(PermissionError, match='read-only'):
        custom.execute(context)

    as_result = FaultyStep(FnStep('s'), fail_on_attempts=[1, 2], as_result=True)
    returned = as_result.execute(context)
    assert isinstance(returned, StepResult) and not returned.success
    assert returned.error == "step 's' failed on attempt 1 (injected)"


def test_faulty_step_after_execute_does_the_work_then_fails() -> None:
    stored: list[str] = []
    inner = FnStep('upload', execute=lambda context: stored.append('file') and None)
    faulty = FaultyStep(inner, fail_on_attempts=[1], after_execute=True)
    run = run_workflow([faulty])

    assert stored == ['file']  # the work was done, then the step "crashed"
    assert isinstance(run.error, StepExecutionError)
    assert isinstance(run.error.__cause__, ConnectionError)
    assert inner.calls == [('execute', 'upload'), ('rollback', 'upload')]


def test_faulty_step_after_execute_around_an_async_step_does_the_work() -> None:
    done: list[str] = []

    class AsyncUpload(BaseStep[BaseStepContext]):
        name = 'upload'
        progress_weight = 1.0

        async def execute(self, context: BaseStepContext) -> StepResult:
            await asyncio.sleep(0)
            done.append('uploaded')
            return StepResult()

    run = run_workflow([FaultyStep(AsyncUpload(), after_execute=True)])

    assert isinstance(run.error, StepExecutionError)
    assert done == ['uploaded']  # "runs the inner step first and fails afterwards"


def test_faulty_step_is_retried_by_its_inner_steps_policy() -> None:
    clock = FakeClock()
    inner = FnStep('s', retry=RetryPolicy(max_attempts=3, initial_delay=2.0, jitter=0))
    faulty = FaultyStep(inner, fail_on_attempts=[1, 2])
    run = run_workflow([faulty], runtime=RecordingRuntime(sleep=clock.sleep))
    assert run.succeeded and faulty.attempts == 3 and clock.sleeps == [2.0, 4.0]


# --------------------------------------------------------------- CancelAt


def test_cancel_at_cancels_through_the_runtime_when_the_step_starts() -> None:
    runtime = RecordingRuntime()
    listener = CancelAt(runtime, 'b')
    assert isinstance(listener, RunListener)
    run = run_workflow(
        [FnStep('a'), FnStep('b'), FnStep('c')], runtime=runtime, listeners=[listener]
    )
    assert runtime.cancel_token.reason == 'cancelled by test'
    assert_steps_ran(run, ['a', 'b'])
    assert_rolled_back(run, ['b', 'a'])


def test_cancel_at_an_unknown_step_never_cancels() -> None:
    runtime = RecordingRuntime()
    run = run_workflow([FnStep('a')], runtime=runtime, listeners=[CancelAt(runtime, 'zzz')])
    assert run.succeeded and runtime.cancel_token.reason is None


# --------------------------------------------------------------- run_workflow


def test_run_workflow_success() -> None:
    def work(context: BaseStepContext) -> StepResult:
        context.log('working', {'n': 1})
        context.set_progress(1, 2)
        context.set_progress(2, 2)
        return StepResult(data={'done': True})

    run = run_workflow([FnStep('a', execute=work), FnStep('b')])

    assert isinstance(run, WorkflowRun) and run.succeeded and run.error is None
    assert run.result == {
        'success': True,
        'steps_executed': 2,
        'steps_total': 2,
        'steps_skipped': 0,
        'steps_reused': 0,
    }
    assert run.progress == [25, 50, 100]
    assert run.context.runtime_ctx is run.runtime
    assert run.runtime.memory.event_names() == ['working']
    assert run.runtime.memory.progress_of('a') == [50.0, 100.0]
    assert run.runtime.memory.progress_of('overall') == [25.0, 50.0, 100.0]
    assert_steps_ran(run, ['a', 'b'])
    assert_rolled_back(run, [])
    assert_progress_monotonic(run)


def test_run_workflow_catches_the_failure_or_raises_it() -> None:
    def boom(context: BaseStepContext) -> StepResult:
        raise ValueError('bad row')

    run = run_workflow([FnStep('a'), FnStep('b', execute=boom)])
    assert not run.succeeded and run.result is None
    assert isinstance(run.error, StepExecutionError)
    assert str(run.error) == "Step 'b' failed: ValueError: bad row"
    assert_rolled_back(run, ['b', 'a'])

    with pytest.raises(StepExecutionError, match='bad row'):
        run_workflow([FnStep('b', execute=boom)], raise_errors=True)


def test_run_workflow_with_own_context_runtime_and_listeners() -> None:
    class Seen(RunListener):
        def __init__(self) -> None:
            self.started: list[str] = []

        def on_event(self, event: RunEvent) -> None:
            if isinstance(event, StepStarted):
                self.started.append(event.step.name)

    runtime = RecordingRuntime(run_id='mine')
    context = BaseStepContext(runtime_ctx=runtime)
    seen = Seen()
    run = run_workflow([FnStep('a')], context, runtime=runtime, listeners=[seen])
    assert run.context is context and run.runtime is runtime
    assert seen.started == ['a']
    assert context.step_results[0].step_name == 'a'


def test_run_workflow_uses_the_runtime_of_the_given_context() -> None:
    """Given a context but no ``runtime=``, run_workflow once made a fresh RecordingRuntime
    instead of using ``context.runtime_ctx``: the run listened to another cancel token
    (CancelAt on the test's runtime did nothing) and ``run.runtime.memory`` missed every
    event the steps logged."""
    runtime = RecordingRuntime()
    context = BaseStepContext(runtime_ctx=runtime)

    def work(context: BaseStepContext) -> None:
        context.log('working')
        context.set_progress(1, 1)

    run = run_workflow(
        [FnStep('a', execute=work), FnStep('b')], context, listeners=[CancelAt(runtime, 'a')]
    )
    assert run.runtime is runtime
    assert isinstance(run.error, RunCancelledError), run.error
    assert run.runtime.memory.event_names() == ['working']


def test_run_workflow_refuses_a_context_whose_runtime_it_cannot_record() -> None:
    other = RuntimeContext(logger=MemoryLogger(), env={})
    context = BaseStepContext(runtime_ctx=other)
    with pytest.raises(TypeError, match='RuntimeContext, not a RecordingRuntime'):
        run_workflow([FnStep('a')], context)
    # An explicit runtime= is still taken as given.
    runtime = RecordingRuntime()
    run = run_workflow([FnStep('a')], context, runtime=runtime)
    assert run.succeeded and run.runtime is runtime
    assert_steps_ran(run, ['a'])


# --------------------------------------------------------------- the assertions


@pytest.fixture
def failed_run() -> WorkflowRun:
    def boom(context: BaseStepContext) -> StepResult:
        raise RuntimeError('nope')

    return run_workflow([FnStep('a'), FnStep('b', execute=boom), FnStep('c')])


def test_assert_steps_ran(failed_run: WorkflowRun) -> None:
    assert_steps_ran(failed_run, ['a', 'b'])
    assert_steps_ran(failed_run.runtime.memory, ('a', 'b'))  # a MemoryLogger will do too
    with pytest.raises(AssertionError) as caught:
        assert_steps_ran(failed_run, ['a', 'b', 'c'])
    message = str(caught.value)
    assert "steps started: ['a', 'b'], expected ['a', 'b', 'c']" in message


def test_assert_rolled_back(failed_run: WorkflowRun) -> None:
    assert_rolled_back(failed_run, ['b', 'a'])
    with pytest.raises(AssertionError) as caught:
        assert_rolled_back(failed_run, ['a', 'b'])  # wrong order
    assert "rolled back: ['b', 'a'], expected ['a', 'b']" in str(caught.value)


def test_assert_rolled_back_counts_failed_rollbacks() -> None:
    def undo(context: BaseStepContext, result: StepResult) -> None:
        raise OSError('stuck')

    def boom(context: BaseStepContext) -> StepResult:
        raise RuntimeError('nope')

    run = run_workflow([FnStep('a', rollback=undo), FnStep('b', execute=boom)])
    assert_rolled_back(run, ['b', 'a'])
    assert isinstance(run.error, StepExecutionError)
    assert run.error.rollback_errors == ["rollback of step 'a' failed: OSError: stuck"]


def test_assert_progress_monotonic(failed_run: WorkflowRun) -> None:
    with pytest.raises(AssertionError, match='overall progress did not end at 100'):
        assert_progress_monotonic(failed_run)  # a failed run never reaches 100

    memory = MemoryLogger()
    for value in (10, 40, 30, 100):
        memory.progress(value, 100, 'overall')
    with pytest.raises(AssertionError) as caught:
        assert_progress_monotonic(memory)
    assert 'overall progress went back or repeated: [10.0, 40.0, 30.0, 100.0]' in str(caught.value)

    repeated = MemoryLogger()
    for value in (50, 50, 100):
        repeated.progress(value, 100, 'overall')
    with pytest.raises(AssertionError, match='went back or repeated'):
        assert_progress_monotonic(repeated)

    with pytest.raises(AssertionError, match=r'did not end at 100: \[\]'):
        assert_progress_monotonic(MemoryLogger())

    good = MemoryLogger()
    good.progress(5, 10, 'overall')
    good.progress(7, 7, 'overall')
    good.progress(1, 2, 'some step')  # other categories do not count
    assert_progress_monotonic(good)


def test_assert_run_status(journal: Journal) -> None:
    def boom(context: BaseStepContext) -> StepResult:
        raise RuntimeError('disk full')

    run_workflow([FnStep('a', execute=boom)], listeners=[journaled(journal, 'r1')])
    assert_run_status(journal, 'r1', 'rolled_back')
    with pytest.raises(AssertionError) as caught:
        assert_run_status(journal, 'r1', 'succeeded')
    message = str(caught.value)
    assert 'run r1 is rolled_back, expected succeeded' in message
    assert "Step 'a' failed: RuntimeError: disk full" in message  # the error says why


# --------------------------------------------------------------- docs/testing.md


def test_the_docs_example_is_the_tested_file() -> None:
    here = Path(__file__).resolve().parent
    docs = (here.parents[1] / 'docs' / 'testing.md').read_text(encoding='utf-8')
    section = docs.split('## An example', 1)[1]
    block = section.split('```python\n', 1)[1].split('\n```', 1)[0] + '\n'
    tested = (here / 'test_docs_example.py').read_text(encoding='utf-8')
    assert block == tested, 'docs/testing.md and test_docs_example.py have drifted apart'


def test_function_step_runs_its_functions_and_records_the_calls() -> None:
    from synapse_sdk.testing import FunctionStep

    calls: list[tuple[str, str]] = []
    done = FunctionStep('a', calls=calls, execute=lambda c: StepResult(data={'n': 1}))
    skipped = FunctionStep('s', calls=calls, skip=lambda c: True)
    failing = FunctionStep('b', calls=calls, execute=lambda c: StepResult(success=False, error='x'))
    run = run_workflow([done, skipped, failing])
    assert run.error is not None
    assert calls == [('execute', 'a'), ('execute', 'b'), ('rollback', 'b'), ('rollback', 'a')]
    assert [r.data for r in done.rollback_results] == [{'n': 1}]
    assert skipped.rollback_results == []
    assert not FunctionStep('r', resumable=False).resumable
