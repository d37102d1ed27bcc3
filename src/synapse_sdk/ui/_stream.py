"""A run's live stream (server-sent events): the journal and the log polled every 0.2 s.

Events: ``state`` (status, progress, steps, the button's command: JSON),
``log`` (new log lines as HTML; its id is the log cursor, so a reconnect goes
on from there), ``sections`` (the steps table, timeline, charts and rollback
drawn again when a step starts or ends, and every 2 s while lines come), and
``end`` once the run has ended and no command of this server works on it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import StreamingResponse

from synapse_sdk.journal import Journal

from ._actions import Jobs
from ._html import log_lines_html
from ._live import Progress, cursor_ok, read_on, sections, state, step_key

POLL_S = 0.2
KEEPALIVE_S = 10.0
REDRAW_S = 2.0
SECTIONS = ('steps', 'timeline', 'progress', 'metrics', 'rollback')


def message(event: str, data: Any, ident: str | None = None) -> str:
    """One server-sent event; the data is JSON on one line."""
    head = f'id: {ident}\n' if ident is not None else ''
    return f'{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n'


class Watch:
    """What one page has been sent so far, and what changed since."""

    def __init__(self, run_id: str, cursor: str, jobs: Jobs) -> None:
        self.run_id = run_id
        self.cursor = cursor
        self.jobs = jobs
        self.progress = Progress()
        self.key: Any = None
        self.sent: dict[str, Any] | None = None
        self.drawn = 0.0
        self.fresh_lines = False

    def poll(self, journal: Journal) -> tuple[list[str], bool]:
        """The events to send now, and whether the stream is over."""
        job = self.jobs.latest(self.run_id)
        record = journal.get_run(self.run_id)  # before the log: the lines up to its end
        steps = journal.steps(self.run_id)
        lines, self.cursor = read_on(journal, self.run_id, self.cursor)
        self.progress.read(lines)
        out = []
        shown = log_lines_html(lines)
        if shown:
            out.append(message('log', {'html': shown}, self.cursor))
        self.fresh_lines = self.fresh_lines or bool(lines)
        key = step_key(steps)
        if key != self.key or (self.fresh_lines and time.monotonic() - self.drawn > REDRAW_S):
            parts = sections(journal, self.run_id)
            out.append(message('sections', {k: parts[k] for k in SECTIONS}))
            self.key, self.drawn, self.fresh_lines = key, time.monotonic(), False
        now = state(record, steps, self.progress, job)
        if now != self.sent:
            out.append(message('state', now))
            self.sent = now
        ended = not record.active and not (job is not None and job.running)
        if ended:
            out.append(message('end', now))
        return out, ended


def run_events(
    request: Request, journal_of: Callable[[Request], Journal], run_id: str
) -> StreamingResponse:
    """The stream of run ``run_id`` from the log cursor the page (or ``Last-Event-ID``) gives."""
    given = request.headers.get('last-event-id') or request.query_params.get('offset') or '0'
    if not cursor_ok(given):
        raise HTTPException(422, f'offset: {given!r} is not a log position (1234 or j56)')
    watch = Watch(run_id, given, request.app.state.jobs)

    served = getattr(request.app.state, 'server', None)  # uvicorn's, when serve() made it

    async def events() -> AsyncIterator[str]:
        quiet_since = time.monotonic()
        while served is None or not served.should_exit:  # Ctrl-C: end, the page reconnects
            sent, ended = await run_in_threadpool(lambda: watch.poll(journal_of(request)))
            for item in sent:
                yield item
            if ended:
                return
            if sent:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_S:
                yield ': still here\n\n'
                quiet_since = time.monotonic()
            await asyncio.sleep(POLL_S)

    headers = {'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no'}
    return StreamingResponse(events(), media_type='text/event-stream', headers=headers)
