"""Serving the application with uvicorn on a socket bound first, so that a taken port or a
refused address is one clear error before anything starts."""

from __future__ import annotations

import os
import socket
from typing import Any

import uvicorn

from ._app import create_app
from ._security import access_token, is_loopback


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port); ``OSError`` says why not."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip('[]'), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def server(
    sock: socket.socket,
    *,
    token: str | None = None,
    database: str | os.PathLike[str] | None = None,
    log_level: str = 'warning',
) -> uvicorn.Server:
    """A uvicorn server for ``sock`` (``.run(sockets=[sock])`` serves until stopped;
    ``should_exit = True`` stops it)."""
    host, port = sock.getsockname()[:2]
    hosts = None if is_loopback(host) else ['*']  # elsewhere the token guards it
    app: Any = create_app(database, token, hosts)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=3,  # a page's open stream does not hold Ctrl-C up
    )
    served = uvicorn.Server(config)
    app.state.server = served  # its streams end when it stops (see _stream)
    return served


def serve(
    host: str = '127.0.0.1',
    port: int = 8265,
    *,
    token: str | None = None,
    database: str | os.PathLike[str] | None = None,
) -> None:
    """``synapse ui``: check the bind rule, bind, serve until Ctrl-C."""
    chosen = access_token(host, token)
    sock = bind(host, port)
    server(sock, token=chosen, database=database).run(sockets=[sock])
