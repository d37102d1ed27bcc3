"""``synapse ui``: the runs list's server time per page with 100,000 runs (SQLite and
PostgreSQL), and the delay from a step's progress report to the page showing it.

Runs list: 100,000 runs are inserted in one statement (as tests/journal/test_load.py
does), the real server (uvicorn, in this process) answers pages of 50 over HTTP,
and the figure is the server's own time from its ``Server-Timing`` header
(target: under 200 ms per page); the client's round trip is printed beside it.
PostgreSQL: ``--database postgresql://...`` (a database the benchmark may fill),
else a throwaway server when PostgreSQL is installed, else skipped.

Live delay: a ``synapse plugin run`` of the UI tests' slow upload (a progress
report every 0.5 s) while headless Chromium shows its page; a MutationObserver
stamps each new percent, and each is compared with the time of the report in
the run's log (same machine, same clock). Target: under 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synapse_sdk.journal import Journal  # noqa: E402
from synapse_sdk.ui import bind, server  # noqa: E402

MANY = 100_000

# one statement: run i started i seconds after 2024-01-01, every 10th failed
BULK = {
    'sqlite': """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO runs (id, entrypoint, params, status, started_at, ended_at, host, pid)
SELECT printf('run-%06d', i), 'bulk:Action', '{}',
       CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
       strftime('%Y-%m-%dT%H:%M:%S+00:00', '2024-01-01', '+' || i || ' seconds'),
       strftime('%Y-%m-%dT%H:%M:%S+00:00', '2024-01-01', '+' || (i + 1) || ' seconds'),
       'bulk-host', 1
FROM n
""",
    'postgresql': """
INSERT INTO runs (id, entrypoint, params, status, started_at, ended_at, host, pid)
SELECT 'run-' || lpad(i::text, 6, '0'), 'bulk:Action', '{}',
       CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
       to_char(timestamp '2024-01-01' + i * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS')
           || '+00:00',
       to_char(timestamp '2024-01-01' + (i + 1) * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS')
           || '+00:00',
       'bulk-host', 1
FROM generate_series(1, ?) AS i
""",
}

TARGET_MS = 200.0
TARGET_DELAY_S = 1.0
PLUGIN = REPO / 'tests' / 'ui' / 'plugin'


@contextlib.contextmanager
def serving(database: str | None) -> Iterator[str]:
    """The UI on a free port of 127.0.0.1, in a thread of this process; its URL."""
    sock = bind('127.0.0.1', 0)
    app = server(sock, database=database)
    thread = threading.Thread(target=app.run, kwargs={'sockets': [sock]}, daemon=True)
    thread.start()
    while not app.started:
        time.sleep(0.01)
    try:
        yield f'http://127.0.0.1:{sock.getsockname()[1]}'
    finally:
        app.should_exit = True
        thread.join(10)


def timed_get(url: str) -> tuple[float, float]:
    """(server ms from Server-Timing, client round-trip ms) of one GET."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as answer:
        answer.read()
        header = answer.headers['server-timing']
    client = (time.perf_counter() - start) * 1000
    return float(header.split('dur=')[1]), client


PAGES = {
    'newest 50': '/',
    'page 1,000 (cursor)': '/?before=2024-01-01T13:53:20%2B00:00|50000',
    'status=failed': '/?status=failed',
    'status=succeeded, deep': '/?status=succeeded&before=2024-01-01T13:53:20%2B00:00|50000',
    'plugin=none (no match)': '/?plugin=none',
    'a 1-hour window': '/?since=2024-01-01T10:00&until=2024-01-01T11:00',
    'a run page': '/runs/run-050000',
}


def list_times(label: str, database: str, samples: int) -> None:
    journal = Journal(database)
    db = journal.db
    with journal.transaction():
        db.execute(BULK[db.dialect], (MANY,))
    if db.dialect == 'postgresql':
        db.execute('ANALYZE runs')
    journal.close()
    print(f'{label}: {MANY:,} runs')
    with serving(database) as url:
        for name, path in PAGES.items():
            timed_get(url + path)  # warm: the connection, the page cache
            times = [timed_get(url + path) for _ in range(samples)]
            server_ms = statistics.median(t[0] for t in times)
            worst = max(t[0] for t in times)
            client_ms = statistics.median(t[1] for t in times)
            verdict = 'met' if server_ms < TARGET_MS else 'NOT MET'
            print(
                f'  {name:<26} server {server_ms:7.2f} ms (median, max {worst:7.2f})'
                f'  round trip {client_ms:7.2f} ms  target < {TARGET_MS:g} ms: {verdict}'
            )


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    """``url``, else a throwaway server's database (None if PostgreSQL is not installed)."""
    if url is not None:
        yield url
        return
    from tests.services.postgres import PostgresServer, find_bindir, server_account

    bindir = find_bindir()
    if bindir is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix='synapse-bench-pg-') as tmp:
        pg = PostgresServer(bindir, Path(tmp), server_account())
        pg.init()
        pg.start_on_a_free_port()
        try:
            yield pg.create_database('bench').url
        finally:
            pg.stop('fast')


OBSERVER = """() => {
  const bar = document.getElementById('progress');
  new MutationObserver(() => console.info('seen ' + bar.dataset.percent + ' ' + Date.now() / 1000))
    .observe(bar, {attributes: true, attributeFilter: ['data-percent']});
}"""  # to the console: the page reloads when the run ends


def live_delay(folder: Path, files: int, delay: float) -> list[float]:
    """Seconds from each overall progress report in the run's log to the page showing it."""
    from tests.services.chromium import launch_chromium

    home = folder / 'home'
    os.environ['SYNAPSE_HOME'] = str(home)
    os.environ.pop('SYNAPSE_DATABASE_URL', None)
    source = folder / 'src'
    source.mkdir()
    for i in range(files):
        (source / f'f{i:03d}.bin').write_bytes(os.urandom(64))
    plugin = folder / 'plugin'
    shutil.copytree(PLUGIN, plugin, ignore=shutil.ignore_patterns('__pycache__'))
    params = json.dumps({'source_path': str(source), 'delay': delay})
    command = [sys.executable, '-m', 'synapse_sdk.cli', 'plugin', 'run', 'slow_upload']
    with serving(None) as url, launch_chromium() as browser:
        run = subprocess.Popen(
            [*command, '--path', str(plugin), '--params', params],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        journal = Journal()
        while not (runs := journal.list_runs(limit=1)):
            time.sleep(0.02)
        run_id = runs[0].id
        page = browser.new_page()
        seen: list[list[float]] = []
        page.on('console', lambda message: _seen(message.text, seen))
        page.goto(f'{url}/runs/{run_id}')
        page.evaluate(OBSERVER)
        watching = time.time()  # reports before this were made before the page was open
        run.wait(timeout=120)
        page.wait_for_selector('main[data-live="0"]', timeout=30_000)  # ended, reloaded
        log = home / 'logs' / f'{run_id}.jsonl'
    return delays(log, seen, watching)


def _seen(text: str, seen: list[list[float]]) -> None:
    if text.startswith('seen '):
        seen.append([float(x) for x in text.split()[1:]])


def delays(log: Path, seen: list[list[float]], since: float) -> list[float]:
    reports = []
    for raw in log.read_text(encoding='utf-8').splitlines():
        line = json.loads(raw)
        if line.get('type') == 'progress' and line.get('category') == 'overall':
            reports.append((int(line['percent']), datetime.fromisoformat(line['ts']).timestamp()))
    found = []
    for percent, at in reports:
        shown = [when for value, when in seen if value >= percent and when >= at - 0.05]
        if shown and 0 < percent < 100 and at > since:
            found.append(min(shown) - at)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer samples')
    parser.add_argument('--database', metavar='URL', help='a PostgreSQL database to use')
    args = parser.parse_args(argv)
    samples = 5 if args.quick else 20
    with tempfile.TemporaryDirectory(prefix='synapse-bench-ui-') as tmp:
        list_times('SQLite', str(Path(tmp) / 'runs.db'), samples)
        with postgres(args.database) as url:
            if url is None:
                print('PostgreSQL: skipped: not installed (apt-get install postgresql)')
            else:
                list_times('PostgreSQL', url, samples)
        found = live_delay(Path(tmp), 6 if args.quick else 12, 0.5)
    if not found:
        print('live delay: no progress report was seen on the page')
        return 1
    verdict = 'met' if max(found) < TARGET_DELAY_S else 'NOT MET'
    print(
        f'live delay, step progress report -> page: median {statistics.median(found):.3f} s,'
        f' max {max(found):.3f} s over {len(found)} reports'
        f'  target < {TARGET_DELAY_S:g} s: {verdict}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
