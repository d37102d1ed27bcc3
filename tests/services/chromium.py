"""A headless Chromium for tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Playwright never downloads a browser here (``playwright install`` is never run;
the machine has no internet): it launches the system's Chromium. The flags
turn off Chromium's own calls out (updates, sync, background networking), and
the host resolver answers only ``localhost``, so a page can reach nothing but
127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ._common import require_module, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = [
    '--no-sandbox',  # root in CI; the tests are the only thing it opens
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-default-apps',
    '--disable-extensions',
    '--no-first-run',
    '--disable-quic',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
]
TIMEOUT_MS = 15_000


def chromium_executable() -> str | None:
    for candidate in (os.environ.get('SYNAPSE_TEST_CHROMIUM'), CHROMIUM, shutil.which('chromium')):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextlib.contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Playwright and a headless Chromium, both stopped on exit.

    Playwright's sync API marks its event loop as running in the calling thread
    until it is stopped (it pumps the loop from a greenlet), so ``asyncio.run``
    and the SDK's ``async def`` steps fail in that thread meanwhile. Hence one
    browser per test, not per session: nothing leaks into the tests after it.
    """
    executable = chromium_executable()
    if executable is None:
        unavailable(f'Chromium is not installed ({CHROMIUM}): apt-get install chromium')
    sync_api = require_module('playwright.sync_api', 'playwright')
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """A headless Chromium (a Playwright ``Browser``) for one test (see ``launch_chromium``)."""
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def chromium_page(chromium: Browser) -> Iterator[Page]:
    """A page of a fresh Chromium, with a 15 s default timeout."""
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()
