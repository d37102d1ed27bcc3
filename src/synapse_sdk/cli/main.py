"""``synapse``: parses, calls the execution layer, prints. No business logic here."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from synapse_sdk.execution import LocalExecutor
from synapse_sdk.plugins.actions import ActionError
from synapse_sdk.plugins.loader import Plugin, PluginError
from synapse_sdk.plugins.scaffold import CATEGORIES, create_plugin
from synapse_sdk.plugins.steps import StepExecutionError

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

app = typer.Typer(help='Synapse SDK: run and build plugin actions.', no_args_is_help=True)
plugin_app = typer.Typer(help='Run, inspect and create plugins.', no_args_is_help=True)
app.add_typer(plugin_app, name='plugin')

stderr = Console(stderr=True, highlight=False)

PathOption = Annotated[Path, typer.Option('--path', help='The plugin folder (holds config.yaml).')]
DebugOption = Annotated[bool, typer.Option('--debug', help='Show tracebacks.')]


class BadInput(Exception):
    """The command line itself is at fault: exit code 2, one line."""


def _fail(code: int, message: str, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exc()
    stderr.print(f'[bold red]error:[/bold red] {message}', markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _read_params(params: str | None, params_file: Path | None) -> dict[str, Any]:
    if params is not None and params_file is not None:
        raise BadInput('give --params or --params-file, not both')
    if params_file is not None:
        try:
            params = params_file.read_text(encoding='utf-8')
        except OSError as error:
            raise BadInput(f'cannot read --params-file {params_file}: {error.strerror}') from error
    if params is None:
        return {}
    try:
        value = json.loads(params)
    except json.JSONDecodeError as error:
        raise BadInput(f'params are not valid JSON: {error}') from error
    if not isinstance(value, dict):
        raise BadInput(f'params must be a JSON object, got {type(value).__name__}')
    return value


@plugin_app.command('run')
def run(
    action: Annotated[str, typer.Argument(help='The action name from config.yaml.')],
    path: PathOption = Path('.'),
    params: Annotated[str | None, typer.Option('--params', help='Params as JSON.')] = None,
    params_file: Annotated[
        Path | None, typer.Option('--params-file', help='A file holding the params as JSON.')
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Run ACTION of the plugin in this process; the result is printed as JSON on stdout."""
    try:
        values = _read_params(params, params_file)
        action_cls = Plugin.load(path).load_action(action)
        action_cls.validate_params(values)
    except (BadInput, PluginError, ActionError) as error:
        _fail(EXIT_BAD_INPUT, str(error), debug)
    try:
        result = LocalExecutor().run(action_cls, values)
    except StepExecutionError as error:
        _fail(EXIT_FAILED, _describe_failure(error), debug)
    except ActionError as error:
        _fail(EXIT_BAD_INPUT, str(error), debug)
    except Exception as error:
        _fail(EXIT_FAILED, f'action {action!r} failed: {type(error).__name__}: {error}', debug)
    sys.stdout.write(json.dumps(result, indent=2, default=str) + '\n')


def _describe_failure(error: StepExecutionError) -> str:
    lines = [str(error), *getattr(error, '__notes__', [])]
    return '\n  '.join(lines)


@plugin_app.command('steps')
def steps(
    action: Annotated[str, typer.Argument(help='The action name from config.yaml.')],
    path: PathOption = Path('.'),
    params: Annotated[str | None, typer.Option('--params', help='Params as JSON.')] = None,
    debug: DebugOption = False,
) -> None:
    """Show ACTION's step plan (order, names, weights) without running it."""
    try:
        values = _read_params(params, None)
        action_cls = Plugin.load(path).load_action(action)
        plan = action_cls.plan(values)
    except (BadInput, PluginError, ActionError) as error:
        _fail(EXIT_BAD_INPUT, str(error), debug)
    if not plan:
        Console().print(f'{action} registers no steps: it runs in plain execute() mode')
        return
    table = Table('#', 'step', 'weight', 'share')
    for index, (name, weight, share) in enumerate(plan, 1):
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
    except (ValueError, FileExistsError) as error:
        _fail(EXIT_BAD_INPUT, str(error), False)
    Console().print(f'created {folder}')


def main() -> None:
    app()
