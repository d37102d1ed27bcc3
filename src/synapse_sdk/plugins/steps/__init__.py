"""The step framework core: standard library only.

Re-exported unchanged at ``synapse_sdk.plugins.pipelines.steps`` (the
spec's import path).
"""

from .base import BaseStep
from .context import BaseStepContext, RuntimeContextLike
from .errors import StepExecutionError
from .listeners import RunListener, RunSummary, StepInfo
from .orchestrator import Orchestrator, ProgressCallback
from .registry import StepRegistry
from .result import StepResult
from .wrappers import LoggingStep, StepWrapper, TimingStep, ValidationStep

__all__ = [
    'BaseStep',
    'BaseStepContext',
    'LoggingStep',
    'Orchestrator',
    'ProgressCallback',
    'RunListener',
    'RunSummary',
    'RuntimeContextLike',
    'StepExecutionError',
    'StepInfo',
    'StepRegistry',
    'StepResult',
    'StepWrapper',
    'TimingStep',
    'ValidationStep',
]
