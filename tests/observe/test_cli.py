"""``synapse runs show/logs/timeline/report`` on real runs of the journal test plugin."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, SecretStr
from tests.journal.conftest import (
    SYNAPSE,
    cli_json,
    journal_run_ids,
    make_files,
    one_line_error,
    run_cli,
    subprocess_env,
)

from synapse_sdk.execution import run_action
from synapse_sdk.journal import Journal
from synapse_sdk.observe import load_run, log_path, render_report
from synapse_sdk.plugins.actions import ActionContext, BaseAction
from synapse_sdk.plugins.steps import StepRegistry
from synapse_sdk.runtime import JsonLinesLogger, RuntimeContext
from synapse_sdk.testing import FunctionStep


def test_show_tells_the_whole_story_of_a_retried_and_rolled_back_run(
    home: Path, plugin_dir: Path, retried_and_rolled_back: str
) -> None:
    run_id = retried_and_rolled_back
    shown: dict[str, Any] = cli_json(home, 'runs', 'show', run_id, '--json')
    assert (shown['status'], shown['action'], shown['plugin_path']) == (
        'rolled_back',
        'store_retry',
        str(plugin_dir),
    )
    assert shown['duration'] > 0 and Path(shown['log_path']) == home / 'logs' / f'{run_id}.jsonl'
    steps = {s['name']: s for s in shown['steps']}
    assert steps['store']['attempts'] == 2
    assert {s['rollback'] for s in steps.values()} == {'rolled back'}
    assert len(steps['store']['rollback_data']['keys']) == 5  # what recovery would undo
    assert all(s['start_offset'] >= 0 for s in steps.values())
    kinds = [(s['step'], s['kind'], s['status']) for s in shown['timeline']]
    assert kinds == [
        ('prepare', 'step', 'succeeded'),
        ('store', 'attempt', 'failed'),
        ('store', 'attempt', 'succeeded'),
        ('finalize', 'step', 'failed'),
        ('finalize', 'rollback', 'rolled_back'),
        ('store', 'rollback', 'rolled_back'),
        ('prepare', 'rollback', 'rolled_back'),
    ]
    assert [(a['number'], a['outcome']) for a in shown['attempt_history']] == [(1, 'failed')]

    text = run_cli(home, 'runs', 'show', run_id)
    assert text.returncode == 0, text.stderr
    for expected in ('store_retry', 'source_path', 'rolled back', shown['log_path'], '+0.'):
        assert expected in text.stdout


def test_timeline_draws_attempts_and_rollbacks_on_a_time_axis(
    home: Path, retried_and_rolled_back: str
) -> None:
    done = run_cli(home, 'runs', 'timeline', retried_and_rolled_back, '--width', '40')
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert '0s' in rows[1]  # the axis heads the bars
    labels = [r.split('  ')[0] for r in rows[2:]]
    assert labels == [
        'prepare',
        'store #1',
        'store #2',
        'finalize',
        'finalize ↶ rollback',
        'store ↶ rollback',
        'prepare ↶ rollback',
    ]
    store_1, store_2 = rows[3], rows[4]
    assert '█' in store_1 and store_1.index('█') < store_2.index('█')  # in time order
    assert '▓' in rows[-1]


def test_logs_prints_the_lines_and_filters_by_level(
    home: Path, retried_and_rolled_back: str
) -> None:
    everything = run_cli(home, 'runs', 'logs', retried_and_rolled_back)
    assert everything.returncode == 0, everything.stderr
    assert 'run started: 3 steps' in everything.stdout
    assert "step 'store' attempt 1 failed: ConnectionError" in everything.stdout
    errors = run_cli(home, 'runs', 'logs', retried_and_rolled_back, '--level', 'error')
    lines = errors.stdout.splitlines()
    assert len(lines) == 2 and all(' error ' in x for x in lines)  # finalize failed; the run
    line = one_line_error(run_cli(home, 'runs', 'logs', retried_and_rolled_back, '--level', 'x'))
    assert '--level' in line and 'warning' in line


def test_a_crashed_then_resumed_run_shows_both_attempts(
    home: Path, crashed_then_resumed: str
) -> None:
    shown = cli_json(home, 'runs', 'show', crashed_then_resumed, '--json')
    assert shown['status'] == 'succeeded' and shown['attempts'] == 2
    history = [(a['outcome'], a['steps_reused']) for a in shown['attempt_history']]
    assert history == [('died', []), ('succeeded', ['prepare'])]
    marks = [(s['step'], s['status'], s['run_attempt']) for s in shown['timeline']]
    assert ('store', 'interrupted', 1) in marks and ('prepare', 'reused', 2) in marks
    timeline = run_cli(home, 'runs', 'timeline', crashed_then_resumed)
    assert 'prepare (reused)' in timeline.stdout and '◆' in timeline.stdout


def test_report_writes_one_self_contained_file(
    home: Path, tmp_path: Path, retried_and_rolled_back: str
) -> None:
    out = tmp_path / 'run.html'
    done = run_cli(home, 'runs', 'report', retried_and_rolled_back, '-o', out)
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding='utf-8')
    assert html.count('<svg') >= 2 and 'class="bar attempt failed"' in html
    for outside in ('<script', '<link', 'src=', 'url(', '@import'):
        assert outside not in html  # nothing for the browser to fetch
    assert 'attempt 1 failed: ConnectionError' in html  # the last log lines


def test_unknown_runs_and_unwritable_reports_are_one_line_errors(
    home: Path, tmp_path: Path, retried_and_rolled_back: str
) -> None:
    for command in ('show', 'logs', 'timeline', 'report'):
        line = one_line_error(run_cli(home, 'runs', command, 'nope'))
        assert "no run 'nope'" in line
    target = tmp_path / 'missing' / 'run.html'
    line = one_line_error(run_cli(home, 'runs', 'report', retried_and_rolled_back, '-o', target))
    assert str(target) in line and '-o' in line


def test_logs_follow_ends_when_the_run_ends(home: Path) -> None:
    journal = Journal()
    journal.start_run('live', entrypoint='m:A', params={})  # owned by this (living) process
    logger = JsonLinesLogger(log_path('live'), run_id='live')
    logger.log('first', {}, None, 'info')
    follower = subprocess.Popen(
        [SYNAPSE, 'runs', 'logs', 'live', '--follow'],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(home),
    )

    def go_on() -> None:
        time.sleep(1.0)
        logger.log('second', {'n': 2}, None, 'info')
        time.sleep(0.5)
        journal.set_run_status('live', 'succeeded')

    worker = threading.Thread(target=go_on)
    worker.start()
    try:
        out, _ = follower.communicate(timeout=30)
    finally:
        worker.join()
        logger.close()
    assert follower.returncode == 0
    assert [x.split(' info    ')[1] for x in out.splitlines()] == ['first', 'second {"n": 2}']


class SecretParams(BaseModel):
    user: str
    password: SecretStr


def test_secret_params_stay_masked(home: Path) -> None:
    class Login(BaseAction[SecretParams]):
        context_class: ClassVar[Any] = ActionContext

        def setup_steps(self, registry: StepRegistry[Any]) -> None:
            registry.register(FunctionStep('login'))

    journal = Journal()
    ctx = RuntimeContext(logger=[JsonLinesLogger(log_path('s1'), run_id='s1')], run_id='s1')
    with ctx:
        run_action(Login, {'user': 'ann', 'password': 'hunter2'}, ctx, journal=journal)
    view = load_run(journal, 's1')
    assert view.to_dict()['params'] == {'user': 'ann', 'password': '**********'}
    everything = json.dumps(view.to_dict()) + render_report(view)
    everything += run_cli(home, 'runs', 'show', 's1').stdout
    assert 'hunter2' not in everything


def test_a_crashed_run_rolled_back_later_shows_the_rollback_as_an_attempt(
    home: Path, plugin_dir: Path, tmp_path: Path
) -> None:
    make_files(tmp_path / 'source', 4, seed=9)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    args = ('plugin', 'run', 'store', '--path', plugin_dir, '--params', params)
    assert run_cli(home, *args, JT_CRASH_AFTER='2').returncode == -signal.SIGKILL
    (run_id,) = journal_run_ids(home)
    assert run_cli(home, 'runs', 'rollback', run_id).returncode == 0
    shown = cli_json(home, 'runs', 'show', run_id, '--json')
    history = [(a['kind'], a['outcome']) for a in shown['attempt_history']]
    assert history == [('run', 'died'), ('rollback', 'rolled_back')]
    spans = {(s['step'], s['kind']): s for s in shown['timeline']}
    store, undo = spans['store', 'step'], spans['store', 'rollback']
    assert store['status'] == 'interrupted' and store['end'] <= undo['start']
    text = run_cli(home, 'runs', 'show', run_id).stdout
    assert '1: died; 2: rolled_back (runs rollback)' in text
