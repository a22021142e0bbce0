"""The federated contact directory: signed updates, federation-wide view, field groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.config import update_config
from tests.integration.harness import EXAMPLE, Federation, wait_until

pytestmark = pytest.mark.broker


async def _nl_entries(fed: Federation, centre: str) -> list[dict[str, Any]]:
    _, directory = await fed.api(centre, "GET", "/v1/directory")
    return [e for e in directory["items"] if e["centre"] == "NL-NCC"]


async def test_directory_update_from_nl_shows_up_at_lu(federation: Federation) -> None:
    """NL-NCC changes its contact points; LU-HCPN's overview shows the change (and flags
    an entry not re-confirmed for 90 days); `field:` addresses every centre of a field."""
    await federation.wait_ready()
    old = (datetime.now(UTC) - timedelta(days=100)).date().isoformat()

    def change(raw: dict[str, Any]) -> None:
        raw["directory"][0]["phone"] = "+31 70 123 45 67"
        raw["directory"].append({
            "field": "nuclear-radiological", "name": "NL nuclear desk", "phone": "+31 70 7",
            "email": "nuclear@nlncc.example", "languages": ["nl", "en"],
            "available_24_7": False, "confirmed": old})

    update_config(federation.nodes["NL-NCC"].config, change)

    async def arrived() -> bool:
        entries = await _nl_entries(federation, "LU-HCPN")
        return any(e["phone"] == "+31 70 123 45 67" for e in entries) and \
            any(e["field"] == "nuclear-radiological" for e in entries)

    await wait_until(arrived, 20, "NL-NCC's new contact points at LU-HCPN")
    entries = {e["field"]: e for e in await _nl_entries(federation, "LU-HCPN")}
    assert entries["nuclear-radiological"]["stale"] is True
    assert entries["crisis-communication"]["stale"] is False
    status, csv_text = await federation.api("LU-HCPN", "GET", "/v1/directory.csv")
    assert status == 200
    assert "+31 70 123 45 67" in csv_text
    status, page = await federation.api("LU-HCPN", "GET", "/v1/directory.html")
    assert status == 200
    assert "re-confirm" in page
    status, answer = await federation.api("LU-HCPN", "POST", "/v1/sitreps", {
        **EXAMPLE, "to": ["field:crisis-communication"]})
    assert status == 202, answer
    _, view = await federation.api("LU-HCPN", "GET", f"/v1/messages/{answer['id']}")
    assert sorted(r["centre"] for r in view["recipients"]) == ["BE-NCCN", "DE-NW", "NL-NCC"]
    status, refused = await federation.api("LU-HCPN", "POST", "/v1/sitreps", {
        **EXAMPLE, "to": ["field:astrology"]})
    assert status == 422
    assert "field:astrology" in refused["detail"]


async def test_a_contact_list_is_acknowledged_by_the_node_that_applied_it(
        federation: Federation) -> None:
    """A directory message needs no duty officer: the receiving node acknowledges it
    itself once stored ("applied automatically"), so it waits in no inbox and the
    sender sees it acknowledged."""
    await federation.wait_ready()
    status, answer = await federation.api("NL-NCC", "POST", "/v1/directory/publish")
    assert status == 202
    message_id = answer["id"]

    async def acknowledged_everywhere() -> bool:
        _, view = await federation.api("NL-NCC", "GET", f"/v1/messages/{message_id}")
        return bool(view.get("recipients")) and all(
            r["state"] == "acknowledged" for r in view["recipients"])

    await wait_until(acknowledged_everywhere, 30, "the contact list acknowledged by all")
    _, at_lu = await federation.api("LU-HCPN", "GET", f"/v1/messages/{message_id}")
    assert at_lu["state"] == "acknowledged"
    assert at_lu["acknowledged_by"] == "applied automatically"
    _, waiting = await federation.api("LU-HCPN", "GET", "/v1/inbox?state=delivered")
    assert all(m["type"] not in ("directory", "key-update") for m in waiting["items"])
