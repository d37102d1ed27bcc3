"""``synapse``: parses, calls the execution layer, prints. No business logic here."""

from __future__ import annotations

import json
import re
import sys
import tempfile
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from synapse_sdk.clients import choose_storage, open_storage
from synapse_sdk.errors import (
    ActionError,
    ErrorKind,
    JournalError,
    StepExecutionError,
    SynapseError,
)
from synapse_sdk.execution import LocalExecutor, default_runtime, resume_run, rollback_run
from synapse_sdk.execution.signals import SIGNAL_EXIT_CODES, SignalState, cancel_on_signals
from synapse_sdk.journal import Journal
from synapse_sdk.paths import read_utf8
from synapse_sdk.plugins.actions import ActionOrigin
from synapse_sdk.plugins.loader import Plugin, code_location
from synapse_sdk.plugins.scaffold import CATEGORIES, create_plugin
from synapse_sdk.plugins.steps.result import describe_exception

# What went wrong -> the exit code: the one table (docs/errors.md). Every
# error is reported by its kind (``SynapseError.kind``; see ``_kind_of``).
EXIT_CODES: dict[ErrorKind, int] = {
    ErrorKind.BAD_INPUT: 2,  # one line; nothing ran
    ErrorKind.FAILED: 1,  # the run failed (and was rolled back)
    ErrorKind.CANCELLED: SIGNAL_EXIT_CODES['SIGINT'],  # 130; 143 if SIGTERM stopped the run
}

app = typer.Typer(help='Synapse SDK: run and build plugin actions.', no_args_is_help=True)
plugin_app = typer.Typer(help='Run, inspect and create plugins.', no_args_is_help=True)
app.add_typer(plugin_app, name='plugin')
runs_app = typer.Typer(help='Journaled runs: history, rollback, resume.', no_args_is_help=True)
app.add_typer(runs_app, name='runs')

stderr = Console(stderr=True, highlight=False)

PathOption = Annotated[Path, typer.Option('--path', help='The plugin folder (holds config.yaml).')]
DebugOption = Annotated[bool, typer.Option('--debug', help='Show tracebacks.')]
StorageOption = Annotated[
    str | None,
    typer.Option(
        '--storage',
        help='Where files are stored: a folder or a URL (s3://, az://, gs://, sftp://); '
        "default: SYNAPSE_STORAGE, the plugin's config.yaml storage:, $SYNAPSE_HOME/storage.",
    ),
]


class BadInput(SynapseError):
    """The command line itself is at fault: exit code 2, one line."""

    kind = ErrorKind.BAD_INPUT


def _kind_of(error: BaseException) -> ErrorKind:
    """An SDK error says its kind; Ctrl-C (or SystemExit) stopped the run; anything else failed."""
    if isinstance(error, SynapseError):
        return error.kind
    if isinstance(error, KeyboardInterrupt | SystemExit):
        return ErrorKind.CANCELLED
    return ErrorKind.FAILED


def _exit_code(error: BaseException, signals: SignalState | None = None) -> int:
    """``EXIT_CODES`` for the error's kind; a cancelled run: 128 + the signal that stopped it."""
    kind = _kind_of(error)
    if kind is ErrorKind.CANCELLED and signals is not None:
        return signals.exit_code
    return EXIT_CODES[kind]


def _fail(code: int, message: str, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exc()
    stderr.print(Text.assemble(('error: ', 'bold red'), message), soft_wrap=True)
    raise typer.Exit(code)


def _read_params(params: str | None, params_file: Path | None) -> dict[str, Any]:
    if params is not None and params_file is not None:
        raise BadInput('give --params or --params-file, not both')
    if params_file is not None:  # unreadable: an UnreadableTextError, bad input too
        params = read_utf8(params_file, f'--params-file {params_file}')
    if params is None:
        return {}
    try:
        value = json.loads(params)
    except json.JSONDecodeError as error:
        if params_file is not None:  # a YAML file, most often: say which file, and what it needs
            problem = f'is not valid JSON ({error})'
            raise BadInput(_params_file_problem(params_file, problem)) from error
        raise BadInput(f'params are not valid JSON: {error}') from error
    if not isinstance(value, dict):
        if params_file is not None:
            problem = f'holds a {type(value).__name__}, not a JSON object'
            raise BadInput(_params_file_problem(params_file, problem))
        raise BadInput(f'params must be a JSON object, got {type(value).__name__}')
    return value


def _params_file_problem(params_file: Path, problem: str) -> str:
    fix = 'write the params as one JSON object, e.g. {"name": "value"}'
    return f'--params-file {params_file} {problem}: {fix}'


@plugin_app.command('run')
def run(
    action: Annotated[str, typer.Argument(help='The action name from config.yaml.')],
    path: PathOption = Path('.'),
    params: Annotated[str | None, typer.Option('--params', help='Params as JSON.')] = None,
    params_file: Annotated[
        Path | None, typer.Option('--params-file', help='A file holding the params as JSON.')
    ] = None,
    journal: Annotated[
        bool, typer.Option('--journal/--no-journal', help='Record the run in the run journal.')
    ] = True,
    mode: Annotated[str, typer.Option('--mode', help="'local' (this process) or 'ray'.")] = 'local',
    ray_address: Annotated[
        str | None,
        typer.Option('--ray-address', help='Ray cluster to connect to (default: start one).'),
    ] = None,
    storage: StorageOption = None,
    debug: DebugOption = False,
) -> None:
    """Run ACTION of the plugin; live progress on stderr, the result as JSON on stdout."""
    try:
        values = _read_params(params, params_file)
        plugin = Plugin.load(path)
        action_cls = plugin.load_action(action)
        action_cls.validate_params(values)
        storage = choose_storage(storage, plugin.config.storage, plugin_path=plugin.path)
        open_storage(storage).check()  # no such bucket, access denied: one line, exit 2
        if mode not in ('local', 'ray'):
            raise BadInput(f"--mode must be 'local' or 'ray', got {mode!r}")
        store = Journal() if journal else None
        if store is not None:
            store.check()  # read it now: a bad journal is bad input, not a failed run
        executor = _executor(mode, ray_address, store)
    except SynapseError as error:
        _fail(_exit_code(error), str(error), debug)
    runtime = default_runtime(storage=storage)
    if store is not None:
        stderr.print(Text(f'run {runtime.run_id} (journal: {store.path})', style='dim'))
    origin = ActionOrigin(str(plugin.path), action)
    run_id = runtime.run_id if store else None
    grace = None if mode == 'ray' else 10.0  # the Ray driver waits for the worker itself
    with cancel_on_signals(runtime.cancel_token, grace=grace) as signals:
        try:
            result = executor.run(action_cls, values, ctx=runtime, origin=origin)
        except (Exception, KeyboardInterrupt, SystemExit) as error:
            message = _describe_end(error, store, run_id)
            if message is None:
                message = (
                    str(error)
                    if _kind_of(error) is ErrorKind.BAD_INPUT
                    else f'action {action!r} failed: {describe_exception(error)}'
                )
            _fail(_exit_code(error, signals), message, debug)
    _print_json(result)


def _executor(mode: str, address: str | None, store: Journal | None) -> Any:
    if mode == 'local':
        if address is not None:
            raise BadInput('--ray-address goes with --mode ray')
        return LocalExecutor(journal=store)
    try:
        from synapse_sdk.execution.on_ray import RayExecutor
    except ImportError as error:
        raise BadInput(str(error)) from error
    if store is None:  # the driver rolls back a dead worker's run from a journal
        store = Journal(Path(tempfile.mkdtemp(prefix='synapse-ray-')) / 'runs.db')
    return RayExecutor(address, journal=store)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + '\n')


def _describe_end(error: BaseException, store: Journal | None, run_id: str | None) -> str | None:
    """How a run that ended in ``error`` is reported, if it was a failed step or a stop."""
    if isinstance(error, StepExecutionError):
        return _describe_failure(error, run_id)
    if isinstance(error, KeyboardInterrupt | SystemExit):
        return _describe_interrupt(error, store, run_id)
    return None


def _describe_interrupt(error: BaseException, store: Journal | None, run_id: str | None) -> str:
    message = f'stopped by {str(error) or type(error).__name__}'  # an exception is always truthy
    if store is not None and run_id is not None:
        try:
            record = store.get_run(run_id)
        except JournalError:
            return message
        message += f'; run {run_id} is {record.status}'
        if record.error:
            message += f' ({record.error})'
    return message


def _describe_failure(error: StepExecutionError, run_id: str | None) -> str:
    lines = [str(error), *getattr(error, '__notes__', [])]
    if run_id is not None:
        lines.append(f'Details: synapse runs show {run_id}')
    return '\n  '.join(lines)


@plugin_app.command('steps')
def steps(
    action: Annotated[str, typer.Argument(help='The action name from config.yaml.')],
    path: PathOption = Path('.'),
    params: Annotated[str | None, typer.Option('--params', help='Params as JSON.')] = None,
    debug: DebugOption = False,
) -> None:
    """Show ACTION's steps (order, names, weights) without running it."""
    try:
        values = _read_params(params, None)
        plugin = Plugin.load(path)
        action_cls = plugin.load_action(action)
    except SynapseError as error:
        _fail(_exit_code(error), str(error), debug)
    try:
        rows = action_cls.describe_steps(values)
    except Exception as error:  # params that do not fit, or the plugin is broken: bad input
        if isinstance(error, ActionError):
            message = str(error)
        else:  # the action's own code: its setup_steps() raised
            message = f'cannot build the steps of {action!r}: {describe_exception(error)}'
            where = code_location(error, plugin.path)
            message += f' ({where})' if where else ''
        _fail(EXIT_CODES[ErrorKind.BAD_INPUT], message, debug)
    if not rows:
        Console().print(f'{action} registers no steps: it runs in plain execute() mode')
        return
    table = Table('#', 'step', 'weight', 'share')
    for index, (name, weight, share) in enumerate(rows, 1):
        table.add_row(str(index), name, f'{weight:g}', f'{share:.1f}%')
    Console().print(table)


@plugin_app.command('create')
def create(
    name: Annotated[str, typer.Argument(help='Plugin code, e.g. my_upload.')],
    category: Annotated[
        str, typer.Option('--category', help=f'One of: {", ".join(CATEGORIES)}.')
    ] = 'upload',
    directory: Annotated[
        Path, typer.Option('--dir', help='Where to create the plugin folder.')
    ] = Path('.'),
) -> None:
    """Scaffold a plugin that runs and has a passing test."""
    try:
        folder = create_plugin(directory, name, category)
    except (ValueError, OSError) as error:  # a bad name or category, an existing folder
        _fail(EXIT_CODES[ErrorKind.BAD_INPUT], str(error), False)
    Console().print(Text(f'created {folder}'))


# runs ----------------------------------------------------------------------


def _journal() -> Journal:
    return Journal()


@runs_app.command('list')
def runs_list(
    status: Annotated[
        str | None, typer.Option('--status', help='Only runs in this status.')
    ] = None,
    limit: Annotated[int, typer.Option('--limit', help='At most this many runs.')] = 50,
    as_json: Annotated[bool, typer.Option('--json', help='JSON on stdout.')] = False,
) -> None:
    """The journaled runs, newest first."""
    try:
        records = _journal().list_runs(status=status, limit=limit)
    except SynapseError as error:
        _fail(_exit_code(error), str(error), False)
    if as_json:
        _print_json([r.to_dict() for r in records])
        return
    table = Table('run', 'status', 'progress', 'action', 'started', 'error')
    for r in records:
        table.add_row(
            r.id,
            _status(r.status),
            f'{r.progress}%',
            r.action or r.entrypoint,
            r.started_at[:19].replace('T', ' '),
            (r.error or '')[:60],
        )
    Console().print(table)


@runs_app.command('show')
def runs_show(
    run_id: Annotated[str, typer.Argument(help='The run id.')],
    as_json: Annotated[bool, typer.Option('--json', help='JSON on stdout.')] = False,
) -> None:
    """One run: its params, progress and every step with status, duration and error."""
    journal = _journal()
    try:
        record = journal.get_run(run_id)
        steps = journal.steps(run_id)
    except SynapseError as error:
        _fail(_exit_code(error), str(error), False)
    if as_json:
        _print_json({**record.to_dict(), 'steps': [s.to_dict() for s in steps]})
        return
    out = Console()
    out.print(f'[bold]run {record.id}[/bold]  {_status(record.status)}  {record.progress}%')
    out.print(f'action   {record.action or "-"} ({record.entrypoint})')
    if record.plugin_path:
        out.print(f'plugin   {record.plugin_path}')
    if record.storage:
        out.print(f'storage  {record.storage}', highlight=False)
    out.print(f'params   {json.dumps(record.params)}')
    out.print(f'started  {record.started_at}   ended {record.ended_at or "-"}')
    if record.error:
        out.print(f'error    {record.error}')
    table = Table('#', 'step', 'status', 'duration', 'attempts', 'error')
    for s in steps:
        table.add_row(
            str(s.index + 1),
            s.name,
            _status(s.status),
            f'{s.duration:.3f}s' if s.duration is not None else '-',
            str(s.attempts),
            s.error or '',
        )
    out.print(table)


@runs_app.command('rollback')
def runs_rollback(
    run_id: Annotated[str, typer.Argument(help='The run id.')],
    storage: Annotated[
        str | None, typer.Option('--storage', help="Default: the run's, from the journal.")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Undo what a crashed, failed or cancelled run left behind (safe to repeat)."""
    journal = _journal()
    try:
        journal.check()  # a damaged journal is refused before anything is undone
        report = rollback_run(journal, run_id, storage=storage)
    except SynapseError as error:
        _fail(_exit_code(error), str(error), debug)
    except KeyboardInterrupt as error:
        message = f'rollback interrupted; the rest is pending: synapse runs rollback {run_id}'
        _fail(_exit_code(error), message, debug)
    _print_json(report)
    if report['errors']:
        message = f"rollback of run '{run_id}' left errors; run it again"
        _fail(EXIT_CODES[ErrorKind.FAILED], message, debug)


@runs_app.command('resume')
def runs_resume(
    run_id: Annotated[str, typer.Argument(help='The run id.')],
    storage: Annotated[
        str | None, typer.Option('--storage', help="Default: the run's, from the journal.")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Run a failed or crashed run again from the first step that did not succeed."""
    journal = _journal()
    try:
        journal.check()  # a damaged journal is refused before anything runs
        runtime = default_runtime(run_id, storage=storage or _run_storage(journal, run_id))
    except SynapseError as error:
        _fail(_exit_code(error), str(error), debug)
    with cancel_on_signals(runtime.cancel_token) as signals:
        try:
            result = resume_run(journal, run_id, runtime)
        except (SynapseError, KeyboardInterrupt, SystemExit) as error:
            message = _describe_end(error, journal, run_id) or str(error)
            _fail(_exit_code(error, signals), message, debug)
    _print_json(result)


def _run_storage(journal: Journal, run_id: str) -> str | None:
    """The storage a run recorded (None: an older run; recovery then takes the default)."""
    return journal.get_run(run_id).storage or choose_storage(None)


# storage -------------------------------------------------------------------

storage_app = typer.Typer(help='The storage runs upload to.', no_args_is_help=True)
app.add_typer(storage_app, name='storage')


@storage_app.command('gc')
def storage_gc(
    storage: StorageOption = None,
    older_than: Annotated[
        str,
        typer.Option('--older-than', help='Only objects older than this: 30m, 12h, 7d, 0.'),
    ] = '1d',
    delete: Annotated[
        bool, typer.Option('--delete', help='Remove them (without it: only list them).')
    ] = False,
    as_json: Annotated[bool, typer.Option('--json', help='JSON on stdout.')] = False,
    debug: DebugOption = False,
) -> None:
    """List objects that no stored file points at (what crashed uploads left); --delete
    removes them. Younger ones may be uploads about to be indexed: keep --older-than
    longer than an upload takes."""
    try:
        age = _duration(older_than)
        client = open_storage(choose_storage(storage))
        orphans = client.find_orphans(age)
        removed = client.remove_orphans(orphans) if delete else []
    except SynapseError as error:
        _fail(_exit_code(error), str(error), debug)
    rows: list[dict[str, Any]] = [
        {'name': o.name, 'size': o.size, 'modified': o.modified.isoformat()} for o in orphans
    ]
    if as_json:
        _print_json({'storage': client.url, 'orphans': rows, 'removed': len(removed)})
        return
    out = Console()
    for row in rows:
        out.print(f'{row["modified"][:19]}  {row["size"]:>12}  {row["name"]}', highlight=False)
    total = sum(o.size for o in orphans)
    verb = f'removed {len(removed)}' if delete else 'dry run: rerun with --delete to remove them'
    stderr.print(f'{len(orphans)} orphan(s), {total} bytes, in {client.url}; {verb}')


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r'\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*', text)
    if match is None:
        raise BadInput(f'--older-than {text!r}: give a number and a unit, e.g. 30m, 12h, 7d')
    unit = {'': 1, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}[match.group(2)]
    return timedelta(seconds=float(match.group(1)) * unit)


_STATUS_STYLE = {
    'succeeded': 'green',
    'running': 'blue',
    'started': 'blue',
    'failed': 'red',
    'crashed': 'bold red',
    'rollback_failed': 'bold red',
    'cancelled': 'yellow',
    'rolled_back': 'yellow',
}


def _status(status: str) -> str:
    style = _STATUS_STYLE.get(status)
    return f'[{style}]{status}[/{style}]' if style else status


def main() -> None:
    app()
