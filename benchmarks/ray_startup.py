"""Where the time of ``synapse plugin run --mode ray`` goes, against a local run.

Run with ``.venv/bin/python benchmarks/ray_startup.py [--quick]``.

The upload example on 40 small files, each run a fresh ``synapse`` process
(what a user waits for, start to exit), interleaved:

1. ``--mode local``: the baseline;
2. ``--mode ray``: a private local Ray instance, started and stopped by the
   command;
3. ``--mode ray --ray-address``: a head that is already running (``ray start
   --head``, started by this script with token authentication in a temp dir
   of its own, and stopped at the end).

Prints the median wall time of each and its ratio to the local run. Then one
``--mode ray`` run (private instance) timed from inside, phase by phase:
interpreter start and the CLI's imports, ``import ray``, ``ray.init``, the
actor's start (until the worker's first event reaches the driver), the run
itself, and what follows (the result printed, ``ray.shutdown``, exit).

Figures only: nothing is asserted (shared machines are noisy); exits 0.
``--quick`` runs each case twice instead of five times.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXAMPLE = REPO / 'examples' / 'file_upload'
FILES = 40

# Run in the measured process: times each phase of the CLI by wrapping the
# executor's methods (no hook in the SDK itself), writes the marks as JSON.
PHASES = """
import json, os, sys, time
marks = [('start', float(os.environ['BENCH_T0']))]
def mark(name):
    marks.append((name, time.time()))
import synapse_sdk.cli.main as cli
mark('interpreter start + CLI imports')
from synapse_sdk.execution import _on_ray as on_ray
mark('import ray (+ on_ray)')
ensure, follow = on_ray.ensure_ray, on_ray.RayExecutor._follow
def timed_ensure(*args, **kwargs):
    mark('plugin loaded, journal opened')
    ensure(*args, **kwargs)
    mark('ray.init')
def timed_follow(self, host, ref, runtime):
    replay = self._replay
    def first(events, runtime):
        if events and len(marks) == 5:
            mark('actor start (until its first event)')
        replay(events, runtime)
    self._replay = first
    try:
        return follow(self, host, ref, runtime)
    finally:
        mark('the run')
on_ray.ensure_ray, on_ray.RayExecutor._follow = timed_ensure, timed_follow
sys.argv = ['synapse', *sys.argv[1:]]
try:
    cli.app()
except SystemExit:
    pass
finally:
    with open(os.environ['BENCH_MARKS'], 'w') as out:
        json.dump(marks, out)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


def env_for(ray_tmp: Path, home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ('RAY_ADDRESS', 'RAY_AUTH_MODE', 'RAY_AUTH_TOKEN', 'RAY_AUTH_TOKEN_PATH'):
        env.pop(name, None)
    env.update(RAY_TMPDIR=str(ray_tmp), SYNAPSE_HOME=str(home), PYTHONDONTWRITEBYTECODE='1')
    env['PYTHONPATH'] = os.environ.get('PYTHONPATH') or str(REPO / 'src')
    env.update(extra)
    return env


def kill_ray_of(folder: Path) -> None:
    """Every process naming ``folder`` (its RAY_TMPDIR) in its command line or environment."""
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / 'cmdline').read_bytes() + (entry / 'environ').read_bytes()
            if str(folder).encode() in text:
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


class Head:
    """``ray start --head --block`` with token authentication, in a temp dir of its own."""

    def __init__(self, workdir: Path) -> None:
        self.tmp = workdir / 'head'
        self.tmp.mkdir()
        self.token = secrets.token_hex(16)
        env = env_for(self.tmp, workdir, RAY_AUTH_MODE='token', RAY_AUTH_TOKEN=self.token)
        ports = [f'--port={free_port()}', f'--dashboard-port={free_port()}']
        ports.append(f'--dashboard-agent-listen-port={free_port()}')
        command = [str(BIN / 'ray'), 'start', '--head', '--block', '--disable-usage-stats']
        self.process = subprocess.Popen(
            [*command, '--include-dashboard=false', *ports],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.address = self._wait(self.tmp / 'ray' / 'ray_current_cluster')

    def _wait(self, address_file: Path) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            if address_file.exists() and address_file.read_text().strip():
                return address_file.read_text().strip()
            time.sleep(0.2)
        self.stop()
        raise SystemExit('ray start --head did not come up')

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        kill_ray_of(self.tmp)


def run_cli(workdir: Path, ray_tmp: Path, *args: str, phases: bool = False, **env: str) -> float:
    """Wall seconds of one ``synapse plugin run upload`` (a fresh SYNAPSE_HOME each time)."""
    home = Path(tempfile.mkdtemp(dir=workdir))
    params = json.dumps({'source_path': str(workdir / 'source')})
    command = ['plugin', 'run', 'upload', '--path', str(EXAMPLE), '--params', params, *args]
    marks = workdir / 'marks.json'
    extra = {'BENCH_T0': repr(time.time()), 'BENCH_MARKS': str(marks)} if phases else {}
    program = [sys.executable, '-c', PHASES] if phases else [str(BIN / 'synapse')]
    started = time.monotonic()
    done = subprocess.run(
        [*program, *command],
        env=env_for(ray_tmp, home, **env, **extra),
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f'{" ".join(args) or "local"} failed:\n{done.stderr[-2000:]}')
    if phases:
        show_phases(json.loads(marks.read_text()), time.time())
    shutil.rmtree(home, ignore_errors=True)
    return seconds


def show_phases(marks: list[tuple[str, float]], ended: float) -> None:
    print('\nphases of one --mode ray run (private instance), seconds:')
    marks = [*marks, ('result printed, ray.shutdown, exit', ended)]
    for (_, before), (name, at) in itertools.pairwise(marks):
        print(f'   {name:<44}{at - before:>8.2f}')
    print(f'   {"total":<44}{ended - marks[0][1]:>8.2f}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='two runs each instead of five')
    runs = 2 if parser.parse_args().quick else 5
    print(f'Python {platform.python_version()}, Ray {ray.__version__}, {os.cpu_count()} CPUs')
    workdir = Path(tempfile.mkdtemp(prefix='raybench-', dir='/tmp'))  # short: Ray's sockets
    try:
        source = workdir / 'source'
        source.mkdir()
        for i in range(FILES):
            (source / f'file_{i:02d}.txt').write_text(f'content {i}\n')
        (workdir / 'ray').mkdir()
        head = Head(workdir)
        try:
            measure(workdir, head, runs)
        finally:
            head.stop()
    finally:
        kill_ray_of(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def measure(workdir: Path, head: Head, runs: int) -> None:
    token = {'RAY_AUTH_MODE': 'token', 'RAY_AUTH_TOKEN': head.token}
    cases = {
        '--mode local': lambda: run_cli(workdir, workdir),
        '--mode ray (private instance)': lambda: run_cli(workdir, workdir, '--mode', 'ray'),
        '--mode ray --ray-address (running head)': lambda: run_cli(
            workdir, head.tmp, '--mode', 'ray', '--ray-address', head.address, **token
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, case in cases.items():
            times[name].append(case())
    print(f'\n{FILES}-file upload, whole command, median of {runs} (interleaved)')
    print(f'   {"how":<44}{"seconds":>8}{"vs local":>10}   all runs')
    local = statistics.median(times['--mode local'])
    for name, values in times.items():
        median = statistics.median(values)
        every = ' '.join(f'{v:.2f}' for v in values)
        print(f'   {name:<44}{median:>8.2f}{median / local:>9.1f}x   {every}')
    run_cli(workdir, workdir, '--mode', 'ray', phases=True)


if __name__ == '__main__':
    main()
