"""Every code block of the spec, run as written against this project.

The blocks are read from docs/spec/step-orchestration.md (a copy of the
specification), so they are the spec's code byte for byte. Each test
supplies only what a block leaves undefined (the reader's own steps, such
as ``InitializeStep``), runs it, and checks what the spec says it does.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.plugins.pipelines import steps as steps_module
from synapse_sdk.plugins.pipelines.steps import (
    BaseStep,
    BaseStepContext,
    StepRegistry,
    StepResult,
)
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

SPEC = Path(__file__).resolve().parents[2] / 'docs' / 'spec' / 'step-orchestration.md'
BLOCKS = re.findall(r'```python\n(.*?)```', SPEC.read_text(encoding='utf-8'), re.S)


def block(marker: str) -> str:
    """The one block of the spec that contains ``marker``."""
    found = [b for b in BLOCKS if marker in b]
    assert len(found) == 1, f'{marker!r} matches {len(found)} blocks'
    return found[0]


def run_block(source: str, namespace: dict[str, Any]) -> dict[str, Any]:
    namespace.setdefault('__name__', 'spec_example')
    exec(compile(source, str(SPEC), 'exec', dont_inherit=True), namespace)
    return namespace


def named_step(name: str, weight: float = 0.25, calls: list[str] | None = None) -> type[BaseStep]:
    """A reader's own step: records that it ran."""

    class Step(BaseStep[BaseStepContext]):
        @property
        def name(self) -> str:
            return name

        @property
        def progress_weight(self) -> float:
            return weight

        def execute(self, context: BaseStepContext) -> StepResult:
            if calls is not None:
                calls.append(name)
            return StepResult(data={'ran': name})

    Step.__name__ = Step.__qualname__ = ''.join(p.title() for p in name.split('_')) + 'Step'
    return Step


@pytest.fixture
def logger() -> MemoryLogger:
    return MemoryLogger()


@pytest.fixture
def runtime(tmp_path: Path, logger: MemoryLogger) -> RuntimeContext:
    return RuntimeContext(logger=logger, client=LocalBackendClient(tmp_path / 'store'))


def test_the_spec_has_all_the_blocks_these_tests_cover() -> None:
    assert len(BLOCKS) == 19


def test_step_block_validates_files(runtime: RuntimeContext) -> None:
    @dataclass
    class UploadContext(BaseStepContext):
        params: dict[str, Any] = field(default_factory=dict)
        files: list[dict[str, Any]] = field(default_factory=list)

    ns = run_block(
        block('class ValidateFilesStep(BaseStep[UploadContext])'),
        {'UploadContext': UploadContext},
    )
    step = ns['ValidateFilesStep']()
    assert (step.name, step.progress_weight) == ('validate_files', 0.1)
    good = UploadContext(runtime_ctx=runtime, files=[{'size': 3}, {'size': 1}])
    assert step.execute(good).data == {'validated': 2}
    bad = UploadContext(runtime_ctx=runtime, files=[{'size': 3}, {'size': 0}])
    result = step.execute(bad)
    assert not result.success
    assert result.error == "invalid files: [{'size': 0}]"
    assert step.can_skip(UploadContext(runtime_ctx=runtime, params={'skip_validation': True}))
    assert not step.can_skip(good)


def test_step_result_block() -> None:
    source = block("return StepResult(success=True, data={'files_processed': 10})")
    # The block is a series of return statements: the body of a step's execute().
    ns = run_block('def execute():\n' + textwrap.indent(source, '    '), {'StepResult': StepResult})
    first = ns['execute']()
    assert (first.success, first.data, first.error) == (True, {'files_processed': 10}, None)
    result = StepResult(
        success=True, data={'uploaded_ids': [1, 2, 3]}, rollback_data={'uploaded_ids': [1, 2, 3]}
    )
    assert result.rollback_data == {'uploaded_ids': [1, 2, 3]}


def context_block(runtime: RuntimeContext) -> dict[str, Any]:
    return run_block(block('class UploadContext(BaseStepContext)'), {})


def test_context_block(runtime: RuntimeContext) -> None:
    UploadContext = context_block(runtime)['UploadContext']
    context = UploadContext(runtime_ctx=runtime)
    assert (context.params, context.files_to_upload, context.uploaded_files) == ({}, [], [])
    assert context.total_bytes == 0
    assert context.client is runtime.client
    assert context.step_results == [] and context.errors == []


def registry_block(calls: list[str]) -> dict[str, Any]:
    helpers = {
        'UploadContext': context_block.__globals__['BaseStepContext'],
        'InitializeStep': named_step('initialize', 0.1, calls),
        'ValidateStep': named_step('validate', 0.1, calls),
        'UploadStep': named_step('upload', 0.6, calls),
        'CleanupStep': named_step('cleanup', 0.1, calls),
        'CompressionStep': named_step('compression', 0.1, calls),
        'SanitizeStep': named_step('sanitize', 0.1, calls),
    }
    return run_block(block('registry = StepRegistry[UploadContext]()'), helpers)


def test_registry_block(capsys: pytest.CaptureFixture[str]) -> None:
    ns = registry_block([])
    registry = ns['registry']
    assert [s.name for s in registry.get_steps()] == [
        'initialize',
        'validate',
        'sanitize',
        'compression',
        'upload',
    ]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'steps: 5'
    assert out[1].startswith('total weight: 1.0')


def test_orchestrator_block(runtime: RuntimeContext, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []
    ns = registry_block(calls)
    capsys.readouterr()
    UploadContext = context_block(runtime)['UploadContext']
    ns['context'] = UploadContext(runtime_ctx=runtime)
    run_block(block('orchestrator = Orchestrator('), ns)
    assert calls == ['initialize', 'validate', 'sanitize', 'compression', 'upload']
    assert ns['result'] == {
        'success': True,
        'steps_executed': 5,
        'steps_total': 5,
        'steps_skipped': 0,
        'steps_reused': 0,
    }
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == '100/100%'
    assert lines == sorted(lines, key=lambda line: int(line.split('/')[0]))


def test_orchestrator_block_reports_a_failure(
    runtime: RuntimeContext, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = registry_block([])

    class Broken(named_step('upload_more', 0.1)):  # type: ignore[misc]
        def execute(self, context: BaseStepContext) -> StepResult:
            raise ConnectionError('storage unreachable')

    ns['registry'].register(Broken())
    ns['context'] = context_block(runtime)['UploadContext'](runtime_ctx=runtime)
    capsys.readouterr()
    run_block(block('orchestrator = Orchestrator('), ns)
    out = capsys.readouterr().out
    assert "workflow failed: Step 'upload_more' failed: ConnectionError: storage unreachable" in out


def test_progress_block_prints_20_80_100(
    runtime: RuntimeContext, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = run_block(
        block('class Step1(BaseStep[MyContext])'),
        {'MyContext': BaseStepContext, 'BaseStep': BaseStep},
    )
    registry = StepRegistry[BaseStepContext]()
    for index in (1, 2, 3):
        base = ns[f'Step{index}']
        concrete = type(
            f'Concrete{index}',
            (base,),
            {
                'name': property(lambda self, i=index: f'step{i}'),
                'execute': lambda self, context: StepResult(),
            },
        )
        registry.register(concrete())
    orchestrator = steps_module.Orchestrator(
        registry,
        BaseStepContext(runtime_ctx=runtime),
        progress_callback=lambda current, total: print(f'{current}%'),
    )
    orchestrator.execute()
    assert capsys.readouterr().out.split() == ['20%', '80%', '100%']


@dataclass
class FilesContext(BaseStepContext):
    files: list[str] = field(default_factory=list)


class FakeStorage:
    def __init__(self, fail_delete: set[int] | None = None) -> None:
        self.stored: dict[int, str] = {}
        self.fail_delete = fail_delete or set()

    def upload(self, file: str) -> int:
        file_id = len(self.stored) + 1
        self.stored[file_id] = file
        return file_id

    def delete(self, file_id: int) -> None:
        if file_id in self.fail_delete:
            raise OSError('locked')
        del self.stored[file_id]


def rollback_block_step(storage: FakeStorage) -> type[BaseStep]:
    ns = run_block(
        block("context.errors.append(f'rollback of file {file_id} failed')"),
        {'UploadContext': FilesContext, 'BaseStep': BaseStep, 'StepResult': StepResult},
    )

    class UploadFilesStep(ns['UploadFilesStep']):  # type: ignore[misc]
        name = 'upload_files'
        progress_weight = 0.5

        def _upload(self, file: str) -> int:
            return storage.upload(file)

        def _delete(self, file_id: int) -> None:
            storage.delete(file_id)

    return UploadFilesStep


class FailingStep(BaseStep[BaseStepContext]):
    name = 'fail'
    progress_weight = 0.5

    def execute(self, context: BaseStepContext) -> StepResult:
        return StepResult(success=False, error='disk full')


@pytest.mark.parametrize('locked', [set(), {2}])
def test_rollback_block_cleans_up_in_reverse(runtime: RuntimeContext, locked: set[int]) -> None:
    storage = FakeStorage(fail_delete=locked)
    registry = StepRegistry[FilesContext]()
    registry.register(rollback_block_step(storage)())
    registry.register(FailingStep())
    context = FilesContext(runtime_ctx=runtime, files=['a', 'b', 'c'])
    with pytest.raises(RuntimeError, match="Step 'fail' failed: disk full"):
        steps_module.Orchestrator(registry, context).execute()
    assert sorted(storage.stored) == sorted(locked)
    assert context.errors == [f'rollback of file {i} failed' for i in locked]


def test_logging_step_block(runtime: RuntimeContext, logger: MemoryLogger) -> None:
    storage = FakeStorage()
    registry = StepRegistry[FilesContext]()
    ns = run_block(
        block('logged_step = LoggingStep(UploadFilesStep())'),
        {'UploadFilesStep': rollback_block_step(storage), 'registry': registry},
    )
    assert registry.get_steps() == [ns['logged_step']]
    assert ns['logged_step'].name == 'upload_files'
    steps_module.Orchestrator(registry, FilesContext(runtime_ctx=runtime, files=['a'])).execute()
    start, end = logger.events
    assert (start.event, start.data) == ('step_start', {'step': 'upload_files'})
    assert end.event == 'step_end'
    assert set(end.data) == {'step', 'elapsed', 'success'}
    assert (end.data['step'], end.data['success']) == ('upload_files', True)


def test_timing_step_block(runtime: RuntimeContext) -> None:
    registry = StepRegistry[BaseStepContext]()
    ns = run_block(
        block('timed_step = TimingStep(ProcessDataStep())'),
        {'ProcessDataStep': named_step('process_data'), 'registry': registry},
    )
    context = BaseStepContext(runtime_ctx=runtime)
    steps_module.Orchestrator(registry, context).execute()
    assert ns['timed_step'].name == 'process_data'
    (result,) = context.step_results
    assert result.data['ran'] == 'process_data'
    assert 0 <= result.data['duration_seconds'] < 5


def test_validation_step_block(runtime: RuntimeContext) -> None:
    registry = StepRegistry[FilesContext]()
    run_block(
        block('def check_files_exist(context: UploadContext)'),
        {'UploadContext': FilesContext, 'registry': registry},
    )
    (step,) = registry.get_steps()
    assert (step.name, step.progress_weight) == ('validate_files_exist', 0.05)
    with pytest.raises(
        RuntimeError, match="Step 'validate_files_exist' failed: no files to upload"
    ):
        steps_module.Orchestrator(registry, FilesContext(runtime_ctx=runtime)).execute()
    result = steps_module.Orchestrator(
        registry, FilesContext(runtime_ctx=runtime, files=['a'])
    ).execute()
    assert result['success'] is True


class Params(BaseModel):
    name: str = 'demo'


@pytest.mark.parametrize(
    ('marker', 'context_module', 'context_name', 'names'),
    [
        (
            'class MyUploadAction(BaseUploadAction[UploadParams])',
            'upload',
            'UploadContext',
            ['init_storage', 'organize_files', 'upload_files', 'generate_metadata', 'cleanup'],
        ),
        (
            'class MyTrainAction(BaseTrainAction[TrainParams])',
            'train',
            'TrainContext',
            ['load_dataset', 'train_model', 'upload_model'],
        ),
        (
            'class MyExportAction(BaseExportAction[ExportParams])',
            'export',
            'ExportContext',
            ['fetch_results', 'process_batch', 'write_output'],
        ),
    ],
)
def test_action_blocks(
    runtime: RuntimeContext,
    logger: MemoryLogger,
    marker: str,
    context_module: str,
    context_name: str,
    names: list[str],
) -> None:
    calls: list[str] = []
    helpers: dict[str, Any] = {
        'StepRegistry': StepRegistry,
        'UploadParams': Params,
        'TrainParams': Params,
        'ExportParams': Params,
    }
    for name in names:
        helpers[''.join(p.title() for p in name.split('_')) + 'Step'] = named_step(name, 1, calls)
    ns = run_block(block(marker), helpers)
    action_cls = next(v for k, v in ns.items() if k.startswith('My') and k.endswith('Action'))
    assert action_cls.params_model is Params
    result = action_cls.dispatch({'name': 'x'}, runtime)
    assert calls == names
    assert result['success'] is True and result['steps_executed'] == len(names)
    assert result['steps'] == {name: {'ran': name} for name in names}
    context_cls = ns[context_name]
    module = __import__(f'synapse_sdk.plugins.actions.{context_module}', fromlist=[context_name])
    assert context_cls is getattr(module, context_name)
    assert action_cls(Params(), runtime).create_context().params == {'name': 'demo'}
    assert logger.progress_of('overall')[-1] == 100


class FileUploadParams(BaseModel):
    source_path: str


def complete_example() -> dict[str, Any]:
    return run_block(block('class FileUploadAction('), {'FileUploadParams': FileUploadParams})


def sample_folder(tmp_path: Path, count: int = 5) -> Path:
    folder = tmp_path / 'source'
    (folder / 'sub').mkdir(parents=True)
    for i in range(count):
        (folder / ('sub' if i % 2 else '.') / f'f{i}.txt').write_text(f'file {i}')
    return folder


def test_complete_example_uploads_a_folder(
    tmp_path: Path, runtime: RuntimeContext, logger: MemoryLogger
) -> None:
    ns = complete_example()
    result = ns['FileUploadAction'].dispatch({'source_path': str(sample_folder(tmp_path))}, runtime)
    assert result['success'] is True and result['steps_executed'] == 3
    assert result['steps']['discover_files'] == {'file_count': 5}
    stored = runtime.client.list_files()
    assert sorted(f['name'] for f in stored) == [f'f{i}.txt' for i in range(5)]
    complete = [e for e in logger.events if e.event == 'upload_complete']
    assert complete[0].data['file_ids'] == [f['id'] for f in stored]
    assert [e.event for e in logger.events].count('step_start') == 3
    upload = logger.progress_of('upload')
    assert upload == sorted(upload) and upload[-1] == 100
    overall = logger.progress_of('overall')
    assert overall[0] == 10 and overall[-1] == 100


def test_complete_example_rolls_back_uploads_when_finalize_fails(
    tmp_path: Path, logger: MemoryLogger
) -> None:
    class FailOnComplete(MemoryLogger):
        def log(self, event: str, data: dict[str, Any], file: str | None, level: str) -> None:
            if event == 'upload_complete':
                raise OSError('event bus down')
            super().log(event, data, file, level)

    client = LocalBackendClient(tmp_path / 'store')
    client.upload_file(_existing(tmp_path))
    runtime = RuntimeContext(logger=FailOnComplete(), client=client)
    ns = complete_example()
    with pytest.raises(RuntimeError, match="Step 'finalize' failed: OSError: event bus down"):
        ns['FileUploadAction'].dispatch({'source_path': str(sample_folder(tmp_path))}, runtime)
    assert [f['name'] for f in client.list_files()] == ['existing.txt']


def test_complete_example_reports_a_missing_source(runtime: RuntimeContext) -> None:
    ns = complete_example()
    with pytest.raises(RuntimeError, match="Step 'discover_files' failed: source path not found"):
        ns['FileUploadAction'].dispatch({'source_path': '/nonexistent/path'}, runtime)


def _existing(tmp_path: Path) -> Path:
    path = tmp_path / 'existing.txt'
    path.write_text('was here before')
    return path


def test_good_practice_blocks(runtime: RuntimeContext) -> None:
    run_block(block('class ProcessEverythingStep(BaseStep)'), {'BaseStep': BaseStep})
    ns = run_block(block('LoadDataStep:    0.1'), {})
    assert ns['__annotations__'] == {
        'LoadDataStep': 0.33,
        'TrainModelStep': 0.33,
        'SaveModelStep': 0.33,
    }

    created: list[str] = []
    ns = run_block(
        block('class CreateResourcesStep(BaseStep)'),
        {
            'BaseStep': BaseStep,
            'StepResult': StepResult,
            'create_resource': lambda: created.append('r1') or 'r1',
            'delete_resource': created.remove,
        },
    )

    class Resources(ns['CreateResourcesStep']):  # type: ignore[misc]
        name = 'create_resources'
        progress_weight = 1.0

    registry = StepRegistry[BaseStepContext]()
    registry.register(Resources())
    registry.register(FailingStep())
    with pytest.raises(RuntimeError):
        steps_module.Orchestrator(registry, BaseStepContext(runtime_ctx=runtime)).execute()
    assert created == []

    ns = run_block(block('class CompressionStep(BaseStep)'), {'BaseStep': BaseStep})
    step = type(
        'Compression',
        (ns['CompressionStep'],),
        {'execute': None, 'name': 'c', 'progress_weight': 0},
    )()
    assert step.can_skip(FilesContext(runtime_ctx=runtime, files=[Path('a.gz')]))
    assert not step.can_skip(FilesContext(runtime_ctx=runtime, files=[Path('a.txt')]))

    ns = run_block(block("context.log('step_progress'"), {'StepResult': StepResult})
    logger = runtime.loggers[0]
    assert isinstance(logger, MemoryLogger)
    assert ns['execute'](None, BaseStepContext(runtime_ctx=runtime)).success
    assert [e.data['phase'] for e in logger.events] == ['starting', 'complete']


def test_the_file_upload_example_holds_the_complete_example_unchanged() -> None:
    plugin = SPEC.parents[2] / 'examples' / 'file_upload' / 'plugin.py'
    assert block('class FileUploadAction(') in plugin.read_text(encoding='utf-8')


def test_the_spec_copy_matches_the_shared_original_when_present() -> None:
    shared = SPEC.parents[3] / 'shared' / 'spec' / 'step-orchestration.md'
    if shared.exists():  # the project's checkout sits beside shared/ here and in CI
        assert shared.read_text(encoding='utf-8') == SPEC.read_text(encoding='utf-8')
    else:
        assert SPEC.stat().st_size > 10_000


def _code_only(source: str) -> list[str]:
    """The code of a block without its comments and string contents (what translation changes)."""
    source = re.sub(r'"""[\s\S]*?"""', '""', source)
    source = re.sub(r'#.*', '', source)
    source = re.sub(r"'[^'\n]*'", "''", source)
    source = re.sub(r'"[^"\n]*"', '""', source)
    return [line.rstrip() for line in source.splitlines() if line.strip()]


def test_the_english_blocks_are_the_korean_originals_code() -> None:
    """The Korean original stands: the blocks run here are its code, translated only in
    comments and strings."""
    original = SPEC.with_name('step-orchestration.ko.md').read_text(encoding='utf-8')
    korean = re.findall(r'```python\n(.*?)```', original, re.S)
    assert len(korean) == len(BLOCKS)
    for english_block, korean_block in zip(BLOCKS, korean, strict=True):
        assert _code_only(english_block) == _code_only(korean_block)
        wrapped = 'def block():\n' + textwrap.indent(korean_block, '    ')  # some return
        compile(wrapped, 'step-orchestration.ko.md', 'exec', dont_inherit=True)
