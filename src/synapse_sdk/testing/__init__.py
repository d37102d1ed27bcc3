"""Helpers for testing plugins: a recording runtime, a fake backend, fault injection,
a controllable clock and assertions on how a run ended.

    from synapse_sdk.testing import RecordingRuntime, FaultyStep, FakeClock, assert_rolled_back

    def test_upload_is_undone_when_finalize_fails():
        runtime = RecordingRuntime()
        ...
"""

from ._assertions import (
    assert_progress_monotonic,
    assert_rolled_back,
    assert_run_status,
    assert_steps_ran,
)
from ._backend import FakeBackend
from ._clock import FakeClock
from ._faults import CancelAt, FaultyStep
from ._harness import WorkflowRun, run_workflow
from ._runtime import RecordingRuntime
from ._steps import FunctionStep

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
