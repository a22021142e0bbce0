"""Fixtures that drive Debian's headless Chromium (/usr/bin/chromium) through Playwright.

Playwright never downloads a browser here (`playwright install` needs the internet):
it launches the system Chromium that deploy/setup.sh installs, by executable_path.
Every test collected under tests/browser gets the ``browser`` marker.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
# --no-sandbox: the tests (and CI) run as root, where Chromium refuses its sandbox.
# --disable-dev-shm-usage: /dev/shm is small in containers. The rest keep it off the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT: ViewportSize = {"width": 1920, "height": 1080}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/browser with ``browser``."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


def screenshot_dir() -> Path:
    """$CRISISGW_TEST_OUTPUT/screenshots (default test-output/, relative to the repo root)."""
    out = ROOT / os.environ.get("CRISISGW_TEST_OUTPUT", "test-output") / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


async def shot(page: Page, name: str) -> Path:
    """Save a full-page PNG of ``page`` as <screenshots>/<name>.png and return its path."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.removesuffix(".png")).strip("-.") or "page"
    path = screenshot_dir() / f"{stem}.png"
    await page.screenshot(path=path, full_page=True)
    return path


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium; the browser tests are skipped where it is not installed."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"{CHROMIUM} not found: run deploy/setup.sh (apt-get install chromium)")
    return str(CHROMIUM)


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    """A headless Chromium for one test, closed (with Playwright's driver) afterwards."""
    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page in a fresh context: 1920x1080, en-GB, Europe/Brussels."""
    context = await browser.new_context(
        viewport=VIEWPORT, locale="en-GB", timezone_id="Europe/Brussels"
    )
    try:
        tab = await context.new_page()
        try:
            yield tab
        finally:
            await tab.close()
    finally:
        await context.close()


@pytest.fixture
def screenshots() -> Path:
    """The directory that shot() writes to, created if missing."""
    return screenshot_dir()
