"""A compromised peer's signed messages cannot break or inject into the console (issue
findings 1, 2 and 13): every page still answers 200, with no element of theirs."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.integration.harness import (
    Federation,
    console_page,
    envelope,
    sealed,
    sitrep_body,
    wait_until,
)

pytestmark = pytest.mark.broker
TARGET, PEER = "NL-NCC", "LU-HCPN"
MARKUP = '<base href="//elsewhere.example/"><script>alert(1)</script>'
PAGES = ("/console", "/console/inbox", "/console/outbox", "/console/incidents",
         "/console/incidents?mode=exercise", "/console/directory", "/console/compose")


async def _inject(fed: Federation, env: dict[str, Any]) -> None:
    await fed.inject(TARGET, PEER, sealed(env, fed.nodes[PEER].key()))


async def _stored(fed: Federation, message_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def there() -> bool:
        _, inbox = await fed.api(TARGET, "GET", f"/v1/inbox?from={PEER}&limit=500")
        found.update(next((i for i in inbox["items"] if i["id"] == message_id), {}))
        return bool(found)
    await wait_until(there, 20, f"{TARGET} storing {message_id}")
    return found


def _no_injection(page: str) -> None:
    """No element of the peer's: its markup is shown as text, if at all."""
    assert "<base" not in page
    assert "<script>alert" not in page
    assert 'href="//elsewhere' not in page


async def test_hostile_types_and_bodies_leave_every_page_working(federation: Federation) -> None:
    """An unknown type carrying markup, a format-string type and a sitrep whose summary is
    a string are stored (rejected) and shown as plain text or "unreadable (reason)"; every
    console page answers 200 without an injected element."""
    await federation.wait_ready()
    incident = f"SEC-{uuid.uuid4().hex[:6]}"
    markup = envelope(PEER, [TARGET], type=MARKUP, incident=incident)
    fmt = envelope(PEER, [TARGET], type="%(x)s", incident=incident)
    malformed = envelope(PEER, [TARGET], incident=incident,
                         body={**sitrep_body(incident), "summary": f"plain {MARKUP}"})
    bidi = envelope(PEER, [TARGET], incident=incident,
                    body={**sitrep_body(incident), "summary": {"en": "see gnp\u202e.exe"}})
    for env in (markup, fmt, malformed, bidi):
        await _inject(federation, env)
    stored = {e["id"]: await _stored(federation, e["id"]) for e in (markup, fmt, malformed, bidi)}
    assert stored[markup["id"]]["type"] == "unknown"  # only a type matching the pattern
    assert (stored[markup["id"]]["state"], stored[markup["id"]]["reason"]) == (
        "rejected", "unsupported_type")
    assert stored[fmt["id"]]["type"] == "unknown"
    assert (stored[malformed["id"]]["state"], stored[malformed["id"]]["reason"]) == (
        "rejected", "schema_invalid")
    for path in (*PAGES, f"/console/incidents/{incident}",
                 *(f"/console/messages/{i}" for i in stored)):
        page = await console_page(federation, TARGET, path)
        _no_injection(page)
    inbox = await console_page(federation, TARGET, "/console/inbox")
    assert re.search(r"unreadable</span>|unreadable \(summary", inbox)
    assert "gnp[U+202E].exe" in inbox
    assert "\u202e" not in inbox


async def test_links_from_a_peer_never_become_active(federation: Federation) -> None:
    """A CAP alert whose web link and resource URI are javascript: and data: URLs is
    delivered, and no page turns them into a link (peer text is shown as text)."""
    from pathlib import Path  # noqa: PLC0415

    from gateway.formats.cap import parse_cap  # noqa: PLC0415
    from gateway.protocol.alert import alert_json  # noqa: PLC0415

    await federation.wait_ready()
    cap = Path(__file__).resolve().parents[1] / "assets" / "cap" / "oasis-appendix-a1.xml"
    alert = alert_json(parse_cap(cap.read_bytes()))
    alert["infos"][0]["web"] = "javascript:alert(document.cookie)"
    alert["infos"][0]["resources"][0]["uri"] = "data:text/html,<script>alert(1)</script>"
    env = envelope(PEER, [TARGET], type="alert", body=alert, mode="actual")
    await _inject(federation, env)
    stored = await _stored(federation, env["id"])
    assert stored["state"] == "delivered", stored
    for path in ("/console/inbox", f"/console/messages/{env['id']}"):
        page = await console_page(federation, TARGET, path)
        assert 'href="javascript' not in page.lower()
        assert 'href="data:' not in page.lower()
        assert "<script>alert" not in page


async def test_the_console_forbids_base_and_foreign_form_targets(federation: Federation) -> None:
    """The CSP pins <base> and form targets, so even markup that got in could not send a
    form (CSRF token included) elsewhere."""
    import aiohttp  # noqa: PLC0415

    base = f"http://127.0.0.1:{federation.nodes[TARGET].port}"
    async with aiohttp.ClientSession() as http, http.get(f"{base}/console/login") as resp:
        csp = resp.headers["Content-Security-Policy"]
    assert "base-uri 'none'" in csp
    assert "form-action 'self'" in csp
    assert "script-src" not in csp or "'unsafe-inline'" not in csp
