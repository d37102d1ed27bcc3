"""``synapse runs cancel`` and ``synapse runs watch``: a run stopped or followed through the
journal, wherever it runs (this machine, a Ray worker, a detached Ray job)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from synapse_sdk.errors import ErrorKind, SynapseError
from synapse_sdk.execution import (
    SIGNAL_EXIT_CODES,
    cancel_run,
    end_kind,
    stopped_by_sigterm,
    wait_for_end,
)
from synapse_sdk.journal import Journal, RunRecord

from .main import (
    EXIT_CODES,
    DatabaseOption,
    RunIdArgument,
    _exit_code,
    _fail,
    _journal,
    _use_database,
    runs_app,
    stderr,
)

WaitOption = Annotated[
    bool,
    typer.Option(
        '--wait/--no-wait', help='Wait until the run has stopped and say how it ended (default).'
    ),
]
TimeoutOption = Annotated[
    float, typer.Option('--timeout', help='Seconds to wait for the run to stop.', min=0)
]


@runs_app.command('cancel')
def runs_cancel(
    run_id: RunIdArgument,
    wait: WaitOption = True,
    timeout: TimeoutOption = 120.0,
    database: DatabaseOption = None,
) -> None:
    """Stop a running run wherever it runs: it rolls back as on Ctrl-C and ends cancelled.

    Exit code 0 once it has (with --wait), 2 for a run that is not running,
    1 if it ended otherwise or still runs after --timeout (the request stands).
    """
    _use_database(database)
    journal = _journal()
    try:
        record = cancel_run(journal, run_id)
    except SynapseError as error:
        _fail(_exit_code(error), str(error), False)
    run_id = record.id
    waiting = f'; waiting up to {timeout:g}s for it to stop' if wait else ''
    stderr.print(
        Text(f'cancel requested for run {run_id} (by {record.cancel_requested_by}){waiting}'),
        soft_wrap=True,
    )
    if not wait:
        return
    try:
        ended = wait_for_end(journal, run_id, timeout)
    except KeyboardInterrupt as error:
        message = f'stopped waiting; the cancel request of run {run_id} stands'
        _fail(_exit_code(error), message, False)
    except SynapseError as error:
        _fail(_exit_code(error), str(error), False)
    if ended is None:
        message = (
            f'run {run_id} still runs after {timeout:g}s; the cancel request stands'
            f' (a step stops at its next progress report): `synapse runs watch {run_id}`'
        )
        _fail(EXIT_CODES[ErrorKind.FAILED], message, False)
    _report_cancelled(journal, ended)


def _report_cancelled(journal: Journal, record: RunRecord) -> None:
    """How the cancelled run ended: 0 if it stopped and rolled back, else 1 and why."""
    run_id = record.id
    undone = [s.name for s in reversed(journal.steps(run_id)) if s.status == 'rolled_back']
    failed = [s.name for s in journal.steps(run_id) if s.status == 'rollback_failed']
    rolled = f'; rolled back: {", ".join(undone)}' if undone else '; nothing to roll back'
    if record.status == 'cancelled' and not failed:
        Console().print(Text(f'run {run_id} cancelled{rolled}'), soft_wrap=True)
        return
    if record.status == 'crashed':
        message = (
            f'run {run_id} crashed before it stopped ({record.error}); `synapse runs rollback'
            f' {run_id}` undoes what it did'
        )
    elif failed or record.status == 'rollback_failed':
        message = (
            f'run {run_id} stopped, but the rollback of {", ".join(failed) or "a step"} failed'
            f' ({record.error}); `synapse runs rollback {run_id}` tries it again'
        )
    else:
        message = f'run {run_id} ended {record.status} before the cancel reached it'
        message += f' ({record.error})' if record.error else ''
    _fail(EXIT_CODES[ErrorKind.FAILED], message, False)


def exit_code_of(record: RunRecord) -> int:
    """The exit code ``synapse plugin run`` gives a run that ended as ``record`` did."""
    kind = end_kind(record)
    if kind is None:
        return 0
    if stopped_by_sigterm(record):
        return SIGNAL_EXIT_CODES['SIGTERM']
    return EXIT_CODES[kind]
