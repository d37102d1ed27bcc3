"""Which Ray ``--mode ray`` uses, and how it fails to get one.

- without an address a private local instance is started: neither the
  address a stopped ``ray start`` left behind (``ray_current_cluster``) nor a
  running head is joined;
- an address (``--ray-address``, or ``$RAY_ADDRESS``) that does not answer
  fails within seconds with one line, exit 1, the run journaled as failed;
- a head with token authentication (Ray 2.52+) without the token fails fast
  with one line naming what to set; with the token the run works there.

Each test runs the command in a fresh process with its own ``RAY_TMPDIR``
(where Ray keeps ``ray_current_cluster`` and its sessions), so the Ray
instances other tests or other users run on this machine are never touched;
whatever Ray process a test starts is killed by pid at its end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.journal import Journal

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AUTH = ('RAY_AUTH_MODE', 'RAY_AUTH_TOKEN', 'RAY_AUTH_TOKEN_PATH')

WHERE = """\
import ray
from pydantic import BaseModel

from synapse_sdk.plugins import BaseUploadAction


class Params(BaseModel):
    pass


class Action(BaseUploadAction[Params]):
    def execute(self):
        return {'gcs': ray.get_runtime_context().gcs_address}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


def ray_processes_of(folder: Path) -> list[int]:
    """Processes that name ``folder`` in their command line or environment (RAY_TMPDIR)."""
    found = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / 'cmdline').read_bytes() + (entry / 'environ').read_bytes()
        except OSError:
            continue
        if str(folder).encode() in text:
            found.append(int(entry.name))
    return found


def kill_ray_of(folder: Path) -> None:
    for pid in ray_processes_of(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short RAY_TMPDIR of the test's own (Ray's socket paths must stay under 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix='synray-', dir='/tmp'))
    try:
        yield folder
    finally:
        kill_ray_of(folder)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Head:
    address: str  # as ray_current_cluster holds it (the node's IP)
    port: int
    token: str
    tmp: Path


@pytest.fixture(scope='module')
def head() -> Iterator[Head]:
    """``ray start --head --block`` with token authentication, in a RAY_TMPDIR of its own."""
    folder = Path(tempfile.mkdtemp(prefix='synhead-', dir='/tmp'))
    token = secrets.token_hex(16)
    port = free_port()
    env = clean_env(folder)
    env.update(RAY_AUTH_MODE='token', RAY_AUTH_TOKEN=token)
    ports = {
        '--port': port,
        '--dashboard-port': free_port(),
        '--dashboard-agent-listen-port': free_port(),
    }
    args = [str(BIN / 'ray'), 'start', '--head', '--block', '--num-cpus', '1']
    args += ['--include-dashboard', 'false', '--disable-usage-stats']
    args += [f'{name}={value}' for name, value in ports.items()]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        address = wait_for_head(process, folder / 'ray' / 'ray_current_cluster')
        yield Head(address, port, token, folder)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        kill_ray_of(folder)
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_head(process: subprocess.Popen[bytes], address_file: Path) -> str:
    deadline = time.monotonic() + 120  # a busy 2-core machine
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f'ray start --head exited with {process.returncode}')
        if address_file.exists() and address_file.read_text().strip():
            address = address_file.read_text().strip()
            host, _, port = address.rpartition(':')
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
            except OSError:
                pass
            else:
                return address
        time.sleep(0.2)
    pytest.fail('ray start --head did not come up within 120 s')


def clean_env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    """This environment without any Ray address or token settings (Ray puts
    RAY_AUTH_MODE into this process when it starts its instance)."""
    env = dict(os.environ)
    for name in ('RAY_ADDRESS', 'FORCE_COLOR', 'TTY_COMPATIBLE', 'TTY_INTERACTIVE', *AUTH):
        env.pop(name, None)
    env['RAY_TMPDIR'] = str(ray_tmp)
    env['PYTHONPATH'] = str(REPO / 'src')  # the workers of a `ray start` head too
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    env['COLUMNS'] = '200'
    env.update(extra)
    return env


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_plugin(
    plugin: Path, home: Path, ray_tmp: Path, *args: str, timeout: float, **env: str
) -> Done:
    """``synapse plugin run run --mode ray`` of a ``plugin_factory`` plugin."""
    command = [str(BIN / 'synapse'), 'plugin', 'run', 'run', '--path', str(plugin)]
    started = time.monotonic()
    try:
        done = subprocess.run(
            [*command, '--mode', 'ray', *args],
            capture_output=True,
            text=True,
            env=clean_env(ray_tmp, SYNAPSE_HOME=str(home), **env),
            cwd=home.parent,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f'still running after {timeout:g} s; stderr so far: {expired.stderr!r}')
    return Done(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@pytest.fixture
def where(plugin_factory: Any) -> Path:
    return Path(plugin_factory('where', WHERE).path)


def only_run(home: Path) -> Any:
    runs = Journal(home / 'runs.db').list_runs()
    assert len(runs) == 1, runs
    return runs[0]


def assert_one_line_failure(done: Done, home: Path, *needles: str) -> str:
    """Exit 1; on stderr the run line and one error line; the run journaled as failed."""
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)  # the run's result, as for every run that started
    assert (result['success'], result['executed']) == (False, [])
    run_line, error_line = done.lines()  # exactly two: nothing of Ray's
    record = only_run(home)
    assert run_line.removeprefix('INFO').lstrip().startswith(f'run {record.id} ')  # its level first
    assert error_line.startswith('error: ')
    for needle in needles:
        assert needle in error_line
    assert record.status == 'failed'
    assert record.error is not None and error_line.removeprefix('error: ') in record.error
    return error_line


# --- no address: a private instance ------------------------------------------------
def test_a_stale_ray_current_cluster_is_not_joined(
    where: Path, tmp_path: Path, ray_tmp: Path
) -> None:
    """What a `ray start --block` stopped by SIGTERM leaves: the address of a dead head."""
    dead = f'127.0.0.1:{free_port()}'
    (ray_tmp / 'ray').mkdir()
    (ray_tmp / 'ray' / 'ray_current_cluster').write_text(dead)

    done = run_plugin(where, tmp_path / 'home', ray_tmp, timeout=150)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['output']['gcs'] != dead
    assert (ray_tmp / 'ray' / 'ray_current_cluster').read_text() == dead  # left as it was
    assert only_run(tmp_path / 'home').status == 'succeeded'


def test_a_running_head_is_not_joined_without_an_address(
    where: Path, tmp_path: Path, head: Head
) -> None:
    """`ray start --head` wrote its address where ray.init() looks; --mode ray starts its own."""
    done = run_plugin(where, tmp_path / 'home', head.tmp, timeout=150)

    assert done.returncode == 0, done.stderr
    gcs = json.loads(done.stdout)['output']['gcs']
    assert gcs and gcs != head.address


MAPPER = """\
import ray
from pydantic import BaseModel

import synapse_sdk.execution._on_ray  # the 'ray' backend of context.map
from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.actions.upload import UploadContext
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult
from naming import shout  # a sibling module of the plugin folder


def loud(word):
    return shout(word)  # runs in a task's worker: it must import naming


class Shout(BaseStep[UploadContext]):
    name = 'shout'
    progress_weight = 1.0

    def execute(self, context):
        words = context.map(loud, ['a', 'b', 'c'], backend='ray')
        job_env = dict(ray.get_runtime_context().runtime_env)
        return StepResult(data={'words': words, 'job_env': sorted(job_env)})


class Params(BaseModel):
    pass


class Action(BaseUploadAction[Params]):
    def setup_steps(self, registry: StepRegistry) -> None:
        registry.register(Shout())
"""


def test_a_private_instance_s_workers_import_the_plugin_folder_where_it_is(
    plugin_factory: Any, tmp_path: Path, ray_tmp: Path
) -> None:
    """Not packed as a runtime_env working_dir (a second more per run): on the workers'
    import path, so a fan-out task still imports the plugin's sibling modules."""
    naming = 'def shout(text):\n    return text.upper() + "!"\n'
    plugin = Path(plugin_factory('mapper', MAPPER, naming=naming).path)

    done = run_plugin(plugin, tmp_path / 'home', ray_tmp, timeout=150)

    assert done.returncode == 0, done.stderr
    step = json.loads(done.stdout)['steps']['shout']
    assert step['words'] == ['A!', 'B!', 'C!']
    assert 'working_dir' not in step['job_env']


# --- an address that does not answer -------------------------------------------------
def test_a_dead_ray_address_fails_in_seconds_with_one_line(
    where: Path, tmp_path: Path, ray_tmp: Path
) -> None:
    port = free_port()
    home = tmp_path / 'home'

    done = run_plugin(where, home, ray_tmp, '--ray-address', f'127.0.0.1:{port}', timeout=60)

    line = assert_one_line_failure(
        done, home, f'cannot reach Ray at 127.0.0.1:{port}', 'ray start --head'
    )
    assert 'Connection refused' in line
    assert done.seconds < 20


def test_ray_address_from_the_environment_is_the_address(
    where: Path, tmp_path: Path, ray_tmp: Path
) -> None:
    """$RAY_ADDRESS is the user's choice of cluster: used, and checked the same way."""
    port = free_port()
    home = tmp_path / 'home'

    done = run_plugin(where, home, ray_tmp, timeout=60, RAY_ADDRESS=f'127.0.0.1:{port}')

    assert_one_line_failure(done, home, f'cannot reach Ray at 127.0.0.1:{port}')
    assert done.seconds < 20


def test_an_address_that_is_not_a_ray_cluster_fails_in_seconds(
    where: Path, tmp_path: Path, ray_tmp: Path
) -> None:
    """Something listens there but says nothing gRPC: Ray would wait 36 s per attempt."""
    home = tmp_path / 'home'
    with socket.socket() as silent:
        silent.bind(('0.0.0.0', 0))  # Ray connects to the node's IP for 127.0.0.1
        silent.listen()
        port = silent.getsockname()[1]

        done = run_plugin(where, home, ray_tmp, '--ray-address', f'127.0.0.1:{port}', timeout=60)

    assert_one_line_failure(done, home, 'is not a Ray cluster', 'check the port')
    assert done.seconds < 30


@pytest.mark.parametrize('address', ['10.0.0.5', 'head:port', '10.0.0.5:99999', '10.0.0.5:\u00b2'])
def test_a_malformed_ray_address_is_bad_input(
    where: Path, tmp_path: Path, ray_tmp: Path, address: str
) -> None:
    home = tmp_path / 'home'

    done = run_plugin(where, home, ray_tmp, '--ray-address', address, timeout=60)

    assert done.returncode == 2, done.stderr
    assert done.lines() == [
        f'error: --ray-address: Ray address {address!r} is not HOST:PORT (e.g. '
        "10.0.0.5:6379, the address `ray start --head` prints), 'auto' or 'local'"
    ]
    assert not (home / 'runs.db').exists() or Journal(home / 'runs.db').list_runs() == []


# --- token authentication --------------------------------------------------------------
def test_a_head_with_token_auth_without_the_token_fails_fast_naming_what_to_set(
    where: Path, tmp_path: Path, head: Head
) -> None:
    home = tmp_path / 'home'

    done = run_plugin(where, home, head.tmp, '--ray-address', head.address, timeout=90)

    assert_one_line_failure(
        done,
        home,
        f'the Ray cluster at {head.address} requires token authentication',
        'RAY_AUTH_MODE=token',
        'RAY_AUTH_TOKEN',
    )
    assert done.seconds < 30  # Ray alone: 20 warnings and 21 s


def test_a_head_with_token_auth_refusing_the_token_says_which_one(
    where: Path, tmp_path: Path, head: Head
) -> None:
    home = tmp_path / 'home'
    wrong = secrets.token_hex(16)

    done = run_plugin(
        where,
        home,
        head.tmp,
        '--ray-address',
        head.address,
        timeout=90,
        RAY_AUTH_MODE='token',
        RAY_AUTH_TOKEN=wrong,
    )

    assert_one_line_failure(done, home, 'did not accept the token in RAY_AUTH_TOKEN')
    assert wrong not in done.stderr  # a secret is never shown
    assert wrong not in str(only_run(home).error)


def test_a_head_with_token_auth_runs_with_the_token(
    where: Path, tmp_path: Path, head: Head
) -> None:
    home = tmp_path / 'home'

    done = run_plugin(
        where,
        home,
        head.tmp,
        '--ray-address',
        f'127.0.0.1:{head.port}',
        timeout=90,
        RAY_AUTH_MODE='token',
        RAY_AUTH_TOKEN=head.token,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['output']['gcs'] == head.address
    assert only_run(home).status == 'succeeded'
    assert head.token not in done.stderr
