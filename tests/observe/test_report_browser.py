"""The HTML report in headless Chromium: it renders, with no console error and no request
but the file itself."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tests.journal.conftest import run_cli

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Request


def test_the_report_renders_offline(
    home: Path, tmp_path: Path, retried_and_rolled_back: str, chromium_page: Page
) -> None:
    out = tmp_path / 'run.html'
    done = run_cli(home, 'runs', 'report', retried_and_rolled_back, '-o', out)
    assert done.returncode == 0, done.stderr
    requests: list[str] = []
    problems: list[str] = []
    chromium_page.on('request', lambda request: requests.append(_url(request)))
    chromium_page.on('console', lambda message: _console(message, problems))
    chromium_page.on('pageerror', lambda error: problems.append(str(error)))
    chromium_page.goto(out.as_uri())

    assert chromium_page.title() == f'run {retried_and_rolled_back}'
    assert 'rolled_back' in chromium_page.inner_text('h1')
    gantt = chromium_page.locator('svg.gantt')
    assert gantt.locator('rect.bar').count() == 7  # 4 step runs (one retried), 3 rollbacks
    assert gantt.locator('rect.attempt.failed').count() == 1
    assert gantt.locator('rect.rollback').count() == 3
    box = gantt.locator('rect.bar').first.bounding_box()
    assert box is not None and box['width'] > 0 and box['height'] > 0  # drawn, not just there
    assert chromium_page.locator('svg.chart polyline.line').count() >= 1  # the progress curve
    for section in ('#timeline', '#progress', '#metrics', '#rollback', '#log'):
        assert chromium_page.locator(section).is_visible()
    assert 'attempt 1 failed' in chromium_page.locator('pre.log').last.inner_text()
    assert problems == []
    assert requests == [out.as_uri()]


def _url(request: Request) -> str:
    return request.url


def _console(message: ConsoleMessage, problems: list[str]) -> None:
    if message.type in ('error', 'warning'):
        problems.append(message.text)
