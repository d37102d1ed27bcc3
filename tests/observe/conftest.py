"""The journal tests' helpers and fixtures (a home per test, the test plugin), and runs made
with the ``synapse`` command for the observability commands to read."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from tests.journal.conftest import home, journal_run_ids, make_files, plugin_dir, run_cli

__all__ = ['home', 'plugin_dir']


def _new_run(home: Path, before: set[str]) -> str:
    (run_id,) = set(journal_run_ids(home)) - before
    return run_id


@pytest.fixture
def retried_and_rolled_back(home: Path, plugin_dir: Path, tmp_path: Path) -> str:
    """A run whose ``store`` step fails its first attempt and is retried, then ``finalize``
    fails: every step is rolled back. Its id."""
    make_files(tmp_path / 'source', 5, seed=5)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    done = run_cli(
        home,
        'plugin',
        'run',
        'store_retry',
        '--path',
        plugin_dir,
        '--params',
        params,
        JT_FIRST_ATTEMPT_FAILS_AFTER='2',
        JT_FAIL_IN='finalize',
    )
    assert done.returncode == 1, done.stderr
    return _new_run(home, set())


@pytest.fixture
def crashed_then_resumed(home: Path, plugin_dir: Path, tmp_path: Path) -> str:
    """A run killed (SIGKILL) in ``store``, then resumed to success. Its id."""
    make_files(tmp_path / 'source', 4, seed=7)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    args = ('plugin', 'run', 'store', '--path', plugin_dir, '--params', params)
    killed = run_cli(home, *args, JT_CRASH_AFTER='2')
    assert killed.returncode == -signal.SIGKILL
    run_id = _new_run(home, set())
    resumed = run_cli(home, 'runs', 'resume', run_id)
    assert resumed.returncode == 0, resumed.stderr
    return run_id
