"""The step framework core: standard library only.

Re-exported unchanged at ``synapse_sdk.plugins.pipelines.steps`` (the
spec's import path).
"""

from .base import BaseStep
from .cancellation import CancelToken, StepCancelled, StepInterrupted, StepTimeoutError
from .clock import Clock
from .context import BaseStepContext, RuntimeContextLike
from .errors import ErrorKind, RunCancelledError, StepExecutionError, SynapseError
from .events import (
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
from .fanout import MapBackend, MapItemError, register_backend
from .listeners import RunListener
from .orchestrator import Orchestrator
from .policies import RetryPolicy
from .registry import StepRegistry
from .result import StepResult
from .run_state import ProgressCallback
from .wrappers import LoggingStep, StepWrapper, TimingStep, ValidationStep

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
