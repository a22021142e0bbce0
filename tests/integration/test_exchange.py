"""Delivery, receipts, acknowledgement and dedup between real nodes on the real broker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.protocol.canonical import canonical_bytes
from tests.integration.harness import EXAMPLE, Federation, wait_until

pytestmark = pytest.mark.broker
PEERS = ("NL-NCC", "LU-HCPN", "DE-NW")


async def _states(fed: Federation, message_id: str) -> dict[str, str]:
    status, view = await fed.api("BE-NCCN", "GET", f"/v1/messages/{message_id}")
    assert status == 200, view
    return {r["centre"]: r["state"] for r in view["recipients"]}


async def _submit(fed: Federation, body: dict[str, Any], **headers: str) -> str:
    status, answer = await fed.api("BE-NCCN", "POST", "/v1/sitreps", body, headers=headers)
    assert status == 202, answer
    return str(answer["id"])


async def _inbox_count(fed: Federation, centre: str, message_id: str) -> int:
    status, inbox = await fed.api(centre, "GET", "/v1/inbox?limit=1000")
    assert status == 200, inbox
    return sum(1 for m in inbox["items"] if m["id"] == message_id)


async def test_example_reaches_delivered_for_all_peers_and_each_inbox_once(
        federation: Federation) -> None:
    """The README example reaches `delivered` at all three peers; each inbox has it once."""
    await federation.wait_ready()
    message_id = await _submit(federation, EXAMPLE)

    async def delivered() -> bool:
        return set((await _states(federation, message_id)).values()) == {"delivered"}

    await wait_until(delivered, 15, "delivered receipts from all peers")
    for centre in PEERS:
        assert await _inbox_count(federation, centre, message_id) == 1
        _, inbox = await federation.api(centre, "GET", "/v1/inbox?from=BE-NCCN")
        item = next(m for m in inbox["items"] if m["id"] == message_id)
        assert item["from"] == "BE-NCCN"
        assert item["type"] == "sitrep"
        assert item["body"]["summary"] == {"und": "Water levels rising at Liège."}
    _, view = await federation.api("BE-NCCN", "GET", f"/v1/messages/{message_id}")
    assert {r["issuer"] for r in view["receipts"]} == set(PEERS)
    assert all(r["signed"]["envelope"]["body"]["message_sha256"] == view["sha256"]
               for r in view["receipts"])


async def test_acknowledgement_at_peer_turns_state_acknowledged_at_sender(
        federation: Federation) -> None:
    """POST /v1/messages/{id}/ack at NL-NCC makes BE-NCCN show NL-NCC `acknowledged`."""
    await federation.wait_ready()
    message_id = await _submit(federation, EXAMPLE)

    async def delivered_at_nl() -> bool:
        return await _inbox_count(federation, "NL-NCC", message_id) == 1

    await wait_until(delivered_at_nl, 15, "arrival at NL-NCC")
    status, entry = await federation.api("NL-NCC", "POST", f"/v1/messages/{message_id}/ack",
                                         {"by": "duty officer NL"})
    assert status == 200, entry
    assert entry["state"] == "acknowledged"
    assert entry["acknowledged_by"] == "duty officer NL"

    async def acked() -> bool:
        return (await _states(federation, message_id)).get("NL-NCC") == "acknowledged"

    await wait_until(acked, 15, "acknowledged state at BE-NCCN")
    states = await _states(federation, message_id)
    assert states["LU-HCPN"] in {"sent", "delivered"}
    again_status, again = await federation.api("NL-NCC", "POST",
                                               f"/v1/messages/{message_id}/ack")
    assert again_status == 200
    assert again["acknowledged_by"] == "duty officer NL"


async def test_republished_message_is_deduplicated_and_answered_with_same_receipt(
        federation: Federation) -> None:
    """Publishing the same signed bytes again gives one inbox entry and the same receipt."""
    await federation.wait_ready()
    message_id = await _submit(federation, EXAMPLE)

    async def delivered() -> bool:
        return (await _states(federation, message_id)).get("NL-NCC") == "delivered"

    await wait_until(delivered, 15, "delivered at NL-NCC")
    _, view = await federation.api("BE-NCCN", "GET", f"/v1/messages/{message_id}")
    wire = canonical_bytes({"envelope": view["envelope"], "signature": view["signature"]})
    receipts_before = [r for r in view["receipts"] if r["issuer"] == "NL-NCC"]
    for _ in range(3):
        await federation.inject("NL-NCC", "BE-NCCN", wire)

    async def three_duplicates() -> bool:
        _, metrics = await federation.api("NL-NCC", "GET", "/metrics")
        return 'outcome="duplicate_delivered"' in metrics and any(
            line.startswith('crisisgw_ingested_total{kind="sitrep",outcome="duplicate_delivered"}')
            and float(line.rsplit(" ", 1)[1]) >= 3 for line in metrics.splitlines())

    await wait_until(three_duplicates, 15, "three duplicates seen by NL-NCC")
    assert await _inbox_count(federation, "NL-NCC", message_id) == 1
    _, view = await federation.api("BE-NCCN", "GET", f"/v1/messages/{message_id}")
    receipts_after = [r for r in view["receipts"] if r["issuer"] == "NL-NCC"]
    assert [r["id"] for r in receipts_after] == [r["id"] for r in receipts_before]
    _, events = await federation.api("BE-NCCN", "GET", "/v1/security-events")
    assert not [e for e in events["items"] if message_id in json.dumps(e)]


async def test_idempotency_key_returns_same_id(federation: Federation) -> None:
    """A retried submission with the same Idempotency-Key yields the same message id."""
    await federation.wait_ready()
    first = await _submit(federation, EXAMPLE, **{"Idempotency-Key": "retry-123"})
    second = await _submit(federation, EXAMPLE, **{"Idempotency-Key": "retry-123"})
    assert first == second
    status, problem = await federation.api(
        "BE-NCCN", "POST", "/v1/sitreps", {**EXAMPLE, "tlp": "AMBER"},
        headers={"Idempotency-Key": "retry-123"})
    assert status == 422
    assert "Idempotency-Key" in problem["detail"]
