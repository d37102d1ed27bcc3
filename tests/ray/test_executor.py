"""``RayExecutor``: a whole action run in a Ray actor, seen from the driver.

Success (events and progress relayed live), a failing step (rolled back on the
worker), cancellation from the driver, and a worker that dies mid-step (rolled
back on the driver from the journal).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.execution import LocalExecutor, cancel_run
from synapse_sdk.execution._on_ray import RayExecutor
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.actions import ActionError
from synapse_sdk.plugins.steps import (
    RunCancelledError,
    RunEnded,
    RunEvent,
    RunSummary,
    StepExecutionError,
)
from synapse_sdk.runtime import MemoryLogger, RuntimeContext


def stored(client: LocalBackendClient) -> list[tuple[int, str]]:
    return [(info['id'], info['name']) for info in client.list_files()]


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob('*') if p.is_file())


def preexisting(store: LocalBackendClient, tmp_path: Path) -> list[tuple[int, str]]:
    """One file stored before the run: rollback must leave it alone."""
    keep = tmp_path / 'keep.txt'
    keep.write_text('stored before the run\n', encoding='utf-8')
    store.upload_file(keep)
    return stored(store)


def executor(journal: Journal) -> RayExecutor:
    return RayExecutor(journal=journal, console=False, stop_timeout=30.0)


@dataclass
class Driver:
    """The driver's side of a run on Ray: the plugin loader (``plugin_factory``), the
    source folder, and the store (holding ``before``, one file older than the run),
    journal, logger and runtime the run reports to."""

    load: Callable[..., Any]
    source: Path
    store: LocalBackendClient
    journal: Journal
    memory: MemoryLogger
    runtime: RuntimeContext
    before: list[tuple[int, str]]

    def run(self, plugin: Any, runner: RayExecutor | None = None) -> dict[str, Any]:
        """Runs ``plugin`` on the source folder, by ``runner`` (default: :func:`executor`)."""
        return (runner or executor(self.journal)).run(
            plugin.action, {'source_path': str(self.source)}, ctx=self.runtime, origin=plugin.origin
        )


@pytest.fixture
def driver(
    plugin_factory: Any,
    source: Path,
    tmp_path: Path,
    journal: Journal,
    memory: MemoryLogger,
    store: LocalBackendClient,
    runtime: RuntimeContext,
) -> Driver:
    return Driver(
        plugin_factory, source, store, journal, memory, runtime, preexisting(store, tmp_path)
    )


def cancel_when(
    condition: Callable[[], object], runtime: RuntimeContext, reason: str, within: float = 60
) -> threading.Thread:
    """Starts a daemon thread that cancels ``runtime`` for ``reason`` as soon as
    ``condition()`` holds (asked every 0.05 s, for ``within`` seconds at most)."""

    def cancel() -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if condition():
                runtime.cancel(reason)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=cancel, daemon=True)
    thread.start()
    return thread


# --- the test plugins: shared imports, Params, the steps, an Action registering them
PLUGIN_IMPORTS = """\
import os
import time
from pathlib import Path

from pydantic import BaseModel

from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.actions.upload import UploadContext
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult
"""


def step_plugin(
    *steps: str, params: Sequence[str] = ('source_path: str',), imports: str = ''
) -> str:
    """A plugin module: :data:`PLUGIN_IMPORTS` (and ``imports``), ``Params`` with the
    fields ``params``, the step classes ``steps`` (their sources) and an ``Action``
    that registers one of each, in that order."""
    names = []
    for step in steps:
        found = re.match(r'class (\w+)\(', step)
        assert found is not None, f'not a class: {step[:40]!r}'
        names.append(found.group(1))
    action = 'class Action(BaseUploadAction[Params]):\n'
    action += '    def setup_steps(self, registry: StepRegistry) -> None:\n'
    action += ''.join(f'        registry.register({name}())\n' for name in names)
    fields = ''.join(f'    {field}\n' for field in params)
    return '\n\n'.join(
        [PLUGIN_IMPORTS + imports, f'class Params(BaseModel):\n{fields}', *steps, action]
    )


# --- success -------------------------------------------------------------------
def test_upload_example_runs_on_ray_and_relays_its_events(
    example: Any,
    source: Path,
    journal: Journal,
    memory: MemoryLogger,
    store: LocalBackendClient,
    runtime: RuntimeContext,
) -> None:
    result = executor(journal).run(
        example.action, {'source_path': str(source)}, ctx=runtime, origin=example.origin
    )

    assert result['success'] is True
    assert result['run_id'] == runtime.run_id
    assert result['steps']['discover_files'] == {'file_count': 7}
    assert result['steps']['upload_files'] == {'uploaded': 7}
    assert sorted(name for _, name in stored(store)) == names_in(source)

    # the lifecycle, as the worker's orchestrator reported it
    assert memory.lifecycle == [
        ('run_start', None),
        ('step_start', 'discover_files'),
        ('step_end', 'discover_files'),
        ('step_start', 'upload_files'),
        ('step_end', 'upload_files'),
        ('step_start', 'finalize'),
        ('step_end', 'finalize'),
        ('run_end', 'succeeded'),
    ]
    upload = memory.progress_of('upload')
    assert upload and upload[-1] == 100
    overall = memory.progress_of('overall')
    assert overall and overall[-1] == 100
    assert overall == sorted(overall)
    complete = [e for e in memory.events if e.event == 'upload_complete']
    assert len(complete) == 1
    assert complete[0].data['file_count'] == 7
    assert sorted(complete[0].data['file_ids']) == sorted(i for i, _ in stored(store))

    record = journal.get_run(runtime.run_id)
    assert record.status == 'succeeded'
    assert record.progress == 100
    assert record.action == 'upload'
    assert record.plugin_path == str(example.path)
    # where it ran, for recovery: the worker, on this host, ran in the driver's directory
    assert record.cwd == os.getcwd()
    assert record.plugin == 'file_upload'
    assert record.storage == store.url
    assert [s.status for s in journal.steps(runtime.run_id)] == ['succeeded'] * 3


def test_bad_params_fail_on_the_driver_before_ray_is_asked(
    example: Any, journal: Journal, runtime: RuntimeContext
) -> None:
    with pytest.raises(ActionError, match='source_path'):
        executor(journal).run(example.action, {'workers': 3}, ctx=runtime, origin=example.origin)
    assert journal.list_runs() == []


# --- a failing step -----------------------------------------------------------
STORE = """\
class Store(BaseStep[UploadContext]):
    name = 'store'
    progress_weight = 0.6

    def execute(self, context):
        files = sorted(p for p in Path(context.params['source_path']).rglob('*') if p.is_file())
        for i, path in enumerate(files):
            context.append_rollback('ids', context.client.upload_file(path))
            context.set_progress(i + 1, len(files))
        return StepResult(data={'stored': len(files)})

    def rollback(self, context, result):
        for file_id in result.rollback_data.get('ids', []):
            context.client.delete_file(file_id)
"""

PUBLISH = """\
class Publish(BaseStep[UploadContext]):
    name = 'publish'
    progress_weight = 0.4

    def execute(self, context):
        context.log('publishing', {'to': 'nowhere'})
        raise ConnectionError('the catalogue refused the files')
"""

FAILING = step_plugin(STORE, PUBLISH)


def test_a_failing_step_is_rolled_back_on_the_worker(driver: Driver) -> None:
    plugin = driver.load('failing_upload', FAILING)

    with pytest.raises(StepExecutionError) as caught:
        driver.run(plugin)

    error = caught.value
    assert type(error) is StepExecutionError
    assert error.step_name == 'publish'
    assert 'ConnectionError' in error.result.error
    assert 'the catalogue refused the files' in error.result.error
    assert "Step 'publish' failed" in str(error)
    assert error.rollback_errors == []
    assert stored(driver.store) == driver.before  # the 7 uploads were deleted, the older file kept

    memory, journal, run_id = driver.memory, driver.journal, driver.runtime.run_id
    assert 'publishing' in memory.event_names()
    assert ('rollback_end', 'store') in memory.lifecycle
    assert memory.lifecycle[-1] == ('run_end', 'failed')
    assert memory.progress_of('store')[-1] == 100
    record = journal.get_run(run_id)
    assert record.status == 'rolled_back'
    assert [(s.name, s.status) for s in journal.steps(run_id)] == [
        ('store', 'rolled_back'),
        ('publish', 'rolled_back'),
    ]


# --- cancellation from the driver ---------------------------------------------
SPIN = """\
class Spin(BaseStep[UploadContext]):
    name = 'spin'
    progress_weight = 1.0

    def execute(self, context):
        for path in sorted(Path(context.params['source_path']).rglob('*'))[:2]:
            if path.is_file():
                context.append_rollback('ids', context.client.upload_file(path))
        ticks = int(context.params['seconds'] / 0.05)
        for tick in range(ticks):
            context.set_progress(tick, ticks)
            time.sleep(0.05)
        return StepResult()

    def rollback(self, context, result):
        for file_id in result.rollback_data.get('ids', []):
            context.client.delete_file(file_id)
        context.log('spin_rolled_back', {'ids': result.rollback_data.get('ids', [])})
"""

SPINNING = step_plugin(SPIN, params=('source_path: str', 'seconds: float = 60.0'))


def test_cancelling_the_driver_runtime_cancels_the_remote_run(driver: Driver, alarm: Any) -> None:
    plugin = driver.load('spinning_upload', SPINNING)
    memory = driver.memory
    alarm(120)

    canceller = cancel_when(
        lambda: len(memory.progress_of('spin')) >= 3,  # the step is running on the worker
        driver.runtime,
        'stopped from the test',
    )
    started = time.monotonic()
    with pytest.raises(RunCancelledError) as caught:
        driver.run(plugin)
    canceller.join(5)

    assert time.monotonic() - started < 45  # stopped, not run to its 60 s end
    error = caught.value
    assert error.step_name == 'spin'
    assert error.reason == 'stopped from the test'
    assert 'cancelled' in error.result.error
    assert error.rollback_errors == []
    assert stored(driver.store) == driver.before  # the worker's rollback deleted its two uploads
    rolled_back = [e for e in memory.events if e.event == 'spin_rolled_back']
    assert len(rolled_back) == 1 and len(rolled_back[0].data['ids']) == 2
    assert ('rollback_end', 'spin') in memory.lifecycle
    record = driver.journal.get_run(driver.runtime.run_id)
    assert record.status == 'cancelled'
    assert 'stopped from the test' in (record.error or '')


# --- the worker dies mid-step -------------------------------------------------
PREPARE = """\
class Prepare(BaseStep[UploadContext]):
    name = 'prepare'
    progress_weight = 0.1

    def execute(self, context):
        return StepResult(data={'ok': True})
"""

STORE_THEN_DIE = """\
class Store(BaseStep[UploadContext]):
    name = 'store'
    progress_weight = 0.9

    def execute(self, context):
        files = sorted(p for p in Path(context.params['source_path']).rglob('*') if p.is_file())
        for i, path in enumerate(files[:4]):
            key = f'{context.runtime_ctx.run_id}:{path.name}'
            context.append_rollback('keys', key)  # intent first
            context.append_rollback('ids', context.client.upload_file(path, key=key))
            context.set_progress(i + 1, len(files))
        # one more upload whose id is never recorded: only its key finds it
        last = files[4]
        key = f'{context.runtime_ctx.run_id}:{last.name}'
        context.append_rollback('keys', key)
        context.client.upload_file(last, key=key)
        os._exit(1)  # the Ray worker dies mid-step

    def rollback(self, context, result):
        ids = set(result.rollback_data.get('ids', []))
        for key in result.rollback_data.get('keys', []):
            found = context.client.find_file(key)
            if found is not None:
                ids.add(found)
        for file_id in sorted(ids):
            context.client.delete_file(file_id)
"""

CRASHING = step_plugin(PREPARE, STORE_THEN_DIE)


def test_a_dead_worker_is_reported_and_rolled_back_on_the_driver(
    driver: Driver, alarm: Any
) -> None:
    plugin = driver.load('crashing_upload', CRASHING)
    alarm(120)

    with pytest.raises(StepExecutionError) as caught:
        driver.run(plugin)

    error = caught.value
    assert type(error) is StepExecutionError
    assert error.step_name == 'store'
    assert 'Ray worker died' in error.result.error
    assert "Step 'store' failed" in str(error)
    assert error.rollback_errors == []
    assert stored(driver.store) == driver.before  # the five uploads, by id or by key, are gone

    journal, run_id = driver.journal, driver.runtime.run_id
    record = journal.get_run(run_id)
    assert record.status == 'rolled_back'
    steps = {s.name: s.status for s in journal.steps(run_id)}
    assert steps == {'prepare': 'rolled_back', 'store': 'rolled_back'}
    # the rollback ran here, on the driver: its loggers saw it
    assert ('rollback_end', 'store') in driver.memory.lifecycle


# --- a worker that does not stop when cancelled ---------------------------------
BLOCK = """\
class Block(BaseStep[UploadContext]):
    name = 'block'
    progress_weight = 1.0

    def execute(self, context):
        first = sorted(p for p in Path(context.params['source_path']).rglob('*') if p.is_file())[0]
        context.append_rollback('ids', context.client.upload_file(first))
        context.set_progress(1, 2)
        time.sleep(120)  # deaf to cancellation: never checks it
        return StepResult()

    def rollback(self, context, result):
        for file_id in result.rollback_data.get('ids', []):
            context.client.delete_file(file_id)
"""

STUBBORN = step_plugin(BLOCK)


def test_a_worker_deaf_to_cancel_is_killed_after_stop_timeout_and_rolled_back(
    driver: Driver, alarm: Any
) -> None:
    plugin = driver.load('stubborn_upload', STUBBORN)
    alarm(90)

    cancel_when(lambda: driver.memory.progress_of('block'), driver.runtime, 'user gave up')
    started = time.monotonic()
    with pytest.raises(StepExecutionError) as caught:
        driver.run(plugin, RayExecutor(journal=driver.journal, console=False, stop_timeout=2.0))

    assert time.monotonic() - started < 60
    error = caught.value
    assert error.step_name == 'block'
    assert 'did not stop in time' in (error.result.error or '')
    assert error.rollback_errors == []
    assert stored(driver.store) == driver.before  # rolled back on the driver, from the journal
    record = driver.journal.get_run(driver.runtime.run_id)
    assert record.status == 'cancelled'  # rolled back, as a cancel whose step stopped
    assert 'its Ray worker was killed and the run rolled back' in (record.error or '')


def test_a_journal_cancel_of_a_step_deaf_to_it_kills_the_worker_after_stop_timeout(
    driver: Driver, alarm: Any
) -> None:
    """`synapse runs cancel` goes through the journal to the worker, whose heartbeat
    cancels its runtime; the driver learns of it through the relay and applies its
    stop_timeout as for Ctrl-C, instead of waiting for the step's 120 s sleep."""
    plugin = driver.load('stubborn_upload', STUBBORN)
    alarm(90)
    asked: list[float] = []

    def cancel() -> None:
        while not driver.memory.progress_of('block'):
            time.sleep(0.05)
        asked.append(time.monotonic())
        cancel_run(Journal(driver.journal.location), driver.runtime.run_id, by='a test')

    threading.Thread(target=cancel, daemon=True).start()
    with pytest.raises(RunCancelledError) as caught:
        driver.run(plugin, RayExecutor(journal=driver.journal, console=False, stop_timeout=2.0))

    assert time.monotonic() - asked[0] < 2.0 + 8.0  # the grace, the kill, the rollback
    assert caught.value.reason == 'cancel requested by a test'
    assert stored(driver.store) == driver.before  # rolled back on the driver, from the journal
    record = driver.journal.get_run(driver.runtime.run_id)
    assert record.status == 'cancelled'
    assert 'cancel requested by a test' in (record.error or '')
    steps = {s.name: s.status for s in driver.journal.steps(driver.runtime.run_id)}
    assert steps == {'block': 'rolled_back'}


OVERDUE = STUBBORN.replace("    name = 'block'\n", "    name = 'block'\n    timeout = 0.5\n")


def test_a_step_stuck_past_its_timeout_has_its_worker_killed_and_is_rolled_back(
    driver: Driver, alarm: Any
) -> None:
    """Blocked in C (time.sleep) past its timeout: no thread can stop it, the process can."""
    assert 'timeout = 0.5' in OVERDUE
    plugin = driver.load('overdue_upload', OVERDUE)
    alarm(90)
    started = time.monotonic()
    with pytest.raises(StepExecutionError) as caught:
        driver.run(plugin, RayExecutor(journal=driver.journal, console=False))
    assert time.monotonic() - started < 60  # timeout + two grace periods, not the 120 s sleep
    error = caught.value
    assert not isinstance(error, RunCancelledError)  # a timeout is a failure, not a cancel
    assert error.step_name == 'block'
    assert 'exceeded its timeout of 0.5s and did not stop' in (error.result.error or '')
    assert stored(driver.store) == driver.before  # rolled back on the driver, from the journal
    assert driver.journal.get_run(driver.runtime.run_id).status == 'rolled_back'


# --- what is not a worker crash ---------------------------------------------------
PLAIN = """\
from pydantic import BaseModel

from synapse_sdk.plugins import BaseUploadAction


class Params(BaseModel):
    value: int = 1


class Action(BaseUploadAction[Params]):
    def execute(self):
        raise ValueError(f'cannot handle value {self.params.value}')
"""


def test_an_error_of_a_plain_action_reaches_the_driver_as_itself(
    plugin_factory: Any, journal: Journal, runtime: RuntimeContext, alarm: Any
) -> None:
    """As with LocalExecutor, the action's own exception, not a 'worker died' report."""
    plugin = plugin_factory('plain_action', PLAIN)
    alarm(60)

    with pytest.raises(Exception) as caught:
        executor(journal).run(plugin.action, {'value': 7}, ctx=runtime, origin=plugin.origin)

    assert 'worker died' not in str(caught.value)
    assert isinstance(caught.value, ValueError), f'got {type(caught.value).__name__}'
    assert 'cannot handle value 7' in str(caught.value)
    assert journal.get_run(runtime.run_id).status == 'failed'


SAY = """\
class Say(BaseStep[UploadContext]):
    name = 'say'
    progress_weight = 1.0

    def execute(self, context):
        return StepResult(data={'said': shout(context.params['word'])})
"""

WITH_HELPER = step_plugin(
    SAY,
    params=('word: str',),
    imports='\nfrom naming import shout  # a sibling module of the plugin folder\n',
)


def test_a_plugins_own_modules_reach_the_worker_when_ray_is_already_running(
    plugin_factory: Any, journal: Journal, runtime: RuntimeContext, alarm: Any
) -> None:
    """The plugin folder must travel with the run even if Ray was started before it
    (another plugin's run, or the application's own ``ray.init()``)."""
    naming = 'def shout(text):\n    return text.upper() + "!"\n'
    plugin = plugin_factory('helper_user', WITH_HELPER, naming=naming)
    alarm(60)

    result = executor(journal).run(
        plugin.action, {'word': 'hello'}, ctx=runtime, origin=plugin.origin
    )

    assert result['steps']['say'] == {'said': 'HELLO!'}


# --- the run's summary, as the driver's loggers see it ------------------------------
class SummaryLogger(MemoryLogger):
    def __init__(self) -> None:
        super().__init__()
        self.summaries: list[RunSummary] = []

    def on_event(self, event: RunEvent) -> None:
        super().on_event(event)
        if isinstance(event, RunEnded):
            self.summaries.append(event.summary)


UNDO_FAILS = FAILING.replace(
    '            context.client.delete_file(file_id)\n',
    "            raise PermissionError(f'cannot delete {file_id}')\n",
)


def test_the_driver_loggers_get_the_same_run_summary_as_a_local_run(
    plugin_factory: Any, source: Path, tmp_path: Path
) -> None:
    plugin = plugin_factory('undo_fails', UNDO_FAILS)
    seen: dict[str, RunSummary] = {}
    for mode in ('local', 'ray'):
        logger = SummaryLogger()
        ctx = RuntimeContext(logger=logger, client=LocalBackendClient(tmp_path / mode))
        journal = Journal(tmp_path / f'{mode}.db')
        runner: Any = (
            LocalExecutor(console=False, journal=journal)
            if mode == 'local'
            else RayExecutor(journal=journal, console=False)
        )
        with pytest.raises(StepExecutionError):
            runner.run(plugin.action, {'source_path': str(source)}, ctx=ctx, origin=plugin.origin)
        (seen[mode],) = logger.summaries

    local, remote = seen['local'], seen['ray']
    assert remote.failed_step == local.failed_step == 'publish'
    assert len(local.rollback_errors) == 1
    assert (
        remote.steps_executed,
        remote.steps_total,
        remote.rollback_errors,
        remote.cancelled,
    ) == (local.steps_executed, local.steps_total, local.rollback_errors, local.cancelled)
