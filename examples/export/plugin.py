"""Export the backend's files to a folder: a manifest plus copies, as a step workflow.

The steps follow the spec's export pipeline (docs/spec/step-orchestration.md,
"Export action"): fetch what to export, process it (copy the files), write
the output (the manifest). Copying is most of the work, so it carries most of
the weight, and it can be skipped when only the manifest is wanted. Every
file or folder a step writes is recorded while it is written, so a failure at
any point, even half-way through the copy, leaves the output folder as it was.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from contextlib import suppress
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from synapse_sdk.plugins import BaseExportAction
from synapse_sdk.plugins.actions.export import ExportContext
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult

FILES_DIR = 'files'
MANIFEST_COLUMNS = ('id', 'name', 'size', 'checksum', 'exported_path')
"""``exported_path`` is relative to output_dir (POSIX style); empty when files are not copied."""


class ExportParams(BaseModel):
    """Params of the export action; unknown keys are refused so a typo is not silently ignored."""

    model_config = ConfigDict(extra='forbid')

    output_dir: str = Field(min_length=1, description='Folder that receives the export.')
    format: Literal['jsonl', 'csv'] = Field('jsonl', description='Format of the manifest.')
    include_files: bool = Field(True, description='Copy the files, not only list them.')
    name_pattern: str | None = Field(
        None, description="Glob on the stored file name (e.g. '*.json'); all files when omitted."
    )


def params_of(context: ExportContext[ExportParams]) -> ExportParams:
    """The params, typed: the action's validated model (``context.params`` is its dict)."""
    return context.params_model


def output_of(context: ExportContext, step: str) -> Path:
    if context.output_path is None:
        raise RuntimeError(f'{step} needs the export list: register fetch_results before it')
    return Path(context.output_path)


def export_name(record: dict[str, Any]) -> str:
    """``<id>-<name>``: stored names need not be unique, ids are; never a path component."""
    base = Path(str(record['name']).replace('\\', '/')).name
    if base in ('', '.', '..'):
        base = 'file'
    return f'{record["id"]}-{base}'


def make_dirs(path: Path) -> list[str]:
    """Create ``path`` and its missing parents; return those created, outermost first.

    Rollback removes only these (and only if empty), never a folder the user had.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    return [str(p) for p in reversed(missing)]


def remove_empty_dirs(created: list[str]) -> None:
    for folder in reversed(created):
        with suppress(OSError):  # not empty (someone else wrote there) or already gone
            Path(folder).rmdir()


class FetchResultsStep(BaseStep[ExportContext]):
    """Decide what is exported: the stored files whose name matches ``name_pattern``."""

    @property
    def name(self) -> str:
        return 'fetch_results'

    @property
    def progress_weight(self) -> float:
        return 0.1

    def execute(self, context: ExportContext) -> StepResult:
        params = params_of(context)
        output = Path(params.output_dir)
        if output.exists() and not output.is_dir():
            return StepResult(
                success=False, error=f'output_dir {output} exists and is not a folder'
            )
        stored = context.client.list_files()
        pattern = params.name_pattern
        # fnmatchcase: the same answer on every OS (fnmatch ignores case on Windows only)
        matched = [
            dict(info) for info in stored if pattern is None or fnmatchcase(info['name'], pattern)
        ]
        if not matched:
            if not stored:
                return StepResult(success=False, error='the backend holds no files to export')
            return StepResult(
                success=False,
                error=f'no stored file matches name_pattern {pattern!r} '
                f'({len(stored)} file(s) in the backend)',
            )
        context.results = matched
        context.output_path = str(output)
        return StepResult(success=True, data={'matched': len(matched), 'stored': len(stored)})


class CopyFilesStep(BaseStep[ExportContext]):
    """Download each file into ``output_dir/files/``; checksums are verified by the client."""

    @property
    def name(self) -> str:
        return 'copy_files'

    @property
    def progress_weight(self) -> float:
        return 0.7

    def can_skip(self, context: ExportContext) -> bool:
        return not params_of(context).include_files

    def execute(self, context: ExportContext) -> StepResult:
        output = output_of(context, self.name)
        folder = output / FILES_DIR
        context.record_rollback(created_dirs=make_dirs(folder))
        total = len(context.results)
        copied_bytes = 0
        for index, record in enumerate(context.results, 1):
            target = context.client.download_file(record['id'], folder / export_name(record))
            # recorded file by file: a failure half-way still removes the copies made so far
            context.append_rollback('written', str(target))
            context.written_files.append(str(target))
            record['exported_path'] = target.relative_to(output).as_posix()
            copied_bytes += int(record['size'])
            context.set_progress(index, total, 'export')
        return StepResult(
            success=True, data={'copied': total, 'bytes': copied_bytes, 'folder': str(folder)}
        )

    def rollback(self, context: ExportContext, result: StepResult) -> None:
        written: list[str] = result.rollback_data.get('written', [])
        for path in written:
            Path(path).unlink(missing_ok=True)
        context.written_files = [p for p in context.written_files if p not in set(written)]
        for record in context.results:
            record.pop('exported_path', None)
        remove_empty_dirs(result.rollback_data.get('created_dirs', []))


class WriteManifestStep(BaseStep[ExportContext]):
    """Write ``manifest.jsonl`` or ``manifest.csv``: one row per exported file."""

    @property
    def name(self) -> str:
        return 'write_manifest'

    @property
    def progress_weight(self) -> float:
        return 0.2

    def execute(self, context: ExportContext) -> StepResult:
        params = params_of(context)
        output = output_of(context, self.name)
        manifest = output / f'manifest.{params.format}'
        if manifest.exists() and not manifest.is_file():
            return StepResult(
                success=False,
                error=f'{manifest} exists and is not a file: '
                'remove it or choose another output_dir',
            )
        context.record_rollback(created_dirs=make_dirs(output))
        rows = [
            {column: record.get(column) for column in MANIFEST_COLUMNS}
            for record in context.results
        ]
        # written aside and renamed into place: readers never see a half-written manifest
        fd, temp_name = tempfile.mkstemp(dir=output, prefix='.manifest-', suffix='.tmp')
        context.record_rollback(temp=temp_name)
        with os.fdopen(fd, 'w', encoding='utf-8', newline='') as handle:
            if params.format == 'csv':
                writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
            else:
                handle.writelines(json.dumps(row) + '\n' for row in rows)
        os.replace(temp_name, manifest)
        context.record_rollback(manifest=str(manifest))
        context.written_files.append(str(manifest))
        context.exported_count = len(rows)
        return StepResult(
            success=True,
            data={'manifest': str(manifest), 'format': params.format, 'exported_count': len(rows)},
        )

    def rollback(self, context: ExportContext, result: StepResult) -> None:
        data = result.rollback_data
        if 'temp' in data:
            Path(data['temp']).unlink(missing_ok=True)
        if 'manifest' in data:  # recorded after the rename: before it, the path was not ours
            Path(data['manifest']).unlink(missing_ok=True)
            context.written_files = [p for p in context.written_files if p != data['manifest']]
        remove_empty_dirs(data.get('created_dirs', []))
        context.exported_count = 0


class ExportAction(BaseExportAction[ExportParams]):
    """Export the stored files (all, or those matching a name pattern) to a folder."""

    def setup_steps(self, registry: StepRegistry[ExportContext]) -> None:
        registry.register(FetchResultsStep())  # 10%: one index query
        registry.register(CopyFilesStep())  # 70%: the bytes move here
        registry.register(WriteManifestStep())  # 20%
