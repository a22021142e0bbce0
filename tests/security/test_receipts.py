"""A peer's receipt must be plausible in time (finding 9): dated before the message, or
after the receipt itself was made, it is refused as a security event and changes
nothing; the console shows when each receipt was received."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.protocol.types import format_time
from tests.integration.harness import (
    EXAMPLE,
    Federation,
    console_page,
    sealed,
    wait_until,
)

pytestmark = pytest.mark.broker
SENDER, PEER = "BE-NCCN", "NL-NCC"


def _receipt(message: dict[str, Any], *, at: datetime, created: datetime) -> dict[str, Any]:
    return {"v": 1, "id": str(uuid.uuid4()), "type": "receipt", "from": PEER, "to": [SENDER],
            "created": format_time(created), "expires": format_time(created + timedelta(days=7)),
            "mode": "actual", "tlp": "CLEAR", "priority": "routine",
            "body": {"message_id": message["id"], "message_sha256": message["digest"],
                     "state": "rejected", "reason": "policy", "detail": "forged",
                     "at": format_time(at)}}


async def test_receipts_dated_outside_the_message_and_receipt_are_refused(
        federation: Federation) -> None:
    """NL-NCC's (signed) receipts saying "rejected" two days before BE-NCCN's message
    existed, or later than the receipt itself, do not touch the delivered state."""
    await federation.wait_ready()
    status, answer = await federation.api(SENDER, "POST", "/v1/sitreps",
                                          {**EXAMPLE, "to": [PEER]})
    assert status == 202

    async def delivered() -> bool:
        _, view = await federation.api(SENDER, "GET", f"/v1/messages/{answer['id']}")
        return view["recipients"][0]["state"] == "delivered"
    await wait_until(delivered, 20, "the sitrep delivered")
    _, view = await federation.api(SENDER, "GET", f"/v1/messages/{answer['id']}")
    created = datetime.fromisoformat(view["envelope"]["created"].replace("Z", "+00:00"))
    message = {"id": answer["id"], "digest": view["sha256"]}
    now = datetime.now(UTC)
    early = _receipt(message, at=created - timedelta(days=2), created=now)
    late = _receipt(message, at=now + timedelta(minutes=1), created=now)
    key = federation.nodes[PEER].key()
    for forged in (early, late):
        await federation.inject(SENDER, PEER, sealed(forged, key))

    async def refused() -> bool:
        _, events = await federation.api(SENDER, "GET", "/v1/security-events")
        ids = {e["claimed_id"]: e for e in events["items"]}
        return early["id"] in ids and late["id"] in ids
    await wait_until(refused, 20, "both receipts recorded as security events")
    _, events = await federation.api(SENDER, "GET", "/v1/security-events")
    by_id = {e["claimed_id"]: e for e in events["items"]}
    assert by_id[early["id"]]["reason"] == "unexpected_receipt"
    assert "before the message was created" in by_id[early["id"]]["detail"]
    assert by_id[late["id"]]["reason"] == "schema_invalid"
    _, view = await federation.api(SENDER, "GET", f"/v1/messages/{answer['id']}")
    assert view["recipients"][0]["state"] == "delivered"
    assert {r["id"] for r in view["receipts"]}.isdisjoint({early["id"], late["id"]})
    page = await console_page(federation, SENDER, f"/console/messages/{answer['id']}")
    genuine = view["receipts"][0]
    assert genuine["received_at"] in page
