"""``context.map``: the serial, threads and ray backends, and the upload example fanned out.

The steps here run in this process under an :class:`Orchestrator` (journaled,
so the rollback data can be read back); with ``backend='ray'`` the items run
as tasks on the session's Ray instance.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import ray

import synapse_sdk.execution._on_ray  # noqa: F401 - registers the 'ray' backend
from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.execution import LocalExecutor
from synapse_sdk.execution._on_ray import RayExecutor
from synapse_sdk.journal import Journal, JournalListener
from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    MapItemError,
    Orchestrator,
    RollbackData,
    RunCancelledError,
    RunEvent,
    RunListener,
    StepExecutionError,
    StepRegistry,
    StepResult,
)
from synapse_sdk.plugins.steps._fanout import BACKENDS, backend_named, register_backend
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

ALL = ['serial', 'threads', 'ray']
CONCURRENT = ['threads', 'ray']


# --- item functions: module level, so they travel to Ray workers by value ------
def square(x: int) -> int:
    time.sleep(0.002 * (20 - x) if x < 20 else 0)  # early items finish last
    return x * x


def store_one(job: tuple[LocalBackendClient, str]) -> int:
    client, path = job
    if Path(path).name.startswith('poison'):
        raise ValueError(f'refusing {Path(path).name}')
    time.sleep(0.05)
    return client.upload_file(path)


def store_path(client: LocalBackendClient, path: str) -> int:
    return client.upload_file(path)


def slow_store(job: tuple[LocalBackendClient, str]) -> int:
    client, path = job
    file_id = client.upload_file(path)
    time.sleep(1.0)  # done, but not yet returned
    return file_id


# --- a step that fans out -----------------------------------------------------
class FanOut(BaseStep[BaseStepContext]):
    name = 'fan_out'
    progress_weight = 1.0

    def __init__(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        backend: str,
        *,
        max_workers: int | None = 2,
        delete: Callable[[Any], None] | None = None,
    ) -> None:
        self.fn = fn
        self.items = items
        self.backend = backend
        self.max_workers = max_workers
        self.delete = delete
        self.rolled_back: list[Any] | None = None

    def execute(self, context: BaseStepContext) -> StepResult:
        results = context.map(
            self.fn,
            self.items,
            backend=self.backend,
            max_workers=self.max_workers,
            rollback_key='done',
            category='items',
        )
        return StepResult(data={'results': results})

    def rollback(self, context: BaseStepContext, result: StepResult) -> None:
        self.rolled_back = list(result.rollback_data.get('done', []))
        if self.delete is not None:
            for value in self.rolled_back:
                self.delete(value)


class Boom(BaseStep[BaseStepContext]):
    name = 'boom'
    progress_weight = 0.1

    def execute(self, context: BaseStepContext) -> StepResult:
        raise RuntimeError('the step after the fan-out failed')


class RollbackSpy(RunListener):
    """What the journal is told as it happens: one ``RollbackData`` per finished item."""

    def __init__(self) -> None:
        self.appended: list[tuple[str | None, dict[str, Any]]] = []

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, RollbackData):
            self.appended.append((event.append_to, dict(event.values)))


class Run:
    """One journaled in-process run of some steps, with a MemoryLogger."""

    def __init__(self, tmp_path: Path, *steps: BaseStep[BaseStepContext]) -> None:
        self.memory = MemoryLogger()
        self.runtime = RuntimeContext(logger=self.memory, client=None)
        self.journal = Journal(tmp_path / 'runs.db')
        self.run_id = self.runtime.run_id
        self.journal.start_run(self.run_id, entrypoint='tests.ray:fanout', params={})
        registry: StepRegistry[BaseStepContext] = StepRegistry()
        for step in steps:
            registry.register(step)
        self.context = BaseStepContext(runtime_ctx=self.runtime)
        self.spy = RollbackSpy()
        self.orchestrator = Orchestrator(
            registry,
            self.context,
            listeners=[
                *self.runtime.listeners,
                JournalListener(self.journal, self.run_id),
                self.spy,
            ],
            cancel_token=self.runtime.cancel_token,
        )

    def execute(self) -> dict[str, Any]:
        return self.orchestrator.execute()

    def step(self, name: str) -> Any:
        return next(s for s in self.journal.steps(self.run_id) if s.name == name)


def sources(folder: Path, count: int, *, poison_at: int | None = None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        name = f'poison_{i:03d}.txt' if i == poison_at else f'item_{i:03d}.txt'
        path = folder / name
        path.write_text(f'item {i}\n', encoding='utf-8')
        paths.append(str(path))
    return paths


# --- results, progress, rollback data -----------------------------------------
@pytest.mark.parametrize('backend', ALL)
def test_results_come_back_in_item_order_with_progress_per_item(
    backend: str, tmp_path: Path
) -> None:
    items = list(range(24))
    step = FanOut(square, items, backend, max_workers=4)
    run = Run(tmp_path, step)

    summary = run.execute()

    assert summary['success'] is True
    result = run.context.step_results[0]
    assert result.data['results'] == [x * x for x in items]
    updates = [(c, t) for c, t, cat in run.memory.progress_updates if cat == 'items']
    assert updates == [(n, len(items)) for n in range(1, len(items) + 1)]
    # every result was appended to the rollback data as its item finished, in that order
    assert sorted(result.rollback_data['done']) == sorted(x * x for x in items)
    assert run.spy.appended == [('done', {'done': value}) for value in result.rollback_data['done']]
    assert sorted(run.step('fan_out').rollback_data['done']) == sorted(x * x for x in items)


@pytest.mark.parametrize('backend', ALL)
def test_the_results_recorded_are_what_a_later_failure_rolls_back(
    backend: str, tmp_path: Path
) -> None:
    store = LocalBackendClient(tmp_path / 'store')
    jobs = [(store, p) for p in sources(tmp_path / 'src', 6)]
    step = FanOut(store_one, jobs, backend, delete=store.delete_file)
    run = Run(tmp_path, step, Boom())

    with pytest.raises(StepExecutionError, match="Step 'boom' failed"):
        run.execute()

    assert step.rolled_back is not None and len(step.rolled_back) == 6
    assert store.list_files() == []
    assert [s.status for s in run.journal.steps(run.run_id)] == ['rolled_back', 'rolled_back']


# --- a failing item -----------------------------------------------------------
@pytest.mark.parametrize('backend', CONCURRENT)
def test_a_failing_item_fails_the_step_and_exactly_the_finished_items_are_undone(
    backend: str, tmp_path: Path
) -> None:
    store = LocalBackendClient(tmp_path / 'store')
    paths = sources(tmp_path / 'src', 12, poison_at=4)
    jobs = [(store, p) for p in paths]
    step = FanOut(store_one, jobs, backend, max_workers=2, delete=store.delete_file)
    run = Run(tmp_path, step)

    with pytest.raises(StepExecutionError) as caught:
        run.execute()

    error = caught.value
    assert error.step_name == 'fan_out'
    cause = error.__cause__
    assert isinstance(cause, MapItemError)
    assert cause.index == 4
    assert cause.item == jobs[4]
    assert isinstance(cause.__cause__, ValueError)
    shown = repr(jobs[4])
    shown = shown[:117] + '...' if len(shown) > 120 else shown
    assert str(cause).startswith(f'item 4 ({shown}) failed: ')
    assert 'refusing poison_004.txt' in str(cause)
    assert error.result.error is not None and f'item 4 ({shown}) failed' in error.result.error

    # the failed result carries what finished; rollback deleted exactly that
    recorded = error.result.rollback_data['done']
    assert step.rolled_back == recorded
    assert len(set(recorded)) == len(recorded) >= 1
    assert run.step('fan_out').rollback_data == {'done': recorded}
    assert store.list_files() == []  # nothing left behind ...
    assert error.rollback_errors == []  # ... and nothing deleted twice or unknown
    # the rest was stopped: with 2 workers, the last items were never started
    assert len(recorded) < len(jobs) - 1


@pytest.mark.parametrize('backend', ALL)
def test_a_failing_item_reads_the_same_on_every_backend(backend: str, tmp_path: Path) -> None:
    """``item 4 ('...') failed: ValueError: <message>``: one line, whichever backend ran it."""
    store = LocalBackendClient(tmp_path / 'store')
    paths = sources(tmp_path / 'src', 6, poison_at=4)
    run = Run(tmp_path, FanOut(store_one, [(store, p) for p in paths], backend))

    with pytest.raises(StepExecutionError) as caught:
        run.execute()

    cause = caught.value.__cause__
    assert isinstance(cause, MapItemError)
    shown = repr((store, paths[4]))
    shown = shown[:117] + '...' if len(shown) > 120 else shown
    assert str(cause) == f'item 4 ({shown}) failed: ValueError: refusing poison_004.txt'
    assert caught.value.result.error == f'MapItemError: {cause}'


def test_serial_stops_at_the_first_failing_item(tmp_path: Path) -> None:
    """Per ``context.map``'s contract: the first item that raises stops the rest."""
    store = LocalBackendClient(tmp_path / 'store')
    paths = sources(tmp_path / 'src', 8, poison_at=2)
    step = FanOut(store_one, [(store, p) for p in paths], 'serial', delete=store.delete_file)
    run = Run(tmp_path, step)

    with pytest.raises(StepExecutionError) as caught:
        run.execute()

    assert isinstance(caught.value.__cause__, MapItemError)
    assert caught.value.__cause__.index == 2
    assert store.list_files() == []
    # items 0 and 1 ran before the failure; 3..7 should never have been started
    assert len(step.rolled_back or []) == 2


@pytest.mark.parametrize('backend', CONCURRENT)
def test_cancelling_mid_map_still_rolls_back_every_item_that_ran(
    backend: str, tmp_path: Path
) -> None:
    """Items in flight when the run is cancelled finish; their results must be recorded too."""
    store = LocalBackendClient(tmp_path / 'store')
    jobs = [(store, p) for p in sources(tmp_path / 'src', 8)]
    step = FanOut(slow_store, jobs, backend, max_workers=4, delete=store.delete_file)
    run = Run(tmp_path, step)

    def cancel_after_two_results() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(run.memory.progress_of('items')) >= 2:  # items 2.. are in flight
                run.runtime.cancel('enough')
                return
            time.sleep(0.01)

    threading.Thread(target=cancel_after_two_results, daemon=True).start()
    with pytest.raises(RunCancelledError):
        run.execute()
    time.sleep(1.0)  # anything still running in a worker lands meanwhile

    assert store.list_files() == []


def test_unknown_backend_is_a_value_error_listing_the_backends(tmp_path: Path) -> None:
    context = BaseStepContext(runtime_ctx=RuntimeContext(logger=[]))
    with pytest.raises(ValueError, match=r"unknown map backend 'dask'.*ray, serial, threads"):
        context.map(square, [1, 2], backend='dask')

    run = Run(tmp_path, FanOut(square, [1, 2], 'dask'))
    with pytest.raises(StepExecutionError, match="unknown map backend 'dask'") as caught:
        run.execute()
    assert isinstance(caught.value.__cause__, ValueError)


def test_the_name_ray_alone_selects_the_ray_backend_in_a_fresh_process() -> None:
    """No import of ``execution.on_ray`` needed: the backend is registered by module path
    and loaded on first use (and not before: importing the steps core stays cheap)."""
    probe = (
        'import sys\n'
        'from synapse_sdk.plugins.steps._fanout import backend_named\n'
        "assert 'synapse_sdk.execution._on_ray' not in sys.modules\n"
        "assert 'ray' not in sys.modules\n"
        "print(type(backend_named('ray')).__qualname__)\n"
    )
    done = subprocess.run(
        [sys.executable, '-c', probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'RayMapBackend'


def test_a_backend_registered_by_a_path_that_does_not_import_names_it() -> None:
    register_backend('elsewhere', 'synapse_sdk_nowhere.backends:Fast')
    register_backend('misnamed', 'synapse_sdk.plugins.steps._fanout:NoSuchBackend')
    try:
        with pytest.raises(ImportError, match=r"map backend 'elsewhere' cannot be loaded from"):
            backend_named('elsewhere')
        with pytest.raises(ImportError, match=r"'misnamed': .*fanout has no 'NoSuchBackend'"):
            backend_named('misnamed')
    finally:
        BACKENDS.pop('elsewhere', None)
        BACKENDS.pop('misnamed', None)


def test_ray_backend_takes_a_partial_of_a_module_function(tmp_path: Path) -> None:
    """``functools.partial(fn, client)`` (any callable, as with threads) works with ray too,
    and shipping it does not register the standard library's ``functools`` for pickling
    by value (which breaks pickling action classes for the rest of the process)."""
    store = LocalBackendClient(tmp_path / 'store')
    paths = sources(tmp_path / 'src', 3)
    step = FanOut(functools.partial(store_path, store), paths, 'ray', delete=store.delete_file)
    run = Run(tmp_path, step)

    try:
        outcome: BaseException | None = None
        try:
            run.execute()
        except StepExecutionError as error:
            outcome = error
    finally:
        polluted = 'functools' in ray.cloudpickle.list_registry_pickle_by_value()
        if polluted:  # keep the rest of the session's pickling sane
            ray.cloudpickle.unregister_pickle_by_value(functools)

    assert not polluted, "context.map(backend='ray') registered functools by value"
    assert outcome is None, f'the fan-out failed: {outcome}'
    assert sorted(f['name'] for f in store.list_files()) == sorted(Path(p).name for p in paths)


# --- the upload example, fanned out -------------------------------------------
def make_sources(folder: Path, count: int) -> list[str]:
    for i in range(count):
        where = folder / f'part{i % 3}'
        where.mkdir(parents=True, exist_ok=True)
        (where / f'f{i:03d}.bin').write_bytes(bytes([i % 256]) * (i + 1))
    return sorted(f'f{i:03d}.bin' for i in range(count))


@pytest.mark.parametrize(
    ('mode', 'parallel'),
    [('local', 'threads'), ('local', 'ray'), ('ray', 'threads'), ('ray', 'ray')],
)
def test_upload_example_fanned_out_stores_every_file_exactly_once(
    mode: str, parallel: str, example: Any, tmp_path: Path
) -> None:
    names = make_sources(tmp_path / 'many', 30)
    store = LocalBackendClient(tmp_path / 'store')
    memory = MemoryLogger()
    runtime = RuntimeContext(logger=memory, client=store)
    journal = Journal(tmp_path / 'runs.db')
    params = {'source_path': str(tmp_path / 'many'), 'parallel': parallel, 'workers': 3}
    runner = (
        LocalExecutor(console=False, journal=journal)
        if mode == 'local'
        else RayExecutor(journal=journal, console=False)
    )

    result = runner.run(example.action, params, ctx=runtime, origin=example.origin)

    files = store.list_files()
    assert sorted(f['name'] for f in files) == names  # each exactly once
    assert len({f['id'] for f in files}) == 30
    assert result['steps']['upload_files'] == {'uploaded': 30}
    assert memory.progress_of('upload')[-1] == 100
    assert journal.get_run(runtime.run_id).status == 'succeeded'
