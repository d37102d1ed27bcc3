"""A small upload plugin for the journal tests, loaded the way the CLI loads plugins.

Crash and failure points come from the environment, not the params, so that a
resumed run (which reuses the recorded params) does not crash again:

- ``JT_CRASH_AFTER=N``: ``store`` kills its own process with SIGKILL after
  storing N files (``0``: before the first);
- ``JT_CRASH_IN=<step>``: that step kills its process before doing anything
  (``prepare.can_skip``: before the first step has started);
- ``JT_FAIL_IN=<step>``: that step raises ``RuntimeError``;
- ``JT_FIRST_ATTEMPT_FAILS_AFTER=N``: the first attempt of ``store`` raises
  ``ConnectionError`` after storing N files (the ``store_retry`` action retries it);
- ``JT_KILL_IN_UPLOAD=N:writing`` (or ``N:renamed``): the N-th upload of ``store``
  (from 0) kills the process while its temp file is half written (or once its
  blob is in place, before the index knows it).

``JT_FAIL_IN`` may name several points, comma-separated (``finalize,shard.rollback``).
``JT_REPORT_IN=store.rollback``: that rollback undoes nothing and says so in
``context.errors`` instead of raising (the spec's pattern).

The ``export`` action writes shards into ``params.output_dir``, a path relative
to the run's working directory as a plugin author would give it, and uploads
them: ``prepare`` (lists ``source_path``), ``shard``, ``store``, ``finalize``.
- ``JT_ROLLBACK_GATE=<path>``: ``store``'s rollback waits (up to 120 s) for that file
  to exist before it deletes anything;
- ``JT_DELETE_LOG=<path>``: ``store``'s rollback appends ``attempt <id> <pid>`` before
  each delete and ``deleted <id> <pid>`` after each one that removed a file;
- ``JT_CRASH_ROLLBACK_AFTER=N``: ``store``'s rollback kills its process with SIGKILL
  after deleting N files.
- ``JT_SLOW=<seconds>``: ``store`` waits that long after each file (after its
  progress report, where a cancel is noticed), and logs ``stored`` (``context.log``).

Every step execution appends ``<step>`` as a line to ``params.trace_path``
(when given), so a test can tell which steps really ran in which process.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from synapse_sdk.clients import FileNotFoundInStorageError
from synapse_sdk.plugins.actions import ActionContext, BaseAction
from synapse_sdk.plugins.steps import BaseStep, RetryPolicy, StepRegistry, StepResult


class StoreParams(BaseModel):
    source_path: str
    trace_path: str | None = None


@dataclass(kw_only=True)
class StoreContext(ActionContext):
    files: list[Path] = field(default_factory=list)
    stored_ids: list[int] = field(default_factory=list)
    finalized: bool = False


def _trace(context: StoreContext, step: str) -> None:
    trace = context.params.get('trace_path')
    if trace:
        with open(trace, 'a', encoding='utf-8') as out:
            out.write(f'{step}\n')


def _checkpoint(step: str) -> None:
    if step in os.environ.get('JT_FAIL_IN', '').split(','):
        raise RuntimeError(f'{step} failed on purpose')
    if os.environ.get('JT_CRASH_IN') == step:
        os.kill(os.getpid(), signal.SIGKILL)


class PrepareStep(BaseStep[StoreContext]):
    name = 'prepare'
    progress_weight = 1.0

    def execute(self, context: StoreContext) -> StepResult:
        _trace(context, self.name)
        _checkpoint(self.name)
        source = Path(context.params['source_path'])
        context.files = sorted(p for p in source.rglob('*') if p.is_file())
        return StepResult(data={'count': len(context.files)})

    def can_skip(self, context: StoreContext) -> bool:
        _checkpoint('prepare.can_skip')  # after the run's steps are journaled, before any starts
        return False


class VolatilePrepareStep(PrepareStep):
    @property
    def resumable(self) -> bool:
        return False


class StoreStep(BaseStep[StoreContext]):
    name = 'store'
    progress_weight = 8.0

    def execute(self, context: StoreContext) -> StepResult:
        _trace(context, self.name)
        _checkpoint(self.name)
        crash_after = os.environ.get('JT_CRASH_AFTER')
        fail_after = os.environ.get('JT_FIRST_ATTEMPT_FAILS_AFTER')
        first_attempt = not getattr(self, '_attempted', False)
        self._attempted = True
        run_id = context.runtime_ctx.run_id  # type: ignore[attr-defined]
        _kill_in_upload(os.environ.get('JT_KILL_IN_UPLOAD'))
        context.stored_ids = []  # this attempt's
        total = len(context.files)
        for i, path in enumerate(context.files):
            if crash_after is not None and i == int(crash_after):
                os.kill(os.getpid(), signal.SIGKILL)
            if fail_after is not None and first_attempt and i == int(fail_after):
                raise ConnectionError('the backend went away')
            key = f'{run_id}:{path.name}'
            context.append_rollback('keys', key)
            context.stored_ids.append(context.client.upload_file(path, key=key))
            context.set_progress(i + 1, total)
            _slow(context, path.name)
        return StepResult(data={'stored': total}, rollback_data={'ids': list(context.stored_ids)})

    def rollback(self, context: StoreContext, result: StepResult) -> None:
        _checkpoint('store.rollback')
        if 'store.rollback' in os.environ.get('JT_REPORT_IN', '').split(','):
            context.errors.append('the backend refused to delete the files')
            return
        _wait_for_gate()
        ids = set(result.rollback_data.get('ids', []))
        for key in result.rollback_data.get('keys', []):
            found = context.client.find_file(key)
            if found is not None:
                ids.add(found)
        crash_after = os.environ.get('JT_CRASH_ROLLBACK_AFTER')
        for deleted, file_id in enumerate(sorted(ids)):
            if crash_after is not None and deleted == int(crash_after):
                os.kill(os.getpid(), signal.SIGKILL)
            _log_delete('attempt', file_id)
            try:
                context.client.delete_file(file_id)
            except FileNotFoundInStorageError:
                continue
            _log_delete('deleted', file_id)


def _slow(context: StoreContext, name: str) -> None:
    pause = os.environ.get('JT_SLOW')
    if pause:
        context.log('stored', {'file': name})
        time.sleep(float(pause))


def _wait_for_gate() -> None:
    gate = os.environ.get('JT_ROLLBACK_GATE')
    deadline = time.monotonic() + 120
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)


def _log_delete(what: str, file_id: int) -> None:
    log = os.environ.get('JT_DELETE_LOG')
    if log:
        with open(log, 'a', encoding='utf-8') as out:
            out.write(f'{what} {file_id} {os.getpid()}\n')


def _kill_in_upload(switch: str | None) -> None:
    """SIGKILL in the middle of the client's N-th upload (a real kill, at a chosen moment)."""
    if not switch:
        return
    import synapse_sdk.clients._files as local

    number, moment = switch.split(':')
    calls = {'n': 0}

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def counted(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if calls['n'] == int(number):
                if moment == 'writing':
                    args[1].write(args[0].read(7))
                    args[1].flush()
                die()
            result = real(*args, **kwargs)
            calls['n'] += 1
            return result

        return call

    if moment == 'writing':
        local._copy = counted(local._copy)  # type: ignore[attr-defined]
    else:
        local._fsync_dir = counted(local._fsync_dir)  # type: ignore[attr-defined]


class RetryingStoreStep(StoreStep):
    retry = RetryPolicy(max_attempts=2, initial_delay=0.0, jitter=0.0)


class FinalizeStep(BaseStep[StoreContext]):
    name = 'finalize'
    progress_weight = 1.0

    def execute(self, context: StoreContext) -> StepResult:
        _trace(context, self.name)
        _checkpoint(self.name)
        context.finalized = True
        return StepResult(data={'files': len(context.stored_ids)})


class StoreAction(BaseAction[StoreParams]):
    context_class: ClassVar[Any] = StoreContext

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(PrepareStep())
        registry.register(StoreStep())
        registry.register(FinalizeStep())


class VolatileStoreAction(StoreAction):
    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(VolatilePrepareStep())
        registry.register(StoreStep())
        registry.register(FinalizeStep())


class RetryingStoreAction(StoreAction):
    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(PrepareStep())
        registry.register(RetryingStoreStep())
        registry.register(FinalizeStep())


class ExportParams(BaseModel):
    source_path: str
    output_dir: str
    trace_path: str | None = None


class ShardStep(BaseStep[StoreContext]):
    """Writes one shard per source file into ``output_dir`` (relative paths, recorded
    before each write), then hands the shards to ``store``."""

    name = 'shard'
    progress_weight = 2.0

    def execute(self, context: StoreContext) -> StepResult:
        _trace(context, self.name)
        _checkpoint(self.name)
        out = Path(context.params['output_dir'])
        out.mkdir(exist_ok=True)
        shards = []
        for i, path in enumerate(context.files):
            shard = out / f'shard-{i:03d}.bin'
            context.append_rollback('shards', str(shard))
            shard.write_bytes(path.read_bytes())
            shards.append(shard)
        context.files = shards
        return StepResult(data={'shards': len(shards)})

    def rollback(self, context: StoreContext, result: StepResult) -> None:
        _checkpoint('shard.rollback')
        for shard in result.rollback_data.get('shards', []):
            Path(shard).unlink(missing_ok=True)  # relative: it means the run's directory
        out = Path(context.params['output_dir'])
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()


class ExportAction(BaseAction[ExportParams]):
    context_class: ClassVar[Any] = StoreContext

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(PrepareStep())
        registry.register(ShardStep())
        registry.register(StoreStep())
        registry.register(FinalizeStep())
