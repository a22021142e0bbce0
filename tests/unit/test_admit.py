"""Admission of verified envelopes: gateway.protocol.messages.admit and receiptable."""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import RejectedMessage
from gateway.protocol import reasons
from gateway.protocol.envelope import CLOCK_SKEW, DEDUP_WINDOW, MAX_LIFETIME
from gateway.protocol.keys import KeyRing, PinnedKey, SigningKey, default_key_id
from gateway.protocol.messages import Admitted, SitrepEnvelope, admit, receiptable
from gateway.protocol.receipts import ReceiptEnvelope, ReceiptState, receipt_envelope
from gateway.protocol.signing import Verified, open_signed, seal
from gateway.protocol.types import Mode, Priority, format_time

ME, BE, LU = "NL-NCC", "BE-NCCN", "LU-HCPN"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def _private(centre: str) -> Ed25519PrivateKey:
    """A fixed per-centre test key (derived from the centre id, never used elsewhere)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(centre.encode()).digest())


BE_PRIVATE = _private(BE)
BE_KEY = SigningKey(kid=default_key_id(BE, BE_PRIVATE.public_key()), private=BE_PRIVATE)

BODY: dict[str, Any] = {
    "incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
    "report_number": 1,
    "severity": "severe",
    "summary": {"en": "Water levels rising at Liège."},
}


def ring_with(**pin: Any) -> KeyRing:
    """A ring pinning BE-NCCN's key with the given validity attributes."""
    return KeyRing.build([(BE, PinnedKey(kid=BE_KEY.kid, key=BE_PRIVATE.public_key(), **pin))])


@pytest.fixture
def envelope() -> Callable[..., dict[str, Any]]:
    """Factory of sitrep envelopes from BE-NCCN to NL-NCC created at NOW, with overrides."""

    def make(*, created_at: datetime = NOW, lifetime: timedelta = timedelta(days=1),
             expires_at: datetime | None = None, drop: tuple[str, ...] = (),
             **changes: Any) -> dict[str, Any]:
        env: dict[str, Any] = {
            "v": 1, "id": str(uuid.uuid4()), "type": "sitrep", "from": BE, "to": [ME, LU],
            "created": format_time(created_at),
            "expires": format_time(expires_at or created_at + lifetime),
            "mode": "actual", "tlp": "GREEN", "priority": "routine",
            "incident": "BE-2026-0001", "body": copy.deepcopy(BODY),
        }
        for key in drop:
            env.pop(key)
        env.update(changes)
        return env

    return make


@pytest.fixture
def verify() -> Callable[..., Verified]:
    """Factory: seal an envelope with BE-NCCN's key and open it against a ring."""

    def run(env: dict[str, Any], ring: KeyRing | None = None) -> Verified:
        return open_signed(seal(env, BE_KEY).wire, ring or ring_with())

    return run


def rejection(verified: Verified, now: datetime = NOW) -> RejectedMessage:
    """The RejectedMessage admit raises for ``verified`` at ``now``."""
    with pytest.raises(RejectedMessage) as info:
        admit(verified, ME, now)
    return info.value


def test_valid_sitrep_admitted(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified]
) -> None:
    """A well-formed, addressed, fresh sitrep is admitted as a typed SitrepEnvelope."""
    env = envelope()
    verified = verify(env)
    admitted = admit(verified, ME, NOW)
    assert isinstance(admitted, Admitted)
    assert admitted.verified is verified
    assert isinstance(admitted.envelope, SitrepEnvelope)
    assert admitted.envelope.id == env["id"]
    assert admitted.envelope.from_ == BE
    assert admitted.envelope.to == (ME, LU)
    assert admitted.envelope.created == NOW
    assert admitted.envelope.body.severity.value == "severe"


def test_valid_receipt_admitted(verify: Callable[..., Verified]) -> None:
    """A receipt addressed to us is admitted as a typed ReceiptEnvelope."""
    env = receipt_envelope(
        receipt_id=uuid.uuid4(), issuer=BE, sender=ME, message_id=str(uuid.uuid4()),
        digest="ab" * 32, state=ReceiptState.DELIVERED, now=NOW, mode=Mode.ACTUAL,
        priority=Priority.URGENT,
    )
    admitted = admit(verify(env), ME, NOW)
    assert isinstance(admitted.envelope, ReceiptEnvelope)
    assert admitted.envelope.body.state is ReceiptState.DELIVERED


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.5, True])
def test_unsupported_version(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified], version: Any
) -> None:
    """Any v other than the integer 1 is rejected as unsupported_version."""
    assert rejection(verify(envelope(v=version))).reason == reasons.UNSUPPORTED_VERSION


def test_missing_version_is_unsupported(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified]
) -> None:
    """An envelope without v is rejected as unsupported_version."""
    assert rejection(verify(envelope(drop=("v",)))).reason == reasons.UNSUPPORTED_VERSION


def test_version_checked_before_type(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified]
) -> None:
    """v=2 with an unknown type reports the version, not the type."""
    assert rejection(verify(envelope(v=2, type="weather"))).reason == reasons.UNSUPPORTED_VERSION


@pytest.mark.parametrize("msg_type", ["weather", "Sitrep", "sitrep2", "weather-report"])
def test_unsupported_type(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified], msg_type: str
) -> None:
    """A type other than sitrep or receipt is rejected as unsupported_type."""
    exc = rejection(verify(envelope(type=msg_type)))
    assert exc.reason == reasons.UNSUPPORTED_TYPE
    assert msg_type in exc.detail


def _without_severity() -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    del body["severity"]
    return body


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"body": _without_severity()}, "body.severity"),
        ({"extra": "field"}, "extra"),
        ({"tlp": "PURPLE"}, "tlp"),
        ({"tlp": "green"}, "tlp"),
        ({"mode": "drill"}, "mode"),
        ({"priority": "asap"}, "priority"),
        ({"id": "6F1C2D3E-4A5B-4C6D-8E7F-9A0B1C2D3E4F"}, "id"),
        ({"to": []}, "to"),
        ({"to": [ME, ME]}, "to"),
        ({"to": [ME, BE]}, "(root)"),
        ({"expires": "2026-11-28 10:00:00"}, "expires"),
        ({"body": {**BODY, "report_number": 0}}, "body.report_number"),
    ],
    ids=["no-severity", "extra-field", "bad-tlp", "lower-tlp", "bad-mode", "bad-priority",
         "upper-id", "no-recipient", "dup-recipient", "to-itself", "bad-time", "report-0"],
)
def test_schema_invalid(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified],
    changes: dict[str, Any], loc: str,
) -> None:
    """Envelopes or bodies that fail validation are rejected as schema_invalid, naming the field."""
    exc = rejection(verify(envelope(**changes)))
    assert exc.reason == reasons.SCHEMA_INVALID
    assert f"{loc}:" in exc.detail


@pytest.mark.parametrize(
    ("lifetime", "ok"),
    [(MAX_LIFETIME, True), (MAX_LIFETIME + MS, False), (MS, True), (timedelta(0), False)],
)
def test_lifetime_limits(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified],
    lifetime: timedelta, ok: bool,
) -> None:
    """A lifetime of up to 7 days is admitted; zero or longer than 7 days is schema_invalid."""
    verified = verify(envelope(lifetime=lifetime))
    if ok:
        assert admit(verified, ME, NOW).envelope.expires == NOW + lifetime
    else:
        assert rejection(verified).reason == reasons.SCHEMA_INVALID


@pytest.mark.parametrize("to", [[LU], ["DE-NW", LU], ["FR-COGIC"]])
def test_not_addressed(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified], to: list[str]
) -> None:
    """A message whose recipients do not include us is rejected as not_addressed."""
    exc = rejection(verify(envelope(to=to)))
    assert exc.reason == reasons.NOT_ADDRESSED
    assert ME in exc.detail


@pytest.mark.parametrize(
    "pin",
    [
        {"not_after": NOW - MS},
        {"not_before": NOW + MS},
        {"revoked": True},
        {"not_before": NOW - timedelta(days=1), "not_after": NOW + timedelta(days=1),
         "revoked": True},
    ],
    ids=["expired-key", "not-yet-valid", "revoked", "revoked-in-window"],
)
def test_key_not_valid_at_creation(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified],
    pin: dict[str, Any],
) -> None:
    """A signature by a key revoked or outside its validity window is key_not_valid."""
    exc = rejection(verify(envelope(), ring_with(**pin)))
    assert exc.reason == reasons.KEY_NOT_VALID
    assert BE_KEY.kid in exc.detail


@pytest.mark.parametrize(
    "pin", [{"not_after": NOW}, {"not_before": NOW}, {"not_before": NOW, "not_after": NOW}]
)
def test_key_validity_window_is_inclusive(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified],
    pin: dict[str, Any],
) -> None:
    """A message created exactly at not_before or not_after is admitted."""
    assert admit(verify(envelope(), ring_with(**pin)), ME, NOW).envelope.created == NOW


def test_stale(envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified]) -> None:
    """A message created before now - DEDUP_WINDOW is rejected as stale."""
    created = NOW - DEDUP_WINDOW - MS
    assert rejection(verify(envelope(created_at=created))).reason == reasons.STALE


def test_at_dedup_window_boundary_is_expired_not_stale(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified],
) -> None:
    """Created exactly at now - DEDUP_WINDOW is not stale, but its 7-day life has ended."""
    verified = verify(envelope(created_at=NOW - DEDUP_WINDOW, lifetime=MAX_LIFETIME))
    assert rejection(verified).reason == reasons.EXPIRED


@pytest.mark.parametrize("ahead", [CLOCK_SKEW + timedelta(seconds=1), CLOCK_SKEW + MS,
                                   timedelta(days=1)])
def test_future_dated(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified], ahead: timedelta
) -> None:
    """A message created further ahead than the clock skew is rejected as future_dated."""
    assert rejection(verify(envelope(created_at=NOW + ahead))).reason == reasons.FUTURE


@pytest.mark.parametrize("behind", [CLOCK_SKEW + MS, CLOCK_SKEW + timedelta(seconds=1),
                                    timedelta(days=3)])
def test_expired(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified], behind: timedelta
) -> None:
    """A message whose expiry lies more than the clock skew in the past is expired."""
    env = envelope(created_at=NOW - timedelta(days=4), expires_at=NOW - behind)
    assert rejection(verify(env)).reason == reasons.EXPIRED


@pytest.mark.parametrize(
    ("created", "expires"),
    [
        (NOW + CLOCK_SKEW, NOW + CLOCK_SKEW + timedelta(hours=1)),
        (NOW - timedelta(days=1), NOW - CLOCK_SKEW),
        (NOW - timedelta(days=1), NOW - timedelta(minutes=1)),
        (NOW - DEDUP_WINDOW + CLOCK_SKEW, NOW - CLOCK_SKEW),
    ],
    ids=["created-at-skew", "expires-at-skew", "expired-within-skew", "old-but-fresh-enough"],
)
def test_skew_boundaries_admitted(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified],
    created: datetime, expires: datetime,
) -> None:
    """Created exactly CLOCK_SKEW ahead, or expired exactly CLOCK_SKEW ago, is still admitted."""
    admitted = admit(verify(envelope(created_at=created, expires_at=expires)), ME, NOW)
    assert admitted.envelope.created == created
    assert admitted.envelope.expires == expires


@pytest.mark.parametrize(
    ("message_id", "expected"),
    [
        ("6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", True),
        ("not-a-uuid", False),
        ("6F1C2D3E-4A5B-4C6D-8E7F-9A0B1C2D3E4F", False),
        ("6f1c2d3e4a5b4c6d8e7f9a0b1c2d3e4f", False),
        ("6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f\n", False),
        ("", False),
        (12345, False),
        (None, False),
    ],
)
def test_receiptable(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified],
    message_id: Any, expected: bool,
) -> None:
    """Only a verified envelope whose id is a lower-case UUID string can be answered."""
    verified = verify(envelope(id=message_id))
    assert receiptable(verified) is expected


def test_receiptable_without_id(
    envelope: Callable[..., dict[str, Any]], verify: Callable[..., Verified]
) -> None:
    """An envelope with no id cannot be answered."""
    assert receiptable(verify(envelope(drop=("id",)))) is False



def test_a_message_with_attachments_is_refused_until_the_node_takes_them(
        envelope: Callable[..., dict[str, Any]]) -> None:
    """A node that does not take attachments yet answers schema_invalid (PROTOCOL.md §13),
    so that nothing is ever delivered without its files."""
    env = envelope(attachments=[{"sha256": "ab" * 32, "size": 10,
                                 "media_type": "application/pdf", "name": "map.pdf"}])
    verified = open_signed(seal(env, BE_KEY).wire, ring_with())
    with pytest.raises(RejectedMessage) as refused:
        admit(verified, ME, NOW)
    assert refused.value.reason == reasons.SCHEMA_INVALID
    assert "does not take attachments yet" in refused.value.detail
    assert admit(verified, ME, NOW, attachments=True).envelope.attachments
