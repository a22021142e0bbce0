"""Smoke test: Playwright drives the real headless Chromium against a local aiohttp page."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from playwright.async_api import Page, expect

from tests.browser.conftest import shot

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smoke</title>
<style>body { font: 24px "DejaVu Sans", sans-serif; margin: 2em; }</style></head>
<body>
<h1>Crisis Exchange Gateway: browser smoke test</h1>
<button id="go" type="button">Press me</button>
<p id="status">waiting</p>
<p id="sse">no events yet</p>
<script>
document.getElementById("go").addEventListener("click", () => {
  document.getElementById("status").textContent = "clicked";
});
const seen = [];
const es = new EventSource("/events");
es.onmessage = (ev) => {
  seen.push(ev.data);
  document.getElementById("sse").textContent = `events: ${seen.join(", ")}`;
  if (seen.length === 2) es.close();
};
</script>
</body></html>
"""


async def index(_request: web.Request) -> web.Response:
    """The page under test."""
    return web.Response(text=INDEX, content_type="text/html")


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: two messages, then the stream ends."""
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    # A long retry: the page closes the EventSource itself after the second event.
    await resp.write(b"retry: 60000\ndata: alpha\n\n")
    await asyncio.sleep(0.2)
    await resp.write(b"data: bravo\n\n")
    await resp.write_eof()
    return resp


@asynccontextmanager
async def serve() -> AsyncIterator[str]:
    """Run the tiny app on 127.0.0.1 at a free port; yield its base URL."""
    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, sock)
        await site.start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        await runner.cleanup()
        sock.close()


async def test_click_sse_and_screenshot(page: Page, screenshots: Path) -> None:
    """Chromium runs the page's JS, receives SSE and saves a full-page screenshot."""
    async with serve() as url:
        await page.goto(url)
        await page.get_by_role("button", name="Press me").click()
        await expect(page.locator("#status")).to_have_text("clicked")
        await expect(page.locator("#sse")).to_have_text("events: alpha, bravo")
        png = await shot(page, "smoke")
    assert png.parent == screenshots
    assert png.is_file()
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000
