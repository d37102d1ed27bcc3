"""What ``synapse plugin run`` prints: its result on stdout however the run ends (one shape),
and on stderr one line per event with its level, or JSON lines (``--log-format json``)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.execution import run_action
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.steps import StepExecutionError
from synapse_sdk.runtime import RuntimeContext

Cli = Callable[..., subprocess.CompletedProcess[str]]

KEYS = [
    'success',
    'status',
    'run_id',
    'error',
    'failed_step',
    'steps_total',
    'steps_executed',
    'steps_skipped',
    'steps_reused',
    'executed',
    'skipped',
    'reused',
    'rollback',
    'steps',
    'output',
]

CONFIG = """\
name: Export
code: export_shards
version: 0.1.0
category: export
actions:
  export:
    entrypoint: shards:Export
  plain:
    entrypoint: shards:Plain
"""

PLUGIN = """\
from pathlib import Path

from pydantic import BaseModel

from synapse_sdk.plugins import BaseExportAction
from synapse_sdk.plugins.actions.export import ExportContext
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult


class Params(BaseModel):
    output_dir: str
    fail_at: str = ""
    shards: int = 3


class Step(BaseStep[ExportContext]):
    progress_weight = 1.0

    def execute(self, context: ExportContext) -> StepResult:
        if context.params["fail_at"] == self.name:
            raise ConnectionError(f"{self.name}: upload service unreachable")
        return self.work(context)


class Discover(Step):
    name = "discover"

    def work(self, context):
        return StepResult(data={"files": 200})


class Compress(Step):
    name = "compress"

    def can_skip(self, context):
        return "the annotations are small"

    def work(self, context):
        return StepResult()


class WriteShards(Step):
    name = "write_shards"

    def work(self, context):
        context.log("quota_low", {"left_mb": 12}, level="warning")
        out = Path(context.params["output_dir"])
        out.mkdir(exist_ok=True)
        for i in range(context.params["shards"]):
            context.append_rollback("paths", str(out / f"{i}.jsonl"))
            (out / f"{i}.jsonl").write_text("{}\\n")
            context.set_progress(i + 1, context.params["shards"])
        return StepResult(data={"shards": context.params["shards"]})

    def rollback(self, context, result):
        for path in result.rollback_data.get("paths", []):
            Path(path).unlink(missing_ok=True)


class Upload(Step):
    name = "upload"

    def work(self, context):
        return StepResult(data={"uploaded": 3})


class Export(BaseExportAction[Params]):
    def setup_steps(self, registry: StepRegistry[ExportContext]) -> None:
        for step in (Discover(), Compress(), WriteShards(), Upload()):
            registry.register(step)


class Plain(BaseExportAction[Params]):
    def execute(self):
        return {"rows": 7}
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    folder = tmp_path / 'export_shards'
    folder.mkdir()
    (folder / 'config.yaml').write_text(CONFIG, encoding='utf-8')
    (folder / 'shards.py').write_text(PLUGIN, encoding='utf-8')
    return folder


def export(cli: Cli, plugin: Path, *args: str, **params: Any) -> subprocess.CompletedProcess[str]:
    values = json.dumps({'output_dir': 'out', **params})
    return cli('plugin', 'run', 'export', '--path', plugin, '--params', values, *args)


# -- the result on stdout -----------------------------------------------------------------


def test_a_failed_run_prints_its_result(cli: Cli, plugin: Path, home: Path, tmp_path: Path) -> None:
    """Exit 1 as before, and the result says where, why, and what the rollback undid."""
    proc = export(cli, plugin, fail_at='upload')
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert list(result) == KEYS
    run_id = result['run_id']
    assert result == {
        'success': False,
        'status': 'failed',
        'run_id': run_id,
        'error': 'ConnectionError: upload: upload service unreachable',
        'failed_step': 'upload',
        'steps_total': 4,
        'steps_executed': 2,
        'steps_skipped': 1,
        'steps_reused': 0,
        'executed': ['discover', 'write_shards'],
        'skipped': {'compress': 'the annotations are small'},
        'reused': [],
        'rollback': {'status': 'rolled_back', 'rolled_back': ['write_shards'], 'errors': []},
        'steps': {},
        'output': None,
    }
    assert Journal(home / 'runs.db').get_run(run_id).status == 'rolled_back'
    assert (home / 'logs' / f'{run_id}.jsonl').exists()
    assert list((tmp_path / 'cwd' / 'out').iterdir()) == []  # the shards were removed
    assert proc.stderr.splitlines()[-3:] == [
        "error: Step 'upload' failed: ConnectionError: upload: upload service unreachable",
        '  Rolled back: write_shards (newest first).',
        f'  Details: synapse runs show {run_id}',
    ]


def test_a_first_step_failure_says_nothing_was_undone(cli: Cli, plugin: Path) -> None:
    proc = export(cli, plugin, '--no-journal', fail_at='discover')
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result['failed_step'] == 'discover' and result['executed'] == []
    assert result['rollback'] == {'status': 'rolled_back', 'rolled_back': [], 'errors': []}
    assert 'the finished steps were undone' not in proc.stderr
    assert 'Nothing to roll back: no step that ran has a rollback().' in proc.stderr
    assert 'rolling back' not in proc.stderr
    assert 'run failed at discover; nothing to roll back' in proc.stderr


def test_success_and_failure_print_the_same_keys(cli: Cli, plugin: Path) -> None:
    done = export(cli, plugin)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result) == KEYS
    assert result['success'] is True and result['status'] == 'succeeded'
    assert result['executed'] == ['discover', 'write_shards', 'upload']
    assert result['steps'] == {
        'discover': {'files': 200},
        'write_shards': {'shards': 3},
        'upload': {'uploaded': 3},
    }
    assert result['rollback'] is None and result['failed_step'] is None


def test_a_plain_action_prints_its_dict_as_output(cli: Cli, plugin: Path) -> None:
    proc = cli('plugin', 'run', 'plain', '--path', plugin, '--params', '{"output_dir": "o"}')
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert list(result) == KEYS
    assert result['output'] == {'rows': 7} and result['steps_total'] == 0


def test_run_action_returns_the_run_id_the_journal_knows(tmp_path: Path, plugin: Path) -> None:
    from synapse_sdk.plugins.loader import Plugin

    action = Plugin.load(plugin).load_action('export')
    journal = Journal(tmp_path / 'runs.db')
    out = str(tmp_path / 'out')
    with RuntimeContext(logger=[]) as ctx:
        result = run_action(action, {'output_dir': out}, ctx, journal=journal)
    assert result['run_id'] == ctx.run_id
    assert journal.get_run(result['run_id']).status == 'succeeded'
    with RuntimeContext(logger=[]) as ctx, pytest.raises(StepExecutionError):
        run_action(action, {'output_dir': out, 'fail_at': 'upload'}, ctx, journal=journal)


# -- stderr: one line per event, with its level; or JSON lines ------------------------------

LEVELLED = re.compile(r'^(DEBUG  |INFO   |WARNING|ERROR  ) \S')


def test_a_redirected_run_writes_one_line_per_event_each_with_its_level(
    cli: Cli, plugin: Path
) -> None:
    """stderr is a pipe here (as in CI or ``2> run.log``): no bars, no wrapping at 80
    columns, and every line but the command's final ``error:`` verdict has its level."""
    proc = export(cli, plugin, fail_at='upload')
    events = proc.stderr.splitlines()[:-3]
    assert events and all(LEVELLED.match(line) for line in events), proc.stderr
    assert "WARNING quota_low {'left_mb': 12}" in events
    assert 'INFO    skipped compress (the annotations are small)' in events
    assert events[-1] == 'ERROR   run failed at upload; rolled back: write_shards'


def test_the_example_upload_shows_one_line_per_step_event(cli: Cli, example: Path) -> None:
    """What `make demo` runs: its steps are wrapped in LoggingStep, whose own step_start and
    step_end events are debug detail (in the log file), not a second line per step."""
    params = json.dumps({'source_path': str(example / 'sample_data')})
    proc = cli('plugin', 'run', 'upload', '--path', example, '--params', params)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert not [line for line in lines if 'step_start' in line or 'step_end' in line]
    assert [line for line in lines if line.startswith('INFO    > ')] == [
        'INFO    > discover_files',
        'INFO    > upload_files',
        'INFO    > finalize',
    ]
    with_debug = cli('plugin', 'run', 'upload', '--path', example, '--params', params, '--debug')
    assert with_debug.returncode == 0, with_debug.stderr
    assert "DEBUG   step_start {'step': 'upload_files'}" in with_debug.stderr.splitlines()


def test_log_format_json_writes_json_lines_on_stderr(cli: Cli, plugin: Path) -> None:
    proc = export(cli, plugin, '--log-format', 'json', fail_at='upload')
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    records = [json.loads(line) for line in proc.stderr.splitlines()]  # every line is JSON
    assert {r['run_id'] for r in records} == {result['run_id']}
    assert records[0]['type'] == 'event' and records[0]['event'] == 'run'
    kinds = [r['type'] for r in records]
    assert kinds.count('step_start') == 3 and 'step_skip' in kinds and 'rollback' in kinds
    [skip] = [r for r in records if r['type'] == 'step_skip']
    assert skip['reason'] == 'the annotations are small'
    [warning] = [r for r in records if r.get('event') == 'quota_low']
    assert warning['level'] == 'warning'
    assert records[-2]['type'] == 'run_end' and records[-2]['failed_step'] == 'upload'
    last = records[-1]
    assert (last['event'], last['level'], last['data']['exit_code']) == ('error', 'error', 1)
    assert last['data']['message'].startswith("Step 'upload' failed: ConnectionError: ")


def test_log_format_plain_and_a_bad_log_format(cli: Cli, plugin: Path) -> None:
    plain = export(cli, plugin, '--log-format', 'plain')
    assert plain.returncode == 0, plain.stderr
    assert all(LEVELLED.match(line) for line in plain.stderr.splitlines()), plain.stderr
    bad = export(cli, plugin, '--log-format', 'xml')
    assert bad.returncode == 2 and bad.stdout == ''
    assert bad.stderr.strip().splitlines() == [
        "error: --log-format must be one of 'auto', 'plain', 'json', got 'xml'"
    ]


def test_a_resume_that_fails_again_prints_its_result(cli: Cli, plugin: Path, home: Path) -> None:
    first = export(cli, plugin, fail_at='upload')
    run_id = json.loads(first.stdout)['run_id']
    again = cli('runs', 'resume', run_id)
    assert again.returncode == 1, again.stderr
    result = json.loads(again.stdout)
    assert list(result) == KEYS
    assert (result['run_id'], result['status'], result['failed_step']) == (
        run_id,
        'failed',
        'upload',
    )
    assert result['rollback'] == {
        'status': 'rolled_back',
        'rolled_back': ['write_shards'],
        'errors': [],
    }
    assert Journal(home / 'runs.db').get_run(run_id).status == 'rolled_back'
