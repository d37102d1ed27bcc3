"""Shared helpers for the step framework tests.

``RecordingRuntime`` stands in for a real runtime context, ``Step`` is a
configurable step that writes what happens to it into a shared journal, and
``RecordingListener`` records every lifecycle event it receives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    Progress,
    RollbackData,
    RollbackEnded,
    RollbackStarted,
    RunEnded,
    RunEvent,
    RunListener,
    RunStarted,
    RunSummary,
    StepEnded,
    StepEvent,
    StepInfo,
    StepProgress,
    StepRegistry,
    StepResult,
    StepReused,
    StepSkipped,
    StepStarted,
)


class RecordingRuntime:
    """A minimal runtime context: records every call it gets."""

    def __init__(self) -> None:
        self.logs: list[tuple[str, dict[str, Any] | None, str | None]] = []
        self.levels: list[str] = []
        self.progress: list[tuple[float, float, str | None]] = []
        self.metrics: list[tuple[dict[str, Any], str]] = []
        self.client = object()

    def log(
        self,
        event: str,
        data: dict[str, Any] | None = None,
        file: str | None = None,
        level: str = 'info',
    ) -> None:
        self.logs.append((event, data, file))
        self.levels.append(level)

    def set_progress(self, current: float, total: float, category: str | None = None) -> None:
        self.progress.append((current, total, category))

    def set_metrics(self, value: dict[str, Any], category: str) -> None:
        self.metrics.append((value, category))


Action = Callable[..., Any]


class Step(BaseStep[Any]):
    """A configurable step.

    ``action(context)`` decides what ``execute`` does (return a value or
    raise); without one the step returns a fresh successful ``StepResult``.
    ``skip`` is a bool or a callable ``(context) -> bool``; ``on_rollback``
    is called by ``rollback``. Everything is recorded in ``journal`` as
    ``'execute:<name>'``, ``'can_skip:<name>'`` and ``'rollback:<name>'``.
    """

    def __init__(
        self,
        name: str,
        weight: Any = 1.0,
        *,
        journal: list[str] | None = None,
        action: Action | None = None,
        skip: bool | Callable[..., Any] = False,
        on_rollback: Callable[..., Any] | None = None,
    ) -> None:
        self._name = name
        self._weight = weight
        self.journal = journal if journal is not None else []
        self.action = action
        self.skip = skip
        self.on_rollback = on_rollback
        self.returned: list[Any] = []
        self.rollback_results: list[StepResult] = []
        self.current_step_seen: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return self._weight  # type: ignore[no-any-return]

    def can_skip(self, context: Any) -> bool:
        self.journal.append(f'can_skip:{self._name}')
        self.current_step_seen['can_skip'] = context.current_step
        if callable(self.skip):
            return bool(self.skip(context))
        return self.skip

    def execute(self, context: Any) -> Any:
        self.journal.append(f'execute:{self._name}')
        self.current_step_seen['execute'] = context.current_step
        value = self.action(context) if self.action is not None else StepResult()
        self.returned.append(value)
        return value

    def rollback(self, context: Any, result: StepResult) -> None:
        self.journal.append(f'rollback:{self._name}')
        self.current_step_seen['rollback'] = context.current_step
        self.rollback_results.append(result)
        if self.on_rollback is not None:
            self.on_rollback(context, result)


def raising(exc: BaseException) -> Action:
    """An action (or rollback / skip hook: any arguments) that raises ``exc``."""

    def action(*args: Any) -> Any:
        raise exc

    return action


def returning(value: Any) -> Action:
    """An action (or skip hook) that returns ``value``."""

    def action(*args: Any) -> Any:
        return value

    return action


def make_registry(*steps: BaseStep[Any]) -> StepRegistry[Any]:
    registry: StepRegistry[Any] = StepRegistry()
    for step in steps:
        registry.register(step)
    return registry


class Recorder:
    """A progress callback that records ``(current, total)`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, current: int, total: int) -> None:
        self.calls.append((current, total))

    @property
    def values(self) -> list[int]:
        return [current for current, _ in self.calls]


class RecordingListener(RunListener):
    """Records every lifecycle event as a tuple; ``fail_on`` makes an event raise."""

    def __init__(self, fail_on: Sequence[str] = (), fail_for: str | None = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.received: list[RunEvent] = []
        self.fail_on = set(fail_on)
        self.fail_for = fail_for  # only fail for this step name (None: any)
        self.summary: RunSummary | None = None
        self.infos: list[StepInfo] = []

    def on_event(self, event: RunEvent) -> None:
        self.received.append(event)
        entry = self._entry(event)
        if entry is None:  # retries, overdue steps: not part of these tests' lists
            return
        self.events.append(entry)
        step = event.step.name if isinstance(event, StepEvent) else None
        if entry[0] in self.fail_on and (self.fail_for is None or self.fail_for == step):
            raise RuntimeError(f'listener broke in {entry[0]}')

    def _entry(self, event: RunEvent) -> tuple[Any, ...] | None:
        match event:
            case RunStarted(steps=steps):
                self.infos = list(steps)
                return ('run_start', [info.name for info in steps])
            case StepStarted(step=step):
                return ('step_start', step.name)
            case StepEnded(step=step, result=result):
                return ('step_end', step.name, result.success)
            case StepSkipped(step=step):
                return ('step_skip', step.name)
            case StepReused(step=step):
                return ('step_reused', step.name)
            case RollbackData(step=step, values=values, append_to=append_to):
                return ('rollback_data', step.name, dict(values), append_to)
            case Progress(current=current, total=total):
                return ('progress', current, total)
            case StepProgress(step=step, fraction=fraction):
                return ('step_progress', step.name, fraction)
            case RollbackStarted(step=step):
                return ('rollback_start', step.name)
            case RollbackEnded(step=step, error=error):
                return ('rollback_end', step.name, error)
            case RunEnded(summary=summary):
                self.summary = summary
                return ('run_end', summary.success)
        return None

    def lifecycle(self) -> list[tuple[Any, ...]]:
        """The events without progress reports."""
        return [e for e in self.events if e[0] not in ('progress', 'step_progress')]


@pytest.fixture
def runtime() -> RecordingRuntime:
    return RecordingRuntime()


@pytest.fixture
def context(runtime: RecordingRuntime) -> BaseStepContext:
    return BaseStepContext(runtime_ctx=runtime)


@pytest.fixture
def journal() -> list[str]:
    return []


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def run(
    context: BaseStepContext,
    *steps: BaseStep[Any],
    callback: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Register ``steps`` and run them once."""
    return Orchestrator(make_registry(*steps), context, callback, **kwargs).execute()
