"""Message templates in the console's Compose page, in real headless Chromium against
real nodes on the real broker."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.browser.conftest import VIEWPORT, shot
from tests.browser.test_console import _base, _login
from tests.browser.test_console_a11y import _violations
from tests.integration.harness import Federation, wait_until

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


async def test_picking_a_template_prefills_compose_and_sends_its_wording(
        browser: Browser, federation: Federation) -> None:
    """Choosing "Request for assistance" fills in the form and marks its required fields
    (the page passing axe); without the request it is named; filled in, NL-NCC receives
    the four summaries and the request."""
    await federation.wait_ready()
    # axe is injected as a script of its own: the console's CSP rightly refuses it.
    context = await browser.new_context(viewport=VIEWPORT, locale="en-GB",
                                        timezone_id="Europe/Brussels", bypass_csp=True)
    try:
        page = await context.new_page()
        await _login(page, federation, "BE-NCCN")
        await page.goto(f"{_base(federation, 'BE-NCCN')}/console/compose")
        await page.select_option("#template", "request-for-assistance")
        await page.click("#use-template")
        await expect(page).to_have_url(re.compile(r"template=request-for-assistance"))
        form = page.locator("form[data-compose]")
        await expect(form.locator("select[name=tlp]")).to_have_value("AMBER")
        await expect(form.locator("select[name=priority]")).to_have_value("urgent")
        await expect(form.locator("select[name=severity]")).to_have_value("severe")
        await expect(form.locator("input[value='field:civil-protection']")).to_be_checked()
        await expect(form.locator("textarea[name=summary]")).to_contain_text(
            "Request for assistance: the requesting centre")
        await expect(form.locator("textarea[name=summary_fr]")).to_contain_text(
            "Demande d'assistance")
        for name in ("incident_id", "incident_title", "report_number", "assistance"):
            await expect(form.locator(f"[name={name}]")).to_have_attribute(
                "aria-required", "true")
        await expect(page.locator("#template-note")).to_contain_text(
            "From the template Request for assistance")
        await page.add_script_tag(path=str(AXE))
        assert await _violations(page, "compose from a template") == []
        await shot(page, "compose-template")
        await form.locator("input[value='field:civil-protection']").uncheck()
        await form.locator("input[name=to][value=NL-NCC]").check()
        await form.locator("input[name=incident_id]").fill("BE-2026-0321")
        await form.locator("input[name=incident_title]").fill("Forest fire in the Hautes Fagnes")
        await page.click("#preview")
        await expect(page.locator("#err-assistance")).to_have_text("Required by the template.")
        await page.locator("textarea[name=assistance]").fill(
            "Two firefighting aircraft for 48 hours")
        await page.click("#preview")
        await expect(page.locator(".preview")).to_contain_text("Two firefighting aircraft")
        await page.click("#send")
        await expect(page).to_have_url(re.compile(r"/console/outbox"))
    finally:
        await context.close()
    _, sent = await federation.api("BE-NCCN", "GET", "/v1/messages?incident=BE-2026-0321")
    message_id = sent["items"][0]["id"]

    async def at_nl() -> bool:
        status, _ = await federation.api("NL-NCC", "GET", f"/v1/messages/{message_id}")
        return status == 200

    await wait_until(at_nl, 30, "the sitrep at NL-NCC")
    _, view = await federation.api("NL-NCC", "GET", f"/v1/messages/{message_id}")
    envelope = view["envelope"]
    assert (envelope["tlp"], envelope["priority"]) == ("AMBER", "urgent")
    assert sorted(envelope["body"]["summary"]) == ["de", "en", "fr", "nl"]
    assert envelope["body"]["assistance_requests"] == [
        {"description": {"en": "Two firefighting aircraft for 48 hours"}}]
    assert envelope["body"]["urgency"] == "immediate"
