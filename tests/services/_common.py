"""What the service fixtures share: the skip-here/fail-in-CI rule, ports, waiting.

A test that needs a real service is skipped on a developer's machine that lacks
it (with the reason), and fails in CI (``CI`` set), where ``.ci/run`` installs
every service: a green CI must mean the tests ran.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import time
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

LOOPBACK = '127.0.0.1'  # the only address a test service listens on or a test talks to


def in_ci() -> bool:
    """CI=true (or any value but empty/0/false/no) means: nothing may be skipped."""
    return os.environ.get('CI', '').strip().lower() not in ('', '0', 'false', 'no')


def unavailable(reason: str) -> NoReturn:
    """Skip the test here, but fail it in CI, where a missing service is a broken set-up."""
    if in_ci():
        pytest.fail(f'{reason} (CI must provide it: see .ci/run)', pytrace=False)
    pytest.skip(reason)


def require_module(name: str, package: str) -> ModuleType:
    """Import an optional test dependency, or skip/fail naming what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        unavailable(
            f'Python package {package!r} is missing ({error}); '
            "install the test extras: pip install -e '.[dev,services]'"
        )


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (callers retry on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once 127.0.0.1:port accepts connections; False if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if port_open(port):
            return True
        time.sleep(0.1)
    return False


def tail(path: Path, lines: int = 25) -> str:
    """The end of a service's log, for the message of a failed start."""
    try:
        text = path.read_text(encoding='utf-8', errors='replace')
    except OSError:
        return '(no log)'
    return '\n'.join(text.splitlines()[-lines:]) or '(empty log)'


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM the process group a service was started in, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    for signal_number in (15, 9):
        try:
            os.killpg(process.pid, signal_number)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue
