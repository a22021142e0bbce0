"""Signed delivery receipts: gateway.protocol.receipts."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from gateway.protocol import reasons
from gateway.protocol.canonical import canonical_bytes, sha256_hex
from gateway.protocol.keys import KeyRing, PinnedKey, SigningKey, b64url_encode, default_key_id
from gateway.protocol.receipts import (
    RECEIPT_LIFETIME,
    Receipt,
    ReceiptEnvelope,
    ReceiptState,
    receipt_envelope,
)
from gateway.protocol.signing import context_for, open_signed, seal, signing_input
from gateway.protocol.types import Mode, Priority, Tlp

NOW = datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=UTC)
ISSUER, SENDER = "NL-NCC", "BE-NCCN"
RECEIPT_ID = uuid.UUID("0b9f8c7e-6d5a-4b3c-9d2e-1f0a9b8c7d6e")
MESSAGE_ID = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
DIGEST = "ab" * 32

_NL_PRIVATE = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"NL-NCC").digest())
NL_KEY = SigningKey(kid=default_key_id(ISSUER, _NL_PRIVATE.public_key()), private=_NL_PRIVATE)
NL_RING = KeyRing.build([(ISSUER, PinnedKey(kid=NL_KEY.kid, key=_NL_PRIVATE.public_key()))])


@pytest.fixture
def make_receipt() -> Callable[..., dict[str, Any]]:
    """Factory of receipt envelopes from NL-NCC to BE-NCCN, with keyword overrides."""

    def make(**changes: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "receipt_id": RECEIPT_ID, "issuer": ISSUER, "sender": SENDER,
            "message_id": MESSAGE_ID, "digest": DIGEST, "state": ReceiptState.DELIVERED,
            "now": NOW, "mode": Mode.ACTUAL, "priority": Priority.ROUTINE,
        }
        args.update(changes)
        return receipt_envelope(**args)

    return make


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("priority", list(Priority))
def test_receipt_envelope_fields(
    make_receipt: Callable[..., dict[str, Any]], mode: Mode, priority: Priority
) -> None:
    """A receipt is TLP:CLEAR, addressed to the sender alone, keeps mode/priority, lives 7 days."""
    env = make_receipt(mode=mode, priority=priority)
    assert env == {
        "v": 1, "id": str(RECEIPT_ID), "type": "receipt", "from": ISSUER, "to": [SENDER],
        "created": "2026-11-27T10:00:00.123Z", "expires": "2026-12-04T10:00:00.123Z",
        "mode": mode.value, "tlp": "CLEAR", "priority": priority.value,
        "body": {"message_id": MESSAGE_ID, "message_sha256": DIGEST, "state": "delivered",
                 "at": "2026-11-27T10:00:00.123Z"},
    }
    parsed = ReceiptEnvelope.model_validate(env)
    assert parsed.tlp is Tlp.CLEAR
    assert parsed.expires - parsed.created == RECEIPT_LIFETIME
    assert parsed.incident is None


@pytest.mark.parametrize("state", list(ReceiptState))
def test_every_state_builds_a_valid_envelope(
    make_receipt: Callable[..., dict[str, Any]], state: ReceiptState
) -> None:
    """delivered, acknowledged and rejected (with a reason) all validate as ReceiptEnvelope."""
    reason = reasons.EXPIRED if state is ReceiptState.REJECTED else None
    env = make_receipt(state=state, reason=reason, by="Duty officer")
    parsed = ReceiptEnvelope.model_validate(env)
    assert parsed.body.state is state
    assert parsed.body.reason == reason
    assert parsed.body.by == "Duty officer"


@pytest.mark.parametrize("reason", sorted(reasons.RECEIPTED))
def test_rejected_accepts_each_documented_reason(
    make_receipt: Callable[..., dict[str, Any]], reason: str
) -> None:
    """Every code in reasons.RECEIPTED may be carried by a rejected receipt."""
    env = make_receipt(state=ReceiptState.REJECTED, reason=reason, detail="why")
    assert env["body"]["reason"] == reason
    assert env["body"]["detail"] == "why"


@pytest.mark.parametrize(
    "reason", [None, "", "bad_signature", "unexpected_receipt", "EXPIRED", "made_up"]
)
def test_rejected_requires_documented_receipted_reason(
    make_receipt: Callable[..., dict[str, Any]], reason: str | None
) -> None:
    """A rejected receipt without a reason, or with a security/unknown code, is refused."""
    with pytest.raises(ValidationError, match="documented reason code"):
        make_receipt(state=ReceiptState.REJECTED, reason=reason)


@pytest.mark.parametrize("state", [ReceiptState.DELIVERED, ReceiptState.ACKNOWLEDGED])
@pytest.mark.parametrize("reason", [reasons.EXPIRED, "", "policy"])
def test_positive_receipts_refuse_a_reason(
    make_receipt: Callable[..., dict[str, Any]], state: ReceiptState, reason: str
) -> None:
    """delivered and acknowledged receipts carry no reason code."""
    with pytest.raises(ValidationError, match="only a rejected receipt carries a reason"):
        make_receipt(state=state, reason=reason)


@pytest.mark.parametrize(
    ("detail", "expected"),
    [("x" * 499, "x" * 499), ("x" * 500, "x" * 500), ("x" * 501, "x" * 500),
     ("é" * 5000, "é" * 500), ("", None), (None, None)],
)
def test_detail_truncated_to_500(
    make_receipt: Callable[..., dict[str, Any]], detail: str | None, expected: str | None
) -> None:
    """receipt_envelope cuts the detail to 500 characters; an empty detail is omitted."""
    env = make_receipt(state=ReceiptState.REJECTED, reason=reasons.SCHEMA_INVALID, detail=detail)
    assert env["body"].get("detail") == expected


def test_receipt_model_refuses_over_long_detail() -> None:
    """The Receipt model itself refuses a detail beyond 500 characters."""
    with pytest.raises(ValidationError, match="detail"):
        Receipt(message_id=MESSAGE_ID, message_sha256=DIGEST, state=ReceiptState.REJECTED,
                reason=reasons.POLICY, detail="x" * 501, at=NOW)


@pytest.mark.parametrize(
    "changes",
    [{"message_id": "not-a-uuid"}, {"digest": "AB" * 32}, {"digest": "ab" * 31},
     {"by": "x" * 101}, {"sender": "nl-ncc"}, {"sender": ISSUER}],
    ids=["bad-id", "upper-digest", "short-digest", "long-by", "bad-sender", "to-itself"],
)
def test_invalid_receipt_inputs_refused(
    make_receipt: Callable[..., dict[str, Any]], changes: dict[str, Any]
) -> None:
    """A malformed id, digest, officer name or recipient makes receipt_envelope raise."""
    with pytest.raises(ValidationError):
        make_receipt(**changes)


def test_sealed_receipt_opens_and_digest_is_stable(
    make_receipt: Callable[..., dict[str, Any]],
) -> None:
    """A sealed receipt opens with open_signed; the digest is the JCS SHA-256, deterministic."""
    env = make_receipt(state=ReceiptState.ACKNOWLEDGED, by="Officer")
    sealed = seal(env, NL_KEY)
    again = seal(make_receipt(state=ReceiptState.ACKNOWLEDGED, by="Officer"), NL_KEY)
    assert again.wire == sealed.wire
    assert again.digest == sealed.digest == sha256_hex(canonical_bytes(env))
    verified = open_signed(sealed.wire, NL_RING)
    assert verified.sender == ISSUER
    assert verified.digest == sealed.digest
    assert verified.envelope == env
    parsed = ReceiptEnvelope.model_validate(verified.envelope)
    assert parsed.body.state is ReceiptState.ACKNOWLEDGED
    assert parsed.body.by == "Officer"


def test_receipt_signature_uses_receipt_context(
    make_receipt: Callable[..., dict[str, Any]],
) -> None:
    """A receipt is signed under the 'receipt' domain-separation context."""
    env = make_receipt()
    sealed = seal(env, NL_KEY)
    verified = open_signed(sealed.wire, NL_RING)
    signature = NL_KEY.private.sign(signing_input(canonical_bytes(env), context_for("receipt")))
    assert context_for("receipt") == b"receipt"
    assert verified.kid == NL_KEY.kid
    assert canonical_bytes(
        {"envelope": env, "signature": {"alg": "Ed25519", "kid": NL_KEY.kid,
                                        "value": b64url_encode(signature)}}
    ) == sealed.wire


@pytest.mark.parametrize("field", ["digest", "message_id", "state"])
def test_digest_changes_with_content(
    make_receipt: Callable[..., dict[str, Any]], field: str
) -> None:
    """Receipts differing in the quoted digest, message or state have different digests."""
    base = seal(make_receipt(), NL_KEY).digest
    other = {"digest": {"digest": "cd" * 32},
             "message_id": {"message_id": "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e40"},
             "state": {"state": ReceiptState.ACKNOWLEDGED}}[field]
    assert seal(make_receipt(**other), NL_KEY).digest != base

