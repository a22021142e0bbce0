"""A message you can read, in real Chromium: the sitrep and the CAP alert rendered,
priority, TLP and exercise prominent, its own Acknowledge, the raw envelope collapsed."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser.conftest import shot
from tests.browser.test_console import _base, _login
from tests.browser.test_console_live import _stored
from tests.integration.harness import EXAMPLE, Federation

CAP = Path(__file__).resolve().parents[1] / "assets" / "cap"
RICH = {
    "incident": {"id": "NL-2026-0310", "title": "Maas flooding", "phase": "response"},
    "report_number": 2, "purpose": "update", "supersedes": 1, "severity": "severe",
    "summary": {"en": "Dyke breach at Roermond, 4000 evacuated.",
                "nl": "Dijkdoorbraak bij Roermond, 4000 mensen geëvacueerd.",
                "fr": "Rupture de digue à Roermond, 4000 évacués."},
    "sections": {"situation": {"en": "Water 1.2 m above normal."},
                 "outlook": {"en": "Peak expected tonight."}},
    "casualties": {"dead": 0, "injured": 12, "missing": 3, "evacuated": 4000},
    "needs": [{"description": {"en": "High-volume pumps"}, "category": "equipment",
               "quantity": "6 pumps", "urgent": True}],
    "resources_deployed": [{"type": "Fire brigade", "quantity": 40,
                            "organisation": "VR Limburg-Noord"}],
    "affected_area": {"place_names": ["Roermond", "Venlo"],
                      "geometry": {"type": "Polygon", "coordinates": [[
                          [5.95, 51.18], [6.02, 51.18], [6.02, 51.22], [5.95, 51.22],
                          [5.95, 51.18]]]}},
}


async def _sitrep(fed: Federation, mode: str = "actual") -> str:
    status, answer = await fed.api("NL-NCC", "POST", "/v1/sitreps", {
        **EXAMPLE, "to": ["BE-NCCN"], "priority": "urgent", "tlp": "AMBER", "mode": mode,
        "sitrep": RICH})
    assert status == 202, answer
    await _stored(fed, "BE-NCCN", answer["id"])
    return str(answer["id"])


async def test_a_sitrep_reads_as_a_report_in_the_operators_language(
        page: Page, federation: Federation) -> None:
    """Summary (language tabs, Dutch first for a Dutch reader), sections, casualties,
    needs, resources, supersedes and area; priority and TLP on top; the envelope
    collapsed; the page's own Acknowledge."""
    await federation.wait_ready()
    message_id = await _sitrep(federation)
    await _login(page, federation, "BE-NCCN")
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/messages/{message_id}")
    head = page.locator(".message-head")
    await expect(head.locator(".prio-big")).to_have_text(re.compile("urgent", re.I))
    await expect(head.locator(".tlp")).to_have_text("TLP:AMBER")
    body = page.locator("section.body.sitrep")
    await expect(body).to_contain_text("Maas flooding")
    await expect(body).to_contain_text("Supersedes report 1")
    await expect(body.locator('[role="tabpanel"][lang="en"]')).to_be_visible()
    await expect(body.locator('[role="tabpanel"][lang="fr"]')).to_be_hidden()
    await body.locator('[role="tab"][lang="fr"]').click()
    await expect(body.locator('[role="tabpanel"][lang="fr"]')).to_contain_text("Rupture de digue")
    await expect(body.locator(".counts")).to_contain_text("4000")
    await expect(body).to_contain_text("High-volume pumps")
    await expect(body).to_contain_text("VR Limburg-Noord")
    await expect(body).to_contain_text("Roermond, Venlo")
    await expect(page.locator("details.raw pre.json")).to_be_hidden()
    await expect(page.locator("#verification")).to_have_class(re.compile("chip-delivered"))
    await shot(page, "message-sitrep")
    await page.locator("#acknowledge").click()
    await expect(page).to_have_url(re.compile(f"/console/messages/{message_id}$"))
    await expect(head.locator(".chip-acknowledged")).to_be_visible()
    async with page.expect_navigation():
        await page.select_option("#lang", "nl")
    await expect(body.locator('[role="tab"]').first).to_have_attribute("lang", "nl")
    await expect(body.locator('[role="tabpanel"][lang="nl"]')).to_be_visible()
    async with page.expect_navigation():
        await page.select_option("#lang", "en")


async def test_an_exercise_is_bannered(page: Page, federation: Federation) -> None:
    """An exercise message says so above everything else."""
    await federation.wait_ready()
    message_id = await _sitrep(federation, mode="exercise")
    await _login(page, federation, "BE-NCCN")
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/messages/{message_id}")
    await expect(page.locator(".banner-exercise")).to_contain_text("EXERCISE")


async def test_a_cap_alert_reads_with_headline_instruction_link_and_areas(
        page: Page, federation: Federation) -> None:
    """The CAP example's headline, instruction, web link and areas are shown."""
    await federation.wait_ready()
    status, answer = await federation.api(
        "NL-NCC", "POST", "/v1/alerts?to=BE-NCCN&tlp=GREEN&priority=urgent",
        raw=(CAP / "oasis-appendix-a2.xml").read_bytes(),
        headers={"Content-Type": "application/cap+xml"})
    assert status == 202, answer
    await _stored(federation, "BE-NCCN", answer["id"])
    await _login(page, federation, "BE-NCCN")
    await page.goto(f"{_base(federation, 'BE-NCCN')}/console/messages/{answer['id']}")
    body = page.locator("section.body.alert")
    await expect(body.locator("h2")).to_have_text("SEVERE THUNDERSTORM WARNING")
    await expect(body.locator(".instruction")).to_contain_text("TAKE COVER")
    await expect(body.locator(".areas")).to_contain_text("polygons")
    await shot(page, "message-alert")


async def test_a_cap_polygon_and_a_sitrep_area_are_drawn_on_maps(
        page: Page, federation: Federation) -> None:
    """The CAP example's polygon is drawn on its message page, on the overview of alerts
    in force and, with the centre's sitrep area, on the incident board; the incident's
    areas download as GeoJSON. Everything comes from the node (no other origin)."""
    await federation.wait_ready()
    cap = (CAP / "oasis-appendix-a2.xml").read_bytes()
    status, answer = await federation.api(
        "NL-NCC", "POST", "/v1/alerts?to=BE-NCCN&tlp=GREEN&priority=urgent&incident=NL-2026-0310",
        raw=cap, headers={"Content-Type": "application/cap+xml"})
    assert status == 202, answer
    await _stored(federation, "BE-NCCN", answer["id"])
    await _sitrep(federation)  # NL-NCC's latest sitrep on NL-2026-0310, with its area
    elsewhere: list[str] = []
    base = _base(federation, "BE-NCCN")
    page.on("request", lambda r: None if r.url.startswith(base) or r.url.startswith("data:")
            else elsewhere.append(r.url))
    await _login(page, federation, "BE-NCCN")
    for path, at_least in ((f"/console/messages/{answer['id']}", 1), ("/console", 1),
                           ("/console/incidents/NL-2026-0310", 2)):
        await page.goto(base + path)
        drawn = page.locator(".map[data-drawn]")
        await expect(drawn).to_be_visible(timeout=10_000)
        assert int(await drawn.get_attribute("data-drawn") or 0) >= at_least, path
        await expect(page.locator(".map path.area-alert").first).to_be_attached()
        assert await page.locator(".map path.leaflet-interactive").count() >= at_least
    await expect(page.locator(".map path.area-sitrep").first).to_be_attached()
    await shot(page, "incident-map")
    resp = await page.request.get(base + "/console/incidents/NL-2026-0310/areas.geojson")
    assert resp.status == 200
    collection = await resp.json()
    assert collection["type"] == "FeatureCollection"
    assert {f["properties"]["type"] for f in collection["features"]} >= {"alert", "sitrep"}
    assert elsewhere == []


async def test_compose_suggests_the_next_report_and_previews_before_signing(
        page: Page, federation: Federation) -> None:
    """For a known incident the form proposes our next report number and what it
    supersedes; texts in several languages, area, casualties and needs go in; nothing is
    signed before the preview; errors are said in plain words."""
    await federation.wait_ready()
    status, _ = await federation.api("LU-HCPN", "POST", "/v1/sitreps", {
        **EXAMPLE, "to": ["BE-NCCN"], "sitrep": {
            **EXAMPLE["sitrep"], "report_number": 4,
            "incident": {"id": "LU-2026-0044", "title": "Moselle flood"}}})
    assert status == 202
    await _login(page, federation, "LU-HCPN")
    await page.goto(f"{_base(federation, 'LU-HCPN')}/console/compose")
    await page.click("#preview")  # nothing filled in
    await expect(page.locator("#err-summary")).to_have_text("Please fill this in.")
    await page.fill("input[name=incident_id]", "LU-2026-0044")
    await page.locator("input[name=incident_id]").dispatch_event("change")
    await expect(page.locator("input[name=report_number]")).to_have_value("5")
    await expect(page.locator("input[name=supersedes]")).to_have_value("4")
    await expect(page.locator("input[name=incident_title]")).to_have_value("Moselle flood")
    await page.check("input[name=to][value=BE-NCCN]")
    await page.select_option("select[name=severity]", "moderate")
    await page.fill("textarea[name=summary]", "Levels falling at Remich.")
    await page.locator("details.more-langs summary").click()
    await page.fill("textarea[name=summary_fr]", "Niveaux en baisse à Remich.")
    await page.fill("input[name=place_names]", "Remich, Grevenmacher")
    await page.fill("input[name=casualties_evacuated]", "120")
    await page.fill("textarea[name=needs]", "!Sandbags\nDrinking water")
    await page.click("#preview")
    preview = page.locator(".preview")
    await expect(preview).to_contain_text("Supersedes report 4")
    await expect(preview).to_contain_text("Remich, Grevenmacher")
    await expect(preview.locator(".counts")).to_contain_text("120")
    await expect(preview.locator('[role="tab"][lang="fr"]')).to_be_attached()
    _, before = await federation.api("LU-HCPN", "GET", "/v1/messages?incident=LU-2026-0044")
    assert len(before["items"]) == 1  # report 4 only: a preview signs and sends nothing
    await page.click("#send")
    await expect(page).to_have_url(re.compile(r"/console/outbox"))
    _, after = await federation.api("LU-HCPN", "GET", "/v1/messages?incident=LU-2026-0044")
    assert len(after["items"]) == 2
    body = after["items"][0]["envelope"]["body"]  # newest first
    assert body["report_number"] == 5
    assert body["supersedes"] == 4
    assert body["summary"] == {"en": "Levels falling at Remich.",
                               "fr": "Niveaux en baisse à Remich."}
    assert body["casualties"] == {"evacuated": 120}
    assert [n["urgent"] for n in body["needs"]] == [True, False]


async def test_the_communication_test_button_asks_first(
        page: Page, federation: Federation) -> None:
    """Dismissing the confirmation sends no test."""
    await federation.wait_ready()
    await _login(page, federation, "LU-HCPN")
    _, before = await federation.api("LU-HCPN", "GET", "/v1/messages?type=commcheck")
    asked: list[str] = []

    async def dismiss(dialog: object) -> None:
        asked.append(dialog.message)  # type: ignore[attr-defined]
        await dialog.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", dismiss)
    await page.click("#run-commcheck")
    await page.wait_for_timeout(500)
    assert asked
    assert "communication test" in asked[0]
    _, after = await federation.api("LU-HCPN", "GET", "/v1/messages?type=commcheck")
    assert len(after["items"]) == len(before["items"])


async def test_the_overview_map_takes_a_new_alert_live(page: Page, federation: Federation
                                                       ) -> None:
    """On an open overview, a CAP alert a peer sends comes onto the map of alerts in
    force without a reload, drawn (Leaflet) with its polygon."""
    await federation.wait_ready()
    await _login(page, federation, "BE-NCCN")
    await page.goto(_base(federation, "BE-NCCN") + "/console")
    await page.wait_for_selector("body[data-live='1']", state="attached")
    cap = (CAP / "oasis-appendix-a2.xml").read_bytes()
    status, answer = await federation.api(
        "LU-HCPN", "POST", "/v1/alerts?to=BE-NCCN&tlp=GREEN&priority=urgent&incident=LU-2026-0077",
        raw=cap, headers={"Content-Type": "application/cap+xml"})
    assert status == 202, answer
    await page.wait_for_function(
        """id => { const el = document.querySelector('[data-live-block="areas"] [data-map]');
                   return !!el && el.dataset.geojson.includes(id) && !!el.dataset.drawn; }""",
        arg=answer["id"], timeout=10_000)
    await expect(page.locator('[data-live-block="areas"] path.area-alert').first).to_be_attached()
