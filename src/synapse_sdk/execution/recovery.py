"""Rollback and resume of journaled runs, after the process that ran them is gone."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, get_args

from pydantic import SecretBytes, SecretStr

from synapse_sdk.clients import StorageUnavailableError, choose_storage
from synapse_sdk.journal import (
    Journal,
    JournalError,
    JournalListener,
    RunRecord,
    StepRecord,
    restore,
)
from synapse_sdk.journal.records import DONE_STEP, UNDONE_WORK
from synapse_sdk.plugins.actions import BaseAction, PreparedRun
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Orchestrator,
    StepResult,
    SynapseError,
)
from synapse_sdk.plugins.steps.result import describe_exception
from synapse_sdk.runtime import RuntimeContext

from .local import default_runtime

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
    storage: str | None = None,
) -> dict[str, Any]:
    """Undo every step of the run whose work stands, newest first; harmless to repeat.

    ``secrets``: the values of secret params (``SecretStr``), which the journal
    does not keep; recovery refuses without them. ``storage``: where the run stored
    (default: the storage its journal record names); what its uploads left
    half-written there is removed too.
    """
    run = _recoverable(journal, run_id, ROLLBACK_FROM, 'rolled back')
    records = journal.steps(run_id)
    pending = [r for r in records if r.status in UNDONE_WORK]
    if not pending:  # nothing stands (or it was never begun): the run is rolled back
        if run.status != 'rolled_back':
            journal.set_run_status(run_id, 'rolled_back')
        return {'run_id': run_id, 'status': 'rolled_back', 'rolled_back': [], 'errors': []}
    ctx = ctx if ctx is not None else default_runtime(run_id, storage=_storage_of(run, storage))
    with ctx:
        action = _build_action(run, ctx, secrets, rollback_run)
        prepared, context = _prepare(action, run, records)
        restore(context, journal.snapshot_before(run_id, len(records)))
        _check_storage(ctx.client)
        journal.claim_run(run_id, status='failed', keep_error=True)
        listeners = [*ctx.listeners, JournalListener(journal, run_id)]
        orchestrator = Orchestrator(prepared.registry, context, listeners=listeners)
        with _pending_if_interrupted(journal, run_id):
            errors = orchestrator.rollback(
                {r.name: _result_of(journal, run_id, r) for r in pending}
            )
            errors = errors or _discard_leftovers(ctx.client, run_id)
    status = 'rollback_failed' if errors else 'rolled_back'
    journal.set_run_status(run_id, status, '; '.join(errors) or None)
    return {
        'run_id': run_id,
        'status': status,
        'rolled_back': [r.name for r in reversed(pending)],
        'errors': errors,
    }


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
    off) is rolled back first, so nothing is done twice. A step that declares
    itself not resumable is run again, and so is everything after it; so are uploads
    that the killed run left half-written (``storage``: as for :func:`rollback_run`).
    """
    run = _recoverable(journal, run_id, RESUME_FROM, 'resumed')
    records = journal.steps(run_id)
    ctx = ctx if ctx is not None else default_runtime(run_id, storage=_storage_of(run, storage))
    with ctx:
        action = _build_action(run, ctx, secrets, resume_run)
        prepared, context = _prepare(action, run, records)
        _check_storage(ctx.client)
        steps = prepared.steps
        done = ('succeeded', 'reused', 'skipped')
        start = next((r.index for r in records if r.status not in done), len(records))
        for record in records[:start]:
            if record.status in DONE_STEP and not steps[record.index].resumable:
                ctx.log(
                    'resume_restart',
                    {'step': record.name, 'reason': 'the step is not resumable'},
                    level='warning',
                )
                start = record.index
                break
        journal.claim_run(run_id)
        restore(context, journal.snapshot_before(run_id, start))
        listener = JournalListener(journal, run_id)
        leftovers = {
            r.name: _result_of(journal, run_id, r)
            for r in records[start:]
            if r.status in UNDONE_WORK
        }
        if leftovers:
            listeners = [*ctx.listeners, listener]
            _undo_partial_work(
                journal,
                run_id,
                Orchestrator(prepared.registry, context, listeners=listeners),
                leftovers,
                ctx.client,
            )
        journal.forget_steps_from(run_id, start)
        completed = {
            r.name: _result_of(journal, run_id, r) for r in records[:start] if r.status in DONE_STEP
        }
        result = prepared.run(listeners=[listener], completed=completed)
    result['run_id'] = run_id
    result['resumed_from'] = steps[start].name if start < len(steps) else None
    return result


def _undo_partial_work(
    journal: Journal,
    run_id: str,
    orchestrator: Orchestrator[Any],
    leftovers: dict[str, StepResult],
    client: Any,
) -> None:
    """Before a resume: roll back the steps to be run again, and remove what the run's
    uploads left half-written; a failure leaves the run ``rollback_failed``."""
    with _pending_if_interrupted(journal, run_id):
        errors = orchestrator.rollback(leftovers)
        errors = errors or _discard_leftovers(client, run_id)
    if errors:
        journal.set_run_status(run_id, 'rollback_failed', '; '.join(errors))
        raise RecoveryFailed(
            f"cannot resume run '{run_id}': undoing the partial work of "
            f'{", ".join(leftovers)} failed: {"; ".join(errors)}'
        )


def _storage_of(run: RunRecord, given: str | None) -> str | None:
    """The storage to recover against: the one given, else the run's (its journal
    record), else ``SYNAPSE_STORAGE``, else the default folder."""
    return given or run.storage or choose_storage(None)


def _check_storage(client: Any) -> None:
    """A storage that will not work as configured (no such bucket, access denied) is
    bad input: refused before the run is touched. One that is unreachable is not: the
    rollback then fails, and the run is left ``rollback_failed``, to be retried."""
    check = getattr(client, 'check', None)
    if check is None:
        return
    with suppress(StorageUnavailableError):
        check()


def _discard_leftovers(client: Any, run_id: str) -> list[str]:
    """Remove what the run's uploads left without an index row; the errors, if any."""
    discard = getattr(client, 'discard_partial', None)
    if discard is None:
        return []
    try:
        discard(run_id)
    except Exception as error:
        where = getattr(client, 'url', 'the storage')
        return [f'removing the partial uploads of the run in {where}: {describe_exception(error)}']
    return []


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
        raise RecoveryError(
            f"run '{run_id}' {run.status}: only {', '.join(allowed)} runs can be {verb}"
        )
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
