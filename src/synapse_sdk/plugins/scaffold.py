"""``synapse plugin create``: a new plugin folder that runs and has a passing test."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

__all__ = ['CATEGORIES', 'create_plugin']

CATEGORIES = ('upload', 'train', 'export')

_BASES = {
    'upload': ('BaseUploadAction', 'upload', 'UploadContext'),
    'train': ('BaseTrainAction', 'train', 'TrainContext'),
    'export': ('BaseExportAction', 'export', 'ExportContext'),
}

_CONFIG = """\
name: {title}
code: {code}
version: 0.1.0
category: {category}
description: {a_category} plugin.
actions:
  {category}:
    entrypoint: plugin:{cls}
    description: Runs the {category} workflow.
"""

_PLUGIN = '''\
"""{title}: {a_category_lower} action made of steps."""

from pydantic import BaseModel, Field

from synapse_sdk.plugins import {base}
from synapse_sdk.plugins.actions.{module} import {context}
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult


class Params(BaseModel):
    items: int = Field(default=10, ge=0, description='How many items to process.')


class PrepareStep(BaseStep[{context}]):
    @property
    def name(self) -> str:
        return 'prepare'

    @property
    def progress_weight(self) -> float:
        return 0.2

    def execute(self, context: {context}) -> StepResult:
        count = context.params['items']
        context.log('prepared', {{'items': count}})
        return StepResult(data={{'items': count}})


class ProcessStep(BaseStep[{context}]):
    @property
    def name(self) -> str:
        return 'process'

    @property
    def progress_weight(self) -> float:
        return 0.8

    def execute(self, context: {context}) -> StepResult:
        count = context.params['items']
        for i in range(count):
            context.set_progress(i + 1, count, '{category}')
        return StepResult(data={{'processed': count}})


class {cls}({base}[Params]):
    def setup_steps(self, registry: StepRegistry[{context}]) -> None:
        registry.register(PrepareStep())
        registry.register(ProcessStep())
'''

# Named after the plugin (pytest imports test files by their base name, so two
# plugins' tests/test_plugin.py would collide), no __init__.py or conftest.py; the
# plugin is loaded by the loader, as `synapse plugin run` loads it, never by a bare
# `import plugin` that would find whichever plugin's module was imported first.
_TEST = """\
\"\"\"{title}'s tests: its action loaded from this folder, as `synapse plugin run` loads it.\"\"\"

from pathlib import Path

import pytest

from synapse_sdk.plugins.actions import ParamsValidationError
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.testing import RecordingRuntime, assert_progress_monotonic, assert_steps_ran

PLUGIN = Path(__file__).resolve().parents[1]


def load_action():
    return Plugin.load(PLUGIN).load_action('{category}')


def test_runs_every_step():
    runtime = RecordingRuntime()
    result = load_action().dispatch({{'items': 3}}, runtime)
    assert result['steps']['process'] == {{'processed': 3}}
    assert_steps_ran(runtime.memory, ['prepare', 'process'])
    assert_progress_monotonic(runtime.memory)


def test_refuses_a_negative_item_count():
    with pytest.raises(ParamsValidationError, match='items'):
        load_action().dispatch({{'items': -1}}, RecordingRuntime())
"""


def create_plugin(directory: Path, code: str, category: str) -> Path:
    """Write ``directory/code`` with config.yaml, plugin.py and tests/test_<code>.py."""
    if category not in CATEGORIES:
        raise ValueError(f'unknown category {category!r}; choose one of {", ".join(CATEGORIES)}')
    if not re.fullmatch(r'[a-z][a-z0-9_]*', code) or keyword.iskeyword(code):
        raise ValueError(
            f'plugin name {code!r} must be lower case letters, digits and _, starting with a letter'
        )
    folder = directory / code
    if folder.exists():
        raise FileExistsError(f'{folder} already exists; choose another name or --dir')
    base, module, context = _BASES[category]
    values = {
        'code': code,
        'title': code.replace('_', ' ').title(),
        'category': category,
        'a_category': f'{_article(category).title()} {category}',
        'a_category_lower': f'{_article(category)} {category}',
        'cls': ''.join(part.title() for part in code.split('_')) + 'Action',
        'base': base,
        'module': module,
        'context': context,
    }
    (folder / 'tests').mkdir(parents=True)
    (folder / 'config.yaml').write_text(_CONFIG.format(**values), encoding='utf-8')
    (folder / 'plugin.py').write_text(_PLUGIN.format(**values), encoding='utf-8')
    (folder / 'tests' / f'test_{code}.py').write_text(_TEST.format(**values), encoding='utf-8')
    return folder


def _article(word: str) -> str:
    return 'an' if word[:1] in 'aeiou' else 'a'
