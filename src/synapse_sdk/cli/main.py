"""``synapse``: parses, calls the execution layer, prints. No business logic here."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from synapse_sdk import observe
from synapse_sdk._paths import DATABASE_URL_VARIABLE, read_utf8, run_log_path
from synapse_sdk.clients import choose_storage, index_database, open_storage
from synapse_sdk.db import Database, upgrade
from synapse_sdk.errors import (
    ActionError,
    ErrorKind,
    JournalError,
    StepExecutionError,
    SynapseError,
)
from synapse_sdk.execution import (
    LOG_FORMATS,
    SIGNAL_EXIT_CODES,
    LocalExecutor,
    RayUnavailableError,
    SignalState,
    cancel_on_signals,
    default_runtime,
    resume_run,
    rollback_run,
    secrets_from_environment,
)
from synapse_sdk.journal import Journal, RunRecord
from synapse_sdk.plugins.actions import (
    BaseAction,
    StepPreview,
    describe_params,
    params_json_schema,
    preview_steps,
    retry_text,
)
from synapse_sdk.plugins.loader import Plugin, code_location
from synapse_sdk.plugins.scaffold import CATEGORIES, create_plugin
from synapse_sdk.plugins.steps.support import describe_exception
from synapse_sdk.runtime import JsonLinesLogger, LineLogger, ResultRecorder, RuntimeContext

from ._detach import (
    DetachOption,
    MemoryOption,
    NumCpusOption,
    NumGpusOption,
    Placement,
    RunIdOption,
    SharedFsOption,
    SubmittedFromOption,
    placement,
    submit,
)
from ._timespec import parse_duration, parse_moment
from ._ui import ui_command

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
db_app = typer.Typer(
    help='The database of the run journal and the storage index.', no_args_is_help=True
)
app.add_typer(db_app, name='db')
app.command('ui')(ui_command)

stderr = Console(stderr=True, highlight=False)

PathOption = Annotated[Path, typer.Option('--path', help='The plugin folder (holds config.yaml).')]
DebugOption = Annotated[bool, typer.Option('--debug', help='Show tracebacks.')]
OtelOption = Annotated[
    bool | None,
    typer.Option(
        '--otel/--no-otel',
        help='Export an OpenTelemetry trace of the run (default: when the OTEL_* '
        'variables ask for one, e.g. OTEL_EXPORTER_OTLP_ENDPOINT).',
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        '--database',
        metavar='URL',
        help='Keep the run journal and the storage index in this database'
        ' (postgresql://user:password@host:port/db); default: $SYNAPSE_DATABASE_URL,'
        ' else SQLite files under $SYNAPSE_HOME.',
    ),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        '--storage',
        metavar='URL',
        help='Where files are stored: a folder or a URL (s3://, az://, gs://, sftp://); '
        "default: $SYNAPSE_STORAGE, the plugin's config.yaml storage:, $SYNAPSE_HOME/storage.",
    ),
]
RunStorageOption = Annotated[
    str | None,
    typer.Option(
        '--storage',
        metavar='URL',
        help="The run's storage (default: the one its journal record names), e.g. with"
        ' other options.',
    ),
]
ModeOption = Annotated[str, typer.Option('--mode', help="'local' (this process) or 'ray'.")]
RayAddressOption = Annotated[
    str | None,
    typer.Option('--ray-address', help='Ray cluster to connect to (default: start one).'),
]
RunDebugOption = Annotated[
    bool, typer.Option('--debug', help='Show tracebacks and debug-level events.')
]
LogFormatOption = Annotated[
    str,
    typer.Option(
        '--log-format',
        help="How stderr shows the run: 'auto' (live bars on a terminal, plain lines "
        "otherwise), 'plain' (one line per event, with its level) or 'json' (JSON lines).",
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
    mode: ModeOption = 'local',
    ray_address: RayAddressOption = None,
    otel: OtelOption = None,
    log_format: LogFormatOption = 'auto',
    debug: RunDebugOption = False,
    database: DatabaseOption = None,
    storage: StorageOption = None,
    detach: DetachOption = False,
    num_cpus: NumCpusOption = None,
    num_gpus: NumGpusOption = None,
    memory: MemoryOption = None,
    shared_fs: SharedFsOption = False,
    run_id: RunIdOption = None,
    submitted_from: SubmittedFromOption = None,
) -> None:
    """Run ACTION of the plugin; progress on stderr, the result as JSON on stdout.

    Once the run has started, the result is printed whether it succeeded or not
    (docs/actions.md, "The run's result"); the exit code says how it ended.
    With --detach, it is submitted as a Ray job instead (docs/ray.md).
    """
    _use_database(database)
    try:
        given = (params, params_file, submitted_from is not None)
        plugin, action_cls, values = _run_inputs(action, path, log_format, *given)
        ray_options = (num_cpus, num_gpus, memory, shared_fs, run_id, submitted_from, journal)
        placing = placement(plugin, action, mode, detach, *ray_options)
        storage = _checked_storage(storage, plugin)
        if detach:
            return submit(plugin, action, values, ray_address, log_format, placing, storage)
        store = _checked_journal(journal)
        executor = _executor(mode, ray_address, store, placing)
        runtime = _run_runtime(otel, plugin.config.code, action, log_format, debug, storage, run_id)
    except SynapseError as error:
        _fail_shown(log_format, None, _exit_code(error), str(error), debug)
    recorder = ResultRecorder()  # what the run did, to report it however it ends
    runtime.loggers.append(recorder)
    if store is not None:
        _announce(log_format, runtime.run_id, store)
    origin = placing.origin(plugin, action)
    run_id = runtime.run_id if store else None
    grace = None if mode == 'ray' else 10.0  # the Ray driver waits for the worker itself
    with cancel_on_signals(runtime.cancel_token, grace=grace) as signals:
        try:
            result = executor.run(action_cls, values, ctx=runtime, origin=origin)
        except (Exception, KeyboardInterrupt, SystemExit) as error:
            _print_json(recorder.result(runtime.run_id, error=error).to_dict())
            message = _describe_end(error, store, run_id) or _describe_other(error, action)
            _fail_shown(log_format, runtime.run_id, _exit_code(error, signals), message, debug)
    _print_json(recorder.returned(result, runtime.run_id))


def _run_inputs(
    action: str,
    path: Path,
    log_format: str,
    params: str | None,
    params_file: Path | None,
    detached: bool,
) -> tuple[Plugin, type[BaseAction[Any]], dict[str, Any]]:
    """The plugin, its action and the params (in a detached run's job, with the secret
    ones its environment carries), checked before anything runs."""
    if log_format not in LOG_FORMATS:
        choices = ', '.join(repr(f) for f in LOG_FORMATS)
        raise BadInput(f'--log-format must be one of {choices}, got {log_format!r}')
    values = _read_params(params, params_file)
    if detached:
        try:
            values = secrets_from_environment(values)
        except ValueError as error:
            raise BadInput(str(error)) from error
    plugin = Plugin.load(path)
    action_cls = plugin.load_action(action)
    action_cls.validate_params(values)
    return plugin, action_cls, values


def _checked_journal(journal: bool) -> Journal | None:
    """The run journal, read now: a bad journal is bad input, not a failed run."""
    store = Journal() if journal else None
    if store is not None:
        store.check()
    return store


def _describe_other(error: BaseException, action: str) -> str:
    """How a run that ended in ``error``, neither a failed step nor a stop, is reported."""
    if _kind_of(error) is ErrorKind.BAD_INPUT:
        return str(error)
    return f'action {action!r} failed: {describe_exception(error)}'


def _announce(log_format: str, run_id: str, store: Journal) -> None:
    """The run's id and journal, first thing on stderr, in the run's log format."""
    where = store.database.describe()  # a file, or a URL without its password
    text = f'run {run_id} (journal: {where})'
    if log_format == 'json':
        JsonLinesLogger(sys.stderr, run_id).log('run', {'journal': where}, None, 'info')
    elif log_format == 'plain' or not (stderr.is_terminal or stderr.is_jupyter):
        LineLogger(sys.stderr).write('info', text)
    else:
        stderr.print(Text(text, style='dim'), soft_wrap=True)


def _fail_shown(
    log_format: str, run_id: str | None, code: int, message: str, debug: bool
) -> NoReturn:
    """:func:`_fail`, but as a JSON line (``event: error``) when the run's log format is json."""
    if log_format != 'json':
        _fail(code, message, debug)
    if debug:
        traceback.print_exc()
    data = {'message': message, 'exit_code': code}
    JsonLinesLogger(sys.stderr, run_id).log('error', data, None, 'error')
    raise typer.Exit(code)


def _executor(
    mode: str, address: str | None, store: Journal | None, placing: Placement | None = None
) -> Any:
    if mode not in ('local', 'ray'):
        raise BadInput(f"--mode must be 'local' or 'ray', got {mode!r}")
    if mode == 'local':
        if address is not None:
            raise BadInput('--ray-address goes with --mode ray')
        return LocalExecutor(journal=store)
    try:
        from synapse_sdk.execution import RayExecutor, check_ray_address
    except ImportError as error:
        raise BadInput(str(error)) from error
    try:
        check_ray_address(address)
    except ValueError as error:
        raise BadInput(f'--ray-address: {error}') from error
    if store is None:  # the driver rolls back a dead worker's run from a journal
        store = Journal(Path(tempfile.mkdtemp(prefix='synapse-ray-')) / 'runs.db')
    options = placing.executor_options() if placing is not None else {}
    return RayExecutor(address, journal=store, **options)


def _checked_storage(given: str | None, plugin: Plugin) -> str | None:
    """The run's storage (``--storage``, ``SYNAPSE_STORAGE``, config.yaml's ``storage:``),
    tried once: no such bucket, access denied, a missing extra are one line, exit 2."""
    storage = choose_storage(given, plugin.config.storage, plugin_path=plugin.path)
    open_storage(storage).check()
    return storage


def _run_runtime(
    otel: bool | None,
    plugin: str,
    action: str,
    log_format: str,
    debug: bool,
    storage: str | None,
    run_id: str | None = None,
) -> RuntimeContext:
    """The default runtime; with a trace when asked (a missing extra or an exporter
    the ``OTEL_*`` variables misname is bad input, said in one line)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', RuntimeWarning)
            runtime = default_runtime(
                run_id,
                otel=otel,
                plugin=plugin,
                action=action,
                log_format=log_format,
                log_level='debug' if debug else 'info',
                storage=storage,
            )
    except (ImportError, ValueError) as error:
        raise BadInput(str(error)) from error
    for warning in caught:  # the OTEL_* variables ask, the extra is missing: one line
        stderr.print(Text(f'warning: {warning.message}', style='yellow'), soft_wrap=True)
    return runtime


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + '\n')


def _describe_end(error: BaseException, store: Journal | None, run_id: str | None) -> str | None:
    """How a run that ended in ``error`` is reported, if it was a failed step or a stop."""
    if isinstance(error, StepExecutionError):
        return _describe_failure(error, run_id)
    if isinstance(error, RayUnavailableError):  # nothing ran; journaled as failed with this
        return str(error)
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


ParamsOption = Annotated[str | None, typer.Option('--params', help='Params as JSON.')]
ParamsFileOption = Annotated[
    Path | None, typer.Option('--params-file', help='A file holding the params as JSON.')
]
JsonOption = Annotated[bool, typer.Option('--json', help='JSON on stdout.')]


@plugin_app.command('steps')
def steps(
    action: Annotated[str, typer.Argument(help='The action name from config.yaml.')],
    path: PathOption = Path('.'),
    params: ParamsOption = None,
    params_file: ParamsFileOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show ACTION's steps without running them: weights, retry, timeout, rollback, and
    which steps the params skip (each can_skip() asked; nothing executed)."""
    plugin, action_cls, values = _load_action(action, path, params, params_file, debug)
    previews = _preview(action, plugin, action_cls, values, debug)
    if as_json:
        _print_json([p.to_dict() for p in previews])
    elif not previews:
        Console().print(f'{action} registers no steps: it runs in plain execute() mode')
    else:
        _print_steps(Console(), previews)


@plugin_app.command('info')
def info(
    action: Annotated[str, typer.Argument(help='The action name from config.yaml.')],
    path: PathOption = Path('.'),
    params: ParamsOption = None,
    params_file: ParamsFileOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show ACTION: its params (fields, types, defaults, descriptions) and its steps."""
    plugin, action_cls, values = _load_action(action, path, params, params_file, debug)
    try:
        fields = describe_params(action_cls)
    except SynapseError as error:  # an action class without a params model
        _fail(_exit_code(error), str(error), debug)
    previews = _preview(action, plugin, action_cls, values, debug)
    about = {
        'action': action,
        'plugin': plugin.config.code,
        'version': plugin.config.version,
        'category': action_cls.category,
        'entrypoint': plugin.action_config(action).entrypoint,
        'description': plugin.action_config(action).description or None,
    }
    if as_json:
        params_out = [f.to_dict() for f in fields]
        schema = params_json_schema(action_cls)
        steps_out = [p.to_dict() for p in previews]
        _print_json({**about, 'params': params_out, 'params_schema': schema, 'steps': steps_out})
        return
    out = Console()
    for key, value in about.items():
        out.print(Text(f'{key:<12}{value if value is not None else "-"}'))
    table = Table('param', 'type', 'default', 'description', title='params', title_justify='left')
    for f in fields:
        table.add_row(Text(f.name), Text(f.type), Text(f.default_text()), Text(f.description or ''))
    out.print(table if fields else Text('params      none'))
    if previews:
        _print_steps(out, previews, title='steps')
    else:
        out.print('steps       none: it runs in plain execute() mode')


def _load_action(
    action: str, path: Path, params: str | None, params_file: Path | None, debug: bool
) -> tuple[Plugin, type[BaseAction[Any]], dict[str, Any]]:
    try:
        values = _read_params(params, params_file)
        plugin = Plugin.load(path)
        return plugin, plugin.load_action(action), values
    except SynapseError as error:
        _fail(_exit_code(error), str(error), debug)


def _preview(
    action: str,
    plugin: Plugin,
    action_cls: type[BaseAction[Any]],
    values: dict[str, Any],
    debug: bool,
) -> list[StepPreview]:
    """The steps as ``preview_steps`` sees them; setting them up raising is bad input."""
    try:
        return preview_steps(action_cls, values)
    except Exception as error:  # params that do not fit, or the plugin is broken: bad input
        if isinstance(error, ActionError):
            message = str(error)
        else:  # the action's own code: its setup_steps() raised
            message = f'cannot build the steps of {action!r}: {describe_exception(error)}'
            where = code_location(error, plugin.path)
            message += f' ({where})' if where else ''
        _fail(EXIT_CODES[ErrorKind.BAD_INPUT], message, debug)


def _print_steps(out: Console, previews: list[StepPreview], title: str | None = None) -> None:
    columns = ('#', 'step', 'weight', 'share', 'retry', 'timeout', 'rollback', 'skip')
    table = Table(*columns, title=title, title_justify='left')
    notes = {p.skip_note for p in previews if p.skip_note.startswith('not evaluated')}
    for p in previews:
        table.add_row(
            str(p.index + 1),
            Text(p.name),
            f'{p.weight:g}',
            f'{p.share:.1f}%',
            Text(retry_text(p.retry)),
            f'{p.timeout:g}s' if p.timeout is not None else '-',
            'yes' if p.can_rollback else 'no',
            Text('-' if p.skip_note in notes else p.skip_note),
        )
    out.print(table)
    for note in notes:  # said once, not in every row
        out.print(Text(f'skip: {note}', style='dim'))


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


def _use_database(url: str | None) -> None:
    """``--database URL``: this command's (and its workers') ``SYNAPSE_DATABASE_URL``."""
    if url is not None:
        os.environ[DATABASE_URL_VARIABLE] = url


def _journal() -> Journal:
    return Journal()


@runs_app.command('list')
def runs_list(
    status: Annotated[
        str | None, typer.Option('--status', help='Only runs in this status.')
    ] = None,
    plugin: Annotated[
        str | None, typer.Option('--plugin', help='Only runs of this plugin (its code).')
    ] = None,
    action: Annotated[
        str | None, typer.Option('--action', help='Only runs of this action.')
    ] = None,
    since: Annotated[
        str | None,
        typer.Option('--since', help='Only runs started since: 2h, 7d, or an ISO date (UTC).'),
    ] = None,
    limit: Annotated[int, typer.Option('--limit', help='At most this many runs.')] = 50,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """The journaled runs, newest first."""
    _use_database(database)
    try:
        start = None if since is None else _moment(since, '--since')
        records = _journal().list_runs(
            status=status, limit=limit, plugin=plugin, action=action, since=start
        )
    except SynapseError as error:
        _fail(_exit_code(error), str(error), False)
    if as_json:
        _print_json([r.to_dict() for r in records])
        return
    table = Table('run', 'status', 'progress', 'plugin', 'action', 'started', 'error')
    for r in records:
        table.add_row(
            r.id,
            _status(r.status),
            f'{r.progress}%',
            Text(r.plugin or '-'),
            Text(r.action or r.entrypoint),
            r.started_at[:19].replace('T', ' '),
            Text((r.error or '')[:60]),
        )
    Console().print(table)


def _moment(text: str, option: str) -> datetime:
    try:
        return parse_moment(text, option)
    except ValueError as error:
        raise BadInput(str(error)) from error


RunIdArgument = Annotated[
    str, typer.Argument(help='The run id, or its first characters if no other run shares them.')
]


@runs_app.command('show')
def runs_show(
    run_id: RunIdArgument,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """The whole record of a run: what ran where, each step, metrics, attempts, its log."""
    _use_database(database)
    view = _load_run(run_id)
    if as_json:
        _print_json(view.to_dict())
        return
    Console().print(*observe.show(view))


@runs_app.command('logs')
def runs_logs(
    run_id: RunIdArgument,
    follow: Annotated[
        bool, typer.Option('--follow', '-f', help='Keep printing until the run ends.')
    ] = False,
    level: Annotated[
        str,
        typer.Option(
            '--level', help=f'Only lines at this level or above: {", ".join(observe.LEVELS)}.'
        ),
    ] = 'info',
    database: DatabaseOption = None,
) -> None:
    """The run's log lines (from $SYNAPSE_HOME/logs/RUN_ID.jsonl; from the journal, which
    keeps the last ones, when that file is not on this machine)."""
    _use_database(database)
    journal = _journal()
    try:
        keep = observe.at_least(level)
    except ValueError as error:
        _fail(EXIT_CODES[ErrorKind.BAD_INPUT], f'--level: {error}', False)
    record = _get_run(journal, run_id)
    run_id = record.id
    path = observe.log_path(run_id)
    running = lambda: _get_run(journal, run_id).active  # noqa: E731
    if path.exists():
        lines = observe.follow(path, running) if follow else iter(observe.read_log(path))
    else:
        lines = observe.follow_journal(journal, run_id, running if follow else lambda: False)
        dropped = journal.log_lines(run_id, limit=0).dropped
        note = f'; {dropped} older lines were not kept' if dropped else ''
        shown = f'run {record.id} has no log at {path}: its last lines from the journal{note}'
        stderr.print(Text(shown, style='dim'))
    for line in lines:
        if keep(line):
            sys.stdout.write(_log_line(line))
            sys.stdout.flush()


def _log_line(line: dict[str, Any]) -> str:
    stamp = str(line.get('ts', ''))[:23].replace('T', ' ')
    return f'{stamp} {observe.level_of(line):<7} {observe.describe_line(line)}\n'


@runs_app.command('timeline')
def runs_timeline(
    run_id: RunIdArgument,
    width: Annotated[int, typer.Option('--width', help='Characters for the bars.')] = 60,
    database: DatabaseOption = None,
) -> None:
    """A Gantt chart of the run's steps: attempts, waits and rollbacks as bars of their own."""
    _use_database(database)
    view = _load_run(run_id)
    out = Console()
    out.print(Text.assemble((f'run {view.record.id}', 'bold'), '  ', _status_text(view)))
    if not view.spans:
        out.print('no step has started')
        return
    out.print(observe.gantt(view, max(10, width)))


@runs_app.command('report')
def runs_report(
    run_id: RunIdArgument,
    output: Annotated[Path, typer.Option('--output', '-o', help='The HTML file to write.')] = Path(
        'run.html'
    ),
    database: DatabaseOption = None,
) -> None:
    """One self-contained HTML file: timeline, progress, metrics, rollback, last log lines."""
    _use_database(database)
    view = _load_run(run_id)
    try:
        output.write_text(observe.render_report(view), encoding='utf-8')
    except OSError as error:
        message = f'cannot write the report to {output}: {error.strerror}; choose another -o path'
        _fail(EXIT_CODES[ErrorKind.BAD_INPUT], message, False)
    stderr.print(Text(f'wrote {output}', style='dim'))


def _get_run(journal: Journal, run_id: str) -> RunRecord:
    try:
        return journal.get_run(journal.resolve_run_id(run_id))
    except SynapseError as error:
        _fail(_exit_code(error), str(error), False)


def _load_run(run_id: str) -> observe.RunView:
    journal = _journal()
    try:
        return observe.load_run(journal, journal.resolve_run_id(run_id))
    except SynapseError as error:
        _fail(_exit_code(error), str(error), False)


def _status_text(view: observe.RunView) -> Text:
    return Text.from_markup(_status(view.record.status))


@runs_app.command('rollback')
def runs_rollback(
    run_id: RunIdArgument,
    finished: Annotated[
        bool, typer.Option('--finished', help='Undo a run that succeeded, too.')
    ] = False,
    storage: RunStorageOption = None,
    debug: DebugOption = False,
    database: DatabaseOption = None,
) -> None:
    """Undo what a crashed, failed or cancelled run left behind (safe to repeat); in the
    run's own directory, whatever this one is."""
    _use_database(database)
    journal = _journal()
    try:
        journal.check()  # a damaged journal is refused before anything is undone
        run_id = journal.resolve_run_id(run_id)
        report = rollback_run(journal, run_id, finished=finished, storage=storage)
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
    run_id: RunIdArgument,
    mode: ModeOption = 'local',
    ray_address: RayAddressOption = None,
    storage: RunStorageOption = None,
    debug: DebugOption = False,
    database: DatabaseOption = None,
) -> None:
    """Run a failed or crashed run again from the first step that did not succeed."""
    _use_database(database)
    journal = _journal()
    try:
        executor = _executor(mode, ray_address, journal)  # --mode and --ray-address checked
        journal.check()  # a damaged journal is refused before anything runs
        run_id = journal.resolve_run_id(run_id)
        recorded = journal.get_run(run_id).storage  # None: SYNAPSE_STORAGE, or the default
        runtime = default_runtime(run_id, storage=storage or recorded)
    except SynapseError as error:
        _fail(_exit_code(error), str(error), debug)
    recorder = ResultRecorder()  # reports the resumed run however it ends, as `plugin run`
    runtime.loggers.append(recorder)
    grace = None if mode == 'ray' else 10.0  # the Ray driver waits for the worker itself
    with cancel_on_signals(runtime.cancel_token, grace=grace) as signals:
        try:
            if mode == 'ray':
                result = executor.resume(run_id, ctx=runtime)
            else:
                result = resume_run(journal, run_id, runtime)
        except (SynapseError, KeyboardInterrupt, SystemExit) as error:
            if _kind_of(error) is not ErrorKind.BAD_INPUT:  # it ran: say how it ended
                _print_json(recorder.result(run_id, error=error).to_dict())
            message = _describe_end(error, journal, run_id) or str(error)
            _fail(_exit_code(error, signals), message, debug)
    _print_json(result)


@runs_app.command('prune')
def runs_prune(
    older_than: Annotated[
        str,
        typer.Option(
            '--older-than', help='Runs that ended before: 30d, 12h, 2w, or an ISO date (UTC).'
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option('--dry-run', help='Only show what would be removed.')
    ] = False,
    unrecovered: Annotated[
        bool,
        typer.Option(
            '--unrecovered',
            help='Also runs with work left to undo (their rollback data goes with them).',
        ),
    ] = False,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """Remove old runs from the journal (steps, rollback data, log files); never an active
    run, and not one with work left to undo unless --unrecovered."""
    _use_database(database)
    journal = _journal()
    try:
        before = _moment(older_than, '--older-than')
        journal.check()  # a damaged journal is refused before anything is deleted
        pruned = journal.prune(before, dry_run=dry_run, unrecovered=unrecovered)
    except SynapseError as error:
        _fail(_exit_code(error), str(error), False)
    if not dry_run:
        for run in pruned.removed:
            try:
                run_log_path(run.id).unlink(missing_ok=True)
            except OSError as error:  # the run is gone from the journal all the same
                stderr.print(Text(f'warning: cannot remove the log file of run {run.id}: {error}'))
    if as_json:
        removed = [r.to_dict() for r in pruned.removed]
        kept = [r.to_dict() for r in pruned.kept]
        _print_json({'dry_run': dry_run, 'removed': removed, 'kept': kept})
        return
    out = Console()
    verb = 'would remove' if dry_run else 'removed'
    for r in pruned.removed:
        ended = (r.ended_at or '')[:19].replace('T', ' ')
        name = f'{r.plugin or "-"}/{r.action or r.entrypoint}'
        out.print(Text(f'{verb} {r.id}  {r.status:<15} {name}  ended {ended}'))
    out.print(
        Text(f'{verb} {len(pruned.removed)} run(s) that ended before {before:%Y-%m-%d %H:%M} UTC')
    )
    if pruned.kept:
        ids = ', '.join(r.id for r in pruned.kept)
        out.print(
            Text(
                f'kept {len(pruned.kept)} run(s) with work left to undo: {ids}; roll them back'
                ' (synapse runs rollback RUN_ID) or add --unrecovered',
                style='yellow',
            )
        )


# db ------------------------------------------------------------------------


def _databases(database: str | None) -> list[Database]:
    """Where the run journal and the storage index live (what ``--database`` chooses)."""
    _use_database(database)
    return [Journal().database, index_database()]


@db_app.command('status')
def db_status(database: DatabaseOption = None) -> None:
    """Each schema's version in the database, and the version this synapse-sdk writes."""
    try:
        rows = [(d, d.version()) for d in _databases(database)]
    except SynapseError as error:
        _fail(_exit_code(error), str(error), False)
    for target, found in rows:
        schema = target.schema
        if found == 0:
            state = 'not created yet (created on first use)'
        elif found < schema.version:
            state = (
                f'older: `synapse db upgrade` (or the first use) migrates it to {schema.version}'
            )
        elif found > schema.version:
            state = f'newer than this synapse-sdk reads ({schema.version}): upgrade synapse-sdk'
        else:
            state = 'up to date'
        Console().print(
            Text(f'{schema.name} at {target.describe()}: schema {found}; {state}'), soft_wrap=True
        )


@db_app.command('upgrade')
def db_upgrade(database: DatabaseOption = None, debug: DebugOption = False) -> None:
    """Create or migrate the run journal's and the storage index's schemas now."""
    try:
        for target in _databases(database):
            before, after = upgrade(target)
            change = 'up to date' if before == after else f'{before or "none"} -> {after}'
            where = f'{target.schema.name} at {target.describe()}'
            Console().print(Text(f'{where}: schema {change}'), soft_wrap=True)
    except SynapseError as error:
        _fail(_exit_code(error), str(error), debug)


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
    as_json: JsonOption = False,
    debug: DebugOption = False,
    database: DatabaseOption = None,
) -> None:
    """List objects that no stored file points at (what crashed uploads left); --delete
    removes them. Younger ones may be uploads about to be indexed: keep --older-than
    longer than an upload takes."""
    _use_database(database)
    try:
        age = timedelta(0) if older_than.strip() == '0' else parse_duration(older_than)
        if age is None:
            raise BadInput(f'--older-than {older_than!r}: give a duration, e.g. 30m, 12h, 7d')
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
        out.print(Text(f'{row["modified"][:19]}  {row["size"]:>12}  {row["name"]}'))
    total = sum(o.size for o in orphans)
    verb = f'removed {len(removed)}' if delete else 'dry run: rerun with --delete to remove them'
    stderr.print(Text(f'{len(orphans)} orphan(s), {total} bytes, in {client.url}; {verb}'))


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


# runs cancel, runs watch: in their own module, registered on runs_app when it loads
from . import _runs_live  # noqa: E402, F401


def main() -> None:
    app()
