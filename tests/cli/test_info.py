"""``synapse plugin info`` (an action's params and steps) and ``synapse plugin steps``
(which steps the params skip, with each step's retry, timeout and rollback), run nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import Cli

CONFIG = """\
name: Inspect Me
code: inspect_me
version: 1.2.0
category: export
actions:
  export:
    entrypoint: plugin:Export
    description: Export what was stored.
  plain:
    entrypoint: plugin:Plain
  broken_context:
    entrypoint: plugin:BrokenContext
  no_model:
    entrypoint: plugin:NoModel
"""

PLUGIN = """\
import asyncio
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from synapse_sdk.plugins import BaseExportAction
from synapse_sdk.plugins.actions.export import ExportContext
from synapse_sdk.plugins.pipelines.steps import (
    BaseStep, LoggingStep, RetryPolicy, StepRegistry, StepResult,
)

MARK = Path(__file__).parent / 'executed'


class Window(BaseModel):
    days: int = 7


class Params(BaseModel):
    output_dir: str = Field(min_length=1, description='Folder that receives the export.')
    format: Literal['jsonl', 'csv'] = Field('jsonl', description='Manifest format.')
    include_files: bool = True
    tags: list[str] = Field(default_factory=list)
    window: Window | None = None
    dry: bool = Field(False, alias='dry-run')


class Fetch(BaseStep[ExportContext[Params]]):
    name = 'fetch'
    progress_weight = 1.0
    retry = RetryPolicy(max_attempts=3, initial_delay=0.5, retry_on=(ConnectionError,))
    timeout = 30.0

    def execute(self, context):
        MARK.write_text('fetch')
        return StepResult()


class Copy(BaseStep[ExportContext[Params]]):
    name = 'copy'
    progress_weight = 3.0

    def can_skip(self, context):
        return not context.params_model.include_files

    def execute(self, context):
        MARK.write_text('copy')
        return StepResult()

    def rollback(self, context, result):
        MARK.write_text('rollback')


class Tagged(BaseStep[ExportContext[Params]]):
    name = 'tagged'
    progress_weight = 0.0

    def can_skip(self, context):
        return context.params['tags'][0] == 'skip'  # IndexError without tags

    def execute(self, context):
        MARK.write_text('tagged')
        return StepResult()


class Later(BaseStep[ExportContext[Params]]):
    name = 'later'
    progress_weight = 1.0

    async def can_skip(self, context):
        await asyncio.sleep(0)
        return context.params_model.format == 'csv'

    async def execute(self, context):
        MARK.write_text('later')
        return StepResult()


class Export(BaseExportAction[Params]):
    def setup_steps(self, registry: StepRegistry) -> None:
        registry.register(Fetch())
        registry.register(LoggingStep(Copy()))
        registry.register(Tagged())
        registry.register(Later())


class BrokenContext(Export):
    def create_context(self):
        raise LookupError('no such catalogue')


class Plain(BaseExportAction[Params]):
    def execute(self):
        MARK.write_text('plain')
        return {}


class NoModel(BaseExportAction):
    def execute(self):
        return {}
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    folder = tmp_path / 'inspect_me'
    folder.mkdir()
    (folder / 'config.yaml').write_text(CONFIG, encoding='utf-8')
    (folder / 'plugin.py').write_text(PLUGIN, encoding='utf-8')
    return folder


def rows(text: str) -> dict[str, list[str]]:
    """The table's rows by their second cell (step or param name), cells split on the bars."""
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split('[│┃]', line)[1:-1]]
        if len(cells) > 2 and cells[1] and cells[0] not in ('#', 'param'):
            found[cells[1] if cells[0].isdigit() else cells[0]] = cells
    return found


def assert_nothing_ran(plugin: Path, home: Path) -> None:
    assert not (plugin / 'executed').exists()
    assert not (home / 'runs.db').exists()  # nothing journaled
    assert not (home / 'logs').exists()


def test_info_shows_the_params_schema_and_the_steps(cli: Cli, plugin: Path, home: Path) -> None:
    done = cli('plugin', 'info', 'export', '--path', plugin)

    assert done.returncode == 0, done.stderr
    assert 'plugin      inspect_me' in done.stdout
    assert 'description Export what was stored.' in done.stdout
    table = rows(done.stdout)
    assert table['output_dir'] == [
        'output_dir',
        'str',
        'required',
        'Folder that receives the export.',
    ]
    assert table['format'] == ['format', "Literal['jsonl', 'csv']", '"jsonl"', 'Manifest format.']
    assert table['include_files'][1:3] == ['bool', 'true']
    assert table['tags'][1:3] == ['list[str]', 'list()']
    assert table['window'][1:3] == ['Window | None', 'null']
    assert table['dry-run'][1:3] == ['bool', 'false']  # the key --params takes: the alias
    assert [table[s][:4] for s in ('fetch', 'copy', 'tagged', 'later')] == [
        ['1', 'fetch', '1', '20.0%'],
        ['2', 'copy', '3', '60.0%'],
        ['3', 'tagged', '0', '0.0%'],
        ['4', 'later', '1', '20.0%'],
    ]
    assert 'skip: not evaluated: the params do not validate (give --params)' in done.stdout
    assert_nothing_ran(plugin, home)


def test_info_json(cli: Cli, plugin: Path, home: Path) -> None:
    done = cli('plugin', 'info', 'export', '--path', plugin, '--json')

    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert {k: info[k] for k in ('action', 'plugin', 'version', 'category', 'entrypoint')} == {
        'action': 'export',
        'plugin': 'inspect_me',
        'version': '1.2.0',
        'category': 'export',
        'entrypoint': 'plugin:Export',
    }
    params = {p['name']: p for p in info['params']}
    assert list(params) == ['output_dir', 'format', 'include_files', 'tags', 'window', 'dry-run']
    assert params['output_dir'] == {
        'name': 'output_dir',
        'type': 'str',
        'required': True,
        'default': None,
        'default_factory': None,
        'description': 'Folder that receives the export.',
    }
    assert params['format']['default'] == 'jsonl' and params['format']['required'] is False
    assert (params['tags']['default'], params['tags']['default_factory']) == (None, 'list')
    assert info['params_schema']['properties']['output_dir']['minLength'] == 1
    assert [s['name'] for s in info['steps']] == ['fetch', 'copy', 'tagged', 'later']
    assert_nothing_ran(plugin, home)


def test_steps_with_params_says_which_steps_are_skipped_without_running_any(
    cli: Cli, plugin: Path, home: Path
) -> None:
    params = json.dumps({'output_dir': 'out', 'include_files': False, 'format': 'csv'})

    done = cli('plugin', 'steps', 'export', '--path', plugin, '--params', params)

    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    assert table['fetch'][4:] == ['3 attempts, 0.5s x2 on ConnectionError', '30s', 'no', 'runs']
    assert table['copy'][4:] == ['-', '-', 'yes', 'skipped']  # through its LoggingStep
    assert table['tagged'][4:7] == ['-', '-', 'no']
    assert table['tagged'][7].startswith('unknown (raises IndexError: list index out of')
    assert table['later'][4:] == ['-', '-', 'no', 'skipped']  # an async can_skip, awaited
    assert 'not evaluated' not in done.stdout
    assert_nothing_ran(plugin, home)


def test_steps_json_and_a_can_skip_that_raises(cli: Cli, plugin: Path, home: Path) -> None:
    params = json.dumps({'output_dir': 'out', 'tags': ['skip']})

    done = cli('plugin', 'steps', 'export', '--path', plugin, '--params', params, '--json')

    assert done.returncode == 0, done.stderr
    steps = {s['name']: s for s in json.loads(done.stdout)}
    assert [(s['skip'], s['skip_note']) for s in steps.values()] == [
        (False, 'runs'),
        (False, 'runs'),
        (True, 'skipped'),
        (False, 'runs'),
    ]
    assert steps['fetch']['retry'] == {
        'max_attempts': 3,
        'initial_delay': 0.5,
        'backoff': 2.0,
        'max_delay': 60.0,
        'jitter': 0.1,
        'retry_on': ['ConnectionError'],
        'predicate': False,
    }
    assert (steps['fetch']['timeout'], steps['copy']['timeout']) == (30.0, None)
    assert [s['can_rollback'] for s in steps.values()] == [False, True, False, False]
    assert {s['resumable'] for s in steps.values()} == {True}
    assert_nothing_ran(plugin, home)


def test_a_create_context_that_raises_leaves_every_skip_unknown(
    cli: Cli, plugin: Path, home: Path
) -> None:
    params = json.dumps({'output_dir': 'out'})

    done = cli('plugin', 'steps', 'broken_context', '--path', plugin, '--params', params, '--json')

    assert done.returncode == 0, done.stderr
    notes = {s['skip_note'] for s in json.loads(done.stdout)}
    assert notes == {'unknown (create_context() raises LookupError: no such catalogue)'}
    assert_nothing_ran(plugin, home)


def test_info_of_a_plain_action_and_bad_params(cli: Cli, plugin: Path, home: Path) -> None:
    plain = cli('plugin', 'info', 'plain', '--path', plugin)
    assert plain.returncode == 0, plain.stderr
    assert 'steps       none: it runs in plain execute() mode' in plain.stdout
    assert 'output_dir' in plain.stdout

    for command in ('info', 'steps'):
        no_model = cli('plugin', command, 'no_model', '--path', plugin)
        assert no_model.returncode == 2 and no_model.stdout == '', no_model.stderr
        [line] = no_model.stderr.strip().splitlines()
        assert line.startswith('error: NoModel has no params model: declare it')

    bad = cli('plugin', 'info', 'export', '--path', plugin, '--params', '{"output_dir": ""}')
    assert bad.returncode == 2 and bad.stdout == ''
    [line] = bad.stderr.strip().splitlines()
    assert line.startswith('error: invalid params for Export: output_dir: String should have')
    assert_nothing_ran(plugin, home)


@pytest.mark.parametrize('command', ['info', 'steps'])
def test_params_file_is_taken_too(
    cli: Cli, plugin: Path, tmp_path: Path, command: str, home: Path
) -> None:
    params = tmp_path / 'params.json'
    params.write_text(json.dumps({'output_dir': 'o', 'format': 'csv'}), encoding='utf-8')
    done = cli('plugin', command, 'export', '--path', plugin, '--params-file', params, '--json')
    assert done.returncode == 0, done.stderr
    out: Any = json.loads(done.stdout)
    steps = out['steps'] if command == 'info' else out
    assert [s['skip'] for s in steps] == [False, False, None, True]
    assert_nothing_ran(plugin, home)
