"""``synapse runs cancel`` and ``runs watch`` of a foreground Ray run (``--mode ray``).

The run's steps run in a Ray worker, which holds the run's lease: its heartbeat
thread reads the cancel request and cancels the worker's runtime; the worker
rolls back, the driver reports the cancelled run (exit 130). The watcher reads
the log lines the worker writes into the journal. The run is a fresh
``synapse`` process with its own local Ray instance, as a user starts it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.journal import Journal

from .test_ray_signals_and_paths import EXAMPLE, SYNAPSE, env_for, finish, peek, uploading, wait_for


def test_a_foreground_ray_run_is_cancelled_and_watched_from_other_processes(
    tmp_path: Path,
) -> None:
    home = tmp_path / 'home'
    source = tmp_path / 'big'
    source.mkdir()
    for i in range(2000):  # the upload takes some seconds: time to cancel it mid-step
        (source / f'f{i:04d}.txt').write_text(f'file {i}\n', encoding='utf-8')
    db = home / 'runs.db'
    params = json.dumps({'source_path': str(source)})
    err = tmp_path / 'stderr'
    with err.open('wb') as stderr:
        process = subprocess.Popen(
            [SYNAPSE, 'plugin', 'run', 'upload', '--path', str(EXAMPLE), '--params', params]
            + ['--mode', 'ray'],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=tmp_path,
            env=env_for(home),
        )

    def synapse(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [SYNAPSE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env_for(home),
        )

    try:
        wait_for(process, lambda: uploading(db), 'the upload to have stored some files')
        (run_id,) = peek(db, 'SELECT id FROM runs')[0]
        watch = synapse('runs', 'watch', run_id, '--log-format', 'plain')
        time.sleep(1.0)
        cancel = synapse('runs', 'cancel', run_id)
        cancel_out, cancel_err = cancel.communicate(timeout=120)
        code = finish(process)
        watch_out, watch_err = watch.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    message = err.read_text(encoding='utf-8', errors='replace')
    assert code == 130, message  # as for Ctrl-C
    assert 'cancel requested by' in message
    assert cancel.returncode == 0, cancel_err
    assert f'run {run_id} cancelled; rolled back: upload_files' in cancel_out
    assert watch.returncode == 130, watch_err  # the watcher ends as the run did
    shown = watch_out + watch_err
    assert '> upload_files' in shown and 'run cancelled at upload_files' in shown
    record = Journal(db).get_run(run_id)
    assert record.status == 'cancelled'
    steps = {s.name: s.status for s in Journal(db).steps(run_id)}
    assert steps['upload_files'] == 'rolled_back'
    assert list(LocalBackendClient(home / 'storage').list_files()) == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


def test_a_submitted_run_whose_job_server_is_gone_is_one_line_not_a_wait(tmp_path: Path) -> None:
    """`runs watch` of a detached run not started yet asks its job server (recorded in the
    journal); nothing answers there: one line and exit 1 within seconds, the run stays
    submitted. `runs cancel` ends it cancelled all the same, and says how to stop the job."""
    home = tmp_path / 'home'
    address = f'http://127.0.0.1:{_closed_port()}'
    journal = Journal(home / 'runs.db')
    journal.start_run(
        'gone-server', entrypoint='tests:x', params={}, status='submitted',
        ray_job=('synapse-gone-server', address),
    )  # fmt: skip

    def synapse(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SYNAPSE, *args], capture_output=True, text=True, env=env_for(home), timeout=60
        )

    started = time.monotonic()
    watched = synapse('runs', 'watch', 'gone-server', '--log-format', 'plain')
    assert time.monotonic() - started < 20
    assert watched.returncode == 1, watched.stderr
    [line] = [line for line in watched.stderr.splitlines() if line.strip()]
    assert f'cannot ask the Ray job server at {address} about Ray job synapse-gone-server' in line
    assert journal.get_run('gone-server').status == 'submitted'

    cancelled = synapse('runs', 'cancel', 'gone-server')
    assert cancelled.returncode == 0, cancelled.stderr
    assert 'run gone-server cancelled: the run was cancelled before it started' in cancelled.stdout
    assert f'`ray job stop synapse-gone-server --address {address}`' in cancelled.stdout
    record = journal.get_run('gone-server')
    assert record.status == 'cancelled' and record.ended_at is not None
