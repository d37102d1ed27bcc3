"""``synapse plugin create``: the scaffold runs through the CLI and its own tests pass."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.parametrize(
    ('name', 'category', 'cls', 'described'),
    [
        ('my_upload', 'upload', 'MyUploadAction', 'An upload plugin.'),
        ('fit_model2', 'train', 'FitModel2Action', 'A train plugin.'),
        ('exporter', 'export', 'ExporterAction', 'An export plugin.'),
    ],
)
def test_created_plugin_runs_and_its_tests_pass(
    cli: Cli,
    cli_env: dict[str, str],
    tmp_path: Path,
    name: str,
    category: str,
    cls: str,
    described: str,
) -> None:
    where = tmp_path / 'plugins'
    proc = cli('plugin', 'create', name, '--category', category, '--dir', where)
    assert proc.returncode == 0, proc.stderr
    folder = where / name
    assert proc.stdout.strip() == f'created {folder}'
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob('*')) == [
        'config.yaml',
        'plugin.py',
        'tests',
        f'tests/test_{name}.py',
    ]
    config = (folder / 'config.yaml').read_text()
    assert f'code: {name}\n' in config
    assert f'category: {category}\n' in config
    assert f'entrypoint: plugin:{cls}\n' in config
    assert f'description: {described}\n' in config

    run = cli('plugin', 'run', category, '--path', folder, '--params', '{"items": 4}')
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result['success'] is True
    assert result['steps_executed'] == 2
    assert result['steps'] == {'prepare': {'items': 4}, 'process': {'processed': 4}}

    steps = cli('plugin', 'steps', category, '--path', folder)
    assert steps.returncode == 0, steps.stderr
    assert 'prepare' in steps.stdout and '20.0%' in steps.stdout
    assert 'process' in steps.stdout and '80.0%' in steps.stdout

    tests = subprocess.run(
        [
            sys.executable,
            '-m',
            'pytest',
            '-q',
            '-p',
            'no:cacheprovider',
            '--rootdir',
            str(folder),
            str(folder / 'tests'),
        ],
        capture_output=True,
        text=True,
        cwd=folder,
        env=cli_env,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert '2 passed' in tests.stdout


def test_created_plugin_rejects_bad_params(cli: Cli, tmp_path: Path) -> None:
    assert cli('plugin', 'create', 'strict', '--dir', tmp_path).returncode == 0
    proc = cli(
        'plugin', 'run', 'upload', '--path', tmp_path / 'strict', '--params', '{"items": -1}'
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        'error: invalid params for StrictAction: items: Input should be greater than or equal '
        'to 0 (got -1)'
    )


@pytest.fixture
def taken(tmp_path: Path) -> Path:
    where = tmp_path / 'taken'
    (where / 'exists').mkdir(parents=True)
    (where / 'exists' / 'keep.txt').write_text('mine')
    (where / 'a_file').write_text('not a folder')
    return where


@pytest.mark.parametrize(
    ('args', 'expected'),
    [
        pytest.param(
            ['Bad-Name'],
            "error: plugin name 'Bad-Name' must be lower case letters, digits and _, starting "
            'with a letter',
            id='bad-name',
        ),
        pytest.param(
            ['1abc'],
            "error: plugin name '1abc' must be lower case letters, digits and _, starting with "
            'a letter',
            id='leading-digit',
        ),
        pytest.param(
            ['class'],
            "error: plugin name 'class' must be lower case letters, digits and _, starting with "
            'a letter',
            id='keyword',
        ),
        pytest.param(
            ['good', '--category', 'deploy'],
            "error: unknown category 'deploy'; choose one of upload, train, export",
            id='unknown-category',
        ),
        pytest.param(
            ['exists'],
            'error: {taken}/exists already exists; choose another name or --dir',
            id='existing-folder',
        ),
        pytest.param(
            ['good', '--dir', '{taken}/a_file'],
            'error: ',
            id='dir-is-a-file',
        ),
    ],
)
def test_create_bad_input_exits_2(cli: Cli, taken: Path, args: list[str], expected: str) -> None:
    has_dir = '--dir' in args
    full = [a.replace('{taken}', str(taken)) for a in args]
    proc = cli('plugin', 'create', *full, *([] if has_dir else ['--dir', str(taken)]))
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ''
    assert 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(expected.replace('{taken}', str(taken)))
    if expected != 'error: ':
        assert lines[0] == expected.replace('{taken}', str(taken))
    # nothing was created or changed
    assert sorted(p.name for p in taken.iterdir()) == ['a_file', 'exists']
    assert [p.name for p in (taken / 'exists').iterdir()] == ['keep.txt']
    assert (taken / 'a_file').read_text() == 'not a folder'


def test_create_in_a_folder_named_like_markup(cli: Cli, tmp_path: Path) -> None:
    where = tmp_path / 'a[/b]'
    proc = cli('plugin', 'create', 'tagged', '--dir', where)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f'created {where / "tagged"}'
    assert (where / 'tagged' / 'plugin.py').is_file()


def run_pytest(where: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess, from ``where``, as a plugin author would run it."""
    return subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *args],
        capture_output=True,
        text=True,
        cwd=where,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize('mode', ['prepend', 'importlib'])
def test_the_tests_of_two_created_plugins_run_together(
    cli: Cli, cli_env: dict[str, str], tmp_path: Path, mode: str
) -> None:
    """Each plugin's test loads its own plugin (same module names), in one pytest run."""
    where = tmp_path / 'plugins'
    assert cli('plugin', 'create', 'new_plugin', '--dir', where).returncode == 0
    assert cli('plugin', 'create', 'other_plugin', '--dir', where).returncode == 0
    # make the two plugins tell apart: the other one's process step counts twice
    other = where / 'other_plugin' / 'plugin.py'
    other.write_text(other.read_text().replace("{'processed': count}", "{'processed': 2 * count}"))
    test = where / 'other_plugin' / 'tests' / 'test_other_plugin.py'
    test.write_text(test.read_text().replace("{'processed': 3}", "{'processed': 6}"))

    tests = run_pytest(where, cli_env, f'--import-mode={mode}', 'new_plugin', 'other_plugin')

    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert '4 passed' in tests.stdout
