"""What ``synapse plugin run --detach`` costs, against a foreground run on the same cluster.

Run with ``.venv/bin/python benchmarks/detach.py [--quick]``.

Starts a warm local cluster of one node (``ray start --head --block`` with the
dashboard, the job server, on 127.0.0.1, in a temp dir of its own, stopped at
the end) and one detached run first, so that the plugin's package is cached.
Then, interleaved, each a fresh ``synapse`` process:

1. ``--mode ray --ray-address GCS`` (foreground: the command returns when the run ends);
2. ``--mode ray --ray-address http://DASHBOARD --detach --shared-fs`` (the command
   returns once the job is submitted; the run goes on in the cluster).

The plugin has 100 short steps (each does nothing); the journal is an SQLite file
on this machine (``--shared-fs``: the cluster is this machine). Times are read
from the wall clock and the journal (when the first step started, when the run
ended). Prints medians: the command's return, the first step's start, the run's
end, each from the moment the command was started, and the detached/foreground
ratio of the run's end. Figures only: nothing is asserted; exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from synapse_sdk.journal import Journal

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEPS = 100

PLUGIN = """\
from dataclasses import dataclass
from pydantic import BaseModel
from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.pipelines.steps import BaseStep, BaseStepContext, StepRegistry, StepResult


class Params(BaseModel):
    pass


@dataclass
class Ctx(BaseStepContext):
    pass


class Short(BaseStep[Ctx]):
    progress_weight = 1.0

    def __init__(self, index: int) -> None:
        self._name = f'step_{index}'

    @property
    def name(self) -> str:
        return self._name

    def execute(self, context: Ctx) -> StepResult:
        return StepResult()


class Action(BaseUploadAction[Params]):
    def setup_steps(self, registry: StepRegistry[Ctx]) -> None:
        for i in range(STEPS):
            registry.register(Short(i))

    def create_context(self) -> Ctx:
        return Ctx(runtime_ctx=self.ctx)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SYNAPSE_', 'RAY_'))}
    env.update(
        PATH=f'{BIN}{os.pathsep}{env.get("PATH", "")}',
        PYTHONPATH=str(REPO / 'src'),
        SYNAPSE_HOME=str(home),
        RAY_AUTH_MODE='disabled',
        RAY_USAGE_STATS_ENABLED='0',
    )
    return env


def start_head(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, str]:
    gcs, dashboard = free_port(), free_port()
    ports = [free_port() for _ in range(7)]
    command = [
        str(BIN / 'ray'), 'start', '--head', '--block', f'--temp-dir={root / "ray"}',
        f'--port={gcs}', '--node-ip-address=127.0.0.1', '--include-dashboard=true',
        '--dashboard-host=127.0.0.1', f'--dashboard-port={dashboard}',
        f'--dashboard-agent-listen-port={ports[0]}', f'--dashboard-agent-grpc-port={ports[1]}',
        f'--ray-client-server-port={ports[2]}', f'--node-manager-port={ports[3]}',
        f'--object-manager-port={ports[4]}', f'--runtime-env-agent-port={ports[5]}',
        f'--metrics-export-port={ports[6]}', '--num-cpus=2', '--disable-usage-stats',
    ]  # fmt: skip
    log = (root / 'head.log').open('wb')
    head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    return head, f'127.0.0.1:{gcs}', f'http://127.0.0.1:{dashboard}'


def wait_ready(dashboard: str, head: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise SystemExit('the Ray head did not start (see its log)')
        try:
            with urllib.request.urlopen(f'{dashboard}/api/jobs/', timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit('the Ray head did not start within 120 s')


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run_once(args: list[str], env: dict[str, str], cwd: Path, journal: Journal) -> dict[str, float]:
    """Seconds from the command's start to its return, the first step's start, the run's end."""
    started = time.time()
    done = subprocess.run(
        [str(BIN / 'synapse'), *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    returned = time.time()
    if done.returncode != 0:
        raise SystemExit(f'synapse {" ".join(args)} failed:\n{done.stderr}')
    run_id = json.loads(done.stdout)['run_id']
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            record = journal.get_run(run_id)
        except KeyError:
            record = None
        if record is not None and record.ended_at is not None:
            break
        time.sleep(0.05)
    else:
        raise SystemExit(f'run {run_id} did not end')
    if record.status != 'succeeded':
        raise SystemExit(f'run {run_id} ended {record.status}: {record.error}')
    first = journal.steps(run_id)[0].started_at
    assert first is not None
    return {
        'return': returned - started,
        'first step': epoch(first) - started,
        'run end': epoch(record.ended_at) - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='two runs of each instead of five')
    repeats = 2 if parser.parse_args().quick else 5
    root = Path(tempfile.mkdtemp(prefix='synbench-'))
    env = environment(root / 'home')
    plugin = root / 'steps100'
    plugin.mkdir()
    (plugin / 'config.yaml').write_text(
        'name: s\ncode: s\nversion: 0.1.0\ncategory: upload\n'
        'actions:\n  run:\n    entrypoint: steps100:Action\n',
        encoding='utf-8',
    )
    (plugin / 'steps100.py').write_text(PLUGIN.replace('STEPS', str(STEPS)), encoding='utf-8')
    head, gcs, dashboard = start_head(root, env)
    try:
        wait_ready(dashboard, head)
        journal = Journal(root / 'home' / 'runs.db')
        common = ['plugin', 'run', 'run', '--path', str(plugin), '--mode', 'ray']
        cases = {
            'foreground': [*common, '--ray-address', gcs, '--log-format', 'plain'],
            'detached': [*common, '--ray-address', dashboard, '--detach', '--shared-fs'],
        }
        run_once(cases['detached'], env, root, journal)  # warm: the package cached
        run_once(cases['foreground'], env, root, journal)
        times: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        for _ in range(repeats):
            for name, args in cases.items():
                times[name].append(run_once(args, env, root, journal))
        report(times, repeats)
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def report(times: dict[str, list[dict[str, float]]], repeats: int) -> None:
    print(
        f'Python {platform.python_version()}, {os.cpu_count()} CPUs, {STEPS} short steps,'
        f" median of {repeats}, seconds from the command's start:"
    )
    medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in times.items()
    }
    print(f'{"":12} {"returns":>9} {"1st step":>9} {"run ends":>9} {"steps":>9}')
    for name, m in medians.items():
        steps = m['run end'] - m['first step']
        print(
            f'{name:12} {m["return"]:9.2f} {m["first step"]:9.2f} {m["run end"]:9.2f} {steps:9.3f}'
        )
    ratio = medians['detached']['run end'] / medians['foreground']['run end']
    extra = medians['detached']['run end'] - medians['foreground']['run end']
    print(f"detached / foreground, to the run's end: {ratio:.2f}x ({extra:+.2f} s)")


if __name__ == '__main__':
    main()
