"""The step framework core: standard library only.

Re-exported unchanged at ``synapse_sdk.plugins.pipelines.steps`` (the
spec's import path).
"""

from ._base import BaseStep
from ._cancellation import CancelToken, StepCancelled, StepInterrupted, StepTimeoutError
from ._clock import Clock
from ._context import BaseStepContext, RuntimeContextLike
from ._errors import ErrorKind, RunCancelledError, StepExecutionError, SynapseError
from ._events import (
    IN_STEP_EVENTS,
    LIFECYCLE_EVENTS,
    Progress,
    RollbackData,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunStarted,
    RunSummary,
    StepEnded,
    StepEvent,
    StepInfo,
    StepOverdue,
    StepProgress,
    StepRetrying,
    StepReused,
    StepSkipped,
    StepStarted,
)
from ._fanout import MapBackend, MapItemError, register_backend
from ._listeners import RunListener
from ._orchestrator import Orchestrator
from ._policies import RetryPolicy
from ._registry import StepRegistry
from ._result import StepResult
from ._run_state import ProgressCallback
from ._wrappers import LoggingStep, StepWrapper, TimingStep, ValidationStep

__all__ = [
    'IN_STEP_EVENTS',
    'LIFECYCLE_EVENTS',
    'BaseStep',
    'BaseStepContext',
    'CancelToken',
    'Clock',
    'ErrorKind',
    'LoggingStep',
    'MapBackend',
    'MapItemError',
    'Orchestrator',
    'Progress',
    'ProgressCallback',
    'RetryPolicy',
    'RollbackData',
    'RollbackEnded',
    'RollbackStarted',
    'RunCancelledError',
    'RunEnded',
    'RunEvent',
    'RunListener',
    'RunStarted',
    'RunSummary',
    'RuntimeContextLike',
    'StepCancelled',
    'StepEnded',
    'StepEvent',
    'StepExecutionError',
    'StepInfo',
    'StepInterrupted',
    'StepOverdue',
    'StepProgress',
    'StepRegistry',
    'StepResult',
    'StepRetrying',
    'StepReused',
    'StepSkipped',
    'StepStarted',
    'StepTimeoutError',
    'StepWrapper',
    'SynapseError',
    'TimingStep',
    'ValidationStep',
    'register_backend',
]
