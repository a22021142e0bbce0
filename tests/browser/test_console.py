"""The operator console in real headless Chromium, against real nodes on the real broker."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from gateway.protocol.evidence import verify_bundle
from tests.browser.conftest import VIEWPORT, shot
from tests.integration.harness import EXAMPLE, Federation, wait_until

TIMEOUT = 20_000  # ms


def _base(fed: Federation, centre: str) -> str:
    return f"http://127.0.0.1:{fed.nodes[centre].port}"


def _password(fed: Federation, centre: str) -> str:
    return (fed.nodes[centre].config.parent / "operator-password").read_text().strip()


async def _login(page: Page, fed: Federation, centre: str) -> None:
    await page.goto(f"{_base(fed, centre)}/console")
    await expect(page).to_have_url(re.compile(r"/console/login$"))
    await page.fill("#name", "operator")
    await page.fill("#password", _password(fed, centre))
    await page.click("button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/console$"))


async def _second_page(browser: Browser) -> Page:
    context = await browser.new_context(viewport=VIEWPORT, locale="en-GB",
                                        timezone_id="Europe/Brussels")
    return await context.new_page()


async def test_login_then_overview_lists_every_peer(page: Page, federation: Federation) -> None:
    """Logging in shows the overview with one row per peer and its broker state."""
    await federation.wait_ready()
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/login")
    await shot(page, "login")
    await page.fill("#name", "operator")
    await page.fill("#password", "not the password")
    await page.click("button[type=submit]")
    await expect(page.get_by_role("alert")).to_contain_text("Wrong name or password")
    await _login(page, federation, "BE-NCCN")
    for peer in ("NL-NCC", "LU-HCPN", "DE-NW"):
        await expect(page.locator("table#peers")).to_contain_text(peer)
    await shot(page, "overview")
    await page.set_viewport_size({"width": 1024, "height": 768})  # a tablet on shift
    await shot(page, "overview-tablet")
    await page.keyboard.press("Tab")  # keyboard users land on the skip link first
    await expect(page.locator(".skip")).to_be_focused()


async def test_composed_message_arrives_and_chips_turn_delivered_live(
        browser: Browser, page: Page, federation: Federation) -> None:
    """A sitrep sent from the compose form reaches NL-NCC; BE-NCCN's chip turns from sent to
    delivered without a reload while NL-NCC's node was down and comes back."""
    await federation.wait_ready()
    await _login(page, federation, "BE-NCCN")
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/compose")
    await page.click("button.primary")  # empty form: errors next to the fields
    await expect(page.locator("#err-incident_id")).to_be_visible()
    await expect(page.locator("#err-summary")).to_be_visible()
    await shot(page, "compose-errors")
    federation.stop("NL-NCC")
    try:
        await page.check("input[name=to][value=NL-NCC]")
        await page.fill("input[name=incident_id]", "BE-2026-0777")
        await page.fill("input[name=incident_title]", "Chemical leak at the port of Antwerp")
        await page.select_option("select[name=severity]", "severe")
        await page.select_option("select[name=priority]", "urgent")
        await page.fill("textarea[name=summary]", "Toxic cloud drifting north-east.")
        await shot(page, "compose")
        await page.click("#preview")  # first what the recipients will read
        await expect(page.locator(".preview")).to_contain_text("Toxic cloud drifting north-east.")
        await shot(page, "compose-preview")
        await page.click("#send")
        await expect(page).to_have_url(re.compile(r"/console/outbox"))
        chip = page.locator('[data-chip$="|NL-NCC"]').first
        await expect(chip).to_have_class(re.compile(r"chip-(queued|sent)"), timeout=TIMEOUT)
        await page.evaluate("window.__noReload = true")
    finally:
        federation.start("NL-NCC")
    await expect(chip).to_have_class(re.compile(r"chip-delivered"), timeout=30_000)
    assert await page.evaluate("window.__noReload") is True  # the same page, updated live
    await shot(page, "outbox")
    nl = await _second_page(browser)
    try:
        await _login(nl, federation, "NL-NCC")
        await nl.goto(f"{_base(federation, 'NL-NCC')}/console/inbox")
        await expect(nl.locator("#inbox")).to_contain_text("Toxic cloud drifting north-east.")
    finally:
        await nl.context.close()


async def test_acknowledging_at_recipient_turns_sender_chip_acknowledged(
        browser: Browser, page: Page, federation: Federation) -> None:
    """The Acknowledge button at NL-NCC turns BE-NCCN's chip to acknowledged, live."""
    await federation.wait_ready()
    status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps", {
        **EXAMPLE, "priority": "urgent", "sitrep": {**EXAMPLE["sitrep"], "incident": {
            "id": "BE-2026-0888", "title": "Power outage in Limburg"}}})
    assert status == 202
    message_id = answer["id"]
    await _login(page, federation, "BE-NCCN")
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/outbox")
    chip = page.locator(f'[data-chip="{message_id}|NL-NCC"]')
    await expect(chip).to_have_class(re.compile(r"chip-delivered"), timeout=TIMEOUT)
    nl = await _second_page(browser)
    try:
        await _login(nl, federation, "NL-NCC")
        await nl.goto(f"{_base(federation, 'NL-NCC')}/console/inbox")
        row = nl.locator(f'tr[data-inbox="{message_id}"]')
        await expect(row).to_have_class(re.compile("row-attention"))
        await shot(nl, "inbox")
        await row.get_by_role("button", name="Acknowledge").click()
        acknowledged = nl.locator(f'tr[data-inbox="{message_id}"] .chip-acknowledged')
        await expect(acknowledged).to_be_visible()
    finally:
        await nl.context.close()
    await expect(chip).to_have_class(re.compile(r"chip-acknowledged"), timeout=TIMEOUT)


async def test_unacknowledged_flash_message_is_flagged_after_its_deadline(
        page: Page, federation: Federation) -> None:
    """A flash message not acknowledged within the configured 4 s is flagged and counted."""
    await federation.wait_ready()
    status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps", {
        **EXAMPLE, "to": ["LU-HCPN"], "priority": "flash", "sitrep": {
            **EXAMPLE["sitrep"], "incident": {"id": "BE-2026-0999", "title": "Dam breach"}}})
    assert status == 202
    message_id = answer["id"]
    await _login(page, federation, "LU-HCPN")
    await page.goto(f"{_base(federation, 'LU-HCPN')}/console/inbox")
    row = page.locator(f'tr[data-inbox="{message_id}"]')
    await expect(row).to_be_visible(timeout=TIMEOUT)
    await expect(row.locator("[data-overdue]")).to_be_visible(timeout=TIMEOUT)
    await expect(row).to_have_class(re.compile("row-overdue"))
    await shot(page, "inbox-overdue")

    async def counted() -> bool:
        _, metrics = await federation.api("LU-HCPN", "GET", "/metrics")
        return any(line.startswith('crisisgw_overdue_acknowledgements{direction="incoming"}')
                   and float(line.rsplit(" ", 1)[1]) >= 1 for line in metrics.splitlines())

    await wait_until(counted, 20, "the overdue message counted in /metrics")


async def test_switching_to_dutch_translates_and_is_remembered(
        page: Page, federation: Federation) -> None:
    """Choosing Nederlands translates the page, and the choice survives a reload."""
    await federation.wait_ready()
    await _login(page, federation, "DE-NW")
    await page.select_option("#lang", "nl")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    await expect(page.locator("nav")).to_contain_text("Ontvangen")
    await page.reload()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    await shot(page, "overview-nl")
    await page.select_option("#lang", "en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")


async def test_no_session_serves_no_data_and_post_without_csrf_is_refused(
        browser: Browser, page: Page, federation: Federation) -> None:
    """Without a session /console is the login page; a POST lacking the CSRF token is 403."""
    await federation.wait_ready()
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/outbox")
    await expect(page).to_have_url(re.compile(r"/console/login$"))
    assert "NL-NCC" not in await page.content()
    await _login(page, federation, "BE-NCCN")
    status = await page.evaluate(
        """async () => (await fetch('/console/logout', {method: 'POST'})).status""")
    assert status == 403
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")


async def test_incident_board_and_message_detail_with_evidence(
        page: Page, federation: Federation) -> None:
    """The incident board shows each centre's latest report; the message detail shows the
    verified signature, its key id and the receipts, and offers the evidence download."""
    await federation.wait_ready()
    incident = "BENELUX-2026-STORM"
    ids = []
    for centre, number in (("BE-NCCN", 1), ("NL-NCC", 1), ("NL-NCC", 3)):
        others = [c for c in ("BE-NCCN", "NL-NCC", "LU-HCPN") if c != centre]
        status, answer = await federation.api(centre, "POST", "/v1/sitreps", {
            "to": others, "tlp": "GREEN", "sitrep": {
                "incident": {"id": incident, "title": "Storm Ciarán"}, "report_number": number,
                "severity": "severe", "summary": {"en": f"{centre} report {number}",
                                                  "nl": f"{centre} rapport {number}"}}})
        assert status == 202
        ids.append(answer["id"])
    await _login(page, federation, "LU-HCPN")
    await page.goto(f"{_base(federation, 'LU-HCPN')}/console/incidents/{incident}")
    cards = page.locator(".card")
    await expect(cards).to_have_count(2, timeout=TIMEOUT)
    await expect(page.locator(".problems")).to_contain_text("NL-NCC")
    await shot(page, "incident-board")
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/login")
    await _login(page, federation, "BE-NCCN")
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/messages/{ids[0]}")
    await expect(page.locator("#verification")).to_have_class(re.compile("chip-delivered"))
    await expect(page.locator("body")).to_contain_text(federation.nodes["BE-NCCN"].settings
                                                       .node.signing_key_id)
    await expect(page.locator("table.grid tbody tr")).to_have_count(2, timeout=TIMEOUT)
    await page.locator("details.raw summary").click()  # the envelope, collapsed at first
    await expect(page.locator("details.raw pre.json")).to_be_visible()
    await shot(page, "message-detail")
    async with page.expect_download() as info:
        await page.get_by_role("link", name=re.compile("evidence")).click()
    download = await info.value
    assert download.suggested_filename == f"evidence-{ids[0]}.json"
    verdict = verify_bundle(Path(await download.path()).read_bytes())
    assert verdict.message_id == ids[0]
