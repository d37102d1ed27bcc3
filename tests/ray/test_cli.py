"""``synapse plugin run --mode ray``, end to end in a subprocess (which starts its own Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.journal import Journal

REPO = Path(__file__).resolve().parents[2]
SYNAPSE = str(Path(sys.executable).parent / 'synapse')
EXAMPLE = REPO / 'examples' / 'file_upload'


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / 'home'


def synapse(
    home: Path, cwd: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env['SYNAPSE_HOME'] = str(home)
    env['PYTHONDONTWRITEBYTECODE'] = '1'  # no __pycache__ in the repository's example
    env['COLUMNS'] = '200'
    for name in ('FORCE_COLOR', 'TTY_COMPATIBLE', 'TTY_INTERACTIVE', 'RAY_ADDRESS'):
        env.pop(name, None)
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [SYNAPSE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def test_plugin_run_in_ray_mode_uploads_and_prints_the_result(
    home: Path, source: Path, tmp_path: Path
) -> None:
    cache = EXAMPLE / '__pycache__'
    had_cache = cache.exists()
    params = json.dumps({'source_path': str(source)})
    args = ['plugin', 'run', 'upload', '--mode', 'ray', '--path', str(EXAMPLE), '--params', params]

    done = synapse(home, tmp_path / 'cwd', *args, timeout=180)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result['success'] is True
    assert result['steps']['upload_files'] == {'uploaded': 7}
    names = sorted(p.name for p in source.rglob('*') if p.is_file())
    assert sorted(f['name'] for f in LocalBackendClient(home / 'storage').list_files()) == names
    record = Journal(home / 'runs.db').get_run(result['run_id'])
    assert record.status == 'succeeded'
    assert record.plugin_path == str(EXAMPLE)
    assert cache.exists() == had_cache  # the run left nothing in the repository


def test_ray_address_without_ray_mode_is_bad_input(home: Path, tmp_path: Path) -> None:
    params = json.dumps({'source_path': str(tmp_path)})
    args = ['plugin', 'run', 'upload', '--path', str(EXAMPLE), '--params', params]

    done = synapse(
        home, tmp_path / 'cwd', *args, '--mode', 'local', '--ray-address', '1.2.3.4:6379'
    )

    assert done.returncode == 2, done.stderr
    assert '--ray-address goes with --mode ray' in done.stderr
    assert done.stdout == ''
    assert not (home / 'storage').exists()


def test_an_unknown_mode_is_bad_input(home: Path, tmp_path: Path) -> None:
    params = json.dumps({'source_path': str(tmp_path)})
    args = ['plugin', 'run', 'upload', '--path', str(EXAMPLE), '--params', params]

    done = synapse(home, tmp_path / 'cwd', *args, '--mode', 'bogus')

    assert done.returncode == 2, done.stderr
    assert "--mode must be 'local' or 'ray', got 'bogus'" in done.stderr
    assert done.stdout == ''


MAP_CONFIG = """\
name: Fan Out
code: fan_out
version: 0.1.0
category: upload
actions:
  square:
    entrypoint: fan_out_plugin:Square
"""

MAP_PLUGIN = """\
import os

from pydantic import BaseModel

from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult


def square(x):
    return x * x, os.getpid()


class Params(BaseModel):
    items: list[int]


class SquareStep(BaseStep):
    name = 'square'
    progress_weight = 1.0

    def execute(self, context):
        done = context.map(square, context.params_model.items, backend='ray')
        elsewhere = os.getpid() not in {pid for _, pid in done}
        return StepResult(data={'squares': [v for v, _ in done], 'elsewhere': elsewhere})


class Square(BaseUploadAction[Params]):
    def setup_steps(self, registry: StepRegistry) -> None:
        registry.register(SquareStep())
"""


def test_map_on_ray_under_local_mode_needs_only_the_backend_name(
    home: Path, tmp_path: Path
) -> None:
    """The plugin imports nothing of the execution layer: ``backend='ray'`` is enough."""
    folder = tmp_path / 'fan_out'
    folder.mkdir()
    (folder / 'config.yaml').write_text(MAP_CONFIG, encoding='utf-8')
    (folder / 'fan_out_plugin.py').write_text(MAP_PLUGIN, encoding='utf-8')
    params = json.dumps({'items': [1, 2, 3, 4]})
    args = ['plugin', 'run', 'square', '--path', str(folder), '--params', params]

    done = synapse(home, tmp_path / 'cwd', *args, '--mode', 'local', timeout=180)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result['steps']['square'] == {'squares': [1, 4, 9, 16], 'elsewhere': True}


def test_a_failed_run_prints_the_same_result_on_ray_as_locally(home: Path, tmp_path: Path) -> None:
    """One shape, local and Ray: the failed step, its error, what the rollback undid."""
    params = json.dumps({'source_path': str(tmp_path / 'missing')})
    args = ['plugin', 'run', 'upload', '--path', str(EXAMPLE), '--params', params]

    local = synapse(home, tmp_path / 'cwd', *args)
    on_ray = synapse(home, tmp_path / 'cwd', *args, '--mode', 'ray', timeout=180)

    assert (local.returncode, on_ray.returncode) == (1, 1), on_ray.stderr
    here, there = json.loads(local.stdout), json.loads(on_ray.stdout)
    assert here.pop('run_id') != there.pop('run_id')
    assert here == there
    assert here['failed_step'] == 'discover_files' and here['error'] == 'source path not found'
    assert here['rollback'] == {'status': 'rolled_back', 'rolled_back': [], 'errors': []}
