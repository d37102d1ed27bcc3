"""Run a list of steps in one call and keep everything a test wants to look at."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RunListener,
    StepRegistry,
)

from ._runtime import RecordingRuntime


@dataclass
class WorkflowRun:
    """What ``run_workflow`` saw: the result or the error, the progress, the runtime."""

    context: BaseStepContext
    runtime: RecordingRuntime
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    progress: list[int] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.error is None


def run_workflow(
    steps: Sequence[BaseStep[Any]],
    context: BaseStepContext | None = None,
    *,
    runtime: RecordingRuntime | None = None,
    listeners: Sequence[RunListener] = (),
    raise_errors: bool = False,
) -> WorkflowRun:
    """Register ``steps``, run them with the runtime's loggers listening, and catch the outcome.

    The runtime is ``runtime``; without it, the context's own ``runtime_ctx`` (which
    must then be a :class:`RecordingRuntime`), so the steps' events, the run's
    lifecycle, its cancel token and ``sleep`` all meet in one place; without either,
    a new ``RecordingRuntime`` and a ``BaseStepContext`` on it.
    """
    if runtime is None:
        runtime = _runtime_of(context) if context is not None else RecordingRuntime()
    context = context if context is not None else BaseStepContext(runtime_ctx=runtime)
    registry: StepRegistry[Any] = StepRegistry()
    for step in steps:
        registry.register(step)
    run = WorkflowRun(context=context, runtime=runtime)

    def report(current: int, total: int) -> None:
        run.progress.append(current)
        runtime.set_progress(current, total)

    orchestrator = Orchestrator(
        registry,
        context,
        progress_callback=report,
        listeners=[*runtime.listeners, *listeners],
        cancel_token=runtime.cancel_token,
        sleep=runtime.sleep,
        timing=True,
    )
    try:
        run.result = orchestrator.execute()
    except Exception as error:
        run.error = error
        if raise_errors:
            raise
    return run


def _runtime_of(context: BaseStepContext) -> RecordingRuntime:
    runtime = context.runtime_ctx
    if not isinstance(runtime, RecordingRuntime):
        raise TypeError(
            f'run_workflow: the context runs on a {type(runtime).__name__}, not a '
            'RecordingRuntime, so the run could not be recorded or cancelled through it; '
            'build the context on a RecordingRuntime, or pass runtime= explicitly'
        )
    return runtime
