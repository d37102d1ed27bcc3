"""Fixtures for the example plugin tests.

Every test gets its own ``SYNAPSE_HOME`` and storage under ``tmp_path``, so
nothing touches the user's real state and tests can run in any order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.plugins.actions import BaseAction
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / 'examples'

LoadExample = Callable[[str, str], type[BaseAction[Any]]]
RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def synapse_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / 'home'
    monkeypatch.setenv('SYNAPSE_HOME', str(home))
    return home


@pytest.fixture
def client(tmp_path: Path, synapse_home: Path) -> LocalBackendClient:
    return LocalBackendClient(tmp_path / 'store')


@pytest.fixture
def memory_logger() -> MemoryLogger:
    return MemoryLogger()


@pytest.fixture
def runtime(memory_logger: MemoryLogger, client: LocalBackendClient) -> RuntimeContext:
    return RuntimeContext(logger=memory_logger, client=client)


@pytest.fixture
def load_example(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadExample]:
    """Load an example's action class the way the CLI does, through ``Plugin.load``.

    Every example's module is called ``plugin``, and the loader only puts a
    plugin folder on ``sys.path`` if it is not there yet, so after loading
    another example a second load of the first one would import the wrong
    ``plugin.py``. Each test therefore gets a copy of ``sys.path`` without the
    folder, and the ``plugin`` modules are put back as they were afterwards.
    """
    saved = {name: mod for name, mod in sys.modules.items() if name.split('.')[0] == 'plugin'}

    def load(example: str, action: str) -> type[BaseAction[Any]]:
        folder = EXAMPLES_DIR / example
        monkeypatch.setattr(sys, 'path', [p for p in sys.path if p != str(folder)])
        return Plugin.load(folder).load_action(action)

    yield load
    for name in [name for name in sys.modules if name.split('.')[0] == 'plugin']:
        del sys.modules[name]
    sys.modules.update(saved)


@pytest.fixture
def run_cli(synapse_home: Path, tmp_path: Path) -> RunCli:
    """Run ``python -m synapse_sdk.cli ARGS`` in a subprocess with the test's SYNAPSE_HOME."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, 'SYNAPSE_HOME': str(synapse_home)}
        return subprocess.run(
            [sys.executable, '-m', 'synapse_sdk.cli', *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    return run
