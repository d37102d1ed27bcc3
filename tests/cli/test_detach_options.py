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


@pytest.mark.parametrize('userinfo', ['', 'someone:hunter2pw@'])
def test_an_unreachable_job_server_fails_in_one_line_without_secrets(
    cli: Cli, example: Path, cli_env: dict[str, str], postgres_db: Any, userinfo: str
) -> None:
    cli_env['SYNAPSE_DATABASE_URL'] = postgres_db.url
    port = free_port()  # nothing listens there
    done = cli(
        'plugin', 'run', 'upload', '--path', example, '--params', PARAMS, '--mode', 'ray',
        '--detach', '--shared-fs', '--ray-address', f'http://{userinfo}127.0.0.1:{port}',
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    shown = f'http://{"***@" if userinfo else ""}127.0.0.1:{port}'  # a password masked
    assert f'cannot reach the Ray job server at {shown}' in one_error_line(done)
    listed = cli('runs', 'list', '--json')  # the failed submission is journaled
    assert listed.returncode == 0, listed.stderr
    assert '"failed"' in listed.stdout and shown in listed.stdout
    for secret in (postgres_db.password, 'hunter2pw'):
        assert secret not in done.stderr + done.stdout + listed.stdout + listed.stderr
