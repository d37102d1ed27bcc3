"""The relay between a Ray worker's run and the driver's loggers, without a remote run.

The worker's ``RelayLogger`` queues what the run shows; the queue crosses to the
driver pickled (as Ray sends it); ``replay`` hands it to the driver's loggers.
"""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from synapse_sdk.execution._on_ray import RelayLogger, replay
from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RollbackEnded,
    RunEnded,
    RunEvent,
    RunListener,
    RunStarted,
    StepEnded,
    StepEvent,
    StepExecutionError,
    StepInfo,
    StepOverdue,
    StepRegistry,
    StepResult,
    StepStarted,
)
from synapse_sdk.runtime import Logger, MemoryLogger, RuntimeContext


@dataclass(kw_only=True)
class LockedContext(BaseStepContext):
    lock: Any = field(default_factory=threading.Lock)  # part of the state, and unpicklable


class Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError('not on the wire')


class Works(BaseStep[LockedContext]):
    name, progress_weight = 'works', 1.0

    def execute(self, context: LockedContext) -> StepResult:
        context.log('working', {'n': 1})
        for i in range(1, 4):
            context.append_rollback('done', i)
            context.set_progress(i, 3)
        return StepResult(data={'lock': threading.Lock()})  # unpicklable data

    def rollback(self, context: LockedContext, result: StepResult) -> None:
        raise Unpicklable('cannot undo works')


class Fails(BaseStep[LockedContext]):
    name, progress_weight = 'fails', 1.0

    def execute(self, context: LockedContext) -> StepResult:
        raise OSError('disk full')


class Received(RunListener):
    def __init__(self) -> None:
        self.events: list[RunEvent] = []

    def on_event(self, event: RunEvent) -> None:
        self.events.append(event)


def relayed_run() -> list[Any]:
    """A failing run on a worker-like runtime whose only logger is the relay; the queue
    as the driver receives it."""
    relay = RelayLogger()
    runtime = RuntimeContext(logger=[relay], client=None, run_id='run-7')
    registry: StepRegistry[LockedContext] = StepRegistry()
    registry.register(Works())
    registry.register(Fails())
    context = LockedContext(runtime_ctx=runtime)
    orchestrator = Orchestrator(
        registry, context, runtime.set_progress, listeners=runtime.listeners
    )
    with pytest.raises(StepExecutionError):
        orchestrator.execute()
    items = relay.drain()
    assert relay.drain() == []
    return list(pickle.loads(pickle.dumps(items)))


def test_the_relay_ships_lifecycle_events_as_they_are_made_portable() -> None:
    items = relayed_run()
    events = [item for item in items if isinstance(item, RunEvent)]
    named = [(type(e).__name__, e.step.name if isinstance(e, StepEvent) else None) for e in events]
    assert named == [
        ('RunStarted', None),
        ('StepStarted', 'works'),
        ('StepEnded', 'works'),
        ('StepStarted', 'fails'),
        ('StepEnded', 'fails'),
        ('RollbackStarted', 'fails'),
        ('RollbackEnded', 'fails'),
        ('RollbackStarted', 'works'),
        ('RollbackEnded', 'works'),
        ('RunEnded', None),
    ]  # no in-step progress, overall progress events or rollback data: the worker's own
    assert {event.run_id for event in events} == {'run-7'}
    works_end = events[2]
    assert isinstance(works_end, StepEnded)
    assert works_end.context_state == {}  # the context's state stays on the worker
    assert works_end.context_type == 'LockedContext'
    assert works_end.result.success and works_end.result.data == {}  # data stays too
    assert works_end.result.step_name == 'works'
    assert works_end.result.duration_seconds is not None
    undo = events[8]
    assert isinstance(undo, RollbackEnded)
    assert isinstance(undo.error, RuntimeError)  # what could not be pickled, by its text
    assert str(undo.error) == 'Unpicklable: cannot undo works'
    end = events[-1]
    assert isinstance(end, RunEnded)
    assert end.summary.failed_step == 'fails'
    assert isinstance(end.summary.error, OSError) and str(end.summary.error) == 'disk full'
    assert end.summary.rollback_errors == (
        "rollback of step 'works' failed: Unpicklable: cannot undo works",
    )


def test_replay_hands_the_driver_loggers_each_event_as_it_came() -> None:
    items = relayed_run()

    class Seen(Logger):
        def __init__(self) -> None:
            self.received = Received()

        def on_event(self, event: RunEvent) -> None:
            self.received.on_event(event)

    memory, seen = MemoryLogger(), Seen()
    driver = RuntimeContext(logger=[memory, seen], client=None)
    replay(items, driver)

    shipped = [item for item in items if isinstance(item, RunEvent)]
    assert len(seen.received.events) == len(shipped)
    assert all(a is b for a, b in zip(seen.received.events, shipped, strict=True))  # as they are
    assert memory.lifecycle[:3] == [
        ('run_start', None),
        ('step_start', 'works'),
        ('step_end', 'works'),
    ]
    assert memory.lifecycle[-1] == ('run_end', 'failed')
    assert memory.event_names() == ['working']
    assert memory.progress_of('works')[-1] == 100  # the step's own figure, folded
    assert memory.progress_of('overall')[-1] < 100


def test_consecutive_progress_of_one_category_is_folded() -> None:
    relay = RelayLogger()
    for i in range(1, 6):
        relay.progress(i, 5, 'upload')
    relay.progress(1, 2, 'overall')
    relay.progress(2, 2, 'overall')
    relay.progress(5, 5, 'upload')
    memory = MemoryLogger()
    replay(relay.drain(), RuntimeContext(logger=memory, client=None))
    assert memory.progress_updates == [(5, 5, 'upload'), (2, 2, 'overall'), (5, 5, 'upload')]


def test_an_overdue_step_is_for_the_driver_not_its_loggers() -> None:
    relay = RelayLogger()
    info = StepInfo(0, 'stuck', 1.0)
    relay.on_event(RunStarted('r', 0.0, (info,)))
    relay.on_event(StepStarted('r', 0.0, info))
    relay.on_event(StepOverdue('r', 0.0, info, 5.0))
    items = relay.drain()
    assert isinstance(items[-1], StepOverdue)  # queued: the driver kills the worker on it
    seen = Received()

    class Forward(Logger):
        def on_event(self, event: RunEvent) -> None:
            seen.on_event(event)

    replay(items, RuntimeContext(logger=Forward(), client=None))
    assert [type(e) for e in seen.events] == [RunStarted, StepStarted]
