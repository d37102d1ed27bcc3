"""The web application: routes, the access-token and error handling around them."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from synapse_sdk import observe
from synapse_sdk.journal import Journal, JournalError, UnknownRunError

from ._actions import Jobs
from ._html import error_page, run_link
from ._listing import fetch, parse_query, render_list
from ._live import Progress, read_on, state
from ._run_page import render_confirm, render_run
from ._security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    TOKEN_COOKIE,
    TOKEN_HEADER,
    new_csrf,
    same,
    without_token,
)
from ._stream import run_events

STATIC = Path(__file__).resolve().parent / 'static'


class Journals:
    """One ``Journal`` per server thread (a connection is not shared between threads)."""

    def __init__(self, location: str | os.PathLike[str] | None) -> None:
        self.location = location
        self._local = threading.local()

    def get(self) -> Journal:
        journal: Journal | None = getattr(self._local, 'journal', None)
        if journal is None:
            journal = Journal(self.location)
            self._local.journal = journal
        return journal


LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '::1', '[::1]']


def create_app(
    database: str | os.PathLike[str] | None = None,
    token: str | None = None,
    hosts: list[str] | None = None,
) -> Any:
    """The Starlette application serving the journal at ``database`` (default: the one
    ``Journal()`` opens); with ``token``, every request must carry it. ``hosts``: the
    names a request may address the server by (default: loopback ones), so that a web
    page whose name was rebound to 127.0.0.1 (DNS rebinding) gets nothing."""
    app = Starlette(
        routes=[
            Route('/', runs_list),
            Route('/runs/{run_id}', run_page),
            Route('/runs/{run_id}/state', run_state),
            Route('/runs/{run_id}/events', run_stream),
            Route('/runs/{run_id}/rollback', confirm_rollback, methods=['GET']),
            Route('/runs/{run_id}/{verb}', run_action, methods=['POST']),
            Mount('/static', StaticFiles(directory=STATIC), name='static'),
        ],
        middleware=[
            Middleware(ServerTiming),
            Middleware(TrustedHostMiddleware, allowed_hosts=hosts or LOOPBACK_NAMES),
            Middleware(TokenMiddleware, token=token),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.journals = Journals(database)
    app.state.jobs = Jobs()
    return app


HEADERS = [
    # the page's own script and stylesheet only (the report's parts style a few elements
    # inline); never in a frame; no Referer, so a ?token= never leaves in one
    (
        b'content-security-policy',
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
        b" frame-ancestors 'none'; form-action 'self'",
    ),
    (b'x-frame-options', b'DENY'),
    (b'x-content-type-options', b'nosniff'),
    (b'referrer-policy', b'no-referrer'),
]


class ServerTiming:
    """Says in a ``Server-Timing`` header how long the server took to start answering (a
    browser's developer tools show it; docs/benchmarks.md reads it); adds ``HEADERS``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Any) -> None:
            if message['type'] == 'http.response.start':
                took = f'app;dur={(time.perf_counter() - start) * 1000:.2f}'.encode()
                message = {
                    **message,
                    'headers': [*message.get('headers', []), *HEADERS, (b'server-timing', took)],
                }
            await send(message)

        await self.app(scope, receive, timed)


class TokenMiddleware(BaseHTTPMiddleware):
    """With a token: a request carries it (header or cookie) or is refused; ``?token=``
    sets the cookie once and redirects to the URL without it (out of the history)."""

    def __init__(self, app: Any, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.token is None:
            return await call_next(request)
        if same(request.query_params.get('token'), self.token):
            pairs = list(request.query_params.multi_items())
            target = RedirectResponse(without_token(request.url.path, pairs), status_code=303)
            target.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite='strict')
            return target
        given = request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE)
        auth = request.headers.get('authorization', '')
        if auth.lower().startswith('bearer '):
            given = auth[7:]
        if not same(given, self.token):
            detail = (
                'this synapse ui needs its token: open it once with ?token=TOKEN'
                f' (or send the {TOKEN_HEADER} header)'
            )
            return HTMLResponse(error_page(401, 'Token required', detail), status_code=401)
        return await call_next(request)


def _journal(request: Request) -> Journal:
    journals: Journals = request.app.state.journals
    return journals.get()


def _csrf(request: Request) -> tuple[str, bool]:
    """The session's CSRF token, and whether it is new (then the response sets it)."""
    known = request.cookies.get(CSRF_COOKIE)
    return (known, False) if known else (new_csrf(), True)


def _html(request: Request, render: Any, *args: Any, status: int = 200) -> HTMLResponse:
    """A page that may hold forms: ``render(*args, csrf)``, and the CSRF cookie set."""
    token, fresh = _csrf(request)
    response = HTMLResponse(render(*args, token), status_code=status)
    if fresh:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite='strict')
    return response


def _resolve(request: Request) -> str | RedirectResponse:
    """The full id of the run the path names; a unique prefix redirects to it."""
    raw = request.path_params['run_id']
    try:
        run_id = _journal(request).resolve_run_id(raw)
    except UnknownRunError as error:
        raise HTTPException(404, str(error)) from error
    if run_id != raw:
        rest = request.url.path.removeprefix(run_link(raw))
        return RedirectResponse(run_link(run_id) + rest, status_code=307)
    return run_id


def runs_list(request: Request) -> Response:
    try:
        wanted = parse_query(request.query_params)
        journal = _journal(request)
        page, total = fetch(journal, wanted)
    except ValueError as error:  # a parameter the list cannot take
        raise HTTPException(422, str(error)) from error
    except JournalError as error:  # a cursor this journal never made
        raise HTTPException(422, str(error)) from error
    where = journal.database.describe()
    return HTMLResponse(render_list(wanted, page, total, where))


def run_page(request: Request) -> Response:
    run_id = _resolve(request)
    if isinstance(run_id, RedirectResponse):
        return run_id
    journal = _journal(request)
    view = observe.load_run(journal, run_id)
    lines, cursor = read_on(journal, run_id, '0', None)
    job = request.app.state.jobs.latest(run_id)
    return _html(request, render_run, view, lines, cursor, job)


def run_state(request: Request) -> Response:
    """The run's state as JSON (what the live stream sends), for scripts and tests."""
    run_id = _resolve(request)
    if isinstance(run_id, RedirectResponse):
        return run_id
    journal = _journal(request)
    record, steps = journal.get_run(run_id), journal.steps(run_id)
    lines, _ = read_on(journal, run_id, '0', None)
    progress = Progress()
    progress.read(lines)
    return JSONResponse(state(record, steps, progress, request.app.state.jobs.latest(run_id)))


async def run_stream(request: Request) -> Response:
    run_id = await run_in_threadpool(_resolve, request)  # the journal: off the event loop
    if isinstance(run_id, RedirectResponse):
        return run_id
    return run_events(request, _journal, run_id)


def confirm_rollback(request: Request) -> Response:
    run_id = _resolve(request)
    if isinstance(run_id, RedirectResponse):
        return run_id
    return _html(request, render_confirm, observe.load_run(_journal(request), run_id))


async def run_action(request: Request) -> Response:
    """A button: checked (CSRF, the verb, rollback's confirmation), then the command started."""
    verb = request.path_params['verb']
    if verb not in ('cancel', 'rollback', 'resume'):
        raise HTTPException(404, f'no action {verb!r}: cancel, rollback or resume')
    fields = dict(parse_qsl((await request.body()).decode('utf-8', errors='replace')))
    if not same(fields.get(CSRF_FIELD), request.cookies.get(CSRF_COOKIE) or '\0'):
        detail = "the form did not carry this session's CSRF token; reload the page and try again"
        raise HTTPException(403, detail)
    run_id = await run_in_threadpool(_resolve, request)
    if isinstance(run_id, RedirectResponse):
        return run_id
    link = run_link(run_id)
    if verb == 'rollback' and fields.get('confirm') != 'yes':
        return RedirectResponse(f'{link}/rollback', status_code=303)
    finished = fields.get('finished') == '1'
    try:
        await run_in_threadpool(request.app.state.jobs.start, run_id, verb, finished=finished)
    except RuntimeError as error:
        raise HTTPException(409, str(error)) from error
    return RedirectResponse(link, status_code=303)


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    titles = {401: 'Token required', 403: 'Refused', 404: 'Not found', 405: 'Method not allowed'}
    titles |= {409: 'Busy', 422: 'Bad request'}
    title = titles.get(error.status_code, 'Error')
    detail = error.detail if isinstance(error.detail, str) else title
    if error.status_code == 404 and detail == 'Not Found':
        detail = f'no page at {request.url.path}'
    body = error_page(error.status_code, title, detail)
    return HTMLResponse(body, status_code=error.status_code, headers=error.headers)


async def server_error(request: Request, error: Exception) -> Response:
    """Never a traceback in the page: the journal's own message, or one line."""
    if isinstance(error, JournalError):
        body = error_page(503, 'Journal unavailable', str(error))
        return HTMLResponse(body, status_code=503)
    detail = f'{type(error).__name__}: the server failed on this page; its log has the details'
    return HTMLResponse(error_page(500, 'Server error', detail), status_code=500)
