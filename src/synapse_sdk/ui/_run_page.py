"""A run's page: what ran and how it is going, its timeline, charts, rollback and log,
and the buttons the run's state allows; and the rollback's confirmation page."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from synapse_sdk import observe
from synapse_sdk.journal import UNDONE_WORK, RunRecord

from ._actions import Job
from ._html import badge, bar, duration, form, layout, log_lines_html, moment, run_link
from ._live import Progress

ROLLBACK_FROM = ('crashed', 'failed', 'cancelled', 'rollback_failed', 'succeeded')
RESUME_FROM = ('crashed', 'failed', 'cancelled')
SHOWN_LINES = 500  # log lines a page opens with


def render_run(
    view: observe.RunView,
    lines: list[dict[str, Any]],
    cursor: str,
    job: Job | None,
    csrf: str,
) -> str:
    """The page of ``view``'s run; ``lines``: its log up to ``cursor``, where the live
    stream goes on from (a byte offset into the file, or ``jN``: the journal's lines)."""
    r = view.record
    parts = observe.report_sections(view)
    progress = Progress()
    progress.read(lines)
    percent = max(r.progress, progress.overall) if r.active else r.progress
    live = r.active or (job is not None and job.running)
    shown = [x for x in lines if x.get('type') != 'progress']
    cut = len(shown) - SHOWN_LINES
    more = f'{cut} earlier lines: synapse runs logs {escape(r.id)}' if cut > 0 else ''
    if cursor.startswith('j'):  # no file here: the journal's copy
        more = 'The log file is on the machine that ran the run: the journal keeps its last lines.'
    note = f'<p class="more">{more}</p>' if more else ''
    body = (
        f'<h1>Run <code>{escape(r.id)}</code> <span id="status">{badge(r.status)}</span></h1>'
        f'<div class="overall">{bar(percent, "progress")} <span id="duration">'
        f'{duration(r)}</span></div>'
        f'<p id="error" class="error">{escape(r.error or "")}</p>'
        f'<div id="actions">{_buttons(r, csrf)}</div>'
        f'<p id="job" class="job">{_job_text(job)}</p>'
        f'<h2>Run</h2>{_facts(r)}'
        f'<h2>Steps</h2><div id="steps">{parts["steps"]}</div>'
        f'<h2 id="timeline-title">Timeline</h2><div id="timeline">{parts["timeline"]}</div>'
        f'<h2>Progress</h2><div id="curve">{parts["progress"]}</div>'
        f'<h2 id="metrics-title">Metrics</h2><div id="metrics">{parts["metrics"]}</div>'
        f'<h2>Rollback</h2><div id="rollback">{parts["rollback"]}</div>'
        f'<h2>Log</h2>{note}'
        f'<pre id="log" class="log">{log_lines_html(shown[-SHOWN_LINES:])}</pre>'
    )
    attributes = f' data-run="{escape(r.id)}" data-live="{1 if live else 0}" data-offset="{cursor}"'
    return layout(f'run {r.id}', body, live=attributes)


def _facts(r: RunRecord) -> str:
    """What ran where; params as the journal holds them (a secret param is ``**********``:
    pydantic's JSON form, the value never reaches the journal)."""
    params = ''.join(
        f'<tr><td><code>{escape(str(k))}</code></td>'
        f'<td><code>{escape(json.dumps(v, default=str))}</code></td></tr>'
        for k, v in r.params.items()
    )
    facts = {
        'plugin': f'{r.plugin or "-"} ({r.plugin_path or "-"})',
        'action': f'{r.action or "-"} ({r.entrypoint})',
        'host': f'{r.host} (pid {r.pid})',
        'cwd': r.cwd or '-',
        'storage': r.storage or '-',
        'started': f'{moment(r.started_at)} UTC',
        'ended': f'{moment(r.ended_at)}' + (' UTC' if r.ended_at else ''),
        'attempts': str(r.attempts),
    }
    rows = ''.join(f'<tr><td>{k}</td><td>{escape(v)}</td></tr>' for k, v in facts.items())
    table = f'<table class="facts">{rows}</table>'
    params = params or '<tr><td>none</td></tr>'
    return f'{table}<h3>Params</h3><table class="params">{params}</table>'


def _buttons(r: RunRecord, csrf: str) -> str:
    link = run_link(r.id)
    buttons = []
    if r.active:
        buttons.append(form(f'{link}/cancel', 'Cancel', csrf, 'cancel'))
    if not r.active and r.status in RESUME_FROM:
        buttons.append(form(f'{link}/resume', 'Resume', csrf, 'resume'))
    if not r.active and r.status in ROLLBACK_FROM:
        buttons.append(f'<a class="button rollback" href="{link}/rollback">Roll back&hellip;</a>')
    return ' '.join(buttons)


def _job_text(job: Job | None) -> str:
    if job is None:
        return ''
    state = job.to_dict()
    if state['running']:
        return f'<code>{escape(str(state["command"]))}</code> is running&hellip;'
    outcome = 'done' if state['exit_code'] == 0 else f'exit code {state["exit_code"]}'
    note = f': {escape(str(state["message"]))}' if state['message'] else ''
    return f'<code>{escape(str(state["command"]))}</code> {outcome}{note}'


def render_confirm(view: observe.RunView, csrf: str) -> str:
    """Roll back the run? What will be undone, newest first, and the button that does it."""
    r = view.record
    undo = [s for s in reversed(view.steps) if s.status in UNDONE_WORK]
    rows = ''.join(
        f'<tr><td>{escape(s.name)}</td><td>{badge(s.status)}</td><td><code>'
        f'{escape(", ".join(sorted(view.rollback_data.get(s.index) or s.rollback_data or {})))}'
        '</code></td></tr>'
        for s in undo
    )
    finished = r.status == 'succeeded'
    note = (
        '<p class="warning">This run succeeded: rolling it back undoes its finished work'
        f' (<code>synapse runs rollback {escape(r.id)} --finished</code>).</p>'
        if finished
        else f'<p>The same as <code>synapse runs rollback {escape(r.id)}</code>.</p>'
    )
    table = (
        f'<table><tr><th>step</th><th>status</th><th>rollback data</th></tr>{rows}</table>'
        if rows
        else '<p>No step has work standing; the rollback only tidies up.</p>'
    )
    fields = {'confirm': 'yes', **({'finished': '1'} if finished else {})}
    link = run_link(r.id)
    body = (
        f'<h1>Roll back run <code>{escape(r.id)}</code>? {badge(r.status)}</h1>{note}'
        f'<p>Each step whose work stands is undone, newest first:</p>{table}'
        f'<p>{form(f"{link}/rollback", "Yes, roll it back", csrf, "danger", fields)}'
        f' <a href="{link}">No, back to the run</a></p>'
    )
    return layout(f'roll back run {r.id}?', body)
