"""A Ray cluster of two nodes on this machine, for runs that leave the driver's machine.

``ray start --head --block`` and ``ray start --address=HEAD --block`` run as
child processes of the test session (a process per node, ended by its pid:
``--block`` stops the node's processes when it gets SIGTERM), each on its own
ports on 127.0.0.1 and its own temp folder. The head runs the dashboard (the
job server detached runs are submitted to). The worker node carries the custom
resource ``synapse_worker``: a step that asks for it runs there.

Where it can (root, ``unshare``), the worker node runs in a mount namespace of
its own with an empty tmpfs over the driver's folder (its ``SYNAPSE_HOME``, the
plugin folders, the submitter's directory): a run that reads any file of the
driver there finds nothing, so a test that passes proves none is needed.
Elsewhere the worker node only gets a ``SYNAPSE_HOME`` of its own
(``ISOLATED`` says which). No test here connects this process to Ray: drivers
are ``synapse`` subprocesses, so this folder and ``tests/ray`` (whose session
holds a local Ray instance) do not disturb each other.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.services._common import LOOPBACK, free_port, in_ci, tail

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
WORKER_RESOURCE = 'synapse_worker'
START_TIMEOUT = 90.0


def _can_isolate() -> bool:
    """Root with a working ``unshare --mount`` (and tmpfs): the worker node can be hidden
    from the driver's files."""
    if os.geteuid() != 0 or shutil.which('unshare') is None:
        return False
    probe = subprocess.run(
        ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
         'mount -t tmpfs tmpfs /mnt && touch /mnt/x'],
        capture_output=True, check=False, timeout=20,
    )  # fmt: skip
    return probe.returncode == 0


ISOLATED = _can_isolate()


def node_env(home: Path) -> dict[str, str]:
    """A node's environment: this checkout's code and venv, no token, its own SYNAPSE_HOME,
    none of the driver's database or lease settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SYNAPSE_', 'RAY_'))}
    env['PATH'] = f'{VENV_BIN}{os.pathsep}{env.get("PATH", "")}'
    env['PYTHONPATH'] = str(REPO / 'src')
    env['SYNAPSE_HOME'] = str(home)
    env['RAY_AUTH_MODE'] = 'disabled'
    env['RAY_USAGE_STATS_ENABLED'] = '0'
    # a lost node is seen dead in about 2 s, not 30 (the GCS checks each raylet)
    env['RAY_health_check_period_ms'] = '500'
    env['RAY_health_check_failure_threshold'] = '4'
    return env


def _ports(*names: str) -> dict[str, int]:
    return {name: free_port() for name in names}


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # --block: the node's processes go too
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Cluster:
    """The two nodes; ``driver_dir`` is what the worker node cannot see (when ``ISOLATED``)."""

    root: Path
    driver_dir: Path
    gcs_port: int
    dashboard_port: int
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The GCS address (``--ray-address`` of a foreground run)."""
        return f'{LOOPBACK}:{self.gcs_port}'

    @property
    def dashboard(self) -> str:
        """The job server (``--ray-address`` of a detached run)."""
        return f'http://{LOOPBACK}:{self.dashboard_port}'

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f'{self.dashboard}{path}', timeout=10) as reply:
            return json.load(reply)

    def alive_nodes(self) -> list[dict[str, Any]]:
        nodes = self.get('/api/v0/nodes?limit=100')['data']['result']['result']
        return [n for n in nodes if n['state'] == 'ALIVE']

    def worker_node_id(self) -> str:
        for node in self.alive_nodes():
            if WORKER_RESOURCE in (node.get('resources_total') or {}):
                return str(node['node_id'])
        raise AssertionError('the worker node is not alive')

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.get(f'/api/jobs/{job_id}'))

    def wait_job(self, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info['status'] in ('SUCCEEDED', 'FAILED', 'STOPPED'):
                return info
            time.sleep(0.2)
        raise AssertionError(f'job {job_id} did not end within {timeout:g}s: {self.job(job_id)}')

    def job_logs(self, job_id: str) -> str:
        return str(self.get(f'/api/jobs/{job_id}/logs')['logs'])

    def start(self) -> None:
        head_ports = _ports('agent', 'agent_grpc', 'client', 'nm', 'om', 'rea', 'metrics')
        first_worker_port = free_port()
        head = [
            'ray', 'start', '--head', '--block', f'--temp-dir={self.root / "ray"}',
            f'--port={self.gcs_port}', f'--node-ip-address={LOOPBACK}',
            '--include-dashboard=true', f'--dashboard-host={LOOPBACK}',
            f'--dashboard-port={self.dashboard_port}',
            f'--dashboard-agent-listen-port={head_ports["agent"]}',
            f'--dashboard-agent-grpc-port={head_ports["agent_grpc"]}',
            f'--ray-client-server-port={head_ports["client"]}',
            f'--node-manager-port={head_ports["nm"]}',
            f'--object-manager-port={head_ports["om"]}',
            f'--runtime-env-agent-port={head_ports["rea"]}',
            f'--metrics-export-port={head_ports["metrics"]}',
            '--num-cpus=1', '--disable-usage-stats',
        ]  # fmt: skip
        self.nodes.append(self._spawn(head, self.root / 'head-home', 'head', False))
        self._wait(lambda: len(self.alive_nodes()) >= 1, 'the head')
        ports = _ports('agent', 'agent_grpc', 'nm', 'om', 'rea', 'metrics')
        worker = [
            'ray', 'start', '--block', f'--address={self.address}',
            f'--node-ip-address={LOOPBACK}', '--num-cpus=2',
            f'--resources={json.dumps({WORKER_RESOURCE: 4})}',
            f'--dashboard-agent-listen-port={ports["agent"]}',
            f'--dashboard-agent-grpc-port={ports["agent_grpc"]}',
            f'--node-manager-port={ports["nm"]}', f'--object-manager-port={ports["om"]}',
            f'--runtime-env-agent-port={ports["rea"]}',
            f'--metrics-export-port={ports["metrics"]}',
            f'--min-worker-port={first_worker_port}', f'--max-worker-port={first_worker_port + 50}',
            '--disable-usage-stats',
        ]  # fmt: skip
        self.nodes.append(self._spawn(worker, self.root / 'worker-home', 'worker', ISOLATED))
        self._wait(lambda: len(self.alive_nodes()) >= 2, 'the worker node')

    def _spawn(self, command: list[str], home: Path, name: str, isolate: bool) -> Node:
        home.mkdir(parents=True, exist_ok=True)
        log = self.root / f'{name}.log'
        if isolate:  # the driver's folder is an empty tmpfs for this node and its workers
            hide = f'mount -t tmpfs synapse-hidden {self.driver_dir} && exec "$@"'
            command = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', hide,
                       'sh', *command]  # fmt: skip
        with log.open('wb') as out:
            process = subprocess.Popen(
                command, env=node_env(home), stdout=out, stderr=subprocess.STDOUT, cwd=self.root
            )
        return Node(process, log)

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process.poll() is not None:
                    raise RuntimeError(f'{what} did not start:\n{tail(node.log, 40)}')
            try:
                if ready():
                    return
            except OSError:
                pass  # the dashboard is not up yet
            time.sleep(0.3)
        raise RuntimeError(f'{what} did not start within {START_TIMEOUT:g}s')

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def kill_worker_raylet(self) -> int:
        """SIGKILL the worker node's raylet (its workers go with it): the node is lost."""
        for pid in descendants(self.nodes[1].process.pid):
            try:
                name = Path(f'/proc/{pid}/comm').read_text().strip()
            except OSError:
                continue
            if name == 'raylet':
                os.kill(pid, signal.SIGKILL)
                return pid
        raise AssertionError('the worker node has no raylet')


def descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (from /proc: their parents)."""
    parents: dict[int, int] = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


@pytest.fixture(scope='module')
def cluster() -> Iterator[Cluster]:
    """A head and a worker node, shared by the tests of a module."""
    if shutil.which('ray', path=str(VENV_BIN)) is None:
        message = "the 'ray' command is missing: pip install -e '.[ray]'"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix='synray-'))  # short: Ray's socket paths must fit
    driver_dir = root / 'driver'
    driver_dir.mkdir()
    made = Cluster(root, driver_dir, free_port(), free_port())
    try:
        made.start()
        yield made
    finally:
        made.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Driver:
    """The submitting machine: its folder (hidden from the worker node), its SYNAPSE_HOME
    and environment (the database URL, a short lease), and ``synapse`` to run there."""

    folder: Path
    env: dict[str, str]

    @property
    def home(self) -> Path:
        return Path(self.env['SYNAPSE_HOME'])

    def synapse(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / 'synapse'), *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def plugin(self, name: str, source: str, *, resources: dict[str, Any] | None = None) -> Path:
        """A one-action plugin folder (action ``run``, module ``NAME.py``) of the driver."""
        folder = self.folder / name
        folder.mkdir()
        config = {
            'name': name,
            'code': name,
            'version': '0.1.0',
            'category': 'upload',
            'actions': {'run': {'entrypoint': f'{name}:Action'}},
        }
        if resources is not None:
            config['actions']['run']['resources'] = resources  # type: ignore[index]
        (folder / 'config.yaml').write_text(json.dumps(config), encoding='utf-8')  # JSON is YAML
        (folder / f'{name}.py').write_text(textwrap.dedent(source), encoding='utf-8')
        return folder


@pytest.fixture
def driver(cluster: Cluster, tmp_path: Path) -> Driver:
    """The driver's side of one test: a folder under the cluster's hidden ``driver_dir``."""
    folder = cluster.driver_dir / tmp_path.name
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SYNAPSE_', 'RAY_'))}
    env.update(
        PYTHONPATH=str(REPO / 'src'),
        SYNAPSE_HOME=str(folder / 'home'),
        SYNAPSE_LEASE_SECONDS='2',
        RAY_AUTH_MODE='disabled',
    )
    return Driver(folder, env)
