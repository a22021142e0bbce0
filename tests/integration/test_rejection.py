"""Hostile or broken input injected straight into an inbox queue on the real broker.

Authentic but unacceptable messages are answered with a signed `rejected` receipt
(which reaches the claimed sender); input whose sender cannot be authenticated is
recorded as a security event and never answered. See docs/PROTOCOL.md, "Reception".
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.keys import SigningKey
from gateway.protocol.signing import context_for, signing_input
from tests.integration.harness import Federation, envelope, sealed, wait_until

pytestmark = pytest.mark.broker


async def _security_event(fed: Federation, centre: str, needle: str, reason: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def seen() -> bool:
        _, events = await fed.api(centre, "GET", "/v1/security-events?limit=1000")
        for e in events["items"]:
            if e["reason"] == reason and needle in json.dumps(e):
                found.update(e)
                return True
        return False

    await wait_until(seen, 15, f"security event {reason} at {centre}")
    return found


async def _rejected_with_receipt(fed: Federation, env: dict[str, Any], reason: str) -> None:
    """NL-NCC records the message as rejected with ``reason`` and sends a signed receipt to
    BE-NCCN; BE-NCCN never sent that message, so it verifies the receipt and files it as
    an unexpected receipt (proof that the signed rejection arrived)."""
    message_id = env["id"]

    async def rejected() -> bool:
        _, inbox = await fed.api("NL-NCC", "GET", "/v1/inbox?state=rejected&limit=1000")
        return any(m["id"] == message_id and m["reason"] == reason for m in inbox["items"])

    await wait_until(rejected, 15, f"NL-NCC rejecting {reason}")
    event = await _security_event(fed, "BE-NCCN", message_id, "unexpected_receipt")
    assert event["claimed_sender"] == "NL-NCC"


async def test_tampered_payload_is_a_security_event(federation: Federation) -> None:
    """A signed message with one body field changed after signing is refused, unanswered."""
    await federation.wait_ready()
    env = envelope("BE-NCCN", ["NL-NCC"])
    wire = json.loads(sealed(env, federation.nodes["BE-NCCN"].key()))
    wire["envelope"]["body"]["severity"] = "extreme"
    await federation.inject("NL-NCC", "BE-NCCN", canonical_bytes(wire))
    await _security_event(federation, "NL-NCC", env["id"], "bad_signature")
    _, inbox = await federation.api("NL-NCC", "GET", "/v1/inbox?limit=1000")
    assert env["id"] not in {m["id"] for m in inbox["items"]}


async def test_flipped_byte_is_refused(federation: Federation) -> None:
    """A single flipped byte in the wire never yields an accepted message."""
    await federation.wait_ready()
    env = envelope("BE-NCCN", ["NL-NCC"])
    wire = bytearray(sealed(env, federation.nodes["BE-NCCN"].key()))
    position = wire.index(b"report 1")
    wire[position] ^= 0x01
    await federation.inject("NL-NCC", "BE-NCCN", bytes(wire))
    await _security_event(federation, "NL-NCC", "BE-NCCN", "bad_signature")
    _, inbox = await federation.api("NL-NCC", "GET", "/v1/inbox?limit=1000")
    assert env["id"] not in {m["id"] for m in inbox["items"]}


async def test_reordered_keys_still_verify(federation: Federation) -> None:
    """Key order is not significant: a re-serialised message is accepted (canonical form)."""
    await federation.wait_ready()
    env = envelope("BE-NCCN", ["NL-NCC"])
    signed = json.loads(sealed(env, federation.nodes["BE-NCCN"].key()))
    reordered = {"signature": signed["signature"],
                 "envelope": dict(reversed(list(signed["envelope"].items())))}
    await federation.inject("NL-NCC", "BE-NCCN", json.dumps(reordered, indent=1).encode())

    async def accepted() -> bool:
        _, inbox = await federation.api("NL-NCC", "GET", "/v1/inbox?limit=1000")
        return any(m["id"] == env["id"] and m["state"] == "delivered" for m in inbox["items"])

    await wait_until(accepted, 15, "acceptance of the reordered message")


async def test_forged_signature_with_unpinned_key_is_refused(federation: Federation) -> None:
    """A message claiming BE-NCCN, signed with a fresh key under BE-NCCN's key id."""
    await federation.wait_ready()
    real = federation.nodes["BE-NCCN"].key()
    forger = SigningKey(kid=real.kid, private=Ed25519PrivateKey.generate())
    env = envelope("BE-NCCN", ["NL-NCC"])
    await federation.inject("NL-NCC", "BE-NCCN", sealed(env, forger))
    await _security_event(federation, "NL-NCC", "BE-NCCN", "bad_signature")


async def test_message_signed_by_another_peer_is_refused(federation: Federation) -> None:
    """LU-HCPN's key and `from: LU-HCPN`, published with BE-NCCN's credentials."""
    await federation.wait_ready()
    env = envelope("LU-HCPN", ["NL-NCC"])
    await federation.inject("NL-NCC", "BE-NCCN", sealed(env, federation.nodes["LU-HCPN"].key()))
    event = await _security_event(federation, "NL-NCC", "LU-HCPN", "sender_mismatch")
    assert event["claimed_sender"] == "LU-HCPN"


async def test_from_changed_is_refused(federation: Federation) -> None:
    """BE-NCCN's signed message with `from` rewritten to LU-HCPN does not verify."""
    await federation.wait_ready()
    env = envelope("BE-NCCN", ["NL-NCC"])
    wire = json.loads(sealed(env, federation.nodes["BE-NCCN"].key()))
    wire["envelope"]["from"] = "LU-HCPN"
    await federation.inject("NL-NCC", "LU-HCPN", canonical_bytes(wire))
    await _security_event(federation, "NL-NCC", env["id"], "unknown_key")


async def test_receipt_signature_cannot_pass_as_message_signature(
        federation: Federation) -> None:
    """A sitrep signed under the receipt context is refused (domain separation)."""
    await federation.wait_ready()
    key = federation.nodes["BE-NCCN"].key()
    env = envelope("BE-NCCN", ["NL-NCC"])
    sig = key.private.sign(signing_input(canonical_bytes(env), context_for("receipt")))
    wire = canonical_bytes({"envelope": env, "signature": {
        "alg": "Ed25519", "kid": key.kid,
        "value": base64.urlsafe_b64encode(sig).rstrip(b"=").decode()}})
    await federation.inject("NL-NCC", "BE-NCCN", wire)
    await _security_event(federation, "NL-NCC", env["id"], "bad_signature")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"envelope": {"from": "BE-NCCN"}, "envelope": {}, "signature": {}}', "not_ijson"),
        (b'{"envelope": {"v": NaN}, "signature": {}}', "not_ijson"),
        (b'{"envelope": {"v": 18014398509481984}, "signature": {}}', "not_ijson"),
        (b"\xff\xfe garbage", "not_ijson"),
        (b'{"hello": "world"}', "malformed"),
    ],
)
async def test_non_ijson_and_malformed_payloads_are_security_events(
        federation: Federation, raw: bytes, reason: str) -> None:
    """Duplicate keys, NaN, huge integers, non-UTF-8, wrong shape: recorded, never answered."""
    await federation.wait_ready()
    _, before = await federation.api("NL-NCC", "GET", "/v1/security-events?limit=1000")
    await federation.inject("NL-NCC", "BE-NCCN", raw)

    async def recorded() -> bool:
        _, after = await federation.api("NL-NCC", "GET", "/v1/security-events?limit=1000")
        return len([e for e in after["items"] if e["reason"] == reason]) > len(
            [e for e in before["items"] if e["reason"] == reason])

    await wait_until(recorded, 15, f"{reason} security event")


async def test_schema_invalid_message_gets_signed_rejected_receipt(
        federation: Federation) -> None:
    """Authentic message whose body lacks `severity`: rejected `schema_invalid`, receipted."""
    await federation.wait_ready()
    body = {"incident": {"id": "X-1", "title": "t"}, "report_number": 1,
            "summary": {"en": "no severity"}}
    env = envelope("BE-NCCN", ["NL-NCC"], body=body)
    await federation.inject("NL-NCC", "BE-NCCN", sealed(env, federation.nodes["BE-NCCN"].key()))
    await _rejected_with_receipt(federation, env, "schema_invalid")


async def test_message_not_addressed_to_us_is_rejected(federation: Federation) -> None:
    """A message for LU-HCPN only, dropped into NL-NCC's inbox: rejected `not_addressed`."""
    await federation.wait_ready()
    env = envelope("BE-NCCN", ["LU-HCPN"])
    await federation.inject("NL-NCC", "BE-NCCN", sealed(env, federation.nodes["BE-NCCN"].key()))
    await _rejected_with_receipt(federation, env, "not_addressed")


@pytest.mark.parametrize(
    ("created", "lifetime", "reason"),
    [
        (timedelta(days=-8), timedelta(days=1), "stale"),
        (timedelta(days=-2), timedelta(days=1), "expired"),
        (timedelta(hours=1), timedelta(hours=2), "future_dated"),
    ],
)
async def test_replayed_or_skewed_message_is_rejected_with_reason(
        federation: Federation, created: timedelta, lifetime: timedelta, reason: str) -> None:
    """A captured message replayed after the dedup window, an expired one, a future one."""
    await federation.wait_ready()
    env = envelope("BE-NCCN", ["NL-NCC"], created=datetime.now(UTC) + created,
                   lifetime=lifetime)
    await federation.inject("NL-NCC", "BE-NCCN", sealed(env, federation.nodes["BE-NCCN"].key()))
    await _rejected_with_receipt(federation, env, reason)


async def test_unknown_version_and_type_are_rejected_with_receipt(
        federation: Federation) -> None:
    """`v: 2` and `type: "weather"` are answered `unsupported_version` / `unsupported_type`."""
    await federation.wait_ready()
    key = federation.nodes["BE-NCCN"].key()
    v2 = envelope("BE-NCCN", ["NL-NCC"], v=2)
    weather = envelope("BE-NCCN", ["NL-NCC"], type="weather")
    await federation.inject("NL-NCC", "BE-NCCN", sealed(v2, key))
    await federation.inject("NL-NCC", "BE-NCCN", sealed(weather, key))
    await _rejected_with_receipt(federation, v2, "unsupported_version")
    await _rejected_with_receipt(federation, weather, "unsupported_type")
