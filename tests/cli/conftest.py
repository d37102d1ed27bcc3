"""Run the installed ``synapse`` console script as a subprocess, with its home in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SYNAPSE = str(Path(sys.executable).parent / 'synapse')
EXAMPLE = Path(__file__).resolve().parents[2] / 'examples' / 'file_upload'

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / 'home'


@pytest.fixture
def cli_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env['SYNAPSE_HOME'] = str(home)
    env['PYTHONDONTWRITEBYTECODE'] = '1'  # never leave __pycache__ in a plugin folder
    env['COLUMNS'] = '200'
    for name in ('FORCE_COLOR', 'TTY_COMPATIBLE', 'TTY_INTERACTIVE'):
        env.pop(name, None)
    return env


@pytest.fixture
def cli(tmp_path: Path, cli_env: dict[str, str]) -> Cli:
    """``cli('plugin', 'run', ...)``: the synapse command, run from tmp_path."""
    workdir = tmp_path / 'cwd'
    workdir.mkdir()

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SYNAPSE, *map(str, args)],
            capture_output=True,
            text=True,
            cwd=workdir,
            env=cli_env,
            timeout=60,
        )

    return run


@pytest.fixture
def example() -> Path:
    """The repository's example plugin (read only: the runs write under tmp_path)."""
    return EXAMPLE
