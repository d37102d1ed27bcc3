"""``synapse runs cancel`` and ``synapse runs watch``: a run stopped or followed through the
journal, wherever it runs (this machine, a Ray worker, a detached Ray job)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from synapse_sdk import observe
from synapse_sdk.errors import ErrorKind, SynapseError
from synapse_sdk.execution import (
    LOG_FORMATS,
    SIGNAL_EXIT_CODES,
    SubmittedRunCheck,
    cancel_run,
    display,
    end_kind,
    stopped_by_sigterm,
    wait_for_end,
)
from synapse_sdk.journal import Journal, RunRecord

from .main import (
    EXIT_CODES,
    DatabaseOption,
    LogFormatOption,
    RunIdArgument,
    _exit_code,
    _fail,
    _get_run,
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
    if record.status == 'cancelled':  # a detached run not started yet: over at once
        Console().print(Text(f'run {run_id} cancelled: {record.error}'), soft_wrap=True)
        return
    waiting = f'; waiting up to {timeout:g}s for it to stop' if wait else ''
    stderr.print(
        Text(f'cancel requested for run {run_id} (by {record.cancel_requested_by}){waiting}'),
        soft_wrap=True,
    )
    if not wait:
        return
    try:
        ended = wait_for_end(journal, run_id, timeout, check=SubmittedRunCheck(journal))
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


IntervalOption = Annotated[
    float, typer.Option('--interval', help='Seconds between reads of the journal.', min=0.05)
]


@runs_app.command('watch')
def runs_watch(
    run_id: RunIdArgument,
    interval: IntervalOption = 0.3,
    log_format: LogFormatOption = 'auto',
    level: Annotated[
        str, typer.Option('--level', help='Show log() events at this level or above.')
    ] = 'info',
    database: DatabaseOption = None,
) -> None:
    """Follow a run live from the journal (this machine's, a Ray worker's, a detached job's):
    the same display as `plugin run`. Ctrl-C stops watching, not the run.

    Exits as `plugin run` would have: 0 succeeded, 1 failed, 130 (143) cancelled.
    """
    _use_database(database)
    journal = _journal()
    record = _get_run(journal, run_id)
    if log_format not in LOG_FORMATS or level not in observe.LEVELS:
        message = (
            f'--log-format must be one of {", ".join(LOG_FORMATS)}'
            if (log_format not in LOG_FORMATS)
            else f'--level must be one of {", ".join(observe.LEVELS)}'
        )
        _fail(EXIT_CODES[ErrorKind.BAD_INPUT], message, False)
    if not record.active and record.status != 'submitted':  # nothing to follow: how it ended
        _end(record, 'already ended')
    logger = display(log_format, level=level, run_id=record.id)
    follower = observe.RunFollower(journal, record.id, logger)
    try:
        ended = follower.follow(interval, check=SubmittedRunCheck(journal))
    except KeyboardInterrupt as error:
        logger.close()
        message = f'stopped watching; run {record.id} goes on (`synapse runs cancel {record.id}`)'
        _fail(_exit_code(error), message, False)
    except SynapseError as error:
        logger.close()
        _fail(_exit_code(error), str(error), False)
    logger.close()
    if follower.missed:
        stderr.print(Text(f'({follower.missed} log lines were not kept in the journal)'))
    _end(ended, 'ended')


def _end(record: RunRecord, verb: str) -> None:
    """The run's end in one line (stderr); exits with the code ``plugin run`` would have."""
    why = f' ({record.error})' if record.error else ''
    hint = ''
    if record.status == 'crashed':
        hint = f'; `synapse runs rollback {record.id}` undoes what it did'
    stderr.print(Text(f'run {record.id} {verb}: {record.status}{why}{hint}'), soft_wrap=True)
    raise typer.Exit(exit_code_of(record))
