"""CAP and EDXL-DE through the API of real nodes, and incident threads across centres."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree

from gateway.formats.cap import parse_cap
from gateway.formats.xml import CAP_NS, EDXL_DE_NS, validate
from tests.integration.harness import Federation, wait_until

pytestmark = pytest.mark.broker
CAP = f"{{{CAP_NS}}}"
EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "cap"


def _sitrep(incident: str, number: int, **extra: Any) -> dict[str, Any]:
    return {"incident": {"id": incident, "title": "Flooding of the Meuse", "type": "flood"},
            "report_number": number, "severity": "severe", **extra}


async def _arrived(fed: Federation, centre: str, message_id: str) -> None:
    async def seen() -> bool:
        _, inbox = await fed.api(centre, "GET", "/v1/inbox?limit=1000")
        return any(m["id"] == message_id for m in inbox["items"])
    await wait_until(seen, 15, f"{message_id} at {centre}")


async def _raw(fed: Federation, centre: str, path: str) -> tuple[int, str, str]:
    node = fed.nodes[centre]
    async with aiohttp.ClientSession() as s, s.get(
            f"http://127.0.0.1:{node.port}{path}",
            headers={"Authorization": f"Bearer {node.token}"}) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_bilingual_sitrep_is_fetched_at_the_peer_as_cap_with_two_infos(
        federation: Federation) -> None:
    """A sitrep in NL and FR from BE-NCCN is served by NL-NCC as CAP with two <info>."""
    await federation.wait_ready()
    body = {"to": ["NL-NCC"], "tlp": "GREEN", "sitrep": _sitrep(
        "BE-2026-0042", 1,
        summary={"nl": "Het water van de Maas stijgt.", "fr": "La Meuse monte."},
        sections={"situation": {"nl": "Dijken onder druk.", "fr": "Digues sous pression."}})}
    status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps", body)
    assert status == 202, answer
    await _arrived(federation, "NL-NCC", answer["id"])
    status, ctype, text = await _raw(federation, "NL-NCC",
                                     f"/v1/messages/{answer['id']}?format=cap")
    assert status == 200, text
    assert ctype.startswith("application/cap+xml")
    root = etree.fromstring(text.encode())
    validate(root, "cap-1.2.xsd")
    infos = root.findall(f"{CAP}info")
    assert sorted(i.findtext(f"{CAP}language") for i in infos) == ["fr", "nl"]
    by_lang = {i.findtext(f"{CAP}language"): i for i in infos}
    assert "La Meuse monte." in (by_lang["fr"].findtext(f"{CAP}headline") or "")
    assert "Digues sous pression." in (by_lang["fr"].findtext(f"{CAP}description") or "")
    assert "Dijken onder druk." in (by_lang["nl"].findtext(f"{CAP}description") or "")
    status, ctype, text = await _raw(federation, "NL-NCC",
                                     f"/v1/messages/{answer['id']}?format=edxl-de")
    assert status == 200
    edxl = etree.fromstring(text.encode())
    validate(edxl, "edxl-de-1.0.xsd")
    assert edxl.findtext(f"{{{EDXL_DE_NS}}}distributionID") == answer["id"]


async def test_cap_alert_posted_as_xml_reaches_peer_and_exports_back_equal(
        federation: Federation) -> None:
    """POST /v1/alerts with CAP XML: delivered, and the peer's CAP export keeps the content."""
    await federation.wait_ready()
    original = (EXAMPLES / "oasis-appendix-a1.xml").read_bytes()
    status, answer = await federation.api(
        "BE-NCCN", "POST", "/v1/alerts?to=NL-NCC,LU-HCPN&tlp=GREEN", raw=original,
        headers={"Content-Type": "application/cap+xml"})
    assert status == 202, answer
    await _arrived(federation, "LU-HCPN", answer["id"])
    status, _, text = await _raw(federation, "LU-HCPN", f"/v1/messages/{answer['id']}?format=cap")
    assert status == 200
    assert parse_cap(text.encode()) == parse_cap(original)


async def test_invalid_cap_is_refused_naming_line_and_element(federation: Federation) -> None:
    """A CAP document with a bad <urgency> gets a 422 naming the line and the element."""
    await federation.wait_ready()
    original = (EXAMPLES / "oasis-appendix-a1.xml").read_text()
    broken = original.replace("<urgency>Immediate</urgency>", "<urgency>Soonish</urgency>")
    assert broken != original
    status, problem = await federation.api(
        "BE-NCCN", "POST", "/v1/alerts?to=NL-NCC", raw=broken.encode(),
        headers={"Content-Type": "application/cap+xml"})
    assert status == 422
    assert "urgency" in problem["detail"]
    assert "line" in problem["detail"]
    attack = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
              b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">&x;</alert>')
    status, problem = await federation.api(
        "BE-NCCN", "POST", "/v1/alerts?to=NL-NCC", raw=attack,
        headers={"Content-Type": "application/xml"})
    assert status in (400, 422)
    assert "root:" not in str(problem)


async def test_incident_thread_shows_every_centre_and_flags_a_skipped_report(
        federation: Federation) -> None:
    """Three centres report on one incident; NL-NCC skips report 2; all see the picture."""
    await federation.wait_ready()
    incident = "BENELUX-2026-FLOOD"
    sent = []
    for centre, number in (("BE-NCCN", 1), ("BE-NCCN", 2), ("NL-NCC", 1), ("NL-NCC", 3),
                           ("LU-HCPN", 1)):
        others = [c for c in ("BE-NCCN", "NL-NCC", "LU-HCPN") if c != centre]
        body = {"to": others, "tlp": "GREEN", "sitrep": _sitrep(
            incident, number, summary={"en": f"{centre} report {number}"})}
        status, answer = await federation.api(centre, "POST", "/v1/sitreps", body)
        assert status == 202, answer
        sent.append(answer["id"])

    async def complete() -> bool:
        status, thread = await federation.api("BE-NCCN", "GET", f"/v1/incidents/{incident}")
        return status == 200 and len(thread["timeline"]) == 5

    await wait_until(complete, 20, "all five reports in BE-NCCN's thread")
    _, thread = await federation.api("BE-NCCN", "GET", f"/v1/incidents/{incident}")
    latest = {c["centre"]: c["report_number"] for c in thread["centres"]}
    assert latest == {"BE-NCCN": 2, "NL-NCC": 3, "LU-HCPN": 1}
    missing = [w for w in thread["warnings"] if w["kind"] == "missing_report"]
    assert [(w["centre"], w["report_numbers"]) for w in missing] == [("NL-NCC", [2])]
    _, index = await federation.api("BE-NCCN", "GET", "/v1/incidents")
    row = next(r for r in index["items"] if r["incident"] == incident)
    assert row["warnings"] >= 1
    status, ctype, text = await _raw(federation, "BE-NCCN",
                                     f"/v1/incidents/{incident}/timeline.csv")
    assert status == 200
    assert ctype.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["message_id"] for r in rows} == set(sent)
