"""The spec's complete example, as a plugin: upload a folder into the backend.

The middle of this module is the specification's code, copied unchanged
(docs/spec/step-orchestration.md, "A complete example"); the ``upload_spec``
action runs it as it is. The ``upload`` action runs the same workflow with a
crash-safe upload step (at the end of the module): it records each upload's
idempotency key before storing the file, so that with the run journal a
process killed mid-loop can still be rolled back or resumed exactly.
"""

from typing import Literal

from pydantic import BaseModel, Field


class FileUploadParams(BaseModel):
    source_path: str = Field(description='The folder whose files are uploaded.')
    parallel: Literal['serial', 'threads', 'ray'] = Field(
        default='serial', description='How the `upload` action uploads: one by one, or fanned out.'
    )
    workers: int = Field(default=4, ge=1, le=256, description='Concurrent uploads when fanned out.')


# --- the specification's complete example, unchanged ---------------------------
from dataclasses import dataclass, field
from pathlib import Path
from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.pipelines.steps import (
    BaseStep, StepResult, StepRegistry, BaseStepContext, LoggingStep
)

# define the context
@dataclass
class FileUploadContext(BaseStepContext):
    source_path: Path | None = None
    files: list[Path] = field(default_factory=list)
    uploaded_ids: list[int] = field(default_factory=list)

# define the steps
class DiscoverFilesStep(BaseStep[FileUploadContext]):
    @property
    def name(self) -> str:
        return 'discover_files'

    @property
    def progress_weight(self) -> float:
        return 0.1

    def execute(self, context: FileUploadContext) -> StepResult:
        if not context.source_path or not context.source_path.exists():
            return StepResult(success=False, error='source path not found')

        context.files = list(context.source_path.glob('**/*'))
        context.files = [f for f in context.files if f.is_file()]

        if not context.files:
            return StepResult(success=False, error='no files found')

        return StepResult(success=True, data={'file_count': len(context.files)})

class UploadFilesStep(BaseStep[FileUploadContext]):
    @property
    def name(self) -> str:
        return 'upload_files'

    @property
    def progress_weight(self) -> float:
        return 0.8

    def execute(self, context: FileUploadContext) -> StepResult:
        for i, file in enumerate(context.files):
            # upload each file
            file_id = context.client.upload_file(file)
            context.uploaded_ids.append(file_id)

            # progress within the step
            progress = (i + 1) / len(context.files)
            context.set_progress(int(progress * 100), 100, 'upload')

        return StepResult(
            success=True,
            rollback_data={'uploaded_ids': context.uploaded_ids.copy()}
        )

    def rollback(self, context: FileUploadContext, result: StepResult) -> None:
        for file_id in result.rollback_data.get('uploaded_ids', []):
            try:
                context.client.delete_file(file_id)
            except Exception:
                context.errors.append(f'failed to delete file {file_id}')

class FinalizeStep(BaseStep[FileUploadContext]):
    @property
    def name(self) -> str:
        return 'finalize'

    @property
    def progress_weight(self) -> float:
        return 0.1

    def execute(self, context: FileUploadContext) -> StepResult:
        context.log('upload_complete', {
            'file_count': len(context.uploaded_ids),
            'file_ids': context.uploaded_ids
        })
        return StepResult(success=True)

# use it in an action
class FileUploadAction(BaseUploadAction[FileUploadParams]):
    def setup_steps(self, registry: StepRegistry) -> None:
        # wrap the steps with logging for debugging
        registry.register(LoggingStep(DiscoverFilesStep()))
        registry.register(LoggingStep(UploadFilesStep()))
        registry.register(LoggingStep(FinalizeStep()))

    def create_context(self) -> FileUploadContext:
        return FileUploadContext(
            runtime_ctx=self.ctx,
            source_path=Path(self.params.source_path)
        )


# --- the crash-safe variant used by the `upload` action ------------------------
from typing import Any

from synapse_sdk.clients import FileNotFoundInStorageError


@dataclass
class DurableUploadContext(FileUploadContext):
    parallel: str = 'serial'
    workers: int = 4


def upload_one(job: tuple[Any, Path, str]) -> int:
    """One upload, as a fan-out item (module level, so it can travel to Ray workers)."""
    client, file, key = job
    return int(client.upload_file(file, key=key))


class DurableUploadFilesStep(UploadFilesStep):
    """UploadFilesStep whose every upload can be found again after a crash."""

    def execute(self, context: DurableUploadContext) -> StepResult:
        assert context.source_path is not None
        keys = [
            f'{context.runtime_ctx.run_id}:{file.relative_to(context.source_path)}'
            for file in context.files
        ]
        if context.parallel != 'serial':
            # All intents first, then the fan-out records each id as it finishes.
            context.record_rollback(upload_keys=keys)
            jobs = [(context.client, f, k) for f, k in zip(context.files, keys, strict=True)]
            context.uploaded_ids = context.map(
                upload_one,
                jobs,
                backend=context.parallel,
                max_workers=context.workers,
                rollback_key='uploaded_ids',
                category='upload',
            )
        else:
            total = len(context.files)
            for i, (file, key) in enumerate(zip(context.files, keys, strict=True)):
                # Intent first: if the process dies right after the upload, the key is
                # already journaled and rollback finds the file by it.
                context.append_rollback('upload_keys', key)
                file_id = context.client.upload_file(file, key=key)
                context.uploaded_ids.append(file_id)
                context.set_progress(i + 1, total, 'upload')
        return StepResult(
            success=True,
            data={'uploaded': len(context.uploaded_ids)},
            rollback_data={'uploaded_ids': context.uploaded_ids.copy()},
        )

    def rollback(self, context: FileUploadContext, result: StepResult) -> None:
        ids = set(result.rollback_data.get('uploaded_ids', []))
        for key in result.rollback_data.get('upload_keys', []):
            found = context.client.find_file(key)
            if found is not None:
                ids.add(found)
        for file_id in sorted(ids):
            try:
                context.client.delete_file(file_id)
            except FileNotFoundInStorageError:
                pass  # already deleted by an earlier, interrupted rollback
            except Exception as error:
                context.errors.append(f'failed to delete file {file_id}: {error}')


class DurableFileUploadAction(FileUploadAction):
    def setup_steps(self, registry: StepRegistry) -> None:
        registry.register(LoggingStep(DiscoverFilesStep()))
        registry.register(LoggingStep(DurableUploadFilesStep()))
        registry.register(LoggingStep(FinalizeStep()))

    def create_context(self) -> DurableUploadContext:
        return DurableUploadContext(
            runtime_ctx=self.ctx,
            source_path=Path(self.params.source_path),
            parallel=self.params.parallel,
            workers=self.params.workers,
        )
