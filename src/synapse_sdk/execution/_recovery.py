"""Rollback and resume of journaled runs, after the process that ran them is gone."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import chdir, contextmanager, suppress
from typing import Any, get_args

from pydantic import SecretBytes, SecretStr

from synapse_sdk.clients import (
    PartialWrites,
    StorageUnavailableError,
    parse_storage,
)
from synapse_sdk.journal import (
    DONE_STEP,
    UNDONE_WORK,
    Heartbeat,
    Journal,
    JournalError,
    JournalListener,
    LogLineBuffer,
    RunRecord,
    StepRecord,
    restore,
)
from synapse_sdk.plugins.actions import BaseAction, PreparedRun
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    StepResult,
    SynapseError,
)
from synapse_sdk.plugins.steps.support import describe_exception
from synapse_sdk.runtime import RuntimeContext

from ._journal_log import logging_to_journal
from ._local import RollbackReports, bind_storage, default_runtime

ROLLBACK_FROM = ('crashed', 'failed', 'cancelled', 'rollback_failed', 'rolled_back')
RESUME_FROM = ('crashed', 'failed', 'cancelled', 'rollback_failed', 'rolled_back')


class RecoveryError(JournalError):
    """The run cannot be rolled back or resumed as asked; the message says why."""


class RecoveryFailed(SynapseError, RuntimeError):
    """Recovery was attempted and did not complete (e.g. undoing partial work failed)."""


def load_action_class(run: RunRecord) -> type[BaseAction[Any]]:
    """The run's action class: from its plugin folder, or by its import path."""
    if run.plugin_path and run.action:
        return Plugin.load(run.plugin_path).load_action(run.action)
    module_name, _, qualname = run.entrypoint.partition(':')
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split('.'):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise RecoveryError(
            f"cannot load the action of run '{run.id}' ({run.entrypoint}): {error}; "
            'run recovery where that module can be imported'
        ) from error
    if not (isinstance(target, type) and issubclass(target, BaseAction)):
        raise RecoveryError(f'{run.entrypoint} is not a BaseAction subclass')
    return target


def _build_action(
    run: RunRecord,
    ctx: RuntimeContext,
    secrets: Mapping[str, Any] | None,
    recovery: Callable[..., Any],
) -> BaseAction[Any]:
    """The run's action on its journaled params, with the secrets given again."""
    action_class = load_action_class(run)
    params = dict(run.params)
    given = dict(secrets or {})
    hidden = [name for name in _secret_fields(action_class) if params.get(name) is not None]
    missing = [name for name in hidden if name not in given]
    if missing:
        verb = recovery.__name__.removesuffix('_run')  # 'rollback' or 'resume'
        raise RecoveryError(
            f"cannot {verb} run '{run.id}': its params {', '.join(missing)} are secrets, "
            'which the journal does not keep; give them again from Python: '
            f"synapse_sdk.execution.{recovery.__name__}(journal, '{run.id}', "
            f'secrets={{{", ".join(repr(n) + ": ..." for n in missing)}}})'
        )
    params.update(given)
    return action_class(params, ctx)


def _secret_fields(action_class: type[BaseAction[Any]]) -> list[str]:
    model = action_class.params_model
    if model is None:
        return []
    return [name for name, info in model.model_fields.items() if _holds_secret(info.annotation)]


def _holds_secret(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, SecretStr | SecretBytes):
        return True
    return any(_holds_secret(arg) for arg in get_args(annotation))


def rollback_run(
    journal: Journal,
    run_id: str,
    ctx: RuntimeContext | None = None,
    *,
    secrets: Mapping[str, Any] | None = None,
    finished: bool = False,
    storage: str | None = None,
) -> dict[str, Any]:
    """Undo every step of the run whose work stands, newest first; harmless to repeat.

    It runs where the run ran (its working directory, its storage: the one its
    journal record names, or ``storage``, which must be the same storage, reached
    with other options if need be) and then removes what the run's interrupted
    writes left in the storage. The run is
    ``rolled_back`` only if every rollback succeeded; else ``rollback_failed``,
    and running this again retries what is left.

    ``secrets``: the values of secret params (``SecretStr``), which the journal
    does not keep; recovery refuses without them. ``finished=True``: a
    ``succeeded`` run may be undone too (compensating a completed run).

    Claims the run's recovery first (``Journal.claim_recovery``): while another
    process rolls it back or resumes it, this raises ``RecoveryInProgressError``
    and does nothing.
    """
    with _claimed(journal, run_id) as claim:
        return _rollback(journal, run_id, ctx, secrets, claim, finished, storage)


def _rollback(
    journal: Journal,
    run_id: str,
    ctx: RuntimeContext | None,
    secrets: Mapping[str, Any] | None,
    claim: _Claim,
    finished: bool,
    storage: str | None,
) -> dict[str, Any]:
    allowed = (*ROLLBACK_FROM, 'succeeded') if finished else ROLLBACK_FROM
    run = _recoverable(journal, run_id, allowed, 'rolled back')
    records = journal.steps(run_id)
    pending = [r for r in records if r.status in UNDONE_WORK]
    if ctx is None:  # the storage given, else the run's; (older runs) the default
        ctx = default_runtime(run_id, storage=storage or run.storage)
    claim.watch(ctx)
    with ctx, where_it_ran(run, ctx, 'rollback'):
        errors = _undo_steps(journal, run, records, pending, ctx, secrets, claim) if pending else []
        errors += _discard_partial(ctx, run_id)
    status = 'rollback_failed' if errors else 'rolled_back'
    if pending or status != run.status:
        why = 'undone on request after it succeeded' if run.status == 'succeeded' else None
        journal.set_run_status(run_id, status, '; '.join(errors) or why)
    return {
        'run_id': run_id,
        'status': status,
        'rolled_back': [r.name for r in reversed(pending)],
        'errors': errors,
    }


def _undo_steps(
    journal: Journal,
    run: RunRecord,
    records: list[StepRecord],
    pending: list[StepRecord],
    ctx: RuntimeContext,
    secrets: Mapping[str, Any] | None,
    claim: _Claim,
) -> list[str]:
    """Roll back the ``pending`` steps with what the journal recorded; the errors."""
    action = _build_action(run, ctx, secrets, rollback_run)
    prepared, context = _prepare(action, run, records)
    restore(context, journal.snapshot_before(run.id, len(records)))
    journal.claim_run(run.id, status='failed', keep_error=True, lease_owner=claim.holder)
    reports = RollbackReports(journal, run.id, context)
    listeners = [*ctx.listeners, JournalListener(journal, run.id), reports]
    orchestrator = Orchestrator(prepared.registry, context, listeners=listeners)
    with _pending_if_interrupted(journal, run.id):
        errors = _undo(
            orchestrator, {r.name: _result_of(journal, run.id, r) for r in pending}, claim
        )
    return errors + reports.errors


@contextmanager
def where_it_ran(run: RunRecord, ctx: RuntimeContext, command: str) -> Iterator[None]:
    """Recovery acts where the run acted: in its working directory (relative paths in its
    params mean files there) and on its storage, with ``ctx.client`` bound to the run.
    Checked before anything changes (a storage that will not work as configured, such
    as a missing bucket, is refused too); the caller's directory is back afterwards."""
    url = bind_storage(ctx)
    if run.storage is not None and url is not None and not _same_storage(url, run.storage):
        raise RecoveryError(
            f"cannot {command} run '{run.id}': it ran on the storage {run.storage}, but this"
            f' one is {url}; nothing was changed: recover it with the same storage (the local'
            ' one is under the SYNAPSE_HOME the run had)'
        )
    _check_storage(ctx.client)
    if run.cwd is None:  # journaled before the journal kept it: the caller's directory
        yield
        return
    if not os.path.isdir(run.cwd):
        raise RecoveryError(
            f"cannot {command} run '{run.id}': its working directory {run.cwd} is gone (relative"
            ' paths in its params mean files there); nothing was changed: restore the'
            f' directory, then run `synapse runs {command} {run.id}` again'
        )
    with chdir(run.cwd):
        yield


def _same_storage(url: str, recorded: str) -> bool:
    """The same storage, maybe reached with other options (retries, region)."""
    if url == recorded:
        return True
    try:
        return parse_storage(url).namespace == parse_storage(recorded).namespace
    except SynapseError:
        return False


def _check_storage(client: Any) -> None:
    """A storage that will not work as configured (no such bucket, access denied) is bad
    input, refused before the run is touched. One that is unreachable is not: the
    rollback then fails, and leaves the run ``rollback_failed``, to be retried."""
    check = getattr(client, 'check', None)
    if callable(check):
        with suppress(StorageUnavailableError):
            check()


def _discard_partial(ctx: RuntimeContext, run_id: str) -> list[str]:
    """Remove what the run's interrupted uploads and deletes left in the storage; the errors."""
    client = ctx.client
    if not isinstance(client, PartialWrites):
        return []
    try:
        removed = client.discard_partial(run_id)
    except Exception as error:
        return [f'removing the half-written files of the run failed: {describe_exception(error)}']
    if removed:
        ctx.log('partial_writes_removed', {'files': removed})
    return []


def resume_run(
    journal: Journal,
    run_id: str,
    ctx: RuntimeContext | None = None,
    *,
    secrets: Mapping[str, Any] | None = None,
    storage: str | None = None,
) -> dict[str, Any]:
    """Run again from the first step that did not succeed, reusing the earlier steps' results.

    Partial work of the steps to be run again (the one that failed or was cut
    off) is rolled back first, and what the run's interrupted writes left in its
    storage removed (``storage``: as for ``rollback_run``), so nothing is done
    twice. A step that declares itself not resumable is run again, and so is
    everything after it. Claims the run's recovery first, as ``rollback_run`` does.
    """
    with _claimed(journal, run_id) as claim:
        return _resume(journal, run_id, ctx, secrets, claim, storage)


def _resume(
    journal: Journal,
    run_id: str,
    ctx: RuntimeContext | None,
    secrets: Mapping[str, Any] | None,
    claim: _Claim,
    storage: str | None,
) -> dict[str, Any]:
    run = _recoverable(journal, run_id, RESUME_FROM, 'resumed')
    records = journal.steps(run_id)
    if ctx is None:  # the storage given, else the run's; (older runs) the default
        ctx = default_runtime(run_id, storage=storage or run.storage)
    claim.watch(ctx)
    with ctx, where_it_ran(run, ctx, 'resume'), logging_to_journal(ctx, journal, claim.lines):
        action = _build_action(run, ctx, secrets, resume_run)
        prepared, context = _prepare(action, run, records)
        steps = prepared.steps
        start = _resume_start(records, steps, ctx)
        journal.claim_run(run_id, lease_owner=claim.holder)
        restore(context, journal.snapshot_before(run_id, start))
        listener = JournalListener(journal, run_id)
        leftovers = {
            r.name: _result_of(journal, run_id, r)
            for r in records[start:]
            if r.status in UNDONE_WORK
        }
        errors = []
        reports = RollbackReports(journal, run_id, context)
        if leftovers:
            orchestrator = Orchestrator(
                prepared.registry, context, listeners=[*ctx.listeners, listener, reports]
            )
            with _pending_if_interrupted(journal, run_id):
                errors = _undo(orchestrator, leftovers, claim) + reports.errors
        errors += _discard_partial(ctx, run_id)
        if errors:
            journal.set_run_status(run_id, 'rollback_failed', '; '.join(errors))
            raise RecoveryFailed(
                f"cannot resume run '{run_id}': undoing the partial work of "
                f'{", ".join(leftovers) or "its writes"} failed: {"; ".join(errors)}'
            )
        journal.forget_steps_from(run_id, start)
        completed = {
            r.name: _result_of(journal, run_id, r) for r in records[:start] if r.status in DONE_STEP
        }
        result = prepared.run(listeners=[listener, reports], completed=completed)
    result['run_id'] = run_id
    result['resumed_from'] = steps[start].name if start < len(steps) else None
    return result


def _resume_start(
    records: list[StepRecord], steps: list[BaseStep[Any]], ctx: RuntimeContext
) -> int:
    """The first step that did not succeed, or an earlier one that is not resumable."""
    done = ('succeeded', 'reused', 'skipped')
    start = next((r.index for r in records if r.status not in done), len(records))
    for record in records[:start]:
        if record.status in DONE_STEP and not steps[record.index].resumable:
            ctx.log(
                'resume_restart',
                {'step': record.name, 'reason': 'the step is not resumable'},
                level='warning',
            )
            return record.index
    return start


class _Claim:
    """This process's hold on a run's recovery; losing it (``journal.lease.Heartbeat``)
    cancels the work: another process may be recovering the run by then. A resumed
    run cancelled from elsewhere (``runs cancel``) is stopped the same way; its log
    lines go to the journal through ``lines``."""

    def __init__(self, holder: str, run_id: str) -> None:
        self.holder = holder
        self.lost: str | None = None
        self.lines = LogLineBuffer(run_id)
        self._cancelled: str | None = None
        self._ctx: RuntimeContext | None = None

    def lose(self, reason: str) -> None:  # from the heartbeat's thread
        self.lost = reason
        self.cancel(reason)

    def cancel(self, reason: str) -> None:  # from the heartbeat's thread
        self._cancelled = reason
        if self._ctx is not None:
            self._ctx.cancel(reason)

    def watch(self, ctx: RuntimeContext) -> None:
        self._ctx = ctx
        if self._cancelled is not None:
            ctx.cancel(self._cancelled)


@contextmanager
def _claimed(journal: Journal, run_id: str) -> Iterator[_Claim]:
    """Hold the run's recovery (renewed from a thread) for the ``with`` block."""
    claim = _Claim(journal.claim_recovery(run_id), run_id)
    beat = Heartbeat(
        journal,
        run_id,
        claim.holder,
        on_lost=claim.lose,
        on_cancel=claim.cancel,
        log=claim.lines,
        recovery=True,
    )
    try:
        with beat:
            yield claim
    finally:
        with suppress(Exception):  # the database is away: the claim runs out by itself
            journal.release_recovery(run_id, claim.holder)


def _undo(
    orchestrator: Orchestrator[Any], results: Mapping[str, StepResult], claim: _Claim
) -> list[str]:
    """Roll back ``results`` (in step order) newest first, one step at a time, so that a
    recovery that lost its claim stops between two steps and records nothing more."""
    errors: list[str] = []
    for name in reversed(list(results)):
        if claim.lost is not None:
            raise RecoveryFailed(claim.lost)
        errors += orchestrator.rollback({name: results[name]})
    return errors


@contextmanager
def _pending_if_interrupted(journal: Journal, run_id: str) -> Iterator[None]:
    """Stopped (Ctrl-C) in the middle of undoing: say so, and what finishes the job."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        journal.set_run_status(
            run_id,
            'cancelled',
            f'rollback interrupted; the rest is pending: synapse runs rollback {run_id}',
        )
        raise


def _recoverable(journal: Journal, run_id: str, allowed: tuple[str, ...], verb: str) -> RunRecord:
    run = journal.get_run(run_id)
    if run.active:
        raise RecoveryError(
            f"run '{run_id}' is still {run.status} in process {run.pid} on {run.host}; "
            'wait for it to finish or stop it first'
        )
    if run.status not in allowed:
        message = f"run '{run_id}' {run.status}: only {', '.join(allowed)} runs can be {verb}"
        if run.status == 'succeeded' and verb == 'rolled back':
            message = (
                f"run '{run_id}' succeeded: to undo its work, add --finished (synapse runs"
                f' rollback {run_id} --finished; from Python: rollback_run(..., finished=True))'
            )
        raise RecoveryError(message)
    return run


def _prepare(
    action: BaseAction[Any], run: RunRecord, records: list[StepRecord]
) -> tuple[PreparedRun, BaseStepContext]:
    """The action set up as the run was: the same steps, and a context to restore."""
    prepared = action.prepare_run()
    current = [s.name for s in prepared.steps]
    recorded = [r.name for r in records]
    if recorded and current != recorded:  # none recorded: it died before its first step
        raise RecoveryError(
            f"run '{run.id}' recorded the steps {recorded}, but the action now has {current}; "
            'recover it with the plugin version that ran it'
        )
    if prepared.context is None:
        raise RecoveryError(
            f"run '{run.id}' ran {run.action or run.entrypoint} in plain execute() mode: "
            'it has no steps to roll back or resume; run the action again'
        )
    return prepared, prepared.context


def _result_of(journal: Journal, run_id: str, record: StepRecord) -> StepResult:
    return StepResult(
        success=record.status in DONE_STEP,
        data=record.data or {},
        error=record.error,
        rollback_data=journal.rollback_data_of(run_id, record),
        step_name=record.name,
    )
