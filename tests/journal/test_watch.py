"""``synapse runs watch``: a run followed from the journal, shown as its own display shows it;
Ctrl-C stops the watcher, not the run; the exit code is the run's."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.execution import run_action
from synapse_sdk.journal import Journal
from synapse_sdk.observe import RunFollower
from synapse_sdk.plugins.steps import StepResult
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

from .conftest import SYNAPSE, FnStep, make_action, make_files, run_cli, subprocess_env
from .test_cancel import start_plugin_run, the_run_storing

pytestmark = pytest.mark.both_databases


def start_watch(home: Path, run_id: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SYNAPSE, 'runs', 'watch', run_id, '--log-format', 'plain', *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home.parent,
        env=subprocess_env(home),
    )


def percents(text: str, category: str) -> list[int]:
    return [int(p) for p in re.findall(rf'{category} (\d+)%', text)]


def test_watching_a_running_run_shows_it_live_and_exits_as_it_did(
    home: Path, tmp_path: Path, plugin_dir: Path, journal: Journal
) -> None:
    make_files(tmp_path / 'source', 12, seed=8)
    running = start_plugin_run(home, plugin_dir, tmp_path / 'source', JT_SLOW='0.3')
    try:
        run_id = the_run_storing(journal, home, files=1)
        watch = start_watch(home, run_id)
        out, err = watch.communicate(timeout=90)
        running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 0
    assert watch.returncode == 0, err
    shown = out + err
    for said in ('> store', 'ok store', '> finalize', 'done: 3 executed'):
        assert said in shown, said
    assert shown.count("stored {'file': ") == 12  # the log() lines, one each
    moving = percents(shown, 'store')
    assert moving and moving == sorted(moving) and moving[-1] == 100  # progress moved up
    assert f'run {run_id} ended: succeeded' in err


def test_a_watched_run_that_is_cancelled_exits_130_for_both(
    home: Path, tmp_path: Path, plugin_dir: Path, journal: Journal
) -> None:
    make_files(tmp_path / 'source', 40, seed=9)
    running = start_plugin_run(home, plugin_dir, tmp_path / 'source', JT_SLOW='0.2')
    try:
        run_id = the_run_storing(journal, home)
        watch = start_watch(home, run_id)
        time.sleep(1.0)
        assert run_cli(home, 'runs', 'cancel', run_id).returncode == 0
        out, err = watch.communicate(timeout=90)
        running.communicate(timeout=60)
    finally:
        running.kill()
    assert (running.returncode, watch.returncode) == (130, 130), err
    assert 'run cancelled at store; rolled back: store' in out + err
    assert f'run {run_id} ended: cancelled (cancelled: the run was cancelled (cancel' in err


def test_ctrl_c_stops_the_watcher_and_the_run_goes_on(
    home: Path, tmp_path: Path, plugin_dir: Path, journal: Journal
) -> None:
    make_files(tmp_path / 'source', 20, seed=10)
    running = start_plugin_run(home, plugin_dir, tmp_path / 'source', JT_SLOW='0.2')
    try:
        run_id = the_run_storing(journal, home)
        watch = start_watch(home, run_id)
        deadline = time.monotonic() + 30
        while journal.log_lines(run_id).last_seq < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # the watcher is up and following
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=30)
        assert watch.returncode == 130, err
        assert f'stopped watching; run {run_id} goes on' in err
        assert journal.get_run(run_id).active  # the run was not touched
        out, _ = running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 0
    assert json.loads(out)['success'] is True
    assert journal.get_run(run_id).status == 'succeeded'
    assert journal.get_run(run_id).cancel_requested_at is None


def test_watching_a_run_that_ended_says_how_at_once(
    home: Path, tmp_path: Path, plugin_dir: Path, journal: Journal
) -> None:
    make_files(tmp_path / 'source', 2, seed=11)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    failed = run_cli(
        home, 'plugin', 'run', 'store', '--path', plugin_dir, '--params', params,
        JT_FAIL_IN='finalize',
    )  # fmt: skip
    assert failed.returncode == 1
    (run,) = journal.list_runs()

    started = time.monotonic()
    done = run_cli(home, 'runs', 'watch', run.id[:5])

    assert done.returncode == 1  # as `plugin run` exited
    assert time.monotonic() - started < 20
    assert done.stderr.startswith(f'run {run.id} already ended: rolled_back (')
    assert 'finalize failed on purpose' in done.stderr
    assert run_cli(home, 'runs', 'watch', 'nope').returncode == 2


def test_the_replayed_events_are_those_the_run_had(journal: Journal) -> None:
    """A run's own logger and a follower's, fed from the journal, see the same course."""

    def fail(context: Any) -> StepResult:
        context.log('about to fail', {'n': 1}, level='warning')
        context.set_metrics({'loss': 0.5}, 'train')
        raise RuntimeError('no')

    action = make_action(
        FnStep('a', rollback=lambda context, result: None),
        FnStep('b', skip=lambda context: True),
        FnStep('c', execute=fail),
    )
    own = MemoryLogger()
    runtime = RuntimeContext(logger=own)
    with pytest.raises(RuntimeError):
        run_action(action, {}, runtime, journal=journal)

    replayed = MemoryLogger()
    follower = RunFollower(journal, runtime.run_id, replayed)
    record = follower.follow(interval=0.01)

    assert record.status == 'rolled_back'
    assert replayed.lifecycle == own.lifecycle
    assert [(e.event, e.data, e.level) for e in replayed.events] == [
        ('about to fail', {'n': 1}, 'warning')
    ]
    assert replayed.metric_updates == [({'loss': 0.5}, 'train')]
    assert replayed.progress_of('overall')[-1] == own.progress_of('overall')[-1]
    assert follower.missed == 0
