"""Helpers for the resilience tests: retries, timeouts, cancellation, signals, async steps.

- ``FnStep``: a step whose execute/rollback are given as functions (``retry`` and
  ``timeout`` as instance attributes, where the orchestrator reads them);
- ``Events``: a listener that records every lifecycle event, ``StepRetrying`` included;
- ``orchestrate``: an Orchestrator over given steps with a RecordingRuntime;
- ``journaled``: a Journal in tmp_path with a started run and its listener;
- subprocess helpers (``synapse`` as ``python -m synapse_sdk.cli`` with
  ``SYNAPSE_HOME`` in tmp_path) and ``peek`` (a second sqlite3 connection).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.journal import Journal, JournalListener
from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunListener,
    RunSummary,
    StepEnded,
    StepRegistry,
    StepResult,
    StepRetrying,
    StepStarted,
)
from synapse_sdk.testing import FunctionStep, RecordingRuntime

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / 'examples' / 'file_upload'


FnStep = FunctionStep  # the testing kit's step made of functions


class Events(RunListener):
    """Every lifecycle event as a tuple, in order; ``summary`` is the run's end."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.retries: list[tuple[str, int, StepResult, float]] = []
        self.summary: RunSummary | None = None

    def on_event(self, event: RunEvent) -> None:
        match event:
            case StepStarted(step=step):
                self.events.append(('step_start', step.name))
            case StepEnded(step=step, result=result):
                self.events.append(('step_end', step.name, result.success))
            case StepRetrying(step=step, attempt=attempt, result=result, delay=delay):
                self.events.append(('step_retry', step.name, attempt))
                self.retries.append((step.name, attempt, result, delay))
            case RollbackStarted(step=step):
                self.events.append(('rollback_start', step.name))
            case RollbackEnded(step=step, error=error):
                self.events.append(('rollback_end', step.name, error is None))
            case RunEnded(summary=summary):
                self.events.append(('run_end', summary.success))
                self.summary = summary

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [event for event in self.events if event[0] == kind]


def orchestrate(
    steps: Sequence[BaseStep[Any]],
    *,
    runtime: RecordingRuntime | None = None,
    listeners: Iterable[RunListener] = (),
    **options: Any,
) -> tuple[Orchestrator[Any], RecordingRuntime, list[int]]:
    """An Orchestrator over ``steps``; returns it, its runtime and the progress it reports."""
    runtime = runtime if runtime is not None else RecordingRuntime()
    registry: StepRegistry[Any] = StepRegistry()
    for step in steps:
        registry.register(step)
    progress: list[int] = []
    orchestrator = Orchestrator(
        registry,
        BaseStepContext(runtime_ctx=runtime),
        lambda current, total: progress.append(current),
        listeners=[*runtime.listeners, *listeners],
        cancel_token=runtime.cancel_token,
        **options,
    )
    return orchestrator, runtime, progress


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = 'condition') -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    pytest.fail(f'timed out after {timeout}s waiting for {what}')


# --------------------------------------------------------------- the journal


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    store = Journal(tmp_path / 'runs.db')
    yield store
    store.close()


def journaled(journal: Journal, run_id: str = 'run-1') -> JournalListener:
    journal.start_run(run_id, entrypoint='x:y', params={})
    return JournalListener(journal, run_id)


def peek(db: Path, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Read the journal with a connection of our own (what another process sees)."""
    connection = sqlite3.connect(db, timeout=5.0, isolation_level=None)
    try:
        return connection.execute(sql, tuple(args)).fetchall()
    finally:
        connection.close()


def try_peek(db: Path, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """``peek`` of a database another process may still be creating: [] until it is there."""
    if not db.exists():
        return []
    try:
        return peek(db, sql, args)
    except sqlite3.Error:
        return []


# --------------------------------------------------------------- subprocesses


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env['SYNAPSE_HOME'] = str(home)
    env['PYTHONDONTWRITEBYTECODE'] = '1'  # no __pycache__ in the repository's example
    env['COLUMNS'] = '200'
    for name in ('FORCE_COLOR', 'TTY_COMPATIBLE', 'TTY_INTERACTIVE'):
        env.pop(name, None)
    env.update(extra)
    return env


def synapse_command(*args: str | Path) -> list[str]:
    return [sys.executable, '-m', 'synapse_sdk.cli', *map(str, args)]


def synapse(home: Path, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        synapse_command(*args),
        capture_output=True,
        text=True,
        cwd=home.parent,
        env=cli_env(home, **env),
        timeout=60,
        check=False,
    )


def make_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f'file_{i:04d}.txt'
        path.write_text(f'content of file {i}\n', encoding='utf-8')
        paths.append(path)
    return paths
