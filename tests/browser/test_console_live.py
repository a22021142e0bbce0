"""The console on a crisis night, in real Chromium against real nodes: what arrives shows
up live and loud on every open page, and open browsers do not multiply ledger reads."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import VIEWPORT, shot
from tests.browser.test_console import _base, _login
from tests.integration.harness import EXAMPLE, Federation, wait_until

LIVE = 2_000  # ms: the promise of the live view
#: Records every notification the page raises, then lets the real one through.
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__notes = [];
  function Recorded(title, options) {
    window.__notes.push({title: title, body: options && options.body, tag: options && options.tag});
    return new Real(title, options);
  }
  Object.defineProperty(Recorded, "permission", {get: () => Real.permission});
  Recorded.requestPermission = Real.requestPermission.bind(Real);
  window.Notification = Recorded;
})();
"""


async def _context(browser: Browser, fed: Federation, centre: str, **options: object
                   ) -> BrowserContext:
    context = await browser.new_context(**{"viewport": VIEWPORT, "locale": "en-GB",
                                           "timezone_id": "Europe/Brussels", **options})
    await context.grant_permissions(["notifications"], origin=_base(fed, centre))
    await context.add_init_script(RECORD_NOTIFICATIONS)
    return context


async def _flash(fed: Federation, sender: str, to: str, incident: str, summary: str) -> str:
    status, answer = await fed.api(sender, "POST", "/v1/sitreps", {
        **EXAMPLE, "to": [to], "priority": "flash",
        "sitrep": {**EXAMPLE["sitrep"], "incident": {"id": incident, "title": "Dyke breach"},
                   "summary": summary}})
    assert status == 202, answer
    return str(answer["id"])


async def _stored(fed: Federation, centre: str, message_id: str) -> float:
    """When ``message_id`` is in ``centre``'s ledger (perf_counter)."""

    async def there() -> bool:
        status, page = await fed.api(centre, "GET", "/v1/inbox")
        return status == 200 and any(m["id"] == message_id for m in page["items"])

    await wait_until(there, 30, f"{message_id} stored at {centre}")
    return time.perf_counter()


async def test_a_peers_flash_appears_live_and_loud_on_open_pages(
        browser: Browser, federation: Federation) -> None:
    """NL-NCC sends a flash to BE-NCCN: on BE-NCCN's open inbox, overview and incident
    board, without a reload, within 2 s, the row appears (inbox, the overview's list of
    what waits, timeline), the title counts it, the bar shows it, a notification is
    raised, the screen reader hears it, and the bar's Acknowledge clears it everywhere."""
    await federation.wait_ready()
    context = await _context(browser, federation, "BE-NCCN")
    try:
        status, first = await federation.api("NL-NCC", "POST", "/v1/sitreps", {
            **EXAMPLE, "to": ["BE-NCCN"], "sitrep": {
                **EXAMPLE["sitrep"], "incident": {"id": "NL-2026-0301", "title": "Dyke"}}})
        assert status == 202
        await _stored(federation, "BE-NCCN", first["id"])
        inbox = await context.new_page()
        await _login(inbox, federation, "BE-NCCN")
        overview = await context.new_page()
        await overview.goto(f"{_base(federation, 'BE-NCCN')}/console")
        board = await context.new_page()
        await board.goto(f"{_base(federation, 'BE-NCCN')}/console/incidents/NL-2026-0301")
        await inbox.goto(f"{_base(federation, 'BE-NCCN')}/console/inbox")
        for page in (inbox, overview, board):
            await page.evaluate("window.__noReload = true")
            await expect(page.locator("#connection")).to_be_hidden()
        message_id = await _flash(federation, "NL-NCC", "BE-NCCN", "NL-2026-0301",
                                  "Dyke breach at Roermond, evacuation of 4000 people.")
        await _stored(federation, "BE-NCCN", message_id)
        row = inbox.locator(f'tr[data-inbox="{message_id}"]')
        await expect(row).to_be_visible(timeout=LIVE)
        await expect(row).to_contain_text("Dyke breach at Roermond")
        await expect(row).to_have_class(re.compile("row-attention"))
        first_row = inbox.locator("[data-live-rows=inbox] tr").first
        await expect(first_row).to_have_attribute("data-inbox", message_id)  # newest flash
        await expect(board.locator(f'[data-live-rows="timeline:NL-2026-0301"] '
                                   f'tr[data-row="{message_id}"]')).to_be_visible(timeout=LIVE)
        waiting = overview.locator(f'#waiting tr[data-inbox="{message_id}"]')
        await expect(waiting).to_be_visible(timeout=LIVE)  # the wall screen's list
        await expect(waiting).to_contain_text("Dyke breach at Roermond")
        for page in (inbox, overview, board):
            await expect(page).to_have_title(re.compile(r"^\(\d+ FLASH\) "), timeout=LIVE)
            bar = page.locator("#alertbar")
            await expect(bar).to_be_visible(timeout=LIVE)
            await expect(bar).to_contain_text("NL-NCC: Dyke breach at Roermond")
            await expect(page.locator("#announce")).to_contain_text("message from NL-NCC")
        # A notification, from whichever open page heard of the flash first (the others
        # see it in the shared list; one tag, so the system shows it once).
        await wait_until(lambda: _notified(inbox, message_id), 5, "a notification")
        assert await _notes((inbox, overview, board), message_id) >= 1
        await shot(overview, "live-flash-overview")
        await shot(inbox, "live-flash-inbox")
        entry = overview.locator(f'#alertbar li[data-alert="{message_id}"]')
        await entry.get_by_role("button", name="Acknowledge").click()
        await expect(row.locator(".chip-acknowledged")).to_be_visible(timeout=LIVE)
        await expect(waiting).to_have_count(0, timeout=LIVE)  # nothing waits any more
        for page in (inbox, overview, board):
            await expect(page.locator(f'#alertbar li[data-alert="{message_id}"]')
                         ).to_have_count(0, timeout=LIVE)
            assert await page.evaluate("window.__noReload") is True
    finally:
        await context.close()


async def _notified(page: Page, message_id: str) -> bool:
    """The context's pages recorded that they notified of ``message_id``."""
    return bool(await page.evaluate(
        f"JSON.parse(localStorage.getItem('crisisgw-notified') || '[]')"
        f".includes('{message_id}')"))


async def _notes(pages: tuple[Page, ...], message_id: str) -> int:
    """How many notifications of ``message_id`` (from NL-NCC) the pages raised."""
    found = 0
    for page in pages:
        notes = await page.evaluate("window.__notes")
        found += sum(1 for n in notes if n.get("tag") == message_id and "NL-NCC" in n["title"])
    return found


async def test_a_new_outgoing_message_appears_on_the_open_outbox(
        page: Page, federation: Federation) -> None:
    """A sitrep submitted through the API shows up on the open outbox, without a reload,
    and its chips then follow its deliveries."""
    await federation.wait_ready()
    await _login(page, federation, "BE-NCCN")
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/outbox")
    await page.evaluate("window.__noReload = true")
    status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps", {
        **EXAMPLE, "to": ["NL-NCC"], "sitrep": {
            **EXAMPLE["sitrep"], "incident": {"id": "BE-2026-0412", "title": "Storm"}}})
    assert status == 202
    row = page.locator(f'tr[data-message="{answer["id"]}"]')
    await expect(row).to_be_visible(timeout=LIVE)
    await expect(page.locator("[data-live-rows=outbox] tr").first).to_have_attribute(
        "data-message", answer["id"])
    await expect(row.locator('[data-chip$="|NL-NCC"]')).to_have_class(
        re.compile("chip-(delivered|acknowledged)"), timeout=20_000)
    assert await page.evaluate("window.__noReload") is True


async def test_on_a_phone_the_acknowledge_button_is_on_screen(
        browser: Browser, federation: Federation) -> None:
    """At 390x844 an unacknowledged flash's Acknowledge button is inside the viewport."""
    await federation.wait_ready()
    message_id = await _flash(federation, "LU-HCPN", "BE-NCCN", "LU-2026-0007",
                              "Chemical fire at Bettembourg.")
    await _stored(federation, "BE-NCCN", message_id)
    context = await _context(browser, federation, "BE-NCCN",
                             viewport={"width": 390, "height": 844}, is_mobile=True,
                             has_touch=True)
    try:
        page = await context.new_page()
        await _login(page, federation, "BE-NCCN")
        await page.goto(f"{_base(federation, 'BE-NCCN')}/console/inbox")
        button = page.locator("#alertbar li", has_text="Bettembourg").get_by_role(
            "button", name="Acknowledge")
        await expect(button).to_be_in_viewport(timeout=LIVE)
        row_button = page.locator("[data-live-rows=inbox] tr", has_text="Bettembourg").get_by_role(
            "button", name="Acknowledge")
        await row_button.scroll_into_view_if_needed()
        await expect(row_button).to_be_in_viewport()  # the card's own button fits too
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
        await shot(page, "phone-inbox-flash")
        await button.click()
        await expect(page.locator("#alertbar li", has_text="Bettembourg")).to_have_count(
            0, timeout=LIVE)
    finally:
        await context.close()


def _reads(fed: Federation, centre: str) -> float:
    with urllib.request.urlopen(f"{_base(fed, centre)}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(r'^crisisgw_ledger_queries_total\{kind="read"\} (\S+)$', text, re.M)
    assert found, "no crisisgw_ledger_queries_total on /metrics"
    return float(found.group(1))


async def _read_rate(fed: Federation, centre: str, seconds: float) -> float:
    before, t0 = _reads(fed, centre), time.perf_counter()
    await asyncio.sleep(seconds)
    return (_reads(fed, centre) - before) / (time.perf_counter() - t0)


async def test_five_open_browsers_do_not_multiply_ledger_reads(
        browser: Browser, federation: Federation) -> None:
    """The ledger reads per second with five consoles open (overview, inbox, outbox) are
    those with one overview open: the pages share one live feed."""
    await federation.wait_ready()
    contexts = [await _context(browser, federation, "BE-NCCN") for _ in range(5)]
    try:
        pages = []
        for context in contexts:
            page = await context.new_page()
            await _login(page, federation, "BE-NCCN")
            pages.append(page)
        paths = ["/console", "/console/inbox", "/console/outbox", "/console",
                 "/console/inbox"]
        await pages[0].goto(_base(federation, "BE-NCCN") + paths[0])
        # One shared feed: five consoles cost what one costs (a per-browser loop would
        # read five times as often, in every round). The margin is for the node's other
        # work; a round whose window caught a burst of it (a retry, a periodic job) is
        # measured again, at most three rounds.
        for _ in range(3):
            for other in pages[1:]:
                await other.goto(_base(federation, "BE-NCCN") + "/console/directory")
            await asyncio.sleep(2)
            one = await _read_rate(federation, "BE-NCCN", 12)
            for page, path in zip(pages[1:], paths[1:], strict=True):
                await page.goto(_base(federation, "BE-NCCN") + path)
            await asyncio.sleep(2)
            five = await _read_rate(federation, "BE-NCCN", 12)
            print(f"ledger reads/s: one console {one:.2f}, five consoles {five:.2f}")
            if five <= 1.25 * one + 0.5:
                break
        assert five <= 1.25 * one + 0.5, (one, five)
    finally:
        for context in contexts:
            await context.close()


async def test_the_console_exports_open_with_the_console_session(
        page: Page, federation: Federation) -> None:
    """The CSV, printable directory, test history and timeline links work with the
    operator's session (a browser has no API token); without a session they do not."""
    await federation.wait_ready()
    status, _ = await federation.api("BE-NCCN", "POST", "/v1/sitreps", {
        **EXAMPLE, "to": ["NL-NCC"], "sitrep": {
            **EXAMPLE["sitrep"], "incident": {"id": "BE-2026-0500", "title": "Export"}}})
    assert status == 202
    await _login(page, federation, "BE-NCCN")
    base = _base(federation, "BE-NCCN")
    links: list[str] = []
    for path in ("/console", "/console/directory", "/console/commchecks",
                 "/console/incidents/BE-2026-0500"):
        await page.goto(base + path)
        for href in await page.locator("main a").evaluate_all(
                "els => els.map(e => e.getAttribute('href'))"):
            if href and ("/exports/" in href or href.endswith(".csv")):
                links.append(href)
    assert {link.rsplit("/", 1)[-1] for link in links} >= {
        "directory.csv", "directory.html", "commchecks.html", "commchecks.csv",
        "scorecard.csv", "timeline.csv"}, links
    for link in links:
        resp = await page.request.get(base + link)
        assert resp.status == 200, (link, resp.status)
        assert resp.headers["content-type"].split(";")[0] in ("text/csv", "text/html")
    anonymous = await page.context.browser.new_context()  # type: ignore[union-attr]
    try:
        resp = await anonymous.request.get(base + links[0], max_redirects=0)
        assert resp.status in (302, 401), resp.status
    finally:
        await anonymous.close()


async def test_a_language_switch_keeps_the_page_and_its_filters(
        page: Page, federation: Federation) -> None:
    """Switching to French on a filtered inbox comes back to that filtered inbox."""
    await federation.wait_ready()
    await _login(page, federation, "LU-HCPN")
    await page.goto(f"{_base(federation, 'LU-HCPN')}/console/inbox?priority=flash&incident=X-1")
    await page.select_option("#lang", "fr")
    await expect(page).to_have_url(re.compile(r"/console/inbox\?priority=flash&incident=X-1$"))
    await expect(page.locator("input[name=incident]")).to_have_value("X-1")
    await expect(page.get_by_role("heading", level=1)).not_to_have_text("Inbox")
    await page.select_option("#lang", "en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Inbox")


async def test_a_peer_whose_node_is_down_is_not_shown_as_connected(
        page: Page, federation: Federation) -> None:
    """NL-NCC's node stops while its broker stays up: BE-NCCN's messages to it stay
    ``sent``. The open overview turns NL-NCC's row to "not answering" by itself, the
    problem links to the messages behind it, and the row shows its 24/7 phone and when
    it was last heard from."""
    await federation.wait_ready()
    await _login(page, federation, "BE-NCCN")
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console")
    nl_row = page.locator("[data-live-block=peers] tr", has_text="NL-NCC")
    await expect(nl_row.locator(".chip-delivered", has_text="connected")).to_be_visible()
    await expect(nl_row.locator("a.duty")).to_contain_text("☎")
    await expect(nl_row.locator("time[data-ago]").first).to_contain_text(
        re.compile(r"\((just now|\d+ (min|h|d) ago)\)"))
    federation.stop("NL-NCC")
    try:
        status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps", {
            **EXAMPLE, "to": ["NL-NCC"], "sitrep": {
                **EXAMPLE["sitrep"], "incident": {"id": "BE-2026-0600", "title": "Silent"}}})
        assert status == 202
        await page.evaluate("window.__noReload = true")
        await expect(nl_row.locator(".chip-rejected", has_text="not answering")).to_be_visible(
            timeout=20_000)
        await expect(nl_row).to_have_class(re.compile("row-bad"))
        problem = page.locator(".problem a", has_text="NL-NCC is not answering")
        await expect(problem).to_be_visible()
        assert await page.evaluate("window.__noReload") is True
        await shot(page, "overview-peer-not-answering")
        await problem.click()
        await expect(page).to_have_url(re.compile(r"/console/outbox\?peer=NL-NCC&state=sent$"))
        await expect(page.locator(f'tr[data-message="{answer["id"]}"]')).to_be_visible()
    finally:
        federation.start("NL-NCC")
    await federation.wait_ready()


async def test_a_node_stopping_is_shown_at_once_and_actions_wait(
        page: Page, federation: Federation) -> None:
    """A normal stop (SIGTERM) of the node shows the lost-connection banner within 2 s
    and disables the page's actions; when the node is back they come back by themselves."""
    await federation.wait_ready()
    await _login(page, federation, "DE-NW")
    await page.goto(f"{_base(federation, 'DE-NW')}/console")
    await expect(page.locator("body[data-live='1']")).to_be_attached(timeout=LIVE)
    action = page.locator("#run-commcheck")
    await expect(action).to_be_enabled()
    t0 = time.perf_counter()
    stopping = asyncio.create_task(asyncio.to_thread(federation.stop, "DE-NW"))
    try:
        await expect(page.locator("#connection")).to_be_visible(timeout=LIVE)
        print(f"connection lost shown {time.perf_counter() - t0:.2f} s after SIGTERM")
        await expect(action).to_be_disabled()
        await stopping
    finally:
        await stopping
        federation.start("DE-NW")
    await federation.wait_ready()
    await expect(page.locator("#connection")).to_be_hidden(timeout=20_000)
    await expect(action).to_be_enabled()


async def test_incident_cards_and_timeline_arrive_live(
        page: Page, browser: Browser, federation: Federation) -> None:
    """On BE-NCCN's open incident board a new report from NL-NCC appears in the
    timeline and NL-NCC's card shows it; on the open incident list a new incident
    appears: no reload."""
    await federation.wait_ready()
    status, _ = await federation.api("BE-NCCN", "POST", "/v1/sitreps", {
        **EXAMPLE, "to": ["NL-NCC"], "sitrep": {
            **EXAMPLE["sitrep"], "incident": {"id": "BE-2026-0700", "title": "Blackout"}}})
    assert status == 202
    await _login(page, federation, "BE-NCCN")
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/incidents/BE-2026-0700")
    await expect(page.locator("body[data-live='1']")).to_be_attached(timeout=LIVE)
    listing = await browser.new_page()
    try:
        await listing.context.add_cookies(await page.context.cookies())
        await listing.goto(f"{_base(federation, 'BE-NCCN')}/console/incidents")
        await expect(listing.locator("body[data-live='1']")).to_be_attached(timeout=LIVE)
        for tab in (page, listing):
            await tab.evaluate("window.__noReload = true")
        status, answer = await federation.api("NL-NCC", "POST", "/v1/sitreps", {
            **EXAMPLE, "to": ["BE-NCCN"], "sitrep": {
                **EXAMPLE["sitrep"], "report_number": 1, "summary": "Grid down in Maastricht.",
                "incident": {"id": "BE-2026-0700", "title": "Blackout"}}})
        assert status == 202
        await _stored(federation, "BE-NCCN", answer["id"])
        timeline = page.locator("[data-live-rows='timeline:BE-2026-0700']")
        await expect(timeline.locator(f'tr[data-row="{answer["id"]}"]')).to_be_visible(
            timeout=LIVE)
        await expect(timeline.locator("tr").last).to_have_attribute("data-row", answer["id"])
        await expect(page.locator("[data-live-block='cards:BE-2026-0700']")).to_contain_text(
            "Grid down in Maastricht.", timeout=LIVE)
        status, fresh = await federation.api("NL-NCC", "POST", "/v1/sitreps", {
            **EXAMPLE, "to": ["BE-NCCN"], "sitrep": {
                **EXAMPLE["sitrep"], "incident": {"id": "NL-2026-0777", "title": "Gas leak"}}})
        assert status == 202
        await _stored(federation, "BE-NCCN", fresh["id"])
        row = listing.locator("[data-live-rows=incidents] tr[data-row='NL-2026-0777']")
        await expect(row).to_be_visible(timeout=LIVE)
        await expect(listing.locator("[data-live-rows=incidents] tr").first).to_have_attribute(
            "data-row", "NL-2026-0777")
        for tab in (page, listing):
            assert await tab.evaluate("window.__noReload") is True
    finally:
        await listing.close()
