"""Running on Ray: one local Ray instance (num_cpus=2) for the whole test session.

Ray starts once (about 8 s) in :func:`ray_instance`; every test of this folder
uses it, so the runs here share the instance the way the steps of a cluster
job would. ``SYNAPSE_HOME`` points into a session temp folder before Ray
starts, so neither the driver nor its workers touch ``~/.synapse``.

- ``plugin_factory``: writes a plugin folder (``config.yaml`` + one module)
  into ``tmp_path`` and loads its action, with the :class:`ActionOrigin` for it;
- ``example``: a copy of ``examples/file_upload`` (loading it in this process
  would otherwise leave a ``__pycache__`` in the repository);
- ``source``: a folder of small files to upload;
- ``alarm``: fails the test (instead of hanging it) after a number of seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import ray

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.execution._on_ray import ensure_ray
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.actions import ActionOrigin, BaseAction
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / 'examples' / 'file_upload'


@pytest.fixture(scope='session', autouse=True)
def ray_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session's local Ray instance; workers inherit ``SYNAPSE_HOME`` from here."""
    home = tmp_path_factory.mktemp('synapse-home')
    previous = os.environ.get('SYNAPSE_HOME')
    os.environ['SYNAPSE_HOME'] = str(home)
    ensure_ray(num_cpus=2)
    try:
        yield
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop('SYNAPSE_HOME', None)
        else:
            os.environ['SYNAPSE_HOME'] = previous


@dataclass
class LoadedPlugin:
    path: Path
    action: type[BaseAction[Any]]
    origin: ActionOrigin


PluginFactory = Callable[..., LoadedPlugin]


@pytest.fixture
def plugin_factory(tmp_path: Path) -> PluginFactory:
    """``plugin_factory(module_name, source, **files)``: a one-action plugin (action ``run``);
    ``files`` are more modules of the folder (``helpers='...'`` writes ``helpers.py``)."""

    def make(module: str, source: str, **files: str) -> LoadedPlugin:
        folder = tmp_path / f'{module}_plugin'
        folder.mkdir()
        (folder / 'config.yaml').write_text(
            textwrap.dedent(
                f"""\
                name: {module}
                code: {module}
                version: 0.1.0
                category: upload
                actions:
                  run:
                    entrypoint: {module}:Action
                """
            ),
            encoding='utf-8',
        )
        (folder / f'{module}.py').write_text(textwrap.dedent(source), encoding='utf-8')
        for name, text in files.items():
            (folder / f'{name}.py').write_text(textwrap.dedent(text), encoding='utf-8')
        action = Plugin.load(folder).load_action('run')
        return LoadedPlugin(folder, action, ActionOrigin(str(folder), 'run'))

    return make


@pytest.fixture
def example(tmp_path: Path) -> LoadedPlugin:
    """The upload example, copied (its action ``upload``)."""
    folder = tmp_path / 'file_upload'
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns('__pycache__'))
    action = Plugin.load(folder).load_action('upload')
    return LoadedPlugin(folder, action, ActionOrigin(str(folder), 'upload'))


def make_files(folder: Path, count: int, *, nested: bool = True) -> list[str]:
    """``count`` small files (some in a subfolder); returns their names."""
    names = []
    for i in range(count):
        name = f'file_{i:04d}.txt'
        where = folder / 'sub' if nested and i % 3 == 0 else folder
        where.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(f'content of file {i}\n', encoding='utf-8')
        names.append(name)
    return sorted(names)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / 'source'
    make_files(folder, 7)
    return folder


@pytest.fixture
def store(tmp_path: Path) -> LocalBackendClient:
    return LocalBackendClient(tmp_path / 'store')


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / 'runs.db')


@pytest.fixture
def memory() -> MemoryLogger:
    return MemoryLogger()


@pytest.fixture
def runtime(memory: MemoryLogger, store: LocalBackendClient) -> RuntimeContext:
    return RuntimeContext(logger=memory, client=store)


@pytest.fixture
def alarm() -> Iterator[Callable[[int], None]]:
    """``alarm(seconds)``: a hang becomes a failure (SIGALRM raises in the main thread)."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError('the test hung: the alarm went off')

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        yield lambda seconds: signal.alarm(seconds)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
