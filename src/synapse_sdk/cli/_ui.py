"""``synapse ui``: serve the run journal as a web page (the ``ui`` extra)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from synapse_sdk.errors import ErrorKind, SynapseError
from synapse_sdk.journal import Journal

EXTRA = "the web view needs the 'ui' extra: pip install 'synapse-sdk[ui]'"


def ui_command(
    port: Annotated[int, typer.Option('--port', help='The port to listen on.')] = 8265,
    host: Annotated[
        str,
        typer.Option('--host', help='The address to bind; other than loopback it needs --token.'),
    ] = '127.0.0.1',
    token: Annotated[
        str | None,
        typer.Option(
            '--token',
            metavar='TOKEN',
            help='Every request must carry it (open the page once with ?token=TOKEN);'
            ' default: $SYNAPSE_UI_TOKEN.',
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            '--database',
            metavar='URL',
            help='The journal in this database (postgresql://...); default:'
            ' $SYNAPSE_DATABASE_URL, else $SYNAPSE_HOME/runs.db.',
        ),
    ] = None,
) -> None:
    """Serve the runs list, each run's page (live while it runs) and its cancel,
    rollback and resume buttons on http://HOST:PORT/ until Ctrl-C."""
    from .main import EXIT_CODES, _exit_code, _fail, _use_database

    _use_database(database)  # the buttons' commands inherit it
    try:
        from synapse_sdk import ui
    except ImportError as error:
        if (error.name or '').partition('.')[0] not in ('starlette', 'uvicorn'):
            raise
        _fail(EXIT_CODES[ErrorKind.BAD_INPUT], EXTRA, False)
    try:
        Journal().check()  # reachable, and a journal: else one line now, not a page per request
    except SynapseError as error:
        _fail(_exit_code(error), str(error), False)
    try:
        chosen = ui.access_token(host, token)
        sock = ui.bind(host, port)
    except ValueError as error:
        _fail(EXIT_CODES[ErrorKind.BAD_INPUT], str(error), False)
    except OSError as error:
        message = f'cannot listen on {host}:{port}: {error.strerror}; choose another --port'
        _fail(EXIT_CODES[ErrorKind.BAD_INPUT], message, False)
    shown = f'http://{host}:{sock.getsockname()[1]}/'
    note = ' (open it once with ?token=TOKEN)' if chosen else ''
    Console(stderr=True, highlight=False).print(
        Text(f'synapse ui on {shown}{note}; Ctrl-C stops it'), soft_wrap=True
    )
    ui.server(sock, token=chosen).run(sockets=[sock])
