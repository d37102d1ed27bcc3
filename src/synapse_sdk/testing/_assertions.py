"""Assertions on how a run went, with messages that show what happened instead."""

from __future__ import annotations

from collections.abc import Sequence

from synapse_sdk.journal import Journal
from synapse_sdk.runtime import MemoryLogger

from ._harness import WorkflowRun


def _memory(run: WorkflowRun | MemoryLogger) -> MemoryLogger:
    return run.runtime.memory if isinstance(run, WorkflowRun) else run


def assert_steps_ran(run: WorkflowRun | MemoryLogger, expected: Sequence[str]) -> None:
    """The steps that started, in order."""
    started = [name for event, name in _memory(run).lifecycle if event == 'step_start']
    assert started == list(expected), f'steps started: {started}, expected {list(expected)}'


def assert_rolled_back(run: WorkflowRun | MemoryLogger, expected: Sequence[str]) -> None:
    """The steps rolled back, in the order their rollback ran (newest first)."""
    rolled = [
        name
        for event, name in _memory(run).lifecycle
        if event in ('rollback_end', 'rollback_failed')
    ]
    assert rolled == list(expected), f'rolled back: {rolled}, expected {list(expected)}'


def assert_progress_monotonic(run: WorkflowRun | MemoryLogger) -> None:
    """Overall progress only went up, each value once, and ended at 100."""
    values = _memory(run).progress_of('overall')
    assert values == sorted(set(values)), f'overall progress went back or repeated: {values}'
    assert values and values[-1] == 100, f'overall progress did not end at 100: {values}'


def assert_run_status(journal: Journal, run_id: str, status: str) -> None:
    """The journal's final word on a run."""
    record = journal.get_run(run_id)
    assert record.status == status, (
        f'run {run_id} is {record.status}, expected {status} (error: {record.error})'
    )
