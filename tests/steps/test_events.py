"""Lifecycle events as values: what each carries, that they pickle, that they cannot change."""

from __future__ import annotations

import dataclasses
import pickle
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.plugins import steps as core
from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Progress,
    RetryPolicy,
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
    StepExecutionError,
    StepInfo,
    StepOverdue,
    StepProgress,
    StepResult,
    StepRetrying,
    StepReused,
    StepSkipped,
    StepStarted,
)

from .conftest import RecordingListener, RecordingRuntime, Step, raising, run

INFO = StepInfo(1, 'upload', 2.0)
RESULT = StepResult(data={'n': 1}, rollback_data={'ids': [1, 2]}, step_name='upload')
SAMPLES: list[RunEvent] = [
    RunStarted('r1', 1.0, (StepInfo(0, 'a', 1.0), INFO)),
    StepStarted('r1', 1.0, INFO),
    RollbackData('r1', 1.0, INFO, {'ids': 3}, 'ids'),
    StepProgress('r1', 1.0, INFO, 0.5),
    Progress('r1', 1.0, 40, 100),
    StepEnded('r1', 1.0, INFO, RESULT, {'count': 2}, 'UploadContext'),
    StepSkipped('r1', 1.0, INFO, StepResult(skipped=True)),
    StepReused('r1', 1.0, INFO, RESULT),
    StepRetrying('r1', 1.0, INFO, 1, StepResult(success=False, error='E: x'), 2.5),
    StepOverdue('r1', 1.0, INFO, 30.0),
    RollbackStarted('r1', 1.0, INFO, RESULT),
    RollbackEnded('r1', 1.0, INFO, None),
    RunEnded('r1', 1.0, RunSummary(True, 2, 0, 0, 2)),
]


def test_every_event_class_is_sampled_and_exported() -> None:
    exported = {
        value
        for value in vars(core).values()
        if isinstance(value, type) and issubclass(value, RunEvent)
    }
    assert exported - {RunEvent, StepEvent} == {type(event) for event in SAMPLES}


@pytest.mark.parametrize('event', SAMPLES, ids=lambda e: type(e).__name__)
def test_an_event_pickles_as_it_is(event: RunEvent) -> None:
    assert pickle.loads(pickle.dumps(event)) == event


@pytest.mark.parametrize('event', SAMPLES, ids=lambda e: type(e).__name__)
def test_an_event_cannot_be_changed(event: RunEvent) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.run_id = 'other'  # type: ignore[misc]
    assert not hasattr(event, '__dict__')  # slots: no attribute can be added either


@dataclass(kw_only=True)
class Ctx(BaseStepContext):
    count: int = 0
    handle: Any = field(default=None, metadata={'snapshot': False})


def test_events_carry_the_run_id_and_when_they_happened() -> None:
    runtime = RecordingRuntime()
    runtime.run_id = 'run-42'  # type: ignore[attr-defined]
    context = BaseStepContext(runtime_ctx=runtime)
    listener = RecordingListener()
    before = time.time()
    with pytest.raises(StepExecutionError):
        run(context, Step('a'), Step('b', action=raising(OSError('no'))), listeners=[listener])
    after = time.time()
    events = listener.received
    assert {event.run_id for event in events} == {'run-42'}
    moments = [event.at for event in events]
    assert moments == sorted(moments)
    assert before <= moments[0] and moments[-1] <= after


def test_a_runtime_without_a_run_id_gives_none(context: BaseStepContext) -> None:
    listener = RecordingListener()
    run(context, Step('a'), listeners=[listener])
    assert {event.run_id for event in listener.received} == {None}


def test_step_ended_carries_the_contexts_state_as_the_step_left_it() -> None:
    def count(context: Ctx) -> StepResult:
        context.count += 1
        context.handle = object()
        return StepResult()

    context = Ctx(runtime_ctx=RecordingRuntime())
    listener = RecordingListener()
    run(context, Step('a', action=count), Step('b', action=count), listeners=[listener])
    ended = [event for event in listener.received if isinstance(event, StepEnded)]
    # the fields' values when the step ended; 'handle' is kept out by its metadata
    assert [dict(event.context_state) for event in ended] == [{'count': 1}, {'count': 2}]
    assert {event.context_type for event in ended} == {'Ctx'}
    assert [event.step.name for event in ended] == ['a', 'b']


def test_the_events_of_a_retried_then_failing_step_in_order(context: BaseStepContext) -> None:
    listener = RecordingListener()
    flaky = Step('b', action=raising(ConnectionError('down')))
    flaky.retry = RetryPolicy(max_attempts=2, initial_delay=0.0, jitter=0)
    with pytest.raises(StepExecutionError):
        run(context, Step('a'), flaky, listeners=[listener])
    kinds = [
        (type(e).__name__, e.step.name if isinstance(e, StepEvent) else None)
        for e in listener.received
        if not isinstance(e, Progress | StepProgress)
    ]
    assert kinds == [
        ('RunStarted', None),
        ('StepStarted', 'a'),
        ('StepEnded', 'a'),
        ('StepStarted', 'b'),
        ('StepRetrying', 'b'),
        ('StepEnded', 'b'),
        ('RollbackStarted', 'b'),
        ('RollbackEnded', 'b'),
        ('RollbackStarted', 'a'),
        ('RollbackEnded', 'a'),
        ('RunEnded', None),
    ]
    retrying = next(e for e in listener.received if isinstance(e, StepRetrying))
    assert (retrying.attempt, retrying.delay, retrying.result.success) == (1, 0.0, False)
    assert retrying.result.error == 'ConnectionError: down'
    [end] = [e for e in listener.received if isinstance(e, RunEnded)]
    assert end.summary.failed_step == 'b' and not end.summary.success


STEPS_DOC = Path(__file__).resolve().parents[2] / 'docs' / 'steps.md'


def test_the_listener_example_of_the_docs_runs(
    context: BaseStepContext, capsys: pytest.CaptureFixture[str]
) -> None:
    text = STEPS_DOC.read_text(encoding='utf-8')
    section = text[text.index('## Lifecycle listeners') :]
    [block] = re.findall(r'```python\n(.*?)```', section, re.S)[:1]
    namespace: dict[str, Any] = {'__name__': 'steps_doc'}
    exec(compile(block, str(STEPS_DOC), 'exec', dont_inherit=True), namespace)
    durations = namespace['Durations']()
    with pytest.raises(StepExecutionError):
        run(context, Step('a'), Step('b', action=raising(OSError('no'))), listeners=[durations])
    assert set(durations.seconds) == {'a', 'b'}
    assert capsys.readouterr().out == 'failed at b\n'


class Taking(RunListener):
    """Keeps the kinds of event it gets; takes only ``kinds``."""

    def __init__(self, *kinds: type[RunEvent]) -> None:
        self.listens_to = kinds  # type: ignore[misc]  # per instance, for the test
        self.got: list[type[RunEvent]] = []

    def on_event(self, event: RunEvent) -> None:
        self.got.append(type(event))


def test_a_listener_gets_only_the_kinds_it_listens_to(context: BaseStepContext) -> None:
    def work(ctx: BaseStepContext) -> StepResult:
        ctx.set_progress(1, 2)
        ctx.record_rollback(made=1)
        return StepResult()

    starts, steps, every = Taking(StepStarted, RunEnded), Taking(StepEvent), RecordingListener()
    run(context, Step('a', action=work), Step('b'), listeners=[starts, steps, every])
    assert starts.got == [StepStarted, StepStarted, RunEnded]
    assert steps.got == [
        StepStarted,
        StepProgress,
        RollbackData,
        StepEnded,
        StepStarted,
        StepEnded,
    ]  # a base class takes its subclasses
    assert {StepProgress, Progress, RollbackData} <= {type(e) for e in every.received}
