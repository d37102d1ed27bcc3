"""``synapse plugin run`` and ``synapse plugin steps``, end to end in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.clients import LocalBackendClient

Cli = Callable[..., subprocess.CompletedProcess[str]]

FLAKY_CONFIG = """\
name: Flaky Upload
code: flaky_upload
version: 0.1.0
category: upload
actions:
  upload:
    entrypoint: flaky_plugin:FlakyUpload
  plain:
    entrypoint: flaky_plugin.PlainFailure
  conditional:
    entrypoint: flaky_plugin:Conditional
"""

FLAKY_PLUGIN = """\
from pathlib import Path

from pydantic import BaseModel

from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.actions.upload import UploadContext
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult


class Params(BaseModel):
    source_path: str


class StoreStep(BaseStep[UploadContext]):
    name = "store"
    progress_weight = 0.7

    def execute(self, context: UploadContext) -> StepResult:
        for path in sorted(Path(context.params["source_path"]).iterdir()):
            file_id = context.client.upload_file(path)
            context.append_rollback("ids", file_id)
            context.uploaded_files.append({"id": file_id})
        return StepResult(data={"stored": len(context.uploaded_files)})

    def rollback(self, context: UploadContext, result: StepResult) -> None:
        for file_id in result.rollback_data.get("ids", []):
            context.client.delete_file(file_id)


class VerifyStep(BaseStep[UploadContext]):
    name = "verify"
    progress_weight = 0.3

    def execute(self, context: UploadContext) -> StepResult:
        raise ConnectionError("checksum service unreachable")


class FlakyUpload(BaseUploadAction[Params]):
    def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
        registry.register(StoreStep())
        registry.register(VerifyStep())


class Conditional(BaseUploadAction[Params]):
    def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
        if self.params.source_path.endswith(".zip"):
            registry.register(VerifyStep())
        registry.register(StoreStep())


class PlainFailure(BaseUploadAction[Params]):
    def execute(self):
        raise ValueError("no route to storage")
"""


def write_plugin(folder: Path, config: str, modules: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / 'config.yaml').write_text(config, encoding='utf-8')
    for name, source in (modules or {}).items():
        (folder / name).write_text(source, encoding='utf-8')
    return folder


def only_log(home: Path) -> list[dict[str, Any]]:
    logs = sorted((home / 'logs').glob('*.jsonl'))
    assert len(logs) == 1, logs
    records = [json.loads(line) for line in logs[0].read_text(encoding='utf-8').splitlines()]
    assert {r['run_id'] for r in records} == {logs[0].stem}
    return records


def assert_failed(proc: subprocess.CompletedProcess[str], code: int) -> None:
    """Exit ``code``, nothing on stdout (nothing ran) and no traceback on stderr."""
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == ''
    assert 'Traceback' not in proc.stderr
    assert '╭' not in proc.stderr  # no rich traceback box either


def assert_run_failed(proc: subprocess.CompletedProcess[str], code: int) -> dict[str, Any]:
    """Exit ``code``, no traceback on stderr, and the run's result on stdout: returned."""
    assert proc.returncode == code, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert '╭' not in proc.stderr
    result = json.loads(proc.stdout)
    assert result['success'] is False and result['status'] in ('failed', 'cancelled')
    return dict(result)


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int, expected: str) -> None:
    """:func:`assert_failed`, with one ``error:`` line on stderr: ``expected``.

    An ``expected`` that ends in ``': '`` is the start of the line: the rest comes
    from a parser (JSON, YAML).
    """
    assert_failed(proc, code)
    lines = proc.stderr.strip('\n').splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('error: ')
    if expected.endswith(': '):
        assert lines[0].startswith(expected)
    else:
        assert lines[0] == expected


def no_action(action: str) -> str:
    """The error line for an action the example plugin does not have."""
    return f"error: plugin 'file_upload' has no action '{action}'; its actions: upload, upload_spec"


def invalid_params(problem: str, action: str = 'DurableFileUploadAction') -> str:
    """The error line for params that do not validate (field ``source_path``)."""
    return f'error: invalid params for {action}: source_path: {problem}'


def upload_sample_data(cli: Cli, example: Path) -> subprocess.CompletedProcess[str]:
    """``synapse plugin run upload`` of the example plugin, on its sample data."""
    params = json.dumps({'source_path': str(example / 'sample_data')})
    return cli('plugin', 'run', 'upload', '--path', example, '--params', params)


# -- a successful run ---------------------------------------------------------------


def test_run_example_upload(cli: Cli, home: Path, example: Path) -> None:
    proc = upload_sample_data(cli, example)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result['success'] is True
    assert result['steps_executed'] == 3
    assert result['steps_total'] == 3
    assert result['steps']['discover_files'] == {'file_count': 25}
    assert list(result['steps']) == ['discover_files', 'upload_files', 'finalize']
    assert 'ok upload_files' in proc.stderr
    assert 'error:' not in proc.stderr

    stored = LocalBackendClient(home / 'storage').list_files()
    assert len(stored) == 25
    expected = sorted(p.name for p in (example / 'sample_data').rglob('*') if p.is_file())
    assert sorted(info['name'] for info in stored) == expected

    records = only_log(home)
    assert records[-1]['type'] == 'run_end'
    assert records[-1]['success'] is True
    assert [r['step'] for r in records if r['type'] == 'step_end'] == [
        'discover_files',
        'upload_files',
        'finalize',
    ]
    overall = [r['percent'] for r in records if r.get('category') == 'overall']
    assert overall[-1] == 100
    events = {r['event']: r['data'] for r in records if r['type'] == 'event'}
    assert events['upload_complete']['file_count'] == 25


# -- a failing run ------------------------------------------------------------------


@pytest.fixture
def flaky(tmp_path: Path) -> Path:
    return write_plugin(tmp_path / 'flaky', FLAKY_CONFIG, {'flaky_plugin.py': FLAKY_PLUGIN})


def test_failed_step_rolls_back_and_exits_1(
    cli: Cli, home: Path, tmp_path: Path, flaky: Path
) -> None:
    storage = LocalBackendClient(home / 'storage')
    kept = tmp_path / 'kept.txt'
    kept.write_text('already stored')
    kept_id = storage.upload_file(kept)
    before = storage.list_files()
    blobs_before = sorted(p.name for p in (home / 'storage' / 'blobs').iterdir())

    source = tmp_path / 'source'
    source.mkdir()
    for i in range(4):
        (source / f'f{i}.txt').write_text(f'file {i}')
    params_file = tmp_path / 'params.json'
    params_file.write_text(json.dumps({'source_path': str(source)}))

    proc = cli('plugin', 'run', 'upload', '--path', flaky, '--params-file', params_file)
    result = assert_run_failed(proc, 1)
    assert (
        "error: Step 'verify' failed: ConnectionError: checksum service unreachable" in proc.stderr
    )
    assert 'Rolled back: store (newest first).' in proc.stderr
    assert 'rolling back store' in proc.stderr
    assert 'rolling back verify' not in proc.stderr  # verify has no rollback()
    assert result['failed_step'] == 'verify'
    assert result['rollback'] == {'status': 'rolled_back', 'rolled_back': ['store'], 'errors': []}

    # storage is as it was before the run: the four uploads were undone
    assert storage.list_files() == before
    assert [info['id'] for info in before] == [kept_id]
    assert sorted(p.name for p in (home / 'storage' / 'blobs').iterdir()) == blobs_before

    records = only_log(home)
    assert records[-1]['type'] == 'run_end'
    assert records[-1]['success'] is False
    assert records[-1]['failed_step'] == 'verify'
    assert records[-1]['rollback_errors'] == []
    assert [(r['step'], r['error']) for r in records if r['type'] == 'rollback'] == [
        ('verify', None),
        ('store', None),
    ]


def test_plain_action_that_raises_exits_1(cli: Cli, flaky: Path) -> None:
    proc = cli('plugin', 'run', 'plain', '--path', flaky, '--params', '{"source_path": "x"}')
    result = assert_run_failed(proc, 1)
    assert result['error'] == 'ValueError: no route to storage'
    assert result['failed_step'] is None and result['rollback'] is None
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: action 'plain' failed: ValueError: no route to storage"
    )


# -- bad input: exit 2, one line --------------------------------------------------------


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """Plugin folders that are wrong in one way each."""
    root = tmp_path / 'broken'
    head = 'name: x\ncode: x\nversion: 1\ncategory: upload\n'
    (root / 'no_config').mkdir(parents=True)
    write_plugin(root / 'bad_yaml', 'name: [\n  x: :\n')
    write_plugin(root / 'not_mapping', '- a\n- b\n')
    write_plugin(root / 'missing_fields', 'name: x\ncode: x\n')
    write_plugin(root / 'no_actions', head + 'actions: {}\n')
    write_plugin(
        root / 'bad_entrypoint', head + 'actions:\n  upload:\n    entrypoint: "not valid!"\n'
    )
    write_plugin(
        root / 'syntax',
        head + 'actions:\n  upload:\n    entrypoint: broken_module:Act\n',
        {'broken_module.py': 'def x(:\n'},
    )
    write_plugin(
        root / 'import_error',
        head + 'actions:\n  upload:\n    entrypoint: needs_missing:Act\n',
        {'needs_missing.py': 'import no_such_module_anywhere\n'},
    )
    write_plugin(
        root / 'no_class',
        head + 'actions:\n  upload:\n    entrypoint: some_module:Nope\n',
        {'some_module.py': 'X = 1\n'},
    )
    write_plugin(
        root / 'not_action',
        head + 'actions:\n  upload:\n    entrypoint: some_module.X\n',
        {'some_module.py': 'X = 1\n'},
    )
    (root / 'a[/b]').mkdir(parents=True)
    (root / 'params_dir').mkdir()
    return root.resolve()


def upload(*args: str, plugin: str = '{example}') -> list[str]:
    """``plugin run`` arguments: the action ``upload`` of ``plugin``, then ``args``."""
    return ['upload', '--path', plugin, *args]


def broken_plugin(folder: str) -> list[str]:
    """``plugin run`` arguments: the action ``upload`` of the plugin ``folder`` in ``broken``."""
    return upload(plugin='{broken}/' + folder)


BAD_INPUT = [
    pytest.param(['nope', '--path', '{example}'], no_action('nope'), id='unknown-action'),
    pytest.param(
        ['[/x]', '--path', '{example}'], no_action('[/x]'), id='unknown-action-with-markup'
    ),
    pytest.param(
        upload('--params', '{bad'),
        'error: params are not valid JSON: Expecting property name enclosed in double quotes: '
        'line 1 column 2 (char 1)',
        id='bad-json',
    ),
    pytest.param(
        upload('--params', '[1, 2]'),
        'error: params must be a JSON object, got list',
        id='params-not-object',
    ),
    pytest.param(
        upload('--params', '"text"'),
        'error: params must be a JSON object, got str',
        id='params-string',
    ),
    pytest.param(upload(), invalid_params('Field required'), id='params-missing-field'),
    pytest.param(
        upload('--params', '{"source_path": 5}'),
        invalid_params('Input should be a valid string (got 5)'),
        id='params-wrong-type',
    ),
    pytest.param(
        broken_plugin('no_config'),
        'error: no config.yaml in {broken}/no_config: pass the plugin folder with --path',
        id='missing-config',
    ),
    pytest.param(
        broken_plugin('a[/b]'),
        'error: no config.yaml in {broken}/a[/b]: pass the plugin folder with --path',
        id='missing-config-path-with-markup',
    ),
    pytest.param(
        broken_plugin('bad_yaml'),
        'error: {broken}/bad_yaml/config.yaml is not valid YAML: ',
        id='bad-yaml',
    ),
    pytest.param(
        broken_plugin('not_mapping'),
        'error: {broken}/not_mapping/config.yaml must hold a mapping, got list',
        id='config-not-mapping',
    ),
    pytest.param(
        broken_plugin('missing_fields'),
        'error: {broken}/missing_fields/config.yaml is invalid: version: Field required; '
        'category: Field required; actions: Field required',
        id='config-missing-fields',
    ),
    pytest.param(
        broken_plugin('no_actions'),
        'error: {broken}/no_actions/config.yaml is invalid: actions: Dictionary should have at '
        'least 1 item after validation, not 0',
        id='config-no-actions',
    ),
    pytest.param(
        broken_plugin('bad_entrypoint'),
        'error: {broken}/bad_entrypoint/config.yaml is invalid: actions.upload.entrypoint: '
        "Value error, expected 'module:Class' or 'module.Class', got 'not valid!'",
        id='bad-entrypoint-format',
    ),
    pytest.param(
        broken_plugin('syntax'),
        "error: cannot import 'broken_module' from {broken}/syntax: SyntaxError: invalid syntax "
        '(broken_module.py, line 1)',
        id='entrypoint-syntax-error',
    ),
    pytest.param(
        broken_plugin('import_error'),
        "error: cannot import 'needs_missing' from {broken}/import_error: "
        "ModuleNotFoundError: No module named 'no_such_module_anywhere' (needs_missing.py, line 1)",
        id='entrypoint-import-error',
    ),
    pytest.param(
        broken_plugin('no_class'),
        "error: entrypoint of 'upload': some_module has no Nope",
        id='entrypoint-class-missing',
    ),
    pytest.param(
        broken_plugin('not_action'),
        "error: entrypoint of 'upload': some_module.X is not a BaseAction subclass",
        id='entrypoint-not-an-action',
    ),
    pytest.param(
        upload('--params', '{}', '--params-file', '{broken}/p.json'),
        'error: give --params or --params-file, not both',
        id='params-and-params-file',
    ),
    pytest.param(
        upload('--params-file', '{broken}/missing.json'),
        'error: cannot read --params-file {broken}/missing.json: No such file or directory',
        id='params-file-missing',
    ),
    pytest.param(
        upload('--params-file', '{broken}/params_dir'),
        'error: cannot read --params-file {broken}/params_dir: Is a directory',
        id='params-file-is-a-directory',
    ),
]


@pytest.mark.parametrize(('args', 'expected'), BAD_INPUT)
def test_bad_input_exits_2_with_one_line(
    cli: Cli, home: Path, example: Path, broken: Path, args: list[str], expected: str
) -> None:
    def fill(text: str) -> str:
        return text.replace('{example}', str(example)).replace('{broken}', str(broken))

    proc = cli('plugin', 'run', *map(fill, args))
    assert_clean_error(proc, 2, fill(expected))
    assert not home.exists()  # nothing ran: no storage, no log, no journal


LATIN1_CONFIG = (
    'name: Caf\xe9\ncode: cafe\nversion: 0.1.0\ncategory: upload\n'
    'actions:\n  upload:\n    entrypoint: flaky_plugin:FlakyUpload\n'
).encode('latin-1')


def test_cli_config_yaml_that_is_not_utf8_is_one_line_exit_2(
    cli: Cli, home: Path, tmp_path: Path
) -> None:
    """A config.yaml saved as Latin-1 (an accented plugin name) is an invalid config."""
    folder = write_plugin(tmp_path / 'latin1', '', {'flaky_plugin.py': FLAKY_PLUGIN})
    (folder / 'config.yaml').write_bytes(LATIN1_CONFIG)
    proc = cli('plugin', 'run', 'upload', '--path', folder)
    expected = (
        f'error: {folder}/config.yaml is not UTF-8 text (byte 0xe9 at offset 9): save it as UTF-8'
    )
    assert_clean_error(proc, 2, expected)
    assert not home.exists()


def test_cli_params_file_that_is_not_utf8_is_one_line_exit_2(
    cli: Cli, home: Path, example: Path, tmp_path: Path
) -> None:
    params = tmp_path / 'params.json'
    params.write_bytes('{"source_path": "caf\xe9"}'.encode('latin-1'))
    proc = cli('plugin', 'run', 'upload', '--path', example, '--params-file', params)
    expected = (
        f'error: --params-file {params} is not UTF-8 text (byte 0xe9 at offset 20): '
        'save it as UTF-8'
    )
    assert_clean_error(proc, 2, expected)
    assert not home.exists()


@pytest.mark.parametrize(
    ('name', 'text', 'problem'),
    [
        pytest.param(
            'params.yaml',
            'source_path: data\n',
            'is not valid JSON (Expecting value: line 1 column 1 (char 0))',
            id='yaml',
        ),
        pytest.param('params.json', '["data"]', 'holds a list, not a JSON object', id='list'),
    ],
)
def test_cli_params_file_that_is_not_a_json_object_names_the_file(
    cli: Cli, home: Path, example: Path, tmp_path: Path, name: str, text: str, problem: str
) -> None:
    params = tmp_path / name
    params.write_text(text, encoding='utf-8')
    proc = cli('plugin', 'run', 'upload', '--path', example, '--params-file', params)
    expected = (
        f'error: --params-file {params} {problem}: write the params as one JSON object, '
        'e.g. {"name": "value"}'
    )
    assert_clean_error(proc, 2, expected)
    assert not home.exists()


def test_debug_shows_the_traceback(cli: Cli, example: Path) -> None:
    proc = cli('plugin', 'run', 'nope', '--path', example, '--debug')
    assert proc.returncode == 2
    assert 'Traceback (most recent call last)' in proc.stderr
    assert 'PluginError' in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == no_action('nope')


def test_debug_shows_the_traceback_of_a_failed_step(cli: Cli, flaky: Path) -> None:
    proc = cli(
        'plugin', 'run', 'upload', '--path', flaky, '--params', '{"source_path": "."}', '--debug'
    )
    assert proc.returncode == 1
    assert 'Traceback (most recent call last)' in proc.stderr
    assert 'ConnectionError: checksum service unreachable' in proc.stderr
    assert "error: Step 'verify' failed" in proc.stderr


# -- steps --------------------------------------------------------------------------


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        cells = re.findall(r'[\w.%]+', line)
        if cells and cells[0].isdigit():
            rows.append(cells)
    return rows


def test_steps_prints_the_steps(cli: Cli, example: Path) -> None:
    proc = cli('plugin', 'steps', 'upload', '--path', example)
    assert proc.returncode == 0, proc.stderr
    assert table_rows(proc.stdout) == [  # no params given: can_skip() not asked
        ['1', 'discover_files', '0.1', '10.0%', 'no'],
        ['2', 'upload_files', '0.8', '80.0%', 'yes'],
        ['3', 'finalize', '0.1', '10.0%', 'no'],
    ]
    assert 'skip: not evaluated: the params do not validate (give --params)' in proc.stdout
    assert proc.stderr == ''


def test_steps_of_a_plain_action(cli: Cli, flaky: Path) -> None:
    proc = cli('plugin', 'steps', 'plain', '--path', flaky)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'plain registers no steps: it runs in plain execute() mode'


@pytest.mark.parametrize(
    ('args', 'expected'),
    [
        pytest.param(['nope'], no_action('nope'), id='unknown-action'),
        pytest.param(
            ['upload', '--params', '{x'], 'error: params are not valid JSON: ', id='bad-json'
        ),
        pytest.param(
            ['upload', '--params', '{"source_path": 1}'],
            invalid_params('Input should be a valid string (got 1)'),
            id='params-wrong-type',
        ),
    ],
)
def test_steps_bad_input_exits_2(cli: Cli, example: Path, args: list[str], expected: str) -> None:
    proc = cli('plugin', 'steps', *args, '--path', example)
    assert_clean_error(proc, 2, expected)


DUPLICATE_STEPS_PLUGIN = """\
from pydantic import BaseModel

from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.testing import FunctionStep


class Params(BaseModel):
    n: int = 1


class Act(BaseUploadAction[Params]):
    def setup_steps(self, registry):
        registry.register(FunctionStep('upload'))
        registry.register(FunctionStep('upload'))
"""


def test_cli_steps_of_an_action_with_a_broken_step_definition_is_one_line(
    cli: Cli, tmp_path: Path
) -> None:
    """Two steps of one name: ``steps`` says so on one line, as ``run`` does (no traceback)."""
    folder = write_plugin(
        tmp_path / 'duplicate',
        'name: x\ncode: x\nversion: 0.1.0\ncategory: upload\n'
        'actions:\n  run:\n    entrypoint: plugin:Act\n',
        {'plugin.py': DUPLICATE_STEPS_PLUGIN},
    )
    problem = "ValueError: a step named 'upload' is already registered; step names must be unique"
    ran = cli('plugin', 'run', 'run', '--path', folder, '--no-journal')
    assert assert_run_failed(ran, 1)['error'] == problem  # its setup code ran, and raised
    assert ran.stderr.strip('\n').splitlines() == [f"error: action 'run' failed: {problem}"]
    proc = cli('plugin', 'steps', 'run', '--path', folder)
    assert_clean_error(
        proc, 2, f"error: cannot build the steps of 'run': {problem} (plugin.py, line 14)"
    )


def test_run_with_markup_in_synapse_home(
    cli: Cli, cli_env: dict[str, str], tmp_path: Path, example: Path
) -> None:
    """Paths are printed as text: a home folder named like a rich tag must not crash the run."""
    home = tmp_path / 'home[/x]'
    cli_env['SYNAPSE_HOME'] = str(home)
    proc = upload_sample_data(cli, example)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)['success'] is True
    assert str(home) in proc.stderr
    assert len(LocalBackendClient(home / 'storage').list_files()) == 25


def test_steps_needing_params_without_params_is_bad_input(cli: Cli, flaky: Path) -> None:
    with_params = cli(
        'plugin', 'steps', 'conditional', '--path', flaky, '--params', '{"source_path": "a.zip"}'
    )
    assert with_params.returncode == 0, with_params.stderr
    assert [row[1] for row in table_rows(with_params.stdout)] == ['verify', 'store']
    proc = cli('plugin', 'steps', 'conditional', '--path', flaky)
    assert_clean_error(proc, 2, invalid_params('Field required', action='Conditional'))


def test_config_missing_keys_and_a_string_action_are_all_named(
    cli: Cli, tmp_path: Path, home: Path
) -> None:
    folder = tmp_path / 'plug'
    folder.mkdir()
    (folder / 'config.yaml').write_text(
        'name: x\ncategory: upload\nactions:\n  run: plugin:Act\n', encoding='utf-8'
    )
    proc = cli('plugin', 'run', 'run', '--path', folder)
    assert_failed(proc, 2)
    [line] = proc.stderr.strip('\n').splitlines()
    assert 'code: Field required' in line
    assert 'version: Field required' in line
    assert 'actions.run: Input should be a valid dictionary' in line
    assert not home.exists()  # nothing made before the plugin was understood
