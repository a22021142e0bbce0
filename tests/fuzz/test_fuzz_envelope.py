"""Fuzzing the envelope path a receiver runs on raw inbox bytes: strict I-JSON parsing,
signature verification (signing.open_signed), admission (messages.admit) and the whole
ingest.Receiver.handle, with raw bytes, hostile JSON, signed-but-wrong envelopes and
mutations of valid signed messages. Only the project's own errors may come out, each
with a documented reason code and a non-empty detail."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import MalformedInput, RejectedMessage, VerificationError
from gateway.protocol import reasons
from gateway.protocol.messages import admit
from gateway.protocol.signing import Verified, open_signed, seal
from gateway.protocol.types import UUID_PATTERN
from gateway.service.directory import Directory
from gateway.service.ingest import Receiver
from gateway.service.ports import (
    InboxEntry,
    IncomingReceipt,
    IngestOutcome,
    Ledger,
    OutgoingMessage,
    ReceiptOutcome,
    SecurityEvent,
)
from tests.fuzz.common import (
    BE,
    KEYS,
    LU,
    ME,
    NOW,
    RING,
    byte_mutation,
    changed_json,
    check_protocol_error,
    envelope,
    fuzz_settings,
    hostile_json,
    peer,
    record,
    resign,
    shuffle_keys,
)

TYPES = ["sitrep", "alert", "commcheck"]
UUID_RE = re.compile(UUID_PATTERN)


def _admit_outcome(verified: Verified) -> str:
    try:
        admitted = admit(verified, ME, NOW)
    except RejectedMessage as exc:
        return "rejected:" + check_protocol_error(exc)
    return f"admitted:{admitted.envelope.type}"


def _open_and_admit(wire: bytes) -> tuple[str, Verified | None]:
    """What the receiver's pure core says about ``wire``; only protocol errors escape."""
    try:
        verified = open_signed(wire, RING)
    except (MalformedInput, VerificationError) as exc:
        return "refused:" + check_protocol_error(exc), None
    return _admit_outcome(verified), verified


@fuzz_settings(ci=1500)
@given(wire=st.binary(max_size=600) | hostile_json())
def test_raw_bytes_are_refused_with_a_reason(wire: bytes) -> None:
    """Arbitrary bytes and hostile JSON never verify and are refused with a reason code."""
    outcome, verified = _open_and_admit(wire)
    assert verified is None
    record("envelope.raw", outcome)


@st.composite
def signed_wrong(draw: st.DrawFn) -> bytes:
    """A validly signed envelope whose fields were replaced, deleted or added."""
    base = envelope(draw(st.sampled_from(TYPES)))
    env = draw(changed_json(base))
    if not isinstance(env.get("from"), str) or not isinstance(env.get("type"), str):
        env["from"], env["type"] = BE, "sitrep"
    return resign(env) if _signable(env) else b"{}"


def _signable(env: dict[str, Any]) -> bool:
    try:
        seal(env, KEYS[BE])
    except MalformedInput:
        return False
    return True


@fuzz_settings(ci=2000)
@given(wire=signed_wrong())
def test_signed_wrong_envelopes_are_admitted_or_rejected_with_a_reason(wire: bytes) -> None:
    """Signed envelopes with wrong fields verify, then are admitted or rejected with a
    documented receipted reason; nothing else is raised."""
    outcome, verified = _open_and_admit(wire)
    if verified is not None and verified.sender == BE:
        assert outcome.startswith(("admitted:", "rejected:"))
        if outcome.startswith("rejected:"):
            assert outcome.removeprefix("rejected:") in reasons.RECEIPTED
    record("envelope.signed-wrong", outcome)


@st.composite
def mutated_wire(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A valid signed message with bit flips, insertions, deletions or a truncation."""
    env = envelope(draw(st.sampled_from(TYPES)))
    return draw(byte_mutation(seal(env, KEYS[BE]).wire)), env


@fuzz_settings(ci=2000)
@given(case=mutated_wire())
def test_mutated_signed_messages_never_verify_with_changed_content(
    case: tuple[bytes, dict[str, Any]],
) -> None:
    """A byte-mutated signed message either verifies with the very same envelope (a
    mutation of white space only) or is refused with a reason code."""
    wire, original = case
    outcome, verified = _open_and_admit(wire)
    if verified is not None:
        assert verified.envelope == original
    record("envelope.bit-flips", outcome)


@st.composite
def unsigned_change(draw: st.DrawFn) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """A signed message whose envelope was changed after signing (signature kept)."""
    env = envelope(draw(st.sampled_from(TYPES)))
    wire = json.loads(seal(env, KEYS[BE]).wire)
    changed = draw(changed_json(env))
    wire["envelope"] = changed
    return json.dumps(wire).encode(), env, changed


@fuzz_settings(ci=1500)
@given(case=unsigned_change())
def test_changed_fields_break_the_signature(
    case: tuple[bytes, dict[str, Any], dict[str, Any]],
) -> None:
    """Changing, adding or deleting any envelope field after signing is refused (bad
    signature, unknown sender or malformed), unless the change left the value equal."""
    wire, original, changed = case
    outcome, verified = _open_and_admit(wire)
    if changed != original:
        assert verified is None, "a changed envelope verified"
    record("envelope.unsigned-change", outcome)


@fuzz_settings(ci=800)
@given(msg_type=st.sampled_from(TYPES), seed=st.integers(0, 2**32),
       separators=st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]),
       indent=st.none() | st.integers(0, 3))
def test_key_reordering_alone_still_verifies(
    msg_type: str, seed: int, separators: tuple[str, str], indent: int | None,
) -> None:
    """The same message with every object's members reordered and re-spaced verifies,
    gives the same digest and is admitted exactly as the canonical bytes are."""
    sealed = seal(envelope(msg_type), KEYS[BE])
    shuffled = shuffle_keys(json.loads(sealed.wire), random.Random(seed))
    wire = json.dumps(shuffled, separators=separators, indent=indent,
                      ensure_ascii=bool(seed % 2)).encode()
    verified = open_signed(wire, RING)
    assert verified.digest == sealed.digest
    assert verified.envelope == sealed.envelope
    outcome = _admit_outcome(verified)
    assert outcome == f"admitted:{msg_type}"
    record("envelope.key-reorder", outcome)


# --- the whole receiver -------------------------------------------------------------------


@dataclass
class MemoryInbox:
    """The inbox store's ingest, kept in memory."""

    entries: dict[tuple[str, str], InboxEntry] = field(default_factory=dict)
    receipts: list[OutgoingMessage] = field(default_factory=list)

    async def ingest(self, entry: InboxEntry, receipt: OutgoingMessage | None,
                     now: datetime) -> tuple[IngestOutcome, str]:
        """Keep the first (sender, id); a repeat is a duplicate or a conflict."""
        old = self.entries.get((entry.sender, entry.id))
        if old is not None:
            outcome = (IngestOutcome.DUPLICATE if old.digest == entry.digest
                       else IngestOutcome.CONFLICT)
            return outcome, old.state
        self.entries[(entry.sender, entry.id)] = entry
        if receipt is not None:
            self.receipts.append(receipt)
        return IngestOutcome.NEW, entry.state


@dataclass
class MemoryReceipts:
    """No message was sent: every receipt is unexpected."""

    applied: list[IncomingReceipt] = field(default_factory=list)

    async def apply(self, receipt: IncomingReceipt, now: datetime) -> ReceiptOutcome:
        """Keep it, and call it unexpected."""
        self.applied.append(receipt)
        return ReceiptOutcome.UNEXPECTED


@dataclass
class MemorySecurity:
    """The security store's record, kept in memory."""

    events: list[SecurityEvent] = field(default_factory=list)

    async def record(self, event: SecurityEvent) -> None:
        """Keep the event."""
        self.events.append(event)


@dataclass
class MemoryLedger:
    """The three stores the receiver writes to, kept in memory."""

    inbox: MemoryInbox = field(default_factory=MemoryInbox)
    receipts: MemoryReceipts = field(default_factory=MemoryReceipts)
    security: MemorySecurity = field(default_factory=MemorySecurity)


@dataclass
class _Clock:
    def now(self) -> datetime:
        return NOW


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for every example of the receiver fuzzer."""
    with asyncio.Runner() as run:
        yield run


@st.composite
def inbox_payload(draw: st.DrawFn) -> bytes:
    """Anything that can land in an inbox: junk, forged, wrong, mutated or valid."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=300) | hostile_json())
    if kind == 1:
        return draw(signed_wrong())
    if kind == 2:
        return draw(mutated_wire())[0]
    if kind == 3:
        return draw(unsigned_change())[0]
    sender = draw(st.sampled_from([BE, LU, ME]))
    return seal(envelope(draw(st.sampled_from(TYPES)), sender=sender), KEYS[sender]).wire


@fuzz_settings(ci=1500)
@given(body=inbox_payload(),
       amqp_user=st.sampled_from([f"{BE}@{ME}", f"{LU}@{ME}", None, "guest", ""]))
def test_receiver_handles_every_payload_with_a_labelled_outcome(
    runner: asyncio.Runner, body: bytes, amqp_user: str | None,
) -> None:
    """Receiver.handle turns every payload into an outcome label: an ingest with a
    signed receipt (rejections name a receipted reason and a detail), or a security
    event with a documented reason and a detail; it never raises."""
    ledger = MemoryLedger()
    directory = Directory(ME, (peer(BE),))
    receiver = Receiver(me=ME, key=KEYS[ME], ring=lambda: RING, directory=lambda: directory,
                        ledger=cast(Ledger, ledger), clock=_Clock(), fanout=None,
                        on_receipt_queued=lambda: None)
    label = runner.run(receiver.handle(body, amqp_user))
    for event in ledger.security.events:
        assert event.reason in reasons.SECURITY | reasons.RECEIPTED
        assert event.detail.strip()
    for entry in ledger.inbox.entries.values():
        if entry.state == "rejected":
            assert entry.reason in reasons.RECEIPTED
            assert entry.detail
        assert UUID_RE.fullmatch(entry.id), "a receipt was stored for a non-UUID id"
    for receipt in ledger.inbox.receipts:
        assert open_signed(receipt.wire, RING).sender == ME
    assert label.startswith(("new_", "security_", "receipt_")), label
    record("envelope.receiver", label)

