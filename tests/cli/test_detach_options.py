"""``plugin run``'s cluster options refused as bad input (exit 2, one line) before any Ray
job server or cluster is asked for anything; an unreachable job server fails in one line."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.services._common import free_port

Cli = Callable[..., subprocess.CompletedProcess[str]]
PARAMS = '{"source_path": "."}'


@pytest.fixture(autouse=True)
def no_settings(cli_env: dict[str, str]) -> None:
    for name in ('SYNAPSE_DATABASE_URL', 'RAY_ADDRESS', 'RAY_API_SERVER_ADDRESS'):
        cli_env.pop(name, None)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith('error: ')
    return lines[0]


@pytest.mark.parametrize(
    ('options', 'said'),
    [
        (['--detach'], '--detach goes with --mode ray'),
        (['--num-cpus', '2'], '--num-cpus goes with --mode ray'),
        (['--mode', 'ray', '--memory', 'lots'], "--memory: 'lots' is not an amount of memory"),
        (['--mode', 'ray', '--num-gpus', '-1'], '--num-gpus: -1 is not a number of 0 or more'),
        (['--mode', 'ray', '--detach', '--no-journal'], '--detach needs the run journal'),
        (
            ['--mode', 'ray', '--detach', '--ray-address', '127.0.0.1:6379'],
            'give the address of the head',
        ),
        (
            ['--mode', 'ray', '--detach', '--ray-address', 'http://127.0.0.1:9'],
            'a detached run needs a journal and a storage that every node reaches',
        ),
    ],
)
def test_bad_cluster_options_are_one_line_exit_2(
    cli: Cli, example: Path, options: list[str], said: str
) -> None:
    done = cli('plugin', 'run', 'upload', '--path', example, '--params', PARAMS, *options)
    assert done.returncode == 2, done.stderr
    assert said in one_error_line(done)
    assert done.stdout == ''


def test_an_unreachable_job_server_fails_in_one_line(
    cli: Cli, example: Path, cli_env: dict[str, str], postgres_db: Any
) -> None:
    cli_env['SYNAPSE_DATABASE_URL'] = postgres_db.url
    address = f'http://127.0.0.1:{free_port()}'  # nothing listens there
    done = cli(
        'plugin', 'run', 'upload', '--path', example, '--params', PARAMS, '--mode', 'ray',
        '--detach', '--shared-fs', '--ray-address', address,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    assert f'cannot reach the Ray job server at {address}' in line
    assert postgres_db.password not in done.stderr


def test_a_job_server_address_with_a_password_is_not_repeated_or_journaled(
    cli: Cli, example: Path, cli_env: dict[str, str], postgres_db: Any
) -> None:
    cli_env['SYNAPSE_DATABASE_URL'] = postgres_db.url
    address = f'http://someone:hunter2pw@127.0.0.1:{free_port()}'  # nothing listens there
    done = cli(
        'plugin', 'run', 'upload', '--path', example, '--params', PARAMS, '--mode', 'ray',
        '--detach', '--shared-fs', '--ray-address', address,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    assert 'cannot reach the Ray job server at http://***@127.0.0.1:' in line
    assert 'hunter2pw' not in done.stderr + done.stdout
    shown = cli('runs', 'list', '--json')
    assert shown.returncode == 0, shown.stderr
    assert 'hunter2pw' not in shown.stdout + shown.stderr
    assert '"failed"' in shown.stdout and 'http://***@127.0.0.1' in shown.stdout  # journaled
