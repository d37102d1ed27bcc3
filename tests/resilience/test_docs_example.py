"""Testing an upload workflow with synapse_sdk.testing (the example of docs/testing.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    RetryPolicy,
    RunCancelledError,
    StepResult,
)
from synapse_sdk.testing import (
    CancelAt,
    FakeBackend,
    FakeClock,
    FaultyStep,
    RecordingRuntime,
    assert_progress_monotonic,
    assert_rolled_back,
    assert_steps_ran,
    run_workflow,
)


# --- the plugin's code (in a real plugin: imported from its module) ------------
@dataclass(kw_only=True)
class UploadContext(BaseStepContext):
    source: Path


class UploadStep(BaseStep[UploadContext]):
    name = 'upload'
    progress_weight = 0.9
    retry = RetryPolicy(max_attempts=3, initial_delay=1.0, jitter=0)

    def execute(self, context: UploadContext) -> StepResult:
        files = sorted(context.source.iterdir())
        for i, path in enumerate(files, 1):
            file_id = context.client.upload_file(path)
            context.append_rollback('file_ids', file_id)  # undone even if a later file fails
            context.set_progress(i, len(files))  # also where a cancelled run stops
        return StepResult(data={'count': len(files)})

    def rollback(self, context: UploadContext, result: StepResult) -> None:
        for file_id in result.rollback_data.get('file_ids', []):
            context.client.delete_file(file_id)


class PublishStep(BaseStep[UploadContext]):
    name = 'publish'
    progress_weight = 0.1

    def execute(self, context: UploadContext) -> StepResult:
        context.log('published', {'files': len(context.client.list_files())})
        return StepResult()


# --- the tests -------------------------------------------------------------------
def make_source(tmp_path: Path, count: int = 3) -> Path:
    source = tmp_path / 'source'
    source.mkdir()
    for i in range(count):
        (source / f'{i}.txt').write_text(f'file {i}')
    return source


def test_a_dropped_connection_is_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    backend = FakeBackend(fail_upload_at={2})  # the 2nd upload call raises ConnectionError
    runtime = RecordingRuntime(backend, sleep=clock.sleep)
    context = UploadContext(runtime_ctx=runtime, source=make_source(tmp_path))

    run = run_workflow([UploadStep(), PublishStep()], context, runtime=runtime)

    assert run.succeeded, run.error
    assert context.step_results[0].attempts == 2
    assert clock.sleeps == [1.0]  # the policy's delay, without waiting for it
    assert len(backend.list_files()) == 3  # the failed attempt's upload was undone
    assert_steps_ran(run, ['upload', 'publish'])
    assert_progress_monotonic(run)


def test_a_failure_after_the_upload_removes_the_files(tmp_path: Path) -> None:
    runtime = RecordingRuntime()
    context = UploadContext(runtime_ctx=runtime, source=make_source(tmp_path))

    run = run_workflow([UploadStep(), FaultyStep(PublishStep())], context, runtime=runtime)

    assert "Step 'publish' failed: ConnectionError" in str(run.error)
    assert_rolled_back(run, ['publish', 'upload'])
    assert runtime.client.list_files() == []


def test_a_cancelled_upload_is_rolled_back(tmp_path: Path) -> None:
    runtime = RecordingRuntime()
    context = UploadContext(runtime_ctx=runtime, source=make_source(tmp_path))
    cancel = CancelAt(runtime, 'upload', reason='user pressed Ctrl-C')

    run = run_workflow([UploadStep(), PublishStep()], context, runtime=runtime, listeners=[cancel])

    assert isinstance(run.error, RunCancelledError)
    assert run.error.reason == 'user pressed Ctrl-C'
    assert_steps_ran(run, ['upload'])  # publish never started
    assert_rolled_back(run, ['upload'])
    assert runtime.client.list_files() == []
