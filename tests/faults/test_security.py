"""Hostile bytes injected into a node's inbox on the real broker (FAULTS.md rows 16-22, 26).

Each test publishes into NL-NCC's inbox with the credentials NL-NCC granted BE-NCCN
(what a peer, or an attacker holding its password, can do) and counts what NL-NCC
did with it: stored once, rejected with a signed receipt (reason code), or recorded as
a security event (reason code). See docs/PROTOCOL.md, "Reception".
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import subprocess
import sys
import tomllib
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.card import Card, CardKey, Inbox, sign_card
from gateway.protocol.keys import SigningKey, b64url_encode, public_key_text
from gateway.protocol.receipts import ReceiptState, receipt_envelope
from gateway.protocol.signing import GROUP_ORDER, context_for, signing_input
from gateway.protocol.types import Mode, Priority
from tests.faults.load import sitrep, tally
from tests.faults.report import FaultCounts, record
from tests.integration.harness import Federation, envelope, sealed, sitrep_body, wait_until

pytestmark = pytest.mark.broker

TARGET, PEER = "NL-NCC", "BE-NCCN"


async def last_seq(fed: Federation, centre: str) -> int:
    """The sequence number of ``centre``'s newest security event (0 if none)."""
    _, events = await fed.api(centre, "GET", "/v1/security-events?limit=1")
    return max((e["seq"] for e in events["items"]), default=0)


async def new_events(fed: Federation, centre: str, since: int, n: int) -> list[dict[str, Any]]:
    """Wait for ``n`` security events after ``since``; returns exactly those."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        _, events = await fed.api(centre, "GET", "/v1/security-events?limit=1000")
        found[:] = [e for e in events["items"] if e["seq"] > since]
        return len(found) >= n

    await wait_until(enough, 20, f"{n} security events at {centre}")
    await asyncio.sleep(0.5)  # one payload, one event: nothing more may follow
    _, events = await fed.api(centre, "GET", "/v1/security-events?limit=1000")
    found[:] = [e for e in events["items"] if e["seq"] > since]
    assert len(found) == n, f"expected {n} security events at {centre}, got {found}"
    return found


async def inbox_rows(fed: Federation, centre: str, message_id: str) -> list[dict[str, Any]]:
    """``centre``'s inbox rows (any state) for ``message_id``."""
    _, inbox = await fed.api(centre, "GET", "/v1/inbox?limit=1000")
    return [m for m in inbox["items"] if m["id"] == message_id]


async def rejected_with_receipt(fed: Federation, env: dict[str, Any], reason: str) -> None:
    """NL-NCC stores ``env`` as rejected with ``reason`` and sends BE-NCCN a signed
    receipt; BE-NCCN never sent the message, so it files the verified receipt as an
    unexpected receipt: proof that the signed rejection arrived."""
    message_id = env["id"]

    async def rejected() -> bool:
        rows = await inbox_rows(fed, TARGET, message_id)
        return any(m["state"] == "rejected" and m["reason"] == reason for m in rows)

    await wait_until(rejected, 20, f"{TARGET} rejecting {reason}")

    async def receipted() -> bool:
        _, events = await fed.api(PEER, "GET", "/v1/security-events?limit=1000")
        return any(e["reason"] == "unexpected_receipt" and e["claimed_sender"] == TARGET
                   and message_id in e["detail"] for e in events["items"])

    await wait_until(receipted, 20, f"{TARGET}'s signed rejected receipt at {PEER}")


async def accepted_once(fed: Federation, message_id: str) -> int:
    """Wait until NL-NCC holds ``message_id`` as delivered; returns its row count."""
    async def stored() -> bool:
        return any(m["state"] == "delivered" for m in await inbox_rows(fed, TARGET, message_id))

    await wait_until(stored, 20, f"{TARGET} accepting {message_id}")
    return len(await inbox_rows(fed, TARGET, message_id))


def log_events(log: Path, event: str, **match: str) -> int:
    """How many JSON log lines of ``log`` are ``event`` with the given fields."""
    seen = 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event and all(
                entry.get(k) == v for k, v in match.items()):
            seen += 1
    return seen


async def test_duplicate_delivery_has_one_effect_and_the_same_receipt(
        federation: Federation) -> None:
    """Row 16: BE-NCCN's delivered sitrep, injected three more times byte for byte,
    stays one inbox row; NL-NCC answers each copy with the receipt it already issued."""
    fed = federation
    await fed.wait_ready()
    incident = f"SEC-16-{uuid.uuid4().hex[:6]}"
    status, answer = await fed.api(PEER, "POST", "/v1/sitreps", sitrep(incident, 1, [TARGET]))
    assert status == 202, answer
    message_id = answer["id"]
    await accepted_once(fed, message_id)
    _, view = await fed.api(PEER, "GET", f"/v1/messages/{message_id}")
    wire = canonical_bytes({"envelope": view["envelope"], "signature": view["signature"]})
    copies = 3
    target_log, peer_log = fed.nodes[TARGET].log, fed.nodes[PEER].log
    for copy in range(1, copies + 1):  # one at a time: a receipt still queued is sent once
        await fed.inject(TARGET, PEER, wire)

        async def answered(copy: int = copy) -> bool:
            return log_events(peer_log, "receipt_applied", outcome="duplicate",
                              receipt_for=message_id) >= copy

        await wait_until(answered, 20, f"the same receipt again for copy {copy}")
    dedup = log_events(target_log, "message_ingested", outcome="duplicate", message_id=message_id)
    assert dedup == copies
    _, view = await fed.api(PEER, "GET", f"/v1/messages/{message_id}")
    assert len(view["receipts"]) == 1, "a copy produced a second, different receipt"
    counts = await tally(fed, 16, f"same bytes x{copies + 1}: {dedup} deduped, receipt re-sent",
                         PEER, [message_id], [TARGET], incident)
    record(counts)
    assert counts.delivered == 1


async def test_replay_after_dedup_window_is_rejected_stale(federation: Federation) -> None:
    """Row 17: a message signed by BE-NCCN 8 days ago (beyond the 7-day dedup window),
    replayed now, is rejected `stale` with a signed receipt."""
    fed = federation
    await fed.wait_ready()
    env = envelope(PEER, [TARGET], created=datetime.now(UTC) - timedelta(days=8),
                   lifetime=timedelta(days=7))
    await fed.inject(TARGET, PEER, sealed(env, fed.nodes[PEER].key()))
    await rejected_with_receipt(fed, env, "stale")
    assert len(await inbox_rows(fed, TARGET, env["id"])) == 1
    record(FaultCounts(17, "replay of an 8-day-old captured message",
                       rejected=Counter({"stale (signed receipt)": 1})))


async def test_tampering_is_refused_and_reordering_is_not(federation: Federation) -> None:
    """Row 18: a changed body field and 12 single-bit flips are all refused as security
    events; the same message with its keys reordered and re-indented is accepted."""
    fed = federation
    await fed.wait_ready()
    env = envelope(PEER, [TARGET], incident=f"SEC-18-{uuid.uuid4().hex[:6]}")
    wire = sealed(env, fed.nodes[PEER].key())
    since = await last_seq(fed, TARGET)
    changed = json.loads(wire)
    changed["envelope"]["body"]["severity"] = "extreme"
    await fed.inject(TARGET, PEER, canonical_bytes(changed))
    rng = random.Random(18)  # reproducible positions
    flips = 12
    for position in rng.sample(range(len(wire)), flips):
        flipped = bytearray(wire)
        flipped[position] ^= 1 << rng.randrange(7)  # stays ASCII
        await fed.inject(TARGET, PEER, bytes(flipped))
    events = await new_events(fed, TARGET, since, 1 + flips)
    assert events[-1]["reason"] == "bad_signature"  # the changed field (oldest of them)
    signed = json.loads(wire)
    reordered = {"signature": dict(reversed(list(signed["signature"].items()))),
                 "envelope": dict(reversed(list(signed["envelope"].items())))}
    await fed.inject(TARGET, PEER, json.dumps(reordered, indent=2).encode())
    stored = await accepted_once(fed, env["id"])
    record(FaultCounts(18, "tampered field, 12 bit flips; keys reordered", accepted=1,
                       delivered=1, duplicated=stored - 1,
                       rejected=Counter(e["reason"] for e in events)))


async def test_forged_sender_is_a_security_event(federation: Federation) -> None:
    """Row 19: LU-HCPN's signed message published with BE-NCCN's credentials, BE-NCCN's
    message with `from` rewritten, and a fresh key under BE-NCCN's key id: all refused,
    none stored, each logged as a security event naming the claimed sender."""
    fed = federation
    await fed.wait_ready()
    since = await last_seq(fed, TARGET)
    other = envelope("LU-HCPN", [TARGET])
    await fed.inject(TARGET, PEER, sealed(other, fed.nodes["LU-HCPN"].key()))
    moved = envelope(PEER, [TARGET])
    wire = json.loads(sealed(moved, fed.nodes[PEER].key()))
    wire["envelope"]["from"] = "LU-HCPN"
    await fed.inject(TARGET, "LU-HCPN", canonical_bytes(wire))
    real = fed.nodes[PEER].key()
    forged = envelope(PEER, [TARGET])
    await fed.inject(TARGET, PEER, sealed(forged, SigningKey(
        kid=real.kid, private=Ed25519PrivateKey.generate())))
    events = await new_events(fed, TARGET, since, 3)
    assert sorted(e["reason"] for e in events) == [
        "bad_signature", "sender_mismatch", "unknown_key"]
    assert {e["claimed_sender"] for e in events} == {"LU-HCPN", PEER}
    for env in (other, moved, forged):
        assert await inbox_rows(fed, TARGET, env["id"]) == []
    record(FaultCounts(19, "forged sender (other key, from changed, fresh key)",
                       rejected=Counter(e["reason"] for e in events)))


#: Ed25519 public keys that must never be pinned: small order, off-curve or
#: non-canonical points, and wrong lengths.
BAD_KEYS = {
    ("small order", "identity"): bytes([1]) + bytes(31),
    ("small order", "order 2"): bytes([0xEC]) + b"\xff" * 30 + bytes([0x7F]),
    ("small order", "order 4"): bytes(32),
    ("invalid point", "non-canonical y >= p"): bytes([0xED]) + b"\xff" * 30 + bytes([0x7F]),
    ("invalid point", "not on the curve"): bytes([2]) + bytes(31),
    ("wrong length", "31 bytes"): bytes(31),
}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60, check=False)


async def test_small_order_or_malformed_key_is_refused_at_enrolment(
        federation: Federation, tmp_path: Path) -> None:
    """Row 20: an identity card listing a small-order, off-curve, non-canonical or short
    key (properly self-signed by a good key) is refused by `crisisgw peers add`; the
    same key written into a running node's configuration is refused by its reload."""
    fed = federation
    await fed.wait_ready()
    config = fed.nodes[TARGET].config
    original = config.read_bytes()
    signer = SigningKey(kid="XX-EVIL.k1", private=Ed25519PrivateKey.generate())
    refused: Counter[str] = Counter()
    for label, key_bytes in BAD_KEYS.items():
        card = Card(centre="XX-EVIL", name="Evil", country="XX",
                    keys=(CardKey(kid=signer.kid, public_key=public_key_text(signer.public())),
                          CardKey(kid="XX-EVIL.k2", public_key=b64url_encode(key_bytes))),
                    inbox=Inbox(host="127.0.0.1", port=5672, vhost="evil"),
                    issued=datetime.now(UTC))
        path = tmp_path / f"card-{len(refused)}.json"
        path.write_bytes(sign_card(card, signer))
        done = _cli("peers", "add", str(path), "-c", str(config), "--yes")
        assert done.returncode == 2, (label, done.stdout, done.stderr)
        assert "key" in done.stderr
        refused[f"card: {label[0]}"] += 1
    assert config.read_bytes() == original
    # An operator pasting a small-order key into the file of the running node:
    doc = tomllib.loads(original.decode())
    [peer] = [p for p in doc["peers"] if p["id"] == PEER]
    peer["keys"].append({"kid": f"{PEER}.evil",
                         "public_key": b64url_encode(BAD_KEYS["small order", "identity"])})
    reloads_before = log_events(fed.nodes[TARGET].log, "config_reload_refused")
    try:
        config.write_text(tomli_w.dumps(doc))

        async def refused_reload() -> bool:
            return log_events(fed.nodes[TARGET].log, "config_reload_refused") > reloads_before

        await wait_until(refused_reload, 15, "the reload refusing the small-order key")
        _, peers = await fed.api(TARGET, "GET", "/v1/peers")
        kids = [k["kid"] for p in peers["peers"] if p["id"] == PEER for k in p["keys"]]
        assert kids
        assert f"{PEER}.evil" not in kids
        refused["reload: small order"] += 1
    finally:
        config.write_bytes(original)
    record(FaultCounts(20, "small-order / malformed Ed25519 key at enrolment",
                       rejected=refused))


async def test_signature_with_s_not_below_l_is_refused(federation: Federation) -> None:
    """Row 21: a valid signature with L added to its scalar S (same group element, so a
    lax verifier accepts it) is refused as `bad_signature`; the original is accepted."""
    fed = federation
    await fed.wait_ready()
    env = envelope(PEER, [TARGET])
    wire = json.loads(sealed(env, fed.nodes[PEER].key()))
    sig = base64.urlsafe_b64decode(wire["signature"]["value"] + "==")
    s = int.from_bytes(sig[32:], "little")
    malleable = sig[:32] + (s + GROUP_ORDER).to_bytes(32, "little")
    since = await last_seq(fed, TARGET)
    bad = {**wire, "signature": {**wire["signature"], "value": b64url_encode(malleable)}}
    await fed.inject(TARGET, PEER, canonical_bytes(bad))
    [event] = await new_events(fed, TARGET, since, 1)
    assert event["reason"] == "bad_signature"
    assert "not below L" in event["detail"]
    assert await inbox_rows(fed, TARGET, env["id"]) == []
    await fed.inject(TARGET, PEER, canonical_bytes(wire))
    stored = await accepted_once(fed, env["id"])
    record(FaultCounts(21, "signature with S + L (malleated)", accepted=1, delivered=1,
                       duplicated=stored - 1, rejected=Counter({"bad_signature (S >= L)": 1})))


async def test_receipt_and_message_signatures_are_not_interchangeable(
        federation: Federation) -> None:
    """Row 22: a sitrep signed under the receipt context and a receipt signed under the
    message context are both refused (domain separation)."""
    fed = federation
    await fed.wait_ready()
    key = fed.nodes[PEER].key()

    def signed_as(env: dict[str, Any], context: bytes) -> bytes:
        sig = key.private.sign(signing_input(canonical_bytes(env), context))
        return canonical_bytes({"envelope": env, "signature": {
            "alg": "Ed25519", "kid": key.kid, "value": b64url_encode(sig)}})

    since = await last_seq(fed, TARGET)
    message = envelope(PEER, [TARGET])
    assert context_for("sitrep") != context_for("receipt")
    await fed.inject(TARGET, PEER, signed_as(message, context_for("receipt")))
    receipt = receipt_envelope(
        receipt_id=uuid.uuid4(), issuer=PEER, sender=TARGET, message_id=str(uuid.uuid4()),
        digest="0" * 64, state=ReceiptState.DELIVERED, now=datetime.now(UTC),
        mode=Mode.TEST, priority=Priority.ROUTINE)
    await fed.inject(TARGET, PEER, signed_as(receipt, context_for("sitrep")))
    events = await new_events(fed, TARGET, since, 2)
    assert [e["reason"] for e in events] == ["bad_signature", "bad_signature"]
    assert {e["claimed_id"] for e in events} == {message["id"], receipt["id"]}
    assert await inbox_rows(fed, TARGET, message["id"]) == []
    record(FaultCounts(22, "receipt signature as message's and vice versa",
                       rejected=Counter(f"{e['reason']} (domain)" for e in events)))


async def test_clock_skew_beyond_tolerance_is_rejected_with_reason(
        federation: Federation) -> None:
    """Row 26: created 1 h ahead (`future_dated`), 8 days ago (`stale`), expired a day
    ago (`expired`): each rejected with its reason and a signed receipt; 2 minutes ahead,
    within the 5-minute tolerance, is accepted."""
    fed = federation
    await fed.wait_ready()
    key = fed.nodes[PEER].key()
    now = datetime.now(UTC)
    cases = {
        "future_dated": envelope(PEER, [TARGET], created=now + timedelta(hours=1)),
        "stale": envelope(PEER, [TARGET], created=now - timedelta(days=8),
                          lifetime=timedelta(days=7)),
        "expired": envelope(PEER, [TARGET], created=now - timedelta(days=2),
                            lifetime=timedelta(days=1)),
    }
    within = envelope(PEER, [TARGET], created=now + timedelta(minutes=2),
                      body=sitrep_body("SEC-26"))
    for env in [*cases.values(), within]:
        await fed.inject(TARGET, PEER, sealed(env, key))
    for reason, env in cases.items():
        await rejected_with_receipt(fed, env, reason)
    stored = await accepted_once(fed, within["id"])
    record(FaultCounts(26, "clock skew: future, stale, expired; +2 min ok", accepted=1,
                       delivered=1, duplicated=stored - 1,
                       rejected=Counter(f"{r} (signed receipt)" for r in cases)))
