"""Helpers for testing plugins: a recording runtime, a fake backend, fault injection,
a controllable clock and assertions on how a run ended.

    from synapse_sdk.testing import RecordingRuntime, FaultyStep, FakeClock, assert_rolled_back

    def test_upload_is_undone_when_finalize_fails():
        runtime = RecordingRuntime()
        ...
"""

from .assertions import (
    assert_progress_monotonic,
    assert_rolled_back,
    assert_run_status,
    assert_steps_ran,
)
from .backend import FakeBackend
from .clock import FakeClock
from .faults import CancelAt, FaultyStep
from .harness import WorkflowRun, run_workflow
from .runtime import RecordingRuntime
from .steps import FunctionStep

__all__ = [
    'CancelAt',
    'FakeBackend',
    'FakeClock',
    'FaultyStep',
    'FunctionStep',
    'RecordingRuntime',
    'WorkflowRun',
    'assert_progress_monotonic',
    'assert_rolled_back',
    'assert_run_status',
    'assert_steps_ran',
    'run_workflow',
]
