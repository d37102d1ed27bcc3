"""What the core tells the outside so that output can be honest: which steps can roll back,
why a step was skipped, what a failed run's rollback undid, and each event's level."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    LoggingStep,
    Orchestrator,
    RollbackEnded,
    RunEvent,
    RunListener,
    RunStarted,
    StepExecutionError,
    StepRegistry,
    StepResult,
    StepSkipped,
    TimingStep,
)
from synapse_sdk.testing import FunctionStep


class Plain(BaseStep[BaseStepContext]):
    """A step without a rollback()."""

    def __init__(self, name: str, *, fail: bool = False, skip: Any = False) -> None:
        self._name = name
        self.fail = fail
        self.skip = skip

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return 1.0

    def can_skip(self, context: BaseStepContext) -> bool | str:
        return self.skip  # type: ignore[no-any-return]

    def execute(self, context: BaseStepContext) -> StepResult:
        if self.fail:
            raise ConnectionError('unreachable')
        return StepResult()


class Undoable(Plain):
    undone: list[str]

    def rollback(self, context: BaseStepContext, result: StepResult) -> None:
        self.undone = [*getattr(self, 'undone', []), self.name]


class Events(RunListener):
    def __init__(self) -> None:
        self.events: list[RunEvent] = []

    def on_event(self, event: RunEvent) -> None:
        self.events.append(event)


class SpecRuntime:
    """A runtime written to the spec's three-argument ``log(event, data, file)``."""

    def __init__(self) -> None:
        self.logs: list[tuple[str, dict[str, Any], str | None]] = []
        self.client = None

    def log(self, event: str, data: dict[str, Any], file: str | None = None) -> None:
        self.logs.append((event, data, file))

    def set_progress(self, current: float, total: float, category: str | None = None) -> None:
        pass

    def set_metrics(self, value: dict[str, Any], category: str) -> None:
        pass


class LevelRuntime(SpecRuntime):
    def __init__(self) -> None:
        super().__init__()
        self.levels: list[str] = []

    def log(
        self, event: str, data: dict[str, Any], file: str | None = None, level: str = 'info'
    ) -> None:
        super().log(event, data, file)
        self.levels.append(level)


def run(*steps: BaseStep[Any], listener: RunListener | None = None) -> Orchestrator[Any]:
    registry: StepRegistry[Any] = StepRegistry()
    for step in steps:
        registry.register(step)
    orchestrator = Orchestrator(
        registry,
        BaseStepContext(runtime_ctx=LevelRuntime()),
        listeners=[listener] if listener is not None else [],
    )
    orchestrator.execute()
    return orchestrator


# -- which steps can roll back ------------------------------------------------------------


def test_can_rollback_is_whether_rollback_is_overridden_through_wrappers() -> None:
    assert Plain('a').can_rollback is False
    assert Undoable('a').can_rollback is True
    assert LoggingStep(TimingStep(Plain('a'))).can_rollback is False
    assert LoggingStep(TimingStep(Undoable('a'))).can_rollback is True
    assert FunctionStep('f').can_rollback is False
    assert FunctionStep('f', rollback=lambda context, result: None).can_rollback is True


def test_step_info_says_which_steps_can_roll_back() -> None:
    events = Events()
    run(Plain('discover'), LoggingStep(Undoable('upload')), listener=events)
    [started] = [e for e in events.events if isinstance(e, RunStarted)]
    assert [(s.name, s.can_rollback) for s in started.steps] == [
        ('discover', False),
        ('upload', True),
    ]


def test_a_can_rollback_that_is_not_a_bool_is_refused_at_registration() -> None:
    class Odd(Plain):
        can_rollback = 'yes'  # type: ignore[assignment]

    with pytest.raises(ValueError, match="step 'odd': can_rollback must be True or False"):
        StepRegistry().register(Odd('odd'))


# -- what a failed run's rollback undid ----------------------------------------------------


def test_the_error_names_only_the_steps_whose_rollback_undid_something() -> None:
    """``prepare`` and ``verify`` have no rollback(): the error does not say they were
    rolled back; ``upload`` was, and the events still tell every step's rollback."""
    upload = Undoable('upload')
    events = Events()
    with pytest.raises(StepExecutionError) as caught:
        run(Plain('prepare'), upload, Plain('verify', fail=True), listener=events)
    assert caught.value.rolled_back == ['upload']
    assert caught.value.__notes__ == ['Rolled back: upload (newest first).']
    assert upload.undone == ['upload']
    ended = [e.step.name for e in events.events if isinstance(e, RollbackEnded)]
    assert ended == ['verify', 'upload', 'prepare']  # the journal marks them all undone


def test_a_first_step_that_fails_without_a_rollback_undid_nothing() -> None:
    """Not "the finished steps were undone": nothing had finished."""
    with pytest.raises(StepExecutionError) as caught:
        run(Plain('discover', fail=True), Undoable('upload'))
    assert caught.value.rolled_back == []
    assert caught.value.__notes__ == ['Nothing to roll back: no step that ran has a rollback().']


def test_a_rollback_that_fails_is_not_counted_as_undone() -> None:
    class Stubborn(Undoable):
        def rollback(self, context: BaseStepContext, result: StepResult) -> None:
            raise OSError('disk gone')

    with pytest.raises(StepExecutionError) as caught:
        run(Undoable('a'), Stubborn('b'), Plain('c', fail=True))
    error = caught.value
    assert error.rolled_back == ['a']
    assert error.rollback_errors == ["rollback of step 'b' failed: OSError: disk gone"]
    assert error.__notes__[-1] == 'Rolled back: a (newest first).'


def test_an_error_rebuilt_from_a_report_says_only_that_the_rollback_ran() -> None:
    error = StepExecutionError('x', StepResult(success=False, error='E'), [])
    assert error.rolled_back is None
    assert error.__notes__ == ['Rollback completed.']


# -- why a step was skipped -----------------------------------------------------------------


def test_can_skip_may_say_why() -> None:
    events = Events()
    orchestrator = run(
        Plain('a', skip='already exported'), Plain('b', skip=True), Plain('c'), listener=events
    )
    skipped = [(e.step.name, e.reason) for e in events.events if isinstance(e, StepSkipped)]
    assert skipped == [('a', 'already exported'), ('b', None)]
    assert [r.skipped for r in orchestrator.context.step_results] == [True, True, False]


def test_an_empty_reason_does_not_skip() -> None:
    orchestrator = run(Plain('a', skip=''))
    assert orchestrator.context.step_results[0].skipped is False


def test_an_async_can_skip_may_say_why() -> None:
    class Later(Plain):
        async def can_skip(self, context: BaseStepContext) -> bool | str:  # type: ignore[override]
            await asyncio.sleep(0)
            return 'nothing new'

    events = Events()
    run(Later('a'), listener=events)
    assert [e.reason for e in events.events if isinstance(e, StepSkipped)] == ['nothing new']


# -- each event's level -----------------------------------------------------------------------


def test_context_log_takes_a_level() -> None:
    runtime = LevelRuntime()
    context = BaseStepContext(runtime_ctx=runtime)
    context.log('slow_disk', {'mb_s': 3}, level='warning')
    context.log('plain', {'n': 1})
    assert runtime.logs == [('slow_disk', {'mb_s': 3}, None), ('plain', {'n': 1}, None)]
    assert runtime.levels == ['warning', 'info']


def test_a_runtime_written_to_the_spec_still_takes_info_events() -> None:
    """The spec's runtime has ``log(event, data, file)``: an info event is passed on so."""
    runtime = SpecRuntime()
    BaseStepContext(runtime_ctx=runtime).log('step_progress', {'phase': 'starting'})
    assert runtime.logs == [('step_progress', {'phase': 'starting'}, None)]


def test_logging_step_logs_at_debug_unless_told_otherwise() -> None:
    """The loggers already show each step's start and end: LoggingStep's own two events
    are debug detail, so a console at its default level shows one line per step."""

    @dataclass
    class Ctx(BaseStepContext):
        pass

    runtime = LevelRuntime()
    for step in (LoggingStep(Plain('a')), LoggingStep(Plain('b'), level='info')):
        step.execute(Ctx(runtime_ctx=runtime))
    assert [event for event, _, _ in runtime.logs] == ['step_start', 'step_end'] * 2
    assert runtime.levels == ['debug', 'debug', 'info', 'info']
