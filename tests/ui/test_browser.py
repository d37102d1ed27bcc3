"""``synapse ui`` in headless Chromium: the list and its filters, a run moving live, and the
buttons (resume a crashed run, roll back a finished one, cancel a running one)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.journal.conftest import (
    journal_run_ids,
    make_files,
    peek_run,
    storage_snapshot,
    stored,
)

from synapse_sdk.journal import Journal

from .conftest import UiServer, new_run, start_ui, start_upload, stop, upload, wait_for
from .test_list import fill

if TYPE_CHECKING:
    from playwright.sync_api import Page

STATUS = '#status .badge'


def watch_requests(page: Page, problems: list[str]) -> None:
    """Console errors and any request that leaves 127.0.0.1 become ``problems``."""
    page.on('pageerror', lambda error: problems.append(str(error)))
    page.on(
        'console',
        lambda message: problems.append(message.text) if message.type == 'error' else None,
    )
    page.on(
        'request',
        lambda request: (
            None
            if request.url.startswith(('http://127.0.0.1:', 'data:'))
            else problems.append(f'request to {request.url}')
        ),
    )


def percent(page: Page) -> int:
    return int(page.get_attribute('#progress', 'data-percent') or 0)


def test_the_runs_list_filters_in_the_browser(
    ui: UiServer, journal: Journal, chromium_page: Page
) -> None:
    fill(journal)
    problems: list[str] = []
    watch_requests(chromium_page, problems)
    chromium_page.goto(ui.url + '/?limit=20')
    rows = chromium_page.locator('table.runs tbody tr')
    assert rows.count() == 20
    assert '120 matching' in chromium_page.inner_text('h1')
    chromium_page.select_option('select[name=status]', 'failed')
    chromium_page.fill('input[name=plugin]', 'beta')
    chromium_page.click('form.filters button[type=submit]')
    chromium_page.wait_for_url('**/?status=failed&plugin=beta**')
    assert rows.count() == 12
    assert set(chromium_page.locator('table.runs .badge').all_inner_texts()) == {'failed'}
    chromium_page.click('a.older') if chromium_page.locator('a.older').count() else None
    chromium_page.click('table.runs tbody tr a >> nth=0')
    chromium_page.wait_for_url('**/runs/run-*')
    assert chromium_page.inner_text(STATUS) == 'failed'
    assert chromium_page.locator('button.resume').count() == 1
    assert problems == []


def test_a_running_run_moves_on_its_page_and_shows_how_it_ended(
    ui: UiServer, home: Path, plugin_dir: Path, tmp_path: Path, chromium_page: Page
) -> None:
    make_files(tmp_path / 'src', 12, seed=3)
    problems: list[str] = []
    watch_requests(chromium_page, problems)
    process = start_upload(home, plugin_dir, tmp_path / 'src', 0.3)
    try:
        run_id = new_run(home, set())
        chromium_page.goto(f'{ui.url}/runs/{run_id}')
        assert chromium_page.get_attribute('main', 'data-live') == '1'
        assert chromium_page.inner_text(STATUS) == 'running'
        chromium_page.evaluate("window.samePage = 'yes'")  # gone if the page reloads
        start = percent(chromium_page)
        chromium_page.wait_for_function(
            f"() => +document.getElementById('progress')?.dataset.percent > {start} + 10"
        )
        chromium_page.wait_for_function(
            "() => document.getElementById('log')?.textContent.includes('uploaded')"
        )
        assert chromium_page.evaluate('window.samePage') == 'yes'  # moved without a reload
        assert chromium_page.locator('button.cancel').count() == 1
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    chromium_page.wait_for_function(
        "() => document.querySelector('#status .badge')?.textContent === 'succeeded'"
    )
    chromium_page.wait_for_load_state()
    chromium_page.wait_for_selector('main[data-live="0"]')  # reloaded: the whole record
    assert chromium_page.inner_text(STATUS) == 'succeeded' and percent(chromium_page) == 100
    assert chromium_page.locator('button.cancel').count() == 0
    bars = chromium_page.locator('svg.gantt rect.bar')
    assert bars.count() == 3
    widths = [bars.nth(i).bounding_box()['width'] for i in range(3)]  # drawn to scale
    assert widths[1] > 200 and widths[1] > 20 * max(widths[0], widths[2]), widths
    assert 'run succeeded' in chromium_page.inner_text('#log')
    assert problems == []


def test_the_list_follows_a_running_run(
    ui: UiServer, home: Path, plugin_dir: Path, tmp_path: Path, chromium_page: Page
) -> None:
    make_files(tmp_path / 'src', 8, seed=9)
    process = start_upload(home, plugin_dir, tmp_path / 'src', 0.3)
    try:
        run_id = new_run(home, set())
        chromium_page.goto(ui.url + '/')
        assert chromium_page.get_attribute('main', 'data-refresh') == '1'
        chromium_page.evaluate("window.samePage = 'yes'")
        row = f'tr[data-run="{run_id}"] .badge'
        assert chromium_page.inner_text(row) == 'running'
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    chromium_page.wait_for_function(
        f"() => document.querySelector('{row}')?.textContent === 'succeeded'"
    )
    assert chromium_page.evaluate('window.samePage') == 'yes'  # the table, not the page
    assert '100%' in chromium_page.inner_text(f'tr[data-run="{run_id}"]')


def test_a_run_on_another_machine_moves_live_from_the_journal(
    home: Path, plugin_dir: Path, tmp_path: Path, postgres_db: Any, chromium_page: Page
) -> None:
    """The run writes its log file under another SYNAPSE_HOME (another machine, as far as
    the server can tell); both share a PostgreSQL journal: the page reads its lines there."""
    make_files(tmp_path / 'src', 10, seed=12)
    elsewhere = tmp_path / 'elsewhere'
    shared = {'SYNAPSE_DATABASE_URL': postgres_db.url}
    server = start_ui(home, **shared)
    process = start_upload(elsewhere, plugin_dir, tmp_path / 'src', 0.4, **shared)
    try:
        run_id = wait_for(lambda: Journal(postgres_db.url).list_runs(limit=1), what='the run')[0].id
        chromium_page.goto(f'{server.url}/runs/{run_id}')
        assert chromium_page.get_attribute('main', 'data-offset').startswith('j')
        assert 'the journal keeps its last lines' in chromium_page.inner_text('main')
        chromium_page.evaluate("window.samePage = 'yes'")
        start = percent(chromium_page)
        chromium_page.wait_for_function(
            f"() => +document.getElementById('progress')?.dataset.percent > {start} + 10"
        )
        chromium_page.wait_for_function(
            "() => document.getElementById('log')?.textContent.includes('uploaded')"
        )
        assert chromium_page.evaluate('window.samePage') == 'yes'
        assert process.wait(timeout=60) == 0
        chromium_page.wait_for_selector('main[data-live="0"]', timeout=30_000)
        assert chromium_page.inner_text(STATUS) == 'succeeded'
        assert 'run succeeded' in chromium_page.inner_text('#log')
        assert not (home / 'logs').exists()  # nothing came from a file here
    finally:
        stop(server)
        if process.poll() is None:
            process.kill()


def test_resume_a_crashed_run_from_its_page(
    ui: UiServer, home: Path, plugin_dir: Path, tmp_path: Path, chromium_page: Page
) -> None:
    make_files(tmp_path / 'src', 8, seed=4)
    process = start_upload(home, plugin_dir, tmp_path / 'src', 0.4, UI_CRASH_AFTER='3')
    process.communicate(timeout=60)
    assert process.returncode == -9
    (run_id,) = journal_run_ids(home)
    chromium_page.goto(f'{ui.url}/runs/{run_id}')
    assert chromium_page.inner_text(STATUS) == 'crashed'
    chromium_page.evaluate("window.samePage = 'yes'")
    chromium_page.click('button.resume')
    chromium_page.wait_for_selector('main[data-live="1"]')  # the resume is running
    assert 'synapse runs resume' in chromium_page.inner_text('#job')
    chromium_page.wait_for_function(
        "() => document.querySelector('#status .badge')?.textContent === 'running'"
    )
    chromium_page.wait_for_function(
        "() => +document.getElementById('progress')?.dataset.percent > 40"
    )
    chromium_page.wait_for_selector('main[data-live="0"]', timeout=60_000)
    assert chromium_page.inner_text(STATUS) == 'succeeded'
    assert 'done' in chromium_page.inner_text('#job')
    assert sorted(name for _, name, _ in stored(home)) == sorted(
        p.name for p in (tmp_path / 'src').iterdir()
    )  # each file once: the cut-off upload was undone before the step ran again


def test_a_button_whose_command_refuses_shows_its_error_line(
    ui: UiServer, home: Path, plugin_dir: Path, tmp_path: Path, chromium_page: Page
) -> None:
    make_files(tmp_path / 'src', 4, seed=7)
    process = start_upload(home, plugin_dir, tmp_path / 'src', 0.0, True, UI_CRASH_AFTER='1')
    process.communicate(timeout=60)
    (run_id,) = journal_run_ids(home)
    chromium_page.goto(f'{ui.url}/runs/{run_id}')
    chromium_page.click('button.resume')  # a secret param: the CLI needs it given again
    chromium_page.wait_for_function(
        "() => document.getElementById('job')?.textContent.includes('exit code 2')"
    )
    chromium_page.wait_for_selector('main[data-live="0"]')
    job = chromium_page.inner_text('#job')
    assert f"error: cannot resume run '{run_id}': its params api_key are secrets" in job
    assert chromium_page.inner_text(STATUS) == 'crashed'


def test_roll_back_a_finished_run_after_confirming(
    ui: UiServer, home: Path, plugin_dir: Path, tmp_path: Path, chromium_page: Page
) -> None:
    make_files(tmp_path / 'src', 4, seed=5)
    upload(home, plugin_dir, tmp_path / 'src')  # another run's files stay
    before = storage_snapshot(home)
    run_id = upload(home, plugin_dir, tmp_path / 'src')
    assert storage_snapshot(home) != before
    chromium_page.goto(f'{ui.url}/runs/{run_id}')
    chromium_page.click('a.rollback')
    chromium_page.wait_for_url(f'**/runs/{run_id}/rollback')
    assert 'upload' in chromium_page.inner_text('table') and '--finished' in (
        chromium_page.inner_text('main')
    )
    chromium_page.click('button.danger')
    chromium_page.wait_for_url(f'**/runs/{run_id}')
    chromium_page.wait_for_function(
        "() => document.querySelector('#status .badge')?.textContent === 'rolled_back'",
        timeout=60_000,
    )
    chromium_page.wait_for_selector('main[data-live="0"]')
    assert chromium_page.inner_text(STATUS) == 'rolled_back'
    assert peek_run(home / 'runs.db', run_id)['status'] == 'rolled_back'
    assert storage_snapshot(home) == before
    assert chromium_page.locator('a.rollback').count() == 0  # nothing left to undo


def test_cancel_a_running_run_from_its_page(
    ui: UiServer, home: Path, plugin_dir: Path, tmp_path: Path, chromium_page: Page
) -> None:
    make_files(tmp_path / 'src', 20, seed=6)
    upload(home, plugin_dir, tmp_path / 'src')  # another run's files stay
    before = storage_snapshot(home)
    runs = set(journal_run_ids(home))
    process = start_upload(home, plugin_dir, tmp_path / 'src', 0.3)
    try:
        run_id = new_run(home, runs)
        chromium_page.goto(f'{ui.url}/runs/{run_id}')
        chromium_page.wait_for_function(
            "() => +document.getElementById('progress')?.dataset.percent > 20"
        )
        assert storage_snapshot(home) != before  # it stored some already
        chromium_page.click('button.cancel')
        chromium_page.wait_for_url(f'**/runs/{run_id}')
        assert 'synapse runs cancel' in chromium_page.inner_text('#job')
        chromium_page.wait_for_selector('main[data-live="0"]', timeout=60_000)  # it ended
        assert process.wait(timeout=60) == 130  # as if Ctrl-C had stopped it
    finally:
        if process.poll() is None:
            process.kill()
    assert chromium_page.inner_text(STATUS) == 'cancelled'
    assert peek_run(home / 'runs.db', run_id)['status'] == 'cancelled'
    assert chromium_page.locator('button.cancel').count() == 0
    assert 'rolled back' in chromium_page.inner_text('#rollback')
    assert storage_snapshot(home) == before  # every file it stored is gone again
