"""``synapse ui`` over HTTP (urllib against the real server): pages, errors, token, CSRF."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tests.journal.conftest import journal_run_ids, make_files, peek_run, subprocess_env

from synapse_sdk.ui import TOKEN_VARIABLE, access_token, is_loopback

from .conftest import (
    SYNAPSE,
    UiServer,
    new_run,
    request,
    start_ui,
    start_upload,
    stop,
    upload,
    wait_for,
)

TOKEN = 's3cret-token-for-tests'


def assert_error_page(reply: object, status: int, *phrases: str) -> None:
    assert reply.status == status, (reply.status, reply.text[:500])
    assert reply.headers['content-type'].startswith('text/html')
    assert f'<h1 class="error-title">{status} ' in reply.text
    for phrase in phrases:
        assert phrase in reply.text
    assert 'Traceback' not in reply.text and 'File "' not in reply.text


def test_a_finished_run_has_its_page(
    ui: UiServer, home: Path, plugin_dir: Path, tmp_path: Path
) -> None:
    make_files(tmp_path / 'src', 3, seed=1)
    run_id = upload(home, plugin_dir, tmp_path / 'src', secret=True)
    listed = ui.get('/')
    assert listed.status == 200 and f'href="/runs/{run_id}"' in listed.text

    page = ui.get(f'/runs/{run_id}')
    assert page.status == 200
    assert 'succeeded' in page.text and 'data-live="0"' in page.text
    assert 'svg' in page.text and 'class="gantt"' in page.text  # the timeline
    assert 'upload.uploaded' in page.text  # a metrics chart
    assert 'uploaded {&quot;file&quot;' in page.text  # a log line
    assert '&quot;**********&quot;' in page.text  # the secret param, as the journal has it
    assert 'hunter2' not in page.text
    assert 'href="/static/ui.css"' in page.text and 'cdn' not in page.text.lower()
    assert ui.get('/static/ui.css').status == 200 and ui.get('/static/ui.js').status == 200

    short = ui.get(f'/runs/{run_id[:8]}')  # a unique prefix: the run's own address
    assert short.status == 307 and short.headers['location'] == f'/runs/{run_id}'

    state = ui.get(f'/runs/{run_id}/state')
    assert '"status":"succeeded"' in state.text and '"progress":100' in state.text

    offset = re.search(r'data-offset="(\d+)"', page.text).group(1)  # where the page's log ends
    events = ui.get(f'/runs/{run_id}/events?offset={offset}')  # ended: its state, the end
    assert events.headers['content-type'].startswith('text/event-stream')
    assert re.findall(r'^event: (\w+)$', events.text, re.M) == ['sections', 'state', 'end']
    resumed = ui.get(f'/runs/{run_id}/events', {'Last-Event-ID': offset})  # a reconnect
    assert re.findall(r'^event: (\w+)$', resumed.text, re.M) == ['sections', 'state', 'end']
    (home / 'logs' / f'{run_id}.jsonl').unlink()  # as on a machine that does not have it
    remote = ui.get(f'/runs/{run_id}')
    assert 'data-offset="j' in remote.text and 'the journal keeps its last lines' in remote.text
    assert 'run succeeded' in remote.text and 'uploaded {&quot;file&quot;' in remote.text
    from_journal = ui.get(f'/runs/{run_id}/events?offset=j0')
    assert re.findall(r'^event: (\w+)$', from_journal.text, re.M) == [
        'log',
        'sections',
        'state',
        'end',
    ]
    assert re.search(r'^id: j\d+$', from_journal.text, re.M)
    assert_error_page(ui.get(f'/runs/{run_id}/events?offset=x1'), 422, 'not a log position')
    everything = ui.get(f'/runs/{run_id}/events')  # from the log's start: its lines first
    assert re.findall(r'^event: (\w+)$', everything.text, re.M)[0] == 'log'
    assert 'run succeeded' in everything.text


def test_bad_ids_and_bad_query_params_get_an_error_page(ui: UiServer) -> None:
    assert_error_page(ui.get('/runs/no-such-run'), 404, 'no run &#x27;no-such-run&#x27;')
    assert_error_page(ui.get('/runs/no-such-run/state'), 404)
    assert_error_page(ui.get('/runs/no-such-run/rollback'), 404)
    assert_error_page(ui.get('/nowhere'), 404, 'no page at /nowhere')
    assert_error_page(ui.get('/?status=sleeping'), 422, 'status: &#x27;sleeping&#x27;')
    assert_error_page(ui.get('/?limit=0'), 422, 'limit: 0 is not between 1 and 500')
    assert_error_page(ui.get('/?limit=ten'), 422, 'limit')
    assert_error_page(ui.get('/?since=yesterday'), 422, 'since: &#x27;yesterday&#x27;')
    assert_error_page(ui.get('/?before=garbage'), 422, 'not a page cursor')
    assert_error_page(ui.get('/?before=a|1&after=b|2'), 422, 'not both')
    assert_error_page(ui.get('/?plugin=' + 'x' * 300), 422, 'longer than')
    assert_error_page(ui.get('/runs/x/events?offset=-1'), 404)  # the run first
    assert_error_page(ui.get('/runs/x/cancel'), 405)  # buttons are POST only
    assert_error_page(ui.post('/runs/x/explode', 'csrf=1'), 404)


def test_a_post_without_the_csrf_token_is_refused_and_does_nothing(
    ui: UiServer, home: Path, plugin_dir: Path, tmp_path: Path
) -> None:
    make_files(tmp_path / 'src', 2, seed=2)
    run_id = upload(home, plugin_dir, tmp_path / 'src')
    page = ui.get(f'/runs/{run_id}/rollback')  # the confirmation, with the session's token
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    cookie = re.search(r'synapse_ui_csrf=([^;]+)', page.headers['set-cookie']).group(1)
    assert csrf == cookie
    body = 'confirm=yes&finished=1'
    refused = [
        ui.post(f'/runs/{run_id}/rollback', body),  # no token at all
        ui.post(f'/runs/{run_id}/rollback', f'{body}&csrf={csrf}'),  # no cookie
        ui.post(  # a token that is not the session's
            f'/runs/{run_id}/rollback',
            f'{body}&csrf=forged',
            {'Cookie': f'synapse_ui_csrf={cookie}'},
        ),
    ]
    for reply in refused:
        assert_error_page(reply, 403, 'CSRF token')
    unconfirmed = ui.post(
        f'/runs/{run_id}/rollback', f'csrf={csrf}', {'Cookie': f'synapse_ui_csrf={cookie}'}
    )
    assert unconfirmed.status == 303 and unconfirmed.headers['location'].endswith('/rollback')
    assert peek_run(home / 'runs.db', run_id)['status'] == 'succeeded'  # nothing was undone


def test_with_a_token_every_request_must_carry_it(home: Path, journal_database: str) -> None:
    server = start_ui(home, '--token', TOKEN)
    try:
        refused = server.get('/')
        assert_error_page(refused, 401, 'needs its token')
        assert_error_page(server.get('/static/ui.css'), 401)
        assert_error_page(server.get('/', {'x-synapse-token': 'wrong-token'}), 401)
        assert server.get('/', {'x-synapse-token': TOKEN}).status == 200
        assert server.get('/', {'Authorization': f'Bearer {TOKEN}'}).status == 200
        opened = server.get(f'/?status=failed&token={TOKEN}')  # once: sets the cookie
        assert opened.status == 303 and opened.headers['location'] == '/?status=failed'
        cookie = opened.headers['set-cookie'].split(';')[0]
        assert 'HttpOnly' in opened.headers['set-cookie']
        assert server.get('/?status=failed', {'Cookie': cookie}).status == 200
    finally:
        stop(server)
    env_server = start_ui(home, **{TOKEN_VARIABLE: TOKEN})  # the variable does the same
    try:
        assert env_server.get('/').status == 401
        assert env_server.get('/', {'x-synapse-token': TOKEN}).status == 200
    finally:
        stop(env_server)


def test_another_address_than_loopback_needs_a_token(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    assert is_loopback('127.0.0.1') and is_loopback('::1') and is_loopback('localhost')
    assert not is_loopback('0.0.0.0') and not is_loopback('192.168.1.7')
    assert access_token('127.0.0.1', None) is None
    with pytest.raises(ValueError, match='--token'):
        access_token('0.0.0.0', None)
    assert access_token('0.0.0.0', TOKEN) == TOKEN
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    assert access_token('0.0.0.0', None) == TOKEN
    with pytest.raises(ValueError, match='at least 8'):
        access_token('127.0.0.1', 'short')

    done = subprocess.run(
        [*SYNAPSE, 'ui', '--host', '0.0.0.0', '--port', '0'],
        capture_output=True,
        text=True,
        env={k: v for k, v in subprocess_env(home).items() if k != TOKEN_VARIABLE},
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        'error: binding 0.0.0.0 lets other machines reach the runs and their buttons: give'
        f' --token TOKEN (or set {TOKEN_VARIABLE}), or bind 127.0.0.1'
    ]


def test_without_the_extra_the_command_says_which_to_install(home: Path) -> None:
    probe = (
        "import sys; sys.modules['starlette'] = None; sys.argv = ['synapse', 'ui'];"
        ' from synapse_sdk.cli.main import main; main()'
    )
    done = subprocess.run(
        [sys.executable, '-c', probe],
        capture_output=True,
        text=True,
        env=subprocess_env(home),
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: the web view needs the 'ui' extra: pip install 'synapse-sdk[ui]'"
    ]


def test_a_taken_port_is_one_line(ui: UiServer, home: Path) -> None:
    port = ui.url.rsplit(':', 1)[1]
    done = subprocess.run(
        [*SYNAPSE, 'ui', '--port', port],
        capture_output=True,
        text=True,
        env=subprocess_env(home),
        timeout=60,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f'error: cannot listen on 127.0.0.1:{port}') and '--port' in line


def test_pages_come_with_headers_that_keep_them_to_themselves(ui: UiServer) -> None:
    page = ui.get('/')
    policy = page.headers['content-security-policy']
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers['x-frame-options'] == 'DENY'
    assert page.headers['referrer-policy'] == 'no-referrer'  # a ?token= never leaves in one
    assert float(page.headers['server-timing'].split('dur=')[1]) > 0


def test_a_name_rebound_to_loopback_gets_nothing(ui: UiServer) -> None:
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1."""
    assert ui.get('/', {'Host': 'evil.example:8265'}).status == 400
    assert ui.get('/', {'Host': 'localhost'}).status == 200


def test_request_helper_reports_a_server_that_is_gone() -> None:
    with pytest.raises(OSError):
        request('http://127.0.0.1:9/')  # the discard port: nothing listens


def test_a_journal_it_cannot_open_is_one_line(home: Path) -> None:
    home.mkdir(parents=True)
    (home / 'runs.db').write_bytes(b'this is not a database' * 100)
    done = subprocess.run(
        [*SYNAPSE, 'ui', '--port', '0'],
        capture_output=True,
        text=True,
        env=subprocess_env(home),
        timeout=60,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith('error: ') and 'runs.db is not an SQLite database' in line
    unreachable = subprocess.run(
        [*SYNAPSE, 'ui', '--port', '0', '--database', 'postgresql://nobody:pw@127.0.0.1:9/none'],
        capture_output=True,
        text=True,
        env=subprocess_env(home),
        timeout=60,
    )
    assert unreachable.returncode == 2
    [line] = unreachable.stderr.strip().splitlines()
    assert line.startswith('error: ') and 'pw' not in line.replace('postgresql', '')


def test_one_command_at_a_time_per_run(
    ui: UiServer, home: Path, plugin_dir: Path, tmp_path: Path
) -> None:
    make_files(tmp_path / 'src', 8, seed=8)
    process = start_upload(home, plugin_dir, tmp_path / 'src', 0.4, UI_CRASH_AFTER='2')
    process.communicate(timeout=60)
    (run_id,) = journal_run_ids(home)
    page = ui.get(f'/runs/{run_id}')
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    cookie = {'Cookie': f'synapse_ui_csrf={csrf}'}
    started = ui.post(f'/runs/{run_id}/resume', f'csrf={csrf}', cookie)
    assert started.status == 303 and started.headers['location'] == f'/runs/{run_id}'
    again = ui.post(f'/runs/{run_id}/rollback', f'csrf={csrf}&confirm=yes', cookie)
    assert_error_page(again, 409, f'synapse runs resume {run_id}` is still at work')
    state = wait_for(
        lambda: (
            (s := json.loads(ui.get(f'/runs/{run_id}/state').text))['job']['running'] is False and s
        ),
        timeout=60,
        what='the resume to end',
    )
    assert state['status'] == 'succeeded' and state['job']['exit_code'] == 0
    assert state['progress'] == 100 and [s['status'] for s in state['steps']] == [
        'reused',  # prepare, from the first attempt
        'succeeded',
        'succeeded',
    ]


def test_ctrl_c_stops_at_once_with_a_page_following_a_run(
    home: Path, plugin_dir: Path, tmp_path: Path, journal_database: str
) -> None:
    make_files(tmp_path / 'src', 6, seed=10)
    server = start_ui(home)
    process = start_upload(home, plugin_dir, tmp_path / 'src', 1.0)
    try:
        run_id = new_run(home, set())
        stream = urllib.request.urlopen(f'{server.url}/runs/{run_id}/events', timeout=30)
        assert stream.readline().startswith(b'id: ')  # it is streaming
        started = time.monotonic()
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=10) in (0, 130)  # uvicorn re-raises SIGINT: 130
        assert time.monotonic() - started < 2.5  # the stream ended, nothing was cut off
        assert 'Traceback' not in server.process.stderr.read()
        stream.close()
    finally:
        stop(server)
        process.kill()
        process.wait()


def test_a_log_position_that_is_not_ascii_digits_or_too_large_is_a_422_page(
    ui: UiServer, home: Path, plugin_dir: Path, tmp_path: Path
) -> None:
    make_files(tmp_path / 'src', 1, seed=3)
    run_id = upload(home, plugin_dir, tmp_path / 'src')
    # '²' passes str.isdigit() but not int(); 24 digits pass int() but not a file's seek()
    for bad in ('%C2%B2', '9' * 24, 'j' + '9' * 24, 'j', '-1'):
        assert_error_page(ui.get(f'/runs/{run_id}/events?offset={bad}'), 422, 'log position')
    assert_error_page(
        ui.get(f'/runs/{run_id}/events', {'Last-Event-ID': '9' * 24}), 422, 'log position'
    )
