"""``async def`` steps next to plain ones: execute(), execute_async(), rollback, wrappers."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    LoggingStep,
    StepExecutionError,
    StepResult,
    TimingStep,
)
from synapse_sdk.testing import assert_rolled_back, assert_steps_ran, run_workflow

from .conftest import FnStep, orchestrate


class AsyncStep(BaseStep[BaseStepContext]):
    """Async execute/can_skip/rollback; records the loop and thread each one ran on."""

    def __init__(
        self,
        name: str,
        log: list[Any],
        *,
        skip: bool = False,
        fail: bool = False,
        delay: float = 0.0,
    ) -> None:
        self._name = name
        self.log = log
        self.skip = skip
        self.fail = fail
        self.delay = delay
        self.loops: dict[str, asyncio.AbstractEventLoop] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return 1.0

    async def can_skip(self, context: BaseStepContext) -> bool:
        self.loops['can_skip'] = asyncio.get_running_loop()
        await asyncio.sleep(0)
        return self.skip

    async def execute(self, context: BaseStepContext) -> StepResult:
        self.loops['execute'] = asyncio.get_running_loop()
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ValueError(f'{self._name} broke')
        self.log.append(('execute', self._name))
        return StepResult(data={'step': self._name})

    async def rollback(self, context: BaseStepContext, result: StepResult) -> None:
        self.loops['rollback'] = asyncio.get_running_loop()
        await asyncio.sleep(0.01)
        self.log.append(('rollback', self._name))  # only reached if the coroutine was awaited


class SyncStep(FnStep):
    """A plain step that records the thread it ran on and whether it had a running loop."""

    def __init__(self, name: str, log: list[Any], sleep: float = 0.0) -> None:
        super().__init__(name, execute=self._run, rollback=self._undo)
        self.log = log
        self.sleep = sleep
        self.thread: threading.Thread | None = None
        self.had_loop: bool | None = None

    def _run(self, context: BaseStepContext) -> StepResult:
        self.thread = threading.current_thread()
        try:
            asyncio.get_running_loop()
            self.had_loop = True
        except RuntimeError:
            self.had_loop = False
        time.sleep(self.sleep)
        self.log.append(('execute', self.name))
        return StepResult()

    def _undo(self, context: BaseStepContext, result: StepResult) -> None:
        self.log.append(('rollback', self.name))


def test_execute_without_a_loop_runs_async_execute_can_skip_and_rollback() -> None:
    log: list[Any] = []
    fetch = AsyncStep('fetch', log)
    skipped = AsyncStep('maybe', log, skip=True)
    steps = [SyncStep('prepare', log), fetch, skipped, SyncStep('finish', log)]
    orchestrator, _, progress = orchestrate(steps)

    summary = orchestrator.execute()

    assert summary['success'] and summary['steps_executed'] == 3
    assert summary['steps_skipped'] == 1
    assert log == [('execute', 'prepare'), ('execute', 'fetch'), ('execute', 'finish')]
    assert set(fetch.loops) == {'can_skip', 'execute'} and 'execute' not in skipped.loops
    run_loop = fetch.loops['execute']
    assert skipped.loops['can_skip'] is run_loop  # one loop for the whole run
    assert run_loop.is_closed()  # and it is closed when the run is over
    assert [r.data for r in orchestrator.context.step_results if not r.skipped][1] == {
        'step': 'fetch'
    }
    assert progress[-1] == 100


def test_execute_async_awaits_async_steps_on_the_callers_loop() -> None:
    log: list[Any] = []
    first = AsyncStep('first', log)
    blocking = SyncStep('blocking', log, sleep=0.1)
    last = AsyncStep('last', log)
    orchestrator, _, _ = orchestrate([first, blocking, last])

    async def main() -> tuple[asyncio.AbstractEventLoop, int, dict[str, Any]]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        result = await orchestrator.execute_async()
        task.cancel()
        return asyncio.get_running_loop(), ticks, result

    loop, ticks, result = asyncio.run(main())

    assert result['success'] and result['steps_executed'] == 3
    assert first.loops['execute'] is loop and last.loops['execute'] is loop
    assert first.loops['can_skip'] is loop
    assert log == [('execute', 'first'), ('execute', 'blocking'), ('execute', 'last')]
    # the plain step ran in a worker thread, without a loop, and the caller's loop kept going
    assert blocking.thread is not threading.main_thread() and blocking.had_loop is False
    assert ticks >= 5, ticks


@pytest.mark.parametrize('mode', ['execute', 'execute_async'])
def test_a_failing_async_step_rolls_back_sync_and_async_steps(mode: str) -> None:
    log: list[Any] = []
    steps = [
        SyncStep('a', log),
        AsyncStep('b', log),
        SyncStep('c', log),
        AsyncStep('d', log, fail=True, delay=0.01),
        SyncStep('e', log),
    ]
    orchestrator, runtime, _ = orchestrate(steps)

    caller_loop: list[asyncio.AbstractEventLoop] = []
    if mode == 'execute':
        with pytest.raises(StepExecutionError) as caught:
            orchestrator.execute()
    else:

        async def main() -> None:
            caller_loop.append(asyncio.get_running_loop())
            await orchestrator.execute_async()

        with pytest.raises(StepExecutionError) as caught:
            asyncio.run(main())

    assert str(caught.value) == "Step 'd' failed: ValueError: d broke"
    assert isinstance(caught.value.__cause__, ValueError)
    assert caught.value.rollback_errors == []
    assert log == [
        ('execute', 'a'),
        ('execute', 'b'),
        ('execute', 'c'),
        ('rollback', 'd'),
        ('rollback', 'c'),
        ('rollback', 'b'),
        ('rollback', 'a'),
    ]
    assert_rolled_back(runtime.memory, ['d', 'c', 'b', 'a'])
    if caller_loop:
        assert steps[1].loops['rollback'] is caller_loop[0]  # type: ignore[attr-defined]


def test_execute_inside_a_running_loop_tells_to_use_execute_async() -> None:
    log: list[Any] = []
    before = SyncStep('before', log)
    orchestrator, _, _ = orchestrate([before, AsyncStep('fetch', log)])

    async def main() -> None:
        orchestrator.execute()

    with pytest.raises(RuntimeError, match=r'await orchestrator\.execute_async\(\)') as caught:
        asyncio.run(main())
    assert 'inside a running event loop' in str(caught.value)
    assert ('rollback', 'before') in log  # a failure like any other: rolled back


def test_execute_inside_a_running_loop_is_fine_without_async_steps() -> None:
    log: list[Any] = []
    orchestrator, _, _ = orchestrate([SyncStep('a', log), SyncStep('b', log)])

    async def main() -> dict[str, Any]:
        return orchestrator.execute()

    assert asyncio.run(main())['success']


# --------------------------------------------------------------- wrappers around async steps


def test_logging_step_logs_an_async_step_when_it_has_finished() -> None:
    log: list[Any] = []
    run = run_workflow([LoggingStep(AsyncStep('fetch', log, delay=0.05))])

    assert run.succeeded, run.error
    events = [(e.event, e.data) for e in run.runtime.memory.events]
    assert [name for name, _ in events] == ['step_start', 'step_end']
    end = events[1][1]
    assert end['step'] == 'fetch' and end['success'] is True and 'error' not in end
    assert end['elapsed'] >= 0.05  # measured around the await, not just the coroutine's creation


def test_logging_step_logs_a_failing_async_step() -> None:
    log: list[Any] = []
    run = run_workflow([LoggingStep(AsyncStep('fetch', log, fail=True))])

    assert isinstance(run.error, StepExecutionError)
    end = run.runtime.memory.events[-1]
    assert end.event == 'step_end'
    assert end.data['success'] is False and end.data['error'] == 'ValueError: fetch broke'


def test_timing_step_times_an_async_step() -> None:
    log: list[Any] = []
    run = run_workflow([TimingStep(AsyncStep('fetch', log, delay=0.05))])

    assert run.succeeded, run.error
    result = run.context.step_results[0]
    assert result.data['step'] == 'fetch'
    assert 0.05 <= result.data['duration_seconds'] < 1.0


def test_timing_step_turns_a_failing_async_step_into_a_timed_failure() -> None:
    log: list[Any] = []
    run = run_workflow([FnStep('before'), TimingStep(AsyncStep('fetch', log, fail=True))])

    assert str(run.error) == "Step 'fetch' failed: ValueError: fetch broke"
    assert isinstance(run.error.__cause__, ValueError)
    failed = run.context.step_results[-1]
    assert not failed.success and 'duration_seconds' in failed.data
    assert_rolled_back(run, ['fetch', 'before'])


def test_a_wrapped_async_skip_is_awaited() -> None:
    log: list[Any] = []
    run = run_workflow([LoggingStep(AsyncStep('maybe', log, skip=True)), FnStep('next')])
    assert run.succeeded and run.result is not None and run.result['steps_skipped'] == 1
    assert_steps_ran(run, ['next'])


def test_a_wrapped_async_rollback_is_awaited() -> None:
    log: list[Any] = []

    def boom(context: BaseStepContext) -> StepResult:
        raise RuntimeError('later step failed')

    steps = [LoggingStep(AsyncStep('upload', log)), FnStep('finalize', execute=boom)]
    run = run_workflow(steps)

    assert isinstance(run.error, StepExecutionError)
    # LoggingStep delegates rollback to the async step: its coroutine must be awaited
    assert log == [('execute', 'upload'), ('rollback', 'upload')]


# --------------------------------------------------------------- the awaiting task is cancelled


def test_cancelling_the_awaiting_task_raises_only_after_the_rollback() -> None:
    log: list[Any] = []
    looping = FnStep(
        'work',
        execute=lambda context: _loop_on_progress(context, log),
        rollback=lambda context, result: log.append(('rollback', 'work')),
    )
    orchestrator, _, _ = orchestrate([AsyncStep('first', log), looping])

    async def main() -> list[Any]:
        task = asyncio.ensure_future(orchestrator.execute_async())
        while ('execute', 'first') not in log:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return list(log)  # what had happened when the caller heard of the cancellation

    seen = asyncio.run(main())

    assert orchestrator.cancel_token.reason == 'the awaiting task was cancelled'
    # execute_async promises "Cancelling the awaiting task cancels the run (after rollback)"
    assert seen[-2:] == [('rollback', 'work'), ('rollback', 'first')], seen


def _loop_on_progress(context: BaseStepContext, log: list[Any]) -> StepResult:
    for i in range(1, 1001):
        context.set_progress(i, 1000)
        time.sleep(0.005)
    log.append(('execute', 'work'))
    return StepResult()
