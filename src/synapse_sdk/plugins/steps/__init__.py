"""The step framework core: standard library only.

Re-exported unchanged at ``synapse_sdk.plugins.pipelines.steps`` (the
spec's import path).
"""

from .base import BaseStep
from .cancellation import CancelToken, StepCancelled, StepInterrupted, StepTimeoutError
from .context import BaseStepContext, RuntimeContextLike
from .errors import ErrorKind, RunCancelledError, StepExecutionError, SynapseError
from .fanout import MapBackend, MapItemError, register_backend
from .listeners import RunListener, RunSummary, StepInfo
from .orchestrator import Orchestrator
from .policies import RetryPolicy
from .registry import StepRegistry
from .result import StepResult
from .run_state import ProgressCallback
from .wrappers import LoggingStep, StepWrapper, TimingStep, ValidationStep

__all__ = [
    'BaseStep',
    'BaseStepContext',
    'CancelToken',
    'ErrorKind',
    'LoggingStep',
    'MapBackend',
    'MapItemError',
    'Orchestrator',
    'ProgressCallback',
    'RetryPolicy',
    'RunCancelledError',
    'RunListener',
    'RunSummary',
    'RuntimeContextLike',
    'StepCancelled',
    'StepExecutionError',
    'StepInfo',
    'StepInterrupted',
    'StepRegistry',
    'StepResult',
    'StepTimeoutError',
    'StepWrapper',
    'SynapseError',
    'TimingStep',
    'ValidationStep',
    'register_backend',
]
