"""Offline verification of evidence bundles (pure core), on bundles built here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.protocol.auditlog import GENESIS, content_bytes, link, sha256_hex, sign_checkpoint
from gateway.protocol.evidence import BundleRefused, seal_bundle, verify_bundle
from gateway.protocol.keys import (
    KeyRing,
    PinnedKey,
    SigningKey,
    b64url_encode,
    default_key_id,
    public_key_text,
)
from gateway.protocol.receipts import ReceiptState, receipt_envelope
from gateway.protocol.signing import seal
from gateway.protocol.types import Mode, Priority, format_time

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def make_key(centre: str) -> SigningKey:
    """A fresh key for ``centre``."""
    private = Ed25519PrivateKey.generate()
    return SigningKey(kid=default_key_id(centre, private.public_key()), private=private)


BE, NL = make_key("BE-NCCN"), make_key("NL-NCC")


def message() -> tuple[bytes, str, str]:
    """A sitrep from BE-NCCN to NL-NCC: (wire, id, digest)."""
    mid = str(uuid.uuid4())
    env = {"v": 1, "id": mid, "type": "sitrep", "from": "BE-NCCN", "to": ["NL-NCC"],
           "created": format_time(NOW), "expires": format_time(NOW + timedelta(hours=1)),
           "mode": "actual", "tlp": "GREEN", "priority": "urgent", "incident": "BE-1",
           "body": {"incident": {"id": "BE-1", "title": "Flood"}, "report_number": 1,
                    "severity": "severe", "summary": {"en": "Dyke breach"}}}
    sealed = seal(env, BE)
    return sealed.wire, mid, sealed.digest


def receipt(mid: str, digest: str, state: ReceiptState, key: SigningKey = NL,
            **extra: Any) -> bytes:
    """A receipt from NL-NCC for ``mid``."""
    env = receipt_envelope(receipt_id=uuid.uuid4(), issuer="NL-NCC", sender="BE-NCCN",
                           message_id=mid, digest=digest, state=state,
                           now=NOW + timedelta(seconds=2), mode=Mode.ACTUAL,
                           priority=Priority.URGENT, **extra)
    return seal(env, key).wire


def build(tweak: Callable[[dict[str, Any]], None] | None = None,
          key: SigningKey = BE) -> tuple[bytes, str]:
    """A bundle exported by BE-NCCN: message, a delivered and an acknowledged receipt,
    the audit entries about the message among unrelated ones, a checkpoint."""
    wire, mid, digest = message()
    receipts = [receipt(mid, digest, ReceiptState.DELIVERED),
                receipt(mid, digest, ReceiptState.ACKNOWLEDGED, by="officer Jansen")]
    plan: list[tuple[str, str, str, dict[str, Any]]] = [("login", "duty", "127.0.0.1", {}),
            ("message.submitted", "centre-system", mid, {"sha256": digest, "to": ["NL-NCC"]}),
            ("delivery.state", "ledger", "other-message", {"state": "sent"}),
            ("receipt.received", "NL-NCC", mid, {"wire_sha256": sha256_hex(receipts[0])}),
            ("receipt.received", "NL-NCC", mid, {"wire_sha256": sha256_hex(receipts[1])}),
            ("login", "duty", "127.0.0.1", {})]
    contents, hashes, prev = [], [], GENESIS
    for seq, (kind, actor, subject, data) in enumerate(plan, 1):
        content = content_bytes(seq, NOW, kind, actor, subject, data)
        contents.append(content)
        hashes.append(sha256_hex(content))
        prev = link(prev, hashes[-1])
    checkpoint = sign_checkpoint("BE-NCCN", len(plan), prev, NOW, BE)
    first = 2
    bundle: dict[str, Any] = {
        "v": 1, "type": "evidence-bundle", "exported_by": "BE-NCCN",
        "exported_at": format_time(NOW), "message": b64url_encode(wire),
        "receipts": [b64url_encode(r) for r in receipts],
        "keys": [{"centre": "BE-NCCN", "kid": BE.kid, "public_key": public_key_text(BE.public())},
                 {"centre": "NL-NCC", "kid": NL.kid, "public_key": public_key_text(NL.public())}],
        "audit": {"entries": [c.decode() for c in contents if mid.encode() in c],
                  "first_seq": first, "prev": link(GENESIS, hashes[0]),
                  "links": hashes[first - 1:],
                  "checkpoint": json.loads(checkpoint)},
    }
    if tweak is not None:
        tweak(bundle)
    return seal_bundle(bundle, key), mid


def test_a_complete_bundle_verifies_and_tells_the_story() -> None:
    """Sender, recipient, delivery, acknowledgement and the audit trail are all reported."""
    data, mid = build()
    verdict = verify_bundle(data)
    assert verdict.message_id == mid
    assert verdict.sender == "BE-NCCN"
    outcome = verdict.outcomes["NL-NCC"]
    assert outcome.delivered_at is not None
    assert outcome.acknowledged_by == "officer Jansen"
    text = "\n".join(verdict.lines())
    assert "VERIFIED" in text
    assert "NL-NCC: delivered" in text
    assert "acknowledged" in text
    assert "checkpoint #6" in text
    assert [e["seq"] for e in verdict.audit_entries] == [2, 4, 5]


def test_every_flipped_byte_is_refused_with_a_reason() -> None:
    """Flipping the low bit of every byte (and a case bit of every 25th) is refused."""
    data, _ = build()
    for i in range(len(data)):
        for bit in (0x01, 0x20) if i % 25 == 0 else (0x01,):
            flipped = bytearray(data)
            flipped[i] ^= bit
            with pytest.raises(BundleRefused) as refused:
                verify_bundle(bytes(flipped))
            assert len(str(refused.value)) > 10


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def tweak(bundle: dict[str, Any]) -> None:
        target = bundle
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return tweak


@pytest.mark.parametrize(("tweak", "words"), [
    (lambda b: b["receipts"].append(b["receipts"][0][:-4] + "AAAA"), "receipt 3"),
    (lambda b: b["audit"]["entries"].pop(), "not recorded in the exporter's audit log"),
    (lambda b: b["audit"]["links"].pop(), "do not reach the checkpoint"),
    (lambda b: b["audit"]["links"].__setitem__(0, "00" * 32), "do not lead to the signed"),
    (lambda b: b["audit"].__setitem__("prev", "11" * 32), "do not lead to the signed"),
    (lambda b: b["keys"].pop(), "no keys pinned for 'NL-NCC'"),
    (lambda b: b.__setitem__("message", b["receipts"][0]), "is a receipt"),
    (lambda b: b["audit"]["checkpoint"]["checkpoint"].__setitem__("seq", 5),
     "checkpoint signature does not verify"),
    (lambda b: b["audit"]["entries"].__setitem__(0, b["audit"]["entries"][0].replace(
        "submitted", "received")), "not the entry chained"),
])
def test_a_re_signed_but_inconsistent_bundle_is_refused(
        tweak: Callable[[dict[str, Any]], None], words: str) -> None:
    """Even when the exporter re-signs, a bundle whose parts do not agree is refused."""
    data, _ = build(tweak)
    with pytest.raises(BundleRefused, match=words):
        verify_bundle(data)


def test_a_receipt_for_other_bytes_is_refused() -> None:
    """A receipt quoting another digest does not count as proof of delivery."""
    def tweak(bundle: dict[str, Any]) -> None:
        _, mid, _ = message()
        bundle["receipts"] = [b64url_encode(receipt(mid, "ab" * 32, ReceiptState.DELIVERED))]
    data, _ = build(tweak)
    with pytest.raises(BundleRefused, match="another message or other bytes"):
        verify_bundle(data)


def test_a_bundle_signed_by_someone_else_is_refused() -> None:
    """The exporter's signature must be made with the exporter's key in the bundle."""
    data, _ = build(key=NL)
    with pytest.raises(BundleRefused, match="not a key of the exporter"):
        verify_bundle(data)


def test_pinned_keys_must_match_the_bundle_keys() -> None:
    """With the verifier's own pins, a bundle carrying another key for a centre is refused."""
    data, _ = build()
    mine = KeyRing.build([("BE-NCCN", PinnedKey(BE.kid, BE.public())),
                          ("NL-NCC", PinnedKey(NL.kid, NL.public()))])
    assert verify_bundle(data, mine).keys_pinned
    other = make_key("NL-NCC")
    wrong = KeyRing.build([("BE-NCCN", PinnedKey(BE.kid, BE.public())),
                           ("NL-NCC", PinnedKey(NL.kid, other.public()))])
    with pytest.raises(BundleRefused, match="not a key pinned in your configuration"):
        verify_bundle(data, wrong)


@pytest.mark.parametrize("data", [b"", b"{}", b"[]", b'{"bundle": {}, "signature": {}}',
                                  b"\xff\xfe", b'{"bundle": 1, "signature": 2}'])
def test_garbage_is_refused_not_crashed_on(data: bytes) -> None:
    """Arbitrary bytes give a reason, never another exception."""
    with pytest.raises(BundleRefused):
        verify_bundle(data)


def test_non_canonical_but_equivalent_file_is_refused() -> None:
    """Re-indenting the JSON is an edit after export, and is named as such."""
    data, _ = build()
    pretty = json.dumps(json.loads(data), indent=1).encode()
    with pytest.raises(BundleRefused, match="canonical form"):
        verify_bundle(pretty)
