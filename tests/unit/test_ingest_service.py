"""Ingestion of inbox payloads: gateway.service.ingest.Receiver with the real SQLite ledger."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.config import KeyEntry, PeerSection, TlsSection
from gateway.protocol import reasons
from gateway.protocol.delivery import on_confirmed
from gateway.protocol.keys import KeyRing, PinnedKey, SigningKey, default_key_id, public_key_text
from gateway.protocol.receipts import ReceiptEnvelope, ReceiptState, receipt_envelope
from gateway.protocol.signing import Verified, open_signed, seal
from gateway.protocol.types import Mode, Priority, format_time
from gateway.service.directory import Directory
from gateway.service.ingest import Receiver
from gateway.service.submit import outgoing

ME, BE, LU = "NL-NCC", "BE-NCCN", "LU-HCPN"
BE_USER = f"{BE}@{ME}"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _key(centre: str) -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(centre.encode()).digest())
    return SigningKey(kid=default_key_id(centre, private.public_key()), private=private)


KEYS = {c: _key(c) for c in (ME, BE, LU)}
#: Every centre's key pinned: the receiver verifies BE (and LU), the tests open NL's receipts.
RING = KeyRing.build((c, PinnedKey(kid=k.kid, key=k.public())) for c, k in KEYS.items())

BODY: dict[str, Any] = {
    "incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
    "report_number": 1,
    "severity": "severe",
    "summary": {"en": "Water levels rising at Liège."},
}


@dataclass
class FixedClock:
    """A clock that says whatever time the test sets."""

    at: datetime = NOW

    def now(self) -> datetime:
        """The set time."""
        return self.at


@dataclass
class RecordingFanout:
    """A LocalFanout that records each republish."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    async def republish(self, wire: bytes, *, sender: str, msg_type: str, priority: str) -> None:
        """Record the call."""
        self.calls.append({"wire": wire, "sender": sender, "msg_type": msg_type,
                           "priority": priority})


@dataclass
class Node:
    """A receiver under test with its collaborators."""

    receiver: Receiver
    ledger: SqliteLedger
    clock: FixedClock
    fanout: RecordingFanout
    queued: list[None]
    outcomes: list[tuple[str, str]]


def _peer(centre: str, suspended: bool = False) -> PeerSection:
    return PeerSection(
        id=centre, name=centre, country=centre[:2],
        keys=(KeyEntry(kid=KEYS[centre].kid, public_key=public_key_text(KEYS[centre].public())),),
        inbox_url=f"amqps://{ME}:pw@{centre.lower()}.example/", granted_user=f"{centre}@{ME}",
        suspended=suspended, tls=TlsSection(spki_sha256=("ab" * 32,)),
    )


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory of receivers for NL-NCC over a fresh ledger; BE-NCCN is a peer, LU optional."""
    ledgers: list[SqliteLedger] = []

    async def make(*, peers: tuple[PeerSection, ...] | None = None) -> Node:
        ledger = SqliteLedger(tmp_path / f"l{len(ledgers)}.db")
        await ledger.open()
        ledgers.append(ledger)
        directory = Directory(ME, peers if peers is not None else (_peer(BE),))
        clock, fanout = FixedClock(), RecordingFanout()
        queued: list[None] = []
        outcomes: list[tuple[str, str]] = []
        receiver = Receiver(
            me=ME, key=KEYS[ME], ring=lambda: RING, directory=lambda: directory, ledger=ledger,
            clock=clock, fanout=fanout, on_receipt_queued=lambda: queued.append(None),
            on_outcome=lambda kind, outcome: outcomes.append((kind, outcome)))
        return Node(receiver, ledger, clock, fanout, queued, outcomes)

    yield make
    for ledger in ledgers:
        await ledger.close()


@pytest.fixture
def make_sitrep() -> Callable[..., bytes]:
    """Factory of signed sitrep wire bytes, from BE-NCCN to NL-NCC by default."""

    def make(*, sender: str = BE, created_at: datetime = NOW,
             lifetime: timedelta = timedelta(days=1), **changes: Any) -> bytes:
        env: dict[str, Any] = {
            "v": 1, "id": str(uuid.uuid4()), "type": "sitrep", "from": sender, "to": [ME],
            "created": format_time(created_at),
            "expires": format_time(created_at + lifetime),
            "mode": "exercise", "tlp": "AMBER", "priority": "urgent",
            "incident": "BE-2026-0001", "body": BODY,
        }
        env.update(changes)
        return seal(env, KEYS[sender]).wire

    return make


def _open(wire: bytes) -> Verified:
    return open_signed(wire, RING)


async def _receipts(node: Node) -> list[ReceiptEnvelope]:
    """Every receipt queued in the outbox, opened with NL-NCC's pinned key."""
    out = []
    for due in await node.ledger.outbox.due(node.clock.at + timedelta(seconds=1), 100, set()):
        assert due.type == "receipt"
        assert due.recipient == BE
        verified = open_signed(due.wire, RING)
        assert verified.sender == ME
        out.append(ReceiptEnvelope.model_validate(verified.envelope))
    return out


async def _security_reasons(node: Node) -> list[str]:
    return [e.reason for e in await node.ledger.security.recent()]


async def test_valid_sitrep_is_delivered(
    make_node: Callable[..., Any], make_sitrep: Callable[..., bytes]
) -> None:
    """A valid sitrep: new_delivered, stored, a delivered receipt queued, fanned out once."""
    node = await make_node()
    wire = make_sitrep()
    verified = _open(wire)
    assert await node.receiver.handle(wire, BE_USER) == "new_delivered"
    inbox = await node.ledger.inbox.list({}, 10)
    assert len(inbox) == 1
    entry = inbox[0]
    assert (entry.sender, entry.id, entry.type, entry.state) == (
        BE, verified.envelope["id"], "sitrep", "delivered")
    assert (entry.priority, entry.mode, entry.tlp, entry.incident) == (
        "urgent", "exercise", "AMBER", "BE-2026-0001")
    assert entry.digest == verified.digest
    assert entry.wire == wire
    assert entry.received_at == NOW
    [receipt] = await _receipts(node)
    assert receipt.to == (BE,)
    assert receipt.body.state is ReceiptState.DELIVERED
    assert receipt.body.message_id == verified.envelope["id"]
    assert receipt.body.message_sha256 == verified.digest
    assert receipt.body.at == NOW
    assert (receipt.mode, receipt.priority) == (Mode.EXERCISE, Priority.URGENT)
    assert node.fanout.calls == [
        {"wire": wire, "sender": BE, "msg_type": "sitrep", "priority": "urgent"}]
    assert len(node.queued) == 1
    assert node.outcomes == [("sitrep", "new_delivered")]
    assert await node.ledger.security.recent() == []


async def test_same_bytes_again_is_duplicate(
    make_node: Callable[..., Any], make_sitrep: Callable[..., bytes]
) -> None:
    """The same bytes again: duplicate_delivered, one inbox entry, the same receipt re-queued."""
    node = await make_node()
    wire = make_sitrep()
    await node.receiver.handle(wire, BE_USER)
    [due] = await node.ledger.outbox.due(NOW, 10, set())
    await node.ledger.outbox.transition(due.message_id, BE, partial(on_confirmed, now=NOW))
    assert await node.ledger.outbox.due(NOW + timedelta(seconds=1), 10, set()) == []
    node.clock.at = NOW + timedelta(minutes=1)
    assert await node.receiver.handle(wire, BE_USER) == "duplicate_delivered"
    assert len(await node.ledger.inbox.list({}, 10)) == 1
    again = await node.ledger.outbox.due(node.clock.at, 10, set())
    assert [(d.message_id, d.wire) for d in again] == [(due.message_id, due.wire)]
    assert node.outcomes[-1] == ("sitrep", "duplicate_delivered")


async def test_same_id_other_content_is_id_conflict(
    make_node: Callable[..., Any], make_sitrep: Callable[..., bytes]
) -> None:
    """A second message reusing an id with other content is a security event; nothing changes."""
    node = await make_node()
    first = make_sitrep()
    message_id = _open(first).envelope["id"]
    await node.receiver.handle(first, BE_USER)
    other = make_sitrep(id=message_id, priority="flash")
    assert await node.receiver.handle(other, BE_USER) == f"security_{reasons.ID_CONFLICT}"
    [entry] = await node.ledger.inbox.list({}, 10)
    assert entry.wire == first
    assert len(await _receipts(node)) == 1
    assert await _security_reasons(node) == [reasons.ID_CONFLICT]
    assert len(node.fanout.calls) == 1


@pytest.mark.parametrize("user", ["LU-HCPN@NL-NCC", "guest", "", None])
async def test_wrong_amqp_user_is_sender_mismatch(
    make_node: Callable[..., Any], make_sitrep: Callable[..., bytes], user: str | None
) -> None:
    """A payload published by another broker user than the sender's is a security event."""
    node = await make_node()
    wire = make_sitrep()
    assert await node.receiver.handle(wire, user) == "security_sender_mismatch"
    assert await node.ledger.inbox.list({}, 10) == []
    assert await _receipts(node) == []
    [event] = await node.ledger.security.recent()
    assert event.reason == reasons.SENDER_MISMATCH
    assert event.amqp_user == user
    assert event.claimed_sender == BE
    assert event.claimed_id == _open(wire).envelope["id"]
    assert event.payload_sha256 == hashlib.sha256(wire).hexdigest()
    assert node.fanout.calls == []
    assert node.queued == []


@pytest.mark.parametrize(
    ("old", "new"),
    [(b'"severe"', b'"minor"'), (b'"urgent"', b'"flash "'), (b"Water", b"Wader")],
)
async def test_tampered_payload_is_bad_signature(
    make_node: Callable[..., Any], make_sitrep: Callable[..., bytes], old: bytes, new: bytes
) -> None:
    """A payload altered after signing is refused as bad_signature, with no receipt."""
    node = await make_node()
    wire = make_sitrep()
    assert old in wire
    tampered = wire.replace(old, new, 1)
    assert await node.receiver.handle(tampered, BE_USER) == "security_bad_signature"
    assert await node.ledger.inbox.list({}, 10) == []
    assert await _receipts(node) == []
    assert await _security_reasons(node) == [reasons.BAD_SIGNATURE]
    assert node.fanout.calls == []


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xfe\x00garbage", b"not json at all", b'{"a": 1, "a": 2}', b"", b"[1, 2"],
)
async def test_garbage_is_not_ijson(make_node: Callable[..., Any], garbage: bytes) -> None:
    """Bytes that are not I-JSON are a not_ijson security event with no claimed sender."""
    node = await make_node()
    assert await node.receiver.handle(garbage, BE_USER) == "security_not_ijson"
    [event] = await node.ledger.security.recent()
    assert event.reason == reasons.NOT_IJSON
    assert event.claimed_sender is None
    assert event.claimed_id is None
    assert node.outcomes == [("security", reasons.NOT_IJSON)]


async def test_expired_message_is_rejected_with_receipt(
    make_node: Callable[..., Any], make_sitrep: Callable[..., bytes]
) -> None:
    """An expired message: new_rejected, stored as rejected, a rejected receipt, no fanout."""
    node = await make_node()
    wire = make_sitrep(created_at=NOW - timedelta(days=2), lifetime=timedelta(days=1))
    verified = _open(wire)
    assert await node.receiver.handle(wire, BE_USER) == "new_rejected"
    [entry] = await node.ledger.inbox.list({}, 10)
    assert (entry.state, entry.reason) == ("rejected", reasons.EXPIRED)
    [receipt] = await _receipts(node)
    assert receipt.body.state is ReceiptState.REJECTED
    assert receipt.body.reason == reasons.EXPIRED
    assert receipt.body.message_sha256 == verified.digest
    assert node.fanout.calls == []
    assert len(node.queued) == 1


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"to": [LU]}, reasons.NOT_ADDRESSED),
        ({"tlp": "PURPLE"}, reasons.SCHEMA_INVALID),
        ({"type": "weather"}, reasons.UNSUPPORTED_TYPE),
        ({"v": 2}, reasons.UNSUPPORTED_VERSION),
        ({"created_at": NOW + timedelta(hours=1)}, reasons.FUTURE),
    ],
)
async def test_authentic_but_refused_message_gets_rejected_receipt(
    make_node: Callable[..., Any], make_sitrep: Callable[..., bytes],
    changes: dict[str, Any], reason: str,
) -> None:
    """Each admission failure yields new_rejected and a rejected receipt with its reason."""
    node = await make_node()
    wire = make_sitrep(**changes)
    assert await node.receiver.handle(wire, BE_USER) == "new_rejected"
    [receipt] = await _receipts(node)
    assert receipt.body.state is ReceiptState.REJECTED
    assert receipt.body.reason == reason
    assert receipt.body.detail
    assert node.fanout.calls == []


async def test_non_uuid_id_is_malformed(
    make_node: Callable[..., Any], make_sitrep: Callable[..., bytes]
) -> None:
    """A signed message whose id is not a UUID cannot be answered: security malformed."""
    node = await make_node()
    wire = make_sitrep(id="not-a-uuid")
    assert await node.receiver.handle(wire, BE_USER) == "security_malformed"
    assert await node.ledger.inbox.list({}, 10) == []
    assert await _receipts(node) == []


@pytest.mark.parametrize("peers", ["unknown", "suspended"])
async def test_sender_not_an_active_peer(
    make_node: Callable[..., Any], make_sitrep: Callable[..., bytes], peers: str
) -> None:
    """A correctly signed message from a centre that is not an active peer: unknown_sender."""
    directory_peers = (_peer(BE),) if peers == "unknown" else (_peer(BE), _peer(LU, True))
    node = await make_node(peers=directory_peers)
    wire = make_sitrep(sender=LU)
    assert await node.receiver.handle(wire, f"{LU}@{ME}") == "security_unknown_sender"
    assert await node.ledger.inbox.list({}, 10) == []
    assert await _security_reasons(node) == [reasons.UNKNOWN_SENDER]


async def test_receipt_for_unsent_message_is_unexpected(make_node: Callable[..., Any]) -> None:
    """A receipt from BE-NCCN for a message NL-NCC never sent is a security event."""
    node = await make_node()
    env = receipt_envelope(
        receipt_id=uuid.uuid4(), issuer=BE, sender=ME, message_id=str(uuid.uuid4()),
        digest="ab" * 32, state=ReceiptState.DELIVERED, now=NOW, mode=Mode.ACTUAL,
        priority=Priority.ROUTINE)
    wire = seal(env, KEYS[BE]).wire
    assert await node.receiver.handle(wire, BE_USER) == "security_unexpected_receipt"
    [event] = await node.ledger.security.recent()
    assert event.reason == reasons.UNEXPECTED_RECEIPT
    assert event.claimed_sender == BE
    assert await node.ledger.inbox.list({}, 10) == []
    assert node.fanout.calls == []


@pytest.mark.parametrize(
    ("state", "reason"),
    [(ReceiptState.DELIVERED, None), (ReceiptState.ACKNOWLEDGED, None),
     (ReceiptState.REJECTED, reasons.POLICY)],
)
async def test_receipt_for_our_message_is_applied(
    make_node: Callable[..., Any], state: ReceiptState, reason: str | None
) -> None:
    """A receipt from the recipient of one of our messages moves its delivery: receipt_applied."""
    node = await make_node()
    ours = outgoing({
        "v": 1, "id": str(uuid.uuid4()), "type": "sitrep", "from": ME, "to": [BE],
        "created": format_time(NOW), "expires": format_time(NOW + timedelta(days=1)),
        "mode": "actual", "tlp": "GREEN", "priority": "routine", "body": BODY,
    }, KEYS[ME], (BE,))
    await node.ledger.outbox.submit(ours, None, NOW)
    env = receipt_envelope(
        receipt_id=uuid.uuid4(), issuer=BE, sender=ME, message_id=ours.id, digest=ours.digest,
        state=state, now=NOW, mode=Mode.ACTUAL, priority=Priority.ROUTINE, reason=reason)
    wire = seal(env, KEYS[BE]).wire
    assert await node.receiver.handle(wire, BE_USER) == "receipt_applied"
    assert await node.receiver.handle(wire, BE_USER) == "receipt_duplicate"
    view = await node.ledger.outbox.get(ours.id)
    assert view is not None
    assert view.recipients[0].state == state.value
    assert node.fanout.calls == []
    assert node.queued == []


@pytest.mark.parametrize(
    ("first_created", "later", "label", "fanouts"),
    [
        (NOW, timedelta(days=2), "duplicate_delivered", 2),
        (NOW - timedelta(days=3), timedelta(minutes=1), "duplicate_rejected", 0),
    ],
    ids=["repeat-after-expiry", "repeat-of-rejected"],
)
async def test_duplicate_keeps_first_verdict(
    make_node: Callable[..., Any], make_sitrep: Callable[..., bytes],
    first_created: datetime, later: timedelta, label: str, fanouts: int,
) -> None:
    """A repeat is judged by the stored entry, not re-admitted at the later time."""
    node = await make_node()
    wire = make_sitrep(created_at=first_created)
    await node.receiver.handle(wire, BE_USER)
    node.clock.at = NOW + later
    assert await node.receiver.handle(wire, BE_USER) == label
    [entry] = await node.ledger.inbox.list({}, 10)
    assert entry.state == label.removeprefix("duplicate_")
    assert len(await _receipts(node)) == 1
    assert len(node.fanout.calls) == fanouts


async def test_exercise_message_from_a_non_participant_is_rejected_by_policy(
        make_node: Callable[..., Any], make_sitrep: Callable[..., bytes]) -> None:
    """The receiver's release policy answers a refused message with a `policy` receipt."""
    quiet = _peer(BE).model_copy(update={"exercise": False})
    node = await make_node(peers=(quiet,))
    wire = make_sitrep(mode="exercise")
    assert await node.receiver.handle(wire, f"{BE}@{ME}") == "new_rejected"
    entry = await node.ledger.inbox.get(BE, _open(wire).envelope["id"])
    assert entry is not None
    assert entry.reason == "policy"
    assert entry.detail is not None
    assert "exercise-participants" in entry.detail
    (receipt,) = await _receipts(node)
    assert receipt.body.state.value == "rejected"
    assert receipt.body.reason == "policy"
    assert await node.receiver.handle(make_sitrep(mode="actual"), f"{BE}@{ME}") == "new_delivered"
