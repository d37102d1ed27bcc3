"""Object storage: uploads through ``context.client`` inside a step vs obstore's own calls.

Run with ``.venv/bin/python benchmarks/object_storage.py [--rounds N] [--small N]
[--large N] [--large-mib N]`` (needs the ``s3`` and ``services`` extras: obstore, moto).

A moto S3 server (``moto.server``) runs on 127.0.0.1 in a process of its own, so its
CPU is not the client's; each measurement runs in a fresh worker process (its peak
RSS is its own: ``VmHWM``), and the SDK and raw runs alternate (A B A B ...); each
figure is the median of the rounds.

1. Small files: 2,000 files of 4 KiB.
   * SDK: one journaled step (a real ``Journal`` and ``JournalListener``) that calls
     ``context.client.upload_files(paths, keys=..., concurrency=16, announce=...)``,
     ``announce`` recording each key in the journal before its upload starts
     (``context.append_rollback``); every file is verified and indexed (SQLite, fsynced).
   * raw: ``obstore.put(store, key, Path(file))`` from 16 threads.
   * one at a time: the same step with ``concurrency=1``, and raw with one thread.
   Targets: SDK concurrent <= 1.25x raw's time; SDK concurrent >= 5x faster than SDK
   one at a time (raw's own ratio printed beside it: moto caps it, see 3).
2. Large files: 4 files of 256 MiB, one after another.
   * SDK: the step uploads each with ``context.client.upload_file(path, key=...,
     progress=...)``: streamed multipart (8 MiB parts, 8 in flight), hashed, verified,
     indexed; ``progress`` feeds ``context.set_progress``.
   * raw: ``obstore.put(store, key, Path(file), chunk_size=8 MiB, max_concurrency=8)``.
   Targets: SDK throughput >= 0.9x raw's; SDK peak RSS < 300 MiB.
3. Latency: moto on loopback answers at once, and its CPU (about 3 ms per request, on a
   shared 2-core machine) caps what concurrency can win; a real endpoint is a network
   round trip away. 400 files of 4 KiB again, through a proxy that holds each chunk a
   client sends for 20 ms: SDK and raw, concurrent and one at a time.

Figures only: nothing is asserted (the machine is shared and noisy); exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
SMALL_SIZE = 4 * 1024
PART = 8 * MiB
PART_CONCURRENCY = 8
CONCURRENCY = 16
BUCKET = 'bench'
TARGETS = {'small': 1.25, 'speedup': 5.0, 'large': 0.9, 'rss_mib': 300}
ENV = {
    'AWS_ACCESS_KEY_ID': 'bench',
    'AWS_SECRET_ACCESS_KEY': 'bench-secret',
    'AWS_DEFAULT_REGION': 'us-east-1',
    'AWS_EC2_METADATA_DISABLED': 'true',
}


# --- the server ------------------------------------------------------------------------


def start_moto(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    log = (workdir / 'moto.log').open('wb')
    server = subprocess.Popen(
        [sys.executable, '-m', 'moto.server', '-H', '127.0.0.1', '-p', str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **ENV},
    )
    endpoint = f'http://127.0.0.1:{port}'
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(('127.0.0.1', port)) == 0:
                return server, endpoint
        time.sleep(0.2)
    server.kill()
    raise RuntimeError('moto did not start')


# --- the workers (each in a fresh process) -----------------------------------------------


CPU = [0.0]  # the client process's CPU seconds while the timed part ran


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    found = re.search(r'VmHWM:\s+(\d+) kB', Path('/proc/self/status').read_text())
    return int(found.group(1)) / 1024 if found else float('nan')


def raw_store(endpoint: str) -> Any:
    from obstore.store import S3Store

    return S3Store(
        BUCKET, endpoint=endpoint, region='us-east-1', client_options={'allow_http': True}
    )


def raw_small(endpoint: str, files: list[Path], concurrency: int, tag: str) -> float:
    import obstore

    store = raw_store(endpoint)
    obstore.put(store, f'warm/{tag}', b'x')  # the connection pool, before timing

    def put(path: Path) -> None:
        obstore.put(store, f'raw/{tag}/{path.name}', path)

    started, cpu = time.perf_counter(), cpu_now()
    if concurrency == 1:
        for path in files:
            put(path)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(put, files))
    CPU[0] = cpu_now() - cpu
    return time.perf_counter() - started


def raw_large(endpoint: str, files: list[Path], tag: str) -> float:
    import obstore

    store = raw_store(endpoint)
    obstore.put(store, f'warm/{tag}', b'x')
    started, cpu = time.perf_counter(), cpu_now()
    for path in files:
        obstore.put(
            store,
            f'raw/{tag}/{path.name}',
            path,
            chunk_size=PART,
            max_concurrency=PART_CONCURRENCY,
        )
    CPU[0] = cpu_now() - cpu
    return time.perf_counter() - started


def sdk_run(endpoint: str, files: list[Path], concurrency: int, large: bool, tag: str) -> float:
    """One journaled step uploading ``files`` through ``context.client``; its seconds."""
    from synapse_sdk.clients import open_storage
    from synapse_sdk.journal import Journal, JournalListener
    from synapse_sdk.plugins.steps import (
        BaseStep,
        BaseStepContext,
        Orchestrator,
        StepRegistry,
        StepResult,
    )
    from synapse_sdk.runtime import RuntimeContext

    class Upload(BaseStep[BaseStepContext]):
        name, progress_weight = 'upload', 1.0

        def execute(self, context: BaseStepContext) -> StepResult:
            keys = [f'{tag}:{path.name}' for path in files]
            client = context.client
            if large:  # one by one, byte progress as it goes
                for path, key in zip(files, keys, strict=True):
                    context.append_rollback('keys', key)
                    client.upload_file(path, key=key, progress=context.set_progress)
            else:
                client.upload_files(
                    files,
                    keys=keys,
                    concurrency=concurrency,
                    announce=lambda key: context.append_rollback('keys', key),
                    progress=context.set_progress,
                )
            return StepResult(data={'files': len(files)})

    home = Path(tempfile.mkdtemp(prefix='bench-home-'))
    os.environ['SYNAPSE_HOME'] = str(home)
    journal = Journal(home / 'runs.db')
    journal.start_run(tag, entrypoint='benchmarks:object_storage', params={})
    client = open_storage(f's3://{BUCKET}/sdk?endpoint={endpoint}').for_run(tag)
    client.upload_file(files[0], key=f'warm:{tag}')  # the index and the pool, before timing
    registry: StepRegistry[BaseStepContext] = StepRegistry()
    registry.register(Upload())
    context = BaseStepContext(runtime_ctx=RuntimeContext(logger=[], client=client, run_id=tag))
    orchestrator = Orchestrator(registry, context, listeners=[JournalListener(journal, tag)])
    started, cpu = time.perf_counter(), cpu_now()
    orchestrator.execute()
    elapsed = time.perf_counter() - started
    CPU[0] = cpu_now() - cpu
    journal.close()
    shutil.rmtree(home, ignore_errors=True)
    return elapsed


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    files = sorted(Path(spec['folder']).iterdir())
    if spec['who'] == 'raw':
        if spec['kind'] == 'large':
            seconds = raw_large(spec['endpoint'], files, spec['tag'])
        else:
            seconds = raw_small(spec['endpoint'], files, spec['concurrency'], spec['tag'])
    else:
        large = spec['kind'] == 'large'
        seconds = sdk_run(spec['endpoint'], files, spec['concurrency'], large, spec['tag'])
    return {'seconds': seconds, 'peak_rss_mib': peak_rss_mib(), 'cpu_s': CPU[0]}


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, '--worker', json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f'worker {spec["who"]} {spec["kind"]} failed:\n{done.stderr}')
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the driver -----------------------------------------------------------------------------


def make_files(folder: Path, count: int, size: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        with (folder / f'f{i:05d}.bin').open('wb') as out:
            left = size
            while left:
                chunk = min(left, 64 * MiB)
                out.write(os.urandom(chunk))
                left -= chunk
    return folder


class DelayProxy:
    """A TCP proxy that holds every chunk a client sends for ``delay`` seconds: about one
    network round trip per request, which moto on loopback does not have."""

    def __init__(self, upstream: str, delay: float) -> None:
        host, port = upstream.removeprefix('http://').split(':')
        self.upstream, self.delay = (host, int(port)), delay
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.url = f'http://127.0.0.1:{self.listener.getsockname()[1]}'
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for args in ((client, server, self.delay), (server, client, 0.0)):
                threading.Thread(target=_pump, args=args, daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, target: socket.socket, delay: float) -> None:
    try:
        while data := source.recv(65536):
            if delay:
                time.sleep(delay)
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def measure(args: argparse.Namespace, workdir: Path, endpoint: str) -> dict[str, list[Any]]:
    small = make_files(workdir / 'small', args.small, SMALL_SIZE)
    large = make_files(workdir / 'large', args.large, args.large_mib * MiB)
    some = make_files(workdir / 'latency', args.latency_files, SMALL_SIZE)
    proxy = DelayProxy(endpoint, args.latency_ms / 1000)
    cases = [
        ('sdk', 'small', CONCURRENCY, small, endpoint),
        ('raw', 'small', CONCURRENCY, small, endpoint),
        ('sdk', 'small', 1, small, endpoint),
        ('raw', 'small', 1, small, endpoint),
        ('sdk', 'large', PART_CONCURRENCY, large, endpoint),
        ('raw', 'large', PART_CONCURRENCY, large, endpoint),
        ('sdk', 'latency', CONCURRENCY, some, proxy.url),
        ('raw', 'latency', CONCURRENCY, some, proxy.url),
        ('sdk', 'latency', 1, some, proxy.url),
        ('raw', 'latency', 1, some, proxy.url),
    ]
    results: dict[str, list[Any]] = {}
    try:
        for round_number in range(args.rounds):
            for who, kind, concurrency, folder, url in cases:
                if kind not in args.only:
                    continue
                tag = f'{who}-{kind}-{concurrency}-{round_number}'
                spec = {'who': who, 'kind': 'large' if kind == 'large' else 'small',
                        'concurrency': concurrency, 'tag': tag, 'folder': str(folder),
                        'endpoint': url}  # fmt: skip
                figure = run_worker(spec)
                results.setdefault(f'{who} {kind} {concurrency}', []).append(figure)
                print(f'  {tag:<24} {figure["seconds"]:8.2f} s  peak RSS '
                      f'{figure["peak_rss_mib"]:6.0f} MiB', flush=True)  # fmt: skip
    finally:
        proxy.close()
    return results


def seconds(results: dict[str, list[Any]], name: str) -> list[float]:
    return [float(r['seconds']) for r in results[name]]


def paired(results: dict[str, list[Any]], over: str, under: str) -> str:
    """``median (min-max)`` of the per-round ratios ``over / under``."""
    ratios = [a / b for a, b in zip(seconds(results, over), seconds(results, under), strict=True)]
    low, high = min(ratios), max(ratios)
    return f'{statistics.median(ratios):.2f}x' + (
        f' ({low:.2f}-{high:.2f})' if len(ratios) > 1 else ''
    )


def ratio(results: dict[str, list[Any]], over: str, under: str) -> float:
    pairs = zip(seconds(results, over), seconds(results, under), strict=True)
    return float(statistics.median(a / b for a, b in pairs))


def verdict(ok: bool) -> str:
    return 'MET' if ok else 'NOT MET'


def report(results: dict[str, list[Any]], args: argparse.Namespace) -> None:
    print(f'\nmedians of {args.rounds} round(s); ratios: median of the per-round ratios (range)')
    if 'sdk small 16' in results:
        report_small(results, args)
    if 'sdk latency 16' in results:
        report_latency(results, args)
    if 'sdk large 8' in results:
        report_large(results, args)


def cpu_per(results: dict[str, list[Any]], name: str, count: int) -> float:
    return float(statistics.median(r['cpu_s'] for r in results[name])) / count * 1e6


def med(results: dict[str, list[Any]], name: str) -> float:
    return float(statistics.median(seconds(results, name)))


def report_small(results: dict[str, list[Any]], args: argparse.Namespace) -> None:
    small = ratio(results, 'sdk small 16', 'raw small 16')
    speedup = ratio(results, 'sdk small 1', 'sdk small 16')
    print(f'{args.small} x 4 KiB, concurrency {CONCURRENCY}:')
    print(
        f'  SDK {med(results, "sdk small 16"):.2f} s, raw obstore '
        f'{med(results, "raw small 16"):.2f} s: {paired(results, "sdk small 16", "raw small 16")}'
        f' raw (target <= {TARGETS["small"]}x: {verdict(small <= TARGETS["small"])})'
    )
    print(
        f'  client CPU per file: SDK {cpu_per(results, "sdk small 16", args.small):.0f} µs, '
        f'raw {cpu_per(results, "raw small 16", args.small):.0f} µs (moto: about 3 ms each)'
    )
    print(
        f'  one at a time: SDK {med(results, "sdk small 1"):.2f} s, raw '
        f'{med(results, "raw small 1"):.2f} s; concurrent is '
        f'{paired(results, "sdk small 1", "sdk small 16")} faster through the SDK, '
        f"{paired(results, 'raw small 1', 'raw small 16')} with raw obstore: moto's CPU caps "
        f'it (target >= {TARGETS["speedup"]}x: {verdict(speedup >= TARGETS["speedup"])})'
    )


def report_latency(results: dict[str, list[Any]], args: argparse.Namespace) -> None:
    speedup = ratio(results, 'sdk latency 1', 'sdk latency 16')
    print(
        f'{args.latency_files} x 4 KiB with {args.latency_ms} ms added per request '
        '(a delaying proxy: a network round trip):'
    )
    print(
        f'  concurrency {CONCURRENCY}: SDK {med(results, "sdk latency 16"):.2f} s, raw '
        f'{med(results, "raw latency 16"):.2f} s '
        f'({paired(results, "sdk latency 16", "raw latency 16")}); one at a time: SDK '
        f'{med(results, "sdk latency 1"):.2f} s, raw {med(results, "raw latency 1"):.2f} s'
    )
    print(
        f'  concurrent is {paired(results, "sdk latency 1", "sdk latency 16")} faster through '
        f'the SDK, {paired(results, "raw latency 1", "raw latency 16")} with raw obstore '
        f'(target >= {TARGETS["speedup"]}x: {verdict(speedup >= TARGETS["speedup"])})'
    )


def report_large(results: dict[str, list[Any]], args: argparse.Namespace) -> None:
    large = ratio(results, 'raw large 8', 'sdk large 8')  # SDK throughput / raw throughput
    rss = max(r['peak_rss_mib'] for r in results['sdk large 8'])
    raw_rss = max(r['peak_rss_mib'] for r in results['raw large 8'])
    total = args.large * args.large_mib
    sdk, raw = med(results, 'sdk large 8'), med(results, 'raw large 8')
    print(f'{args.large} x {args.large_mib} MiB, one after another:')
    print(
        f'  SDK {sdk:.2f} s ({total / sdk:.0f} MiB/s), raw obstore {raw:.2f} s '
        f'({total / raw:.0f} MiB/s): {paired(results, "raw large 8", "sdk large 8")} raw '
        f'throughput (target >= {TARGETS["large"]}x: {verdict(large >= TARGETS["large"])})'
    )
    print(
        f'  SDK peak RSS {rss:.0f} MiB (target < {TARGETS["rss_mib"]} MiB: '
        f'{verdict(rss < TARGETS["rss_mib"])}); raw {raw_rss:.0f} MiB'
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument('--small', type=int, default=2000, help='small files (4 KiB each)')
    parser.add_argument('--large', type=int, default=4, help='large files')
    parser.add_argument('--large-mib', type=int, default=256, help='size of each large file')
    parser.add_argument('--latency-files', type=int, default=400, help='files sent with latency')
    parser.add_argument('--latency-ms', type=int, default=20, help='added per request')
    parser.add_argument(
        '--only', type=lambda text: text.split(','), default=['small', 'large', 'latency'],
        help='some of: small,large,latency',
    )  # fmt: skip
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    import obstore

    print(f'Python {platform.python_version()}, obstore {obstore.__version__}, '
          f'{os.cpu_count()} CPUs; moto S3 on 127.0.0.1')  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix='bench-objects-'))
    server, endpoint = start_moto(workdir)
    try:
        import boto3

        boto3.client('s3', endpoint_url=endpoint, **_boto3_keys()).create_bucket(Bucket=BUCKET)
        report(measure(args, workdir, endpoint), args)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _boto3_keys() -> dict[str, str]:
    return {
        'aws_access_key_id': ENV['AWS_ACCESS_KEY_ID'],
        'aws_secret_access_key': ENV['AWS_SECRET_ACCESS_KEY'],
        'region_name': ENV['AWS_DEFAULT_REGION'],
    }


if __name__ == '__main__':
    sys.exit(main())
