"""axe-core (vendored: tests/browser/vendor, no CDN) on every console page in the four
languages: no serious or critical violation. Each page is saved as a screenshot on the
way (test-output/screenshots/page-<language>-<page>.png)."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Browser

from tests.browser.conftest import VIEWPORT, shot
from tests.browser.test_console import _base, _login
from tests.browser.test_console_live import _flash, _stored
from tests.integration.harness import EXAMPLE, Federation

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
LANGUAGES = ("en", "nl", "fr", "de")


async def test_no_serious_accessibility_violation_on_any_page_in_any_language(
        browser: Browser, federation: Federation) -> None:
    """Every page a duty officer uses, with real content (a flash waiting, a sitrep with
    an area, an incident), passes axe's WCAG 2 A/AA rules without a serious or critical
    violation, in English, Dutch, French and German."""
    await federation.wait_ready()
    flash = await _flash(federation, "NL-NCC", "BE-NCCN", "NL-2026-0901", "Pumping station down.")
    await _stored(federation, "BE-NCCN", flash)
    status, sent = await federation.api("BE-NCCN", "POST", "/v1/sitreps", {
        **EXAMPLE, "to": ["NL-NCC"], "sitrep": {
            **EXAMPLE["sitrep"], "incident": {"id": "NL-2026-0901", "title": "Pumps"}}})
    assert status == 202
    # Every page, by the name of its screenshot (test-output/screenshots/page-<lang>-<name>).
    pages = {"overview": "/console", "outbox": "/console/outbox", "inbox": "/console/inbox",
             "incidents": "/console/incidents",
             "incident-board": "/console/incidents/NL-2026-0901",
             "message-received-flash": f"/console/messages/{flash}",
             "message-sent-sitrep": f"/console/messages/{sent['id']}",
             "directory": "/console/directory", "compose": "/console/compose"}
    # axe is injected as a script of its own: the console's CSP rightly refuses it.
    context = await browser.new_context(viewport=VIEWPORT, bypass_csp=True)
    found: list[str] = []
    try:
        page = await context.new_page()
        # The check itself works: a page with known faults fails it.
        await page.set_content('<html lang="en"><body><main><img src="x.png">'
                               '<p style="color:#777;background:#888">faint</p>'
                               '<button></button></main></body></html>')
        await page.add_script_tag(path=str(AXE))
        known = " ".join(await _violations(page, "known faults"))
        assert "image-alt" in known
        assert "button-name" in known
        await page.goto(f"{_base(federation, 'BE-NCCN')}/console/login")
        await page.add_script_tag(path=str(AXE))
        found += await _violations(page, "login")
        await shot(page, "page-en-login")
        await _login(page, federation, "BE-NCCN")
        for lang in LANGUAGES:
            async with page.expect_navigation():
                await page.select_option("#lang", lang)
            for name, path in pages.items():
                await page.goto(_base(federation, "BE-NCCN") + path)
                await page.wait_for_load_state("networkidle")
                await page.wait_for_selector("body[data-live='1']", state="attached")
                await page.add_script_tag(path=str(AXE))
                found += await _violations(page, f"{lang} {path}")
                await shot(page, f"page-{lang}-{name}")
        async with page.expect_navigation():
            await page.select_option("#lang", "en")
    finally:
        await context.close()
    assert not found, "\n".join(found)


async def _violations(page: object, where: str) -> list[str]:
    result = await page.evaluate(  # type: ignore[attr-defined]
        """async () => {
            const r = await axe.run(document, {runOnly: {type: "tag",
                values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}});
            return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
              .map(v => ({id: v.id, impact: v.impact, help: v.help,
                          nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
        }""")
    return [f"{where}: {v['impact']} {v['id']} ({v['help']}) at {json.dumps(v['nodes'])}"
            for v in result]
