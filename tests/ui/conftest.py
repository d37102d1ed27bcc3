"""The web view's tests: a real ``synapse ui`` server on 127.0.0.1 (a subprocess, on a free
port) over the test's journal, and runs of a slow upload plugin to look at.

Each test has its own ``SYNAPSE_HOME`` (tests/journal/conftest.py); a module marked
``both_databases`` runs its tests on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.journal.conftest import (
    home,
    journal,
    journal_database,
    journal_run_ids,
    pytest_configure,
    pytest_generate_tests,
    subprocess_env,
)

__all__ = [
    'home',
    'journal',
    'journal_database',
    'pytest_configure',
    'pytest_generate_tests',
]

PLUGIN_SOURCE = Path(__file__).resolve().parent / 'plugin'
SYNAPSE = [sys.executable, '-m', 'synapse_sdk.cli']


@dataclass
class UiServer:
    url: str
    process: subprocess.Popen[str]

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return request(self.url + path, headers=headers)

    def post(self, path: str, body: str, headers: dict[str, str] | None = None) -> Reply:
        return request(self.url + path, body.encode(), headers)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the test sees the 303 itself


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    """One request with urllib, redirects not followed; an error status is a reply too."""
    opener = urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(req, timeout=30) as answer:
            return Reply(answer.status, dict(answer.headers), answer.read().decode())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read().decode())


def start_ui(home: Path, *args: str, **env: str) -> UiServer:
    """``synapse ui --port 0 ARGS`` with the test's home and database; its URL once it listens."""
    process = subprocess.Popen(
        [*SYNAPSE, 'ui', '--port', '0', *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(home, **env),
        cwd=home.parent,
    )
    assert process.stderr is not None
    line = process.stderr.readline()  # bound and listening before it says so
    found = re.search(r'http://127\.0\.0\.1:(\d+)/', line)
    if found is None:
        process.kill()
        raise AssertionError(f'synapse ui did not start: {line}{process.stderr.read()}')
    return UiServer(f'http://127.0.0.1:{found.group(1)}', process)


def stop(server: UiServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def ui(home: Path, journal_database: str) -> Iterator[UiServer]:
    """``synapse ui`` on a free port of 127.0.0.1, serving this test's journal."""
    server = start_ui(home)
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    target = tmp_path / 'ui_plugin'
    shutil.copytree(PLUGIN_SOURCE, target, ignore=shutil.ignore_patterns('__pycache__'))
    return target


def start_upload(
    home: Path, plugin_dir: Path, source: Path, delay: float, secret: bool = False, **env: str
) -> subprocess.Popen[str]:
    """``synapse plugin run slow_upload`` in the background (``secret``: with a secret
    param, which a resume must be given again); its process."""
    values: dict[str, Any] = {'source_path': str(source), 'delay': delay}
    if secret:
        values['api_key'] = 'hunter2-secret'
    params = json.dumps(values)
    return subprocess.Popen(
        [*SYNAPSE, 'plugin', 'run', 'slow_upload', '--path', str(plugin_dir), '--params', params],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(home, **env),
        cwd=home.parent,
    )


def upload(home: Path, plugin_dir: Path, source: Path, secret: bool = False, **env: str) -> str:
    """A finished run of ``slow_upload`` (no delay); its id."""
    before = set(journal_run_ids(home))
    process = start_upload(home, plugin_dir, source, 0.0, secret, **env)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    (run_id,) = set(journal_run_ids(home)) - before
    return run_id


def wait_for(check: Any, timeout: float = 30.0, what: str = 'the condition') -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f'{what} did not happen within {timeout}s')


def new_run(home: Path, before: set[str]) -> str:
    found = wait_for(lambda: set(journal_run_ids(home)) - before, what='a new run')
    (run_id,) = found
    return str(run_id)
