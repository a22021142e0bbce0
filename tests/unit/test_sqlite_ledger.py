"""The SQLite ledger: gateway.adapters.sqlite.ledger.SqliteLedger (and its Database)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.adapters.postgres.db import connect as pg_connect
from gateway.adapters.postgres.ledger import PostgresLedger
from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.adapters.stores import audit as audit_store
from gateway.adapters.stores.batching import GroupCommit
from gateway.adapters.stores.ledger import StoreLedger
from gateway.adapters.stores.sql import Conn
from gateway.errors import IdempotencyConflict, LedgerError
from gateway.protocol.auditlog import verify_chain
from gateway.protocol.delivery import (
    DeliveryState,
    RetryPolicy,
    on_confirmed,
    on_failed,
    on_receipt,
)
from gateway.protocol.keys import SigningKey, default_key_id
from gateway.protocol.receipts import ReceiptState, receipt_envelope
from gateway.protocol.signing import seal
from gateway.protocol.types import Mode, Priority, format_time
from gateway.service.ports import (
    IdempotencyKey,
    InboxEntry,
    IncomingReceipt,
    IngestOutcome,
    OutgoingMessage,
    ReceiptOutcome,
    SecurityEvent,
)
from gateway.service.records import signed_parts
from gateway.service.submit import outgoing
from gateway.web.shapes import message_json
from tests.pg import Postgres

ME, BE, LU, DE = "NL-NCC", "BE-NCCN", "LU-HCPN", "DE-NW"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SEC = timedelta(seconds=1)
POLICY = RetryPolicy()


def _key(centre: str) -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(centre.encode()).digest())
    return SigningKey(kid=default_key_id(centre, private.public_key()), private=private)


KEYS = {c: _key(c) for c in (ME, BE, LU)}

SITREP_BODY: dict[str, Any] = {
    "incident": {"id": "NL-2026-0007", "title": "Storm surge"},
    "report_number": 1,
    "severity": "moderate",
    "summary": {"en": "Storm surge barrier closed."},
}

# ---------------------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def open_ledger(request: pytest.FixtureRequest, tmp_path: Path
                      ) -> AsyncIterator[Callable[..., Awaitable[SqliteLedger]]]:
    """Factory opening ledgers on each engine (default: tmp_path/l.db, or a schema of the
    session's PostgreSQL database per path); all closed at teardown."""
    opened: list[StoreLedger] = []
    schemas: dict[Path, str] = {}

    async def make(path: Path | None = None) -> StoreLedger:
        path = path or tmp_path / "l.db"
        if request.param == "sqlite":
            ledger: StoreLedger = SqliteLedger(path)
        else:
            pg: Postgres = request.getfixturevalue("postgres")
            if path not in schemas:
                schemas[path] = pg.ledger_url()
            ledger = PostgresLedger(schemas[path])
        await ledger.open()
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        await ledger.close()  # closing twice is allowed


@pytest.fixture
def make_message() -> Callable[..., OutgoingMessage]:
    """Factory of sealed outgoing sitreps from NL-NCC (the ledger's node)."""

    def make(recipients: tuple[str, ...] = (BE, LU), *, created: datetime = NOW,
             lifetime: timedelta = timedelta(days=1), incident: str | None = "NL-2026-0007",
             priority: str = "routine") -> OutgoingMessage:
        env: dict[str, Any] = {
            "v": 1, "id": str(uuid.uuid4()), "type": "sitrep", "from": ME,
            "to": list(recipients), "created": format_time(created),
            "expires": format_time(created + lifetime), "mode": "actual", "tlp": "GREEN",
            "priority": priority, "body": SITREP_BODY,
        }
        if incident is not None:
            env["incident"] = incident
        return outgoing(env, KEYS[ME], recipients)

    return make


@pytest.fixture
def make_entry() -> Callable[..., InboxEntry]:
    """Factory of inbox entries (a message received by NL-NCC)."""

    def make(sender: str = BE, message_id: str | None = None, *, digest: str = "aa" * 32,
             state: str = "delivered", received_at: datetime = NOW, **changes: Any) -> InboxEntry:
        fields: dict[str, Any] = {
            "sender": sender, "id": message_id or str(uuid.uuid4()), "type": "sitrep",
            "priority": "urgent", "mode": "actual", "tlp": "AMBER",
            "incident": "BE-2026-0001", "created": NOW, "expires": NOW + timedelta(days=1),
            "digest": digest, "wire": b'{"envelope":{},"signature":{}}',
            "received_at": received_at, "state": state,
        }
        fields.update(changes)
        return InboxEntry(**fields)

    return make


@pytest.fixture
def make_receipt() -> Callable[..., OutgoingMessage]:
    """Factory of sealed outgoing receipts from NL-NCC answering an inbox entry."""

    def make(entry: InboxEntry, state: ReceiptState = ReceiptState.DELIVERED,
             now: datetime = NOW, **extra: Any) -> OutgoingMessage:
        env = receipt_envelope(
            receipt_id=uuid.uuid4(), issuer=ME, sender=entry.sender, message_id=entry.id,
            digest=entry.digest, state=state, now=now, mode=Mode.ACTUAL,
            priority=Priority.URGENT, **extra)
        return outgoing(env, KEYS[ME], (entry.sender,), answers=(entry.sender, entry.id))

    return make


@pytest.fixture
def make_incoming() -> Callable[..., IncomingReceipt]:
    """Factory of verified incoming receipts issued by a peer about one of our messages."""

    def make(issuer: str, message_id: str, digest: str,
             state: ReceiptState = ReceiptState.DELIVERED, reason: str | None = None,
             at: datetime = NOW, receipt_id: str | None = None) -> IncomingReceipt:
        rid = receipt_id or str(uuid.uuid4())
        env = receipt_envelope(
            receipt_id=uuid.UUID(rid), issuer=issuer, sender=ME, message_id=message_id,
            digest=digest, state=state, now=at, mode=Mode.ACTUAL, priority=Priority.ROUTINE,
            reason=reason)
        return IncomingReceipt(issuer=issuer, id=rid, message_id=message_id,
                               message_sha256=digest, state=state.value, reason=reason, at=at,
                               wire=seal(env, KEYS[issuer]).wire)

    return make


async def _states(ledger: SqliteLedger, message_id: str) -> dict[str, str]:
    view = await ledger.outbox.get(message_id)
    assert view is not None
    return {r.centre: r.state for r in view.recipients}


# ---------------------------------------------------------------------------------------
# Outbox: submit, idempotency, due, transition, expire
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipients", [(BE,), (BE, LU), (BE, LU, DE)])
async def test_submit_creates_one_queued_delivery_per_recipient(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage], recipients: tuple[str, ...],
) -> None:
    """submit stores the message and one queued delivery, due now, per recipient."""
    ledger = await open_ledger()
    m = make_message(recipients)
    assert await ledger.outbox.submit(m, None, NOW) == (m.id, True)
    assert await _states(ledger, m.id) == dict.fromkeys(recipients, "queued")
    due = await ledger.outbox.due(NOW, 100, set())
    assert sorted(d.recipient for d in due) == sorted(recipients)
    assert {(d.message_id, d.type, d.wire, d.attempts) for d in due} == {
        (m.id, "sitrep", m.wire, 0)}
    assert all(d.expires == m.expires for d in due)


async def test_idempotency_key_returns_same_id(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """A repeated Idempotency-Key with the same request returns the first id, created False."""
    ledger = await open_ledger()
    key = IdempotencyKey(client="ops", key="k-1", request_sha256="11" * 32)
    first, second = make_message(), make_message()
    assert await ledger.outbox.submit(first, key, NOW) == (first.id, True)
    assert await ledger.outbox.submit(second, key, NOW + SEC) == (first.id, False)
    assert await ledger.outbox.get(second.id) is None
    assert len(await ledger.outbox.due(NOW + SEC, 100, set())) == 2


@pytest.mark.parametrize(
    ("client", "key", "sha", "created"),
    [("ops", "k-2", "11" * 32, True), ("other", "k-1", "11" * 32, True),
     ("ops", "k-1", "22" * 32, None)],
    ids=["other-key", "other-client", "other-request"],
)
async def test_idempotency_key_scope_and_conflict(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage], client: str, key: str, sha: str,
    created: bool | None,
) -> None:
    """Keys are per client; the same key with another request is a conflict; nothing stored."""
    ledger = await open_ledger()
    await ledger.outbox.submit(make_message(), IdempotencyKey("ops", "k-1", "11" * 32), NOW)
    second = make_message()
    if created is None:
        with pytest.raises(IdempotencyConflict):
            await ledger.outbox.submit(second, IdempotencyKey(client, key, sha), NOW)
        assert await ledger.outbox.get(second.id) is None
    else:
        assert await ledger.outbox.submit(second, IdempotencyKey(client, key, sha), NOW) == (
            second.id, created)


async def test_duplicate_message_id_is_a_ledger_error(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """Submitting the same message id twice without a key fails with LedgerError."""
    ledger = await open_ledger()
    m = make_message()
    await ledger.outbox.submit(m, None, NOW)
    with pytest.raises(LedgerError):
        await ledger.outbox.submit(m, None, NOW)


async def test_due_honours_next_attempt_at_and_exclude(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """A failed delivery is not due before its next attempt; excluded pairs are left out."""
    ledger = await open_ledger()
    m = make_message((BE, LU))
    await ledger.outbox.submit(m, None, NOW)
    step = partial(on_failed, now=NOW, error="timeout", retryable=True, policy=POLICY,
                   jitter=0.0)
    after = await ledger.outbox.transition(m.id, BE, step)
    assert after is not None
    assert after.next_attempt_at == NOW + timedelta(milliseconds=500)
    assert [d.recipient for d in await ledger.outbox.due(NOW, 10, set())] == [LU]
    assert [d.recipient for d in await ledger.outbox.due(NOW, 10, {(m.id, LU)})] == []
    later = NOW + timedelta(milliseconds=500)
    due = await ledger.outbox.due(later, 10, set())
    assert [d.recipient for d in due] == [LU, BE]
    assert due[1].attempts == 1
    assert [d.recipient for d in await ledger.outbox.due(later, 10, {(m.id, LU)})] == [BE]


async def test_due_is_oldest_first_and_limited(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """due returns at most ``limit`` rows ordered by next_attempt_at, even with exclusions."""
    ledger = await open_ledger()
    messages = [make_message((BE,)) for _ in range(5)]
    for i, m in enumerate(messages):
        await ledger.outbox.submit(m, None, NOW + i * SEC)
    at = NOW + 10 * SEC
    due = await ledger.outbox.due(at, 3, set())
    assert [d.message_id for d in due] == [m.id for m in messages[:3]]
    excluded = {(messages[0].id, BE), (messages[2].id, BE)}
    assert [d.message_id for d in await ledger.outbox.due(at, 2, excluded)] == [
        messages[1].id, messages[3].id]
    assert await ledger.outbox.due(NOW - SEC, 10, set()) == []


async def test_due_skips_peers(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """Recipients in skip_peers (suspended) are not returned."""
    ledger = await open_ledger()
    await ledger.outbox.submit(make_message((BE, LU, DE)), None, NOW)
    due = await ledger.outbox.due(NOW, 10, set(), frozenset({LU, DE}))
    assert [d.recipient for d in due] == [BE]


@pytest.mark.parametrize(
    ("steps", "state", "attempts"),
    [
        ([partial(on_confirmed, now=NOW)], DeliveryState.SENT, 1),
        ([partial(on_confirmed, now=NOW),
          partial(on_receipt, state=DeliveryState.DELIVERED, at=NOW)], DeliveryState.DELIVERED, 1),
        ([partial(on_failed, now=NOW, error="x", retryable=False, policy=POLICY, jitter=0.0),
          partial(on_confirmed, now=NOW + SEC)], DeliveryState.SENT, 2),
        ([partial(on_receipt, state=DeliveryState.REJECTED, at=NOW, reason="policy")],
         DeliveryState.REJECTED, 0),
    ],
    ids=["confirm", "confirm-delivered", "fail-confirm", "rejected"],
)
async def test_transition_applies_pure_steps(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage], steps: list[Any], state: DeliveryState,
    attempts: int,
) -> None:
    """transition applies a pure step to the stored row and persists the result."""
    ledger = await open_ledger()
    m = make_message((BE, LU))
    await ledger.outbox.submit(m, None, NOW)
    result = None
    for step in steps:
        result = await ledger.outbox.transition(m.id, BE, step)
    assert result is not None
    assert (result.state, result.attempts) == (state, attempts)
    view = await ledger.outbox.get(m.id)
    assert view is not None
    row = next(r for r in view.recipients if r.centre == BE)
    assert (row.state, row.attempts) == (state.value, attempts)
    assert await _states(ledger, m.id) == {BE: state.value, LU: "queued"}


async def test_transition_round_trips_all_fields(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """Times, error and attempts written by transition are read back identically."""
    ledger = await open_ledger()
    m = make_message((BE,))
    await ledger.outbox.submit(m, None, NOW)
    failed = await ledger.outbox.transition(m.id, BE, partial(
        on_failed, now=NOW, error="refused", retryable=False, policy=POLICY, jitter=0.0))
    again = await ledger.outbox.transition(m.id, BE, lambda d: d)
    assert failed == again
    assert again is not None
    assert again.last_error == "refused"
    assert again.next_attempt_at == NOW + POLICY.refused_delay


async def test_transition_unknown_row_is_none(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """transition on an unknown message or recipient returns None."""
    ledger = await open_ledger()
    m = make_message((BE,))
    await ledger.outbox.submit(m, None, NOW)
    assert await ledger.outbox.transition(m.id, LU, partial(on_confirmed, now=NOW)) is None
    unknown = str(uuid.uuid4())
    assert await ledger.outbox.transition(unknown, BE, partial(on_confirmed, now=NOW)) is None


async def test_expire_only_queued_rows_past_expiry(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """expire() expires queued deliveries at/after expiry; sent rows and live messages stay."""
    ledger = await open_ledger()
    short = make_message((BE, LU), lifetime=timedelta(hours=1))
    long = make_message((BE,), lifetime=timedelta(hours=3))
    await ledger.outbox.submit(short, None, NOW)
    await ledger.outbox.submit(long, None, NOW)
    await ledger.outbox.transition(short.id, LU, partial(on_confirmed, now=NOW))
    assert await ledger.outbox.expire(NOW + timedelta(minutes=59)) == []
    assert await ledger.outbox.expire(NOW + timedelta(hours=1)) == [(short.id, BE)]
    assert await _states(ledger, short.id) == {BE: "expired", LU: "sent"}
    assert await _states(ledger, long.id) == {BE: "queued"}
    view = await ledger.outbox.get(short.id)
    assert view is not None
    be_row = next(r for r in view.recipients if r.centre == BE)
    assert be_row.reason == "expired"
    assert be_row.expired_at == format_time(NOW + timedelta(hours=1))
    assert be_row.next_attempt_at is None
    assert await ledger.outbox.expire(NOW + timedelta(hours=2)) == []
    assert [d.message_id for d in await ledger.outbox.due(NOW + timedelta(hours=2), 10, set())] == [
        long.id]


# ---------------------------------------------------------------------------------------
# Inbox: ingest, acknowledge, views
# ---------------------------------------------------------------------------------------


async def test_ingest_new_then_duplicate_requeues_receipt(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_entry: Callable[..., InboxEntry], make_receipt: Callable[..., OutgoingMessage],
) -> None:
    """NEW stores entry and queued receipt; a same-digest repeat re-queues the sent receipt."""
    ledger = await open_ledger()
    entry = make_entry()
    receipt = make_receipt(entry)
    assert await ledger.inbox.ingest(entry, receipt, NOW) == (IngestOutcome.NEW, "delivered")
    assert await ledger.inbox.get(BE, entry.id) == entry
    due = await ledger.outbox.due(NOW, 10, set())
    assert [(d.message_id, d.recipient, d.type) for d in due] == [(receipt.id, BE, "receipt")]
    await ledger.outbox.transition(receipt.id, BE, partial(on_confirmed, now=NOW))
    assert await ledger.outbox.due(NOW + SEC, 10, set()) == []
    repeat = make_entry(message_id=entry.id, received_at=NOW + SEC)
    assert await ledger.inbox.ingest(repeat, None, NOW + SEC) == (
        IngestOutcome.DUPLICATE, "delivered")
    assert await _states(ledger, receipt.id) == {BE: "queued"}
    due = await ledger.outbox.due(NOW + SEC, 10, set())
    assert [(d.message_id, d.wire) for d in due] == [(receipt.id, receipt.wire)]
    assert await ledger.inbox.get(BE, entry.id) == entry


async def test_ingest_conflict_changes_nothing(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_entry: Callable[..., InboxEntry], make_receipt: Callable[..., OutgoingMessage],
) -> None:
    """The same (sender, id) with another digest is CONFLICT; entry and receipts unchanged."""
    ledger = await open_ledger()
    entry = make_entry()
    receipt = make_receipt(entry)
    await ledger.inbox.ingest(entry, receipt, NOW)
    await ledger.outbox.transition(receipt.id, BE, partial(on_confirmed, now=NOW))
    other = make_entry(message_id=entry.id, digest="bb" * 32)
    outcome = await ledger.inbox.ingest(other, make_receipt(other), NOW + SEC)
    assert outcome == (IngestOutcome.CONFLICT, "delivered")
    assert await ledger.inbox.get(BE, entry.id) == entry
    assert await _states(ledger, receipt.id) == {BE: "sent"}
    assert await ledger.outbox.due(NOW + SEC, 10, set()) == []


async def test_same_id_from_two_senders_are_distinct(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_entry: Callable[..., InboxEntry],
) -> None:
    """Inbox identity is (sender, id): the same id from another sender is NEW."""
    ledger = await open_ledger()
    a = make_entry(BE)
    b = make_entry(LU, a.id, digest="cc" * 32)
    assert await ledger.inbox.ingest(a, None, NOW) == (IngestOutcome.NEW, "delivered")
    assert await ledger.inbox.ingest(b, None, NOW) == (IngestOutcome.NEW, "delivered")
    assert {e.sender for e in await ledger.inbox.find(a.id)} == {BE, LU}


async def test_acknowledge_only_once_and_queues_receipt(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_entry: Callable[..., InboxEntry], make_receipt: Callable[..., OutgoingMessage],
) -> None:
    """acknowledge marks a delivered entry once and queues its acknowledged receipt."""
    ledger = await open_ledger()
    entry = make_entry()
    await ledger.inbox.ingest(entry, None, NOW)
    ack = make_receipt(entry, ReceiptState.ACKNOWLEDGED, NOW + SEC, by="Officer A")
    assert await ledger.inbox.acknowledge(BE, entry.id, "Officer A", ack, NOW + SEC) is True
    stored = await ledger.inbox.get(BE, entry.id)
    assert stored is not None
    assert stored.state == "acknowledged"
    assert stored.acknowledged_by == "Officer A"
    assert stored.acknowledged_at == NOW + SEC
    assert [d.message_id for d in await ledger.outbox.due(NOW + SEC, 10, set())] == [ack.id]
    again = make_receipt(entry, ReceiptState.ACKNOWLEDGED, NOW + 2 * SEC, by="Officer B")
    assert await ledger.inbox.acknowledge(BE, entry.id, "Officer B", again, NOW + 2 * SEC) is False
    assert await ledger.outbox.get(again.id) is None
    stored = await ledger.inbox.get(BE, entry.id)
    assert stored is not None
    assert stored.acknowledged_by == "Officer A"


@pytest.mark.parametrize("state", ["rejected", "missing"])
async def test_acknowledge_refuses_non_delivered(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_entry: Callable[..., InboxEntry], make_receipt: Callable[..., OutgoingMessage],
    state: str,
) -> None:
    """A rejected or unknown entry cannot be acknowledged; no receipt is queued."""
    ledger = await open_ledger()
    entry = make_entry(state="rejected", reason="expired")
    if state == "rejected":
        assert await ledger.inbox.ingest(entry, None, NOW) == (IngestOutcome.NEW, "rejected")
    ack = make_receipt(entry, ReceiptState.ACKNOWLEDGED)
    assert await ledger.inbox.acknowledge(BE, entry.id, "Officer", ack, NOW) is False
    assert await ledger.outbox.due(NOW, 10, set()) == []


async def test_duplicate_after_ack_requeues_both_receipts(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_entry: Callable[..., InboxEntry], make_receipt: Callable[..., OutgoingMessage],
) -> None:
    """A repeat after acknowledgement re-queues the delivered and the acknowledged receipts."""
    ledger = await open_ledger()
    entry = make_entry()
    delivered = make_receipt(entry)
    await ledger.inbox.ingest(entry, delivered, NOW)
    ack = make_receipt(entry, ReceiptState.ACKNOWLEDGED, by="Officer")
    await ledger.inbox.acknowledge(BE, entry.id, "Officer", ack, NOW)
    for r in (delivered, ack):
        await ledger.outbox.transition(r.id, BE, partial(on_confirmed, now=NOW))
    assert await ledger.inbox.ingest(entry, None, NOW + SEC) == (
        IngestOutcome.DUPLICATE, "acknowledged")
    assert {d.message_id for d in await ledger.outbox.due(NOW + SEC, 10, set())} == {
        delivered.id, ack.id}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["e4", "e3", "e2", "e1"]),
        ({"sender": LU}, ["e3"]),
        ({"state": "rejected"}, ["e2"]),
        ({"incident": "X-1"}, ["e4", "e1"]),
        ({"priority": "flash"}, ["e4"]),
        ({"type": "sitrep", "sender": BE}, ["e4", "e2", "e1"]),
        ({"sender": DE}, []),
    ],
)
async def test_inbox_filters_newest_first(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_entry: Callable[..., InboxEntry], filters: dict[str, str], expected: list[str],
) -> None:
    """inbox() filters by sender, type, incident, state and priority, newest first."""
    ledger = await open_ledger()
    entries = {
        "e1": make_entry(BE, incident="X-1", received_at=NOW),
        "e2": make_entry(BE, state="rejected", reason="stale", received_at=NOW + SEC),
        "e3": make_entry(LU, received_at=NOW + 2 * SEC),
        "e4": make_entry(BE, incident="X-1", priority="flash", received_at=NOW + 3 * SEC),
    }
    for e in entries.values():
        await ledger.inbox.ingest(e, None, NOW)
    names = {e.id: name for name, e in entries.items()}
    assert [names[e.id] for e in await ledger.inbox.list(filters, 100)] == expected
    assert len(await ledger.inbox.list({}, 2)) == 2


# ---------------------------------------------------------------------------------------
# Incoming receipts
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [(ReceiptState.DELIVERED, None, "delivered"),
     (ReceiptState.ACKNOWLEDGED, None, "acknowledged"),
     (ReceiptState.REJECTED, "not_addressed", "rejected")],
)
async def test_apply_receipt_then_duplicate(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage], make_incoming: Callable[..., IncomingReceipt],
    state: ReceiptState, reason: str | None, expected: str,
) -> None:
    """A matching receipt is APPLIED (moving the delivery, kept as evidence); again: DUPLICATE."""
    ledger = await open_ledger()
    m = make_message((BE, LU))
    await ledger.outbox.submit(m, None, NOW)
    await ledger.outbox.transition(m.id, BE, partial(on_confirmed, now=NOW))
    r = make_incoming(BE, m.id, m.digest, state, reason, NOW + SEC)
    assert await ledger.receipts.apply(r, NOW + 2 * SEC) is ReceiptOutcome.APPLIED
    assert await _states(ledger, m.id) == {BE: expected, LU: "queued"}
    assert await ledger.receipts.apply(r, NOW + 3 * SEC) is ReceiptOutcome.DUPLICATE
    evidence = await ledger.receipts.for_message(m.id)
    assert len(evidence) == 1
    assert evidence[0].issuer == BE
    assert evidence[0].id == r.id
    assert evidence[0].state == state.value
    assert evidence[0].reason == reason
    assert signed_parts(evidence[0].wire)[0]["body"]["message_sha256"] == m.digest


async def test_late_receipt_stored_but_state_kept(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage], make_incoming: Callable[..., IncomingReceipt],
) -> None:
    """A delivered receipt after acknowledged is applied as evidence but does not move back."""
    ledger = await open_ledger()
    m = make_message((BE,))
    await ledger.outbox.submit(m, None, NOW)
    ack = make_incoming(BE, m.id, m.digest, ReceiptState.ACKNOWLEDGED)
    late = make_incoming(BE, m.id, m.digest, ReceiptState.DELIVERED)
    assert await ledger.receipts.apply(ack, NOW) is ReceiptOutcome.APPLIED
    assert await ledger.receipts.apply(late, NOW) is ReceiptOutcome.APPLIED
    assert await _states(ledger, m.id) == {BE: "acknowledged"}
    assert len(await ledger.receipts.for_message(m.id)) == 2


@pytest.mark.parametrize("case", ["wrong-digest", "unknown-message", "not-a-recipient",
                                  "about-a-receipt"])
async def test_apply_receipt_unexpected(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage], make_entry: Callable[..., InboxEntry],
    make_receipt: Callable[..., OutgoingMessage], make_incoming: Callable[..., IncomingReceipt],
    case: str,
) -> None:
    """Wrong digest, unknown message, non-recipient or a receipt about a receipt: UNEXPECTED."""
    ledger = await open_ledger()
    m = make_message((BE,))
    await ledger.outbox.submit(m, None, NOW)
    entry = make_entry(BE)
    ours = make_receipt(entry)
    await ledger.inbox.ingest(entry, ours, NOW)
    incoming = {
        "wrong-digest": lambda: make_incoming(BE, m.id, "ee" * 32),
        "unknown-message": lambda: make_incoming(BE, str(uuid.uuid4()), m.digest),
        "not-a-recipient": lambda: make_incoming(LU, m.id, m.digest),
        "about-a-receipt": lambda: make_incoming(BE, ours.id, ours.digest),
    }[case]()
    assert await ledger.receipts.apply(incoming, NOW) is ReceiptOutcome.UNEXPECTED
    assert await _states(ledger, m.id) == {BE: "queued"}
    assert await _states(ledger, ours.id) == {BE: "queued"}
    assert await ledger.receipts.for_message(incoming.message_id) == []


# ---------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------


async def test_message_view_shape(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """message() shows the outbox row, the signed envelope and each recipient's state."""
    ledger = await open_ledger()
    m = make_message((LU, BE), priority="urgent")
    await ledger.outbox.submit(m, None, NOW)
    await ledger.outbox.transition(m.id, LU, partial(on_confirmed, now=NOW + SEC))
    stored = await ledger.outbox.get(m.id)
    assert stored is not None
    view = message_json(stored)
    assert {k: view[k] for k in ("id", "type", "incident", "priority", "mode", "tlp", "created",
                                 "expires", "submitted_at", "sha256")} == {
        "id": m.id, "type": "sitrep", "incident": "NL-2026-0007", "priority": "urgent",
        "mode": "actual", "tlp": "GREEN", "created": format_time(NOW),
        "expires": format_time(NOW + timedelta(days=1)), "submitted_at": format_time(NOW),
        "sha256": m.digest,
    }
    assert view["envelope"]["id"] == m.id
    assert view["envelope"]["to"] == [LU, BE]
    assert set(view["signature"]) == {"alg", "kid", "value"}
    assert [r["centre"] for r in view["recipients"]] == [BE, LU]
    be_row, lu_row = view["recipients"]
    assert set(be_row) == {"centre", "state", "attempts", "sent_at", "delivered_at",
                           "acknowledged_at", "rejected_at", "expired_at", "reason",
                           "last_error", "next_attempt_at"}
    assert (be_row["state"], be_row["attempts"], be_row["next_attempt_at"]) == (
        "queued", 0, format_time(NOW))
    assert (lu_row["state"], lu_row["attempts"], lu_row["sent_at"]) == (
        "sent", 1, format_time(NOW + SEC))
    assert await ledger.outbox.get(str(uuid.uuid4())) is None


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["m3", "m2", "m1"]),
        ({"state": "sent"}, ["m2"]),
        ({"state": "queued"}, ["m3", "m2", "m1"]),
        ({"peer": LU}, ["m3", "m2"]),
        ({"peer": LU, "state": "sent"}, ["m2"]),
        ({"peer": BE, "state": "sent"}, []),
        ({"incident": "INC-B"}, ["m3"]),
        ({"type": "sitrep", "incident": "INC-A"}, ["m2", "m1"]),
        ({"type": "receipt"}, []),
        ({"since": format_time(NOW + SEC)}, ["m3", "m2"]),
    ],
)
async def test_messages_filters(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage], make_entry: Callable[..., InboxEntry],
    make_receipt: Callable[..., OutgoingMessage], filters: dict[str, str], expected: list[str],
) -> None:
    """messages() filters by state, peer, incident, type and since; receipts never listed."""
    ledger = await open_ledger()
    ms = {
        "m1": make_message((BE,), incident="INC-A"),
        "m2": make_message((BE, LU), incident="INC-A"),
        "m3": make_message((LU,), incident="INC-B"),
    }
    for i, m in enumerate(ms.values()):
        await ledger.outbox.submit(m, None, NOW + i * SEC)
    await ledger.outbox.transition(ms["m2"].id, LU, partial(on_confirmed, now=NOW))
    entry = make_entry(LU)
    await ledger.inbox.ingest(entry, make_receipt(entry), NOW + 5 * SEC)
    names = {m.id: n for n, m in ms.items()}
    assert [names[v.id] for v in await ledger.outbox.list(filters, 100)] == expected


# ---------------------------------------------------------------------------------------
# Security events and stats
# ---------------------------------------------------------------------------------------


async def test_security_events_newest_first(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
) -> None:
    """Security events are stored with a payload hash and listed newest first, no payload."""
    ledger = await open_ledger()
    payloads = [b"first", b"second", b"x" * 100_000]
    for i, p in enumerate(payloads):
        await ledger.security.record(SecurityEvent(
            at=NOW + i * SEC, reason="bad_signature", detail=f"event {i}" + "d" * 2000,
            claimed_sender=BE if i else None, claimed_id=None, amqp_user="mallory",
            payload=p))
    events = [asdict(e) for e in await ledger.security.recent()]
    assert [e["detail"][:7] for e in events] == ["event 2", "event 1", "event 0"]
    assert [e["payload_sha256"] for e in events] == [
        hashlib.sha256(p).hexdigest() for p in reversed(payloads)]
    assert all("payload" not in e for e in events)
    assert all(len(e["detail"]) == 1000 for e in events)
    assert events[0]["at"] == format_time(NOW + 2 * SEC)
    assert events[2]["claimed_sender"] is None
    assert [e.seq for e in await ledger.security.recent(limit=2)] == [
        events[0]["seq"], events[1]["seq"]]
    assert (await ledger.stats()).security_events == 3


async def test_stats_backlog_counts_queued_and_sent(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """A peer's backlog counts every undelivered (queued or sent) delivery towards it."""
    ledger = await open_ledger()
    messages = [make_message((BE,)) for _ in range(5)]
    for m in messages:
        await ledger.outbox.submit(m, None, NOW)
    for m in messages[:3]:
        await ledger.outbox.transition(m.id, BE, partial(on_confirmed, now=NOW))
    stats = await ledger.stats()
    assert stats.deliveries == {"queued": 2, "sent": 3}
    assert stats.backlog[BE].count == 5


async def test_stats_backlog_excludes_sent_receipts(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_entry: Callable[..., InboxEntry], make_receipt: Callable[..., OutgoingMessage],
) -> None:
    """A receipt whose publish was confirmed is done and is no longer backlog for its peer."""
    ledger = await open_ledger()
    entry = make_entry()
    receipt = make_receipt(entry)
    await ledger.inbox.ingest(entry, receipt, NOW)
    await ledger.outbox.transition(receipt.id, BE, partial(on_confirmed, now=NOW))
    assert BE not in (await ledger.stats()).backlog


async def test_stats_counts(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage], make_entry: Callable[..., InboxEntry],
) -> None:
    """stats() counts deliveries per state, inbox entries and the backlog of a peer."""
    ledger = await open_ledger()
    for _ in range(2):
        await ledger.outbox.submit(make_message((BE, LU)), None, NOW)
    await ledger.inbox.ingest(make_entry(), None, NOW)
    stats = await ledger.stats()
    assert stats.deliveries == {"queued": 4}
    assert stats.inbox == 1
    assert stats.backlog[BE].count == 2
    assert stats.backlog[LU].count == 2
    assert stats.backlog[LU].oldest is not None


# ---------------------------------------------------------------------------------------
# Database: group commit, savepoints, durability, concurrent reads
# ---------------------------------------------------------------------------------------


async def test_group_commit_batches_concurrent_submits(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """200 concurrent submits all succeed in fewer than 200 commits."""
    ledger = await open_ledger()
    messages = [make_message((BE,)) for _ in range(200)]
    before = ledger.db.batches
    results = await asyncio.gather(*(ledger.outbox.submit(m, None, NOW) for m in messages))
    assert results == [(m.id, True) for m in messages]
    assert ledger.db.batches - before < 200
    assert len(await ledger.outbox.list({}, 1000)) == 200


def _insert_event(reason: str, conn: Conn) -> int:
    cur = conn.execute(
        "INSERT INTO security_events (at, reason, detail, payload_sha256, payload)"
        " VALUES ('2026-11-27T10:00:00.000Z', ?, 'd', 'h', ?) RETURNING seq",
        (reason, b"\x00"))
    return int(cur.fetchone()[0])


def _insert_then_fail(failure: str, conn: Conn) -> None:
    _insert_event("doomed", conn)
    if failure == "database":  # the engine refuses a statement: a duplicate key
        conn.execute("INSERT INTO counters VALUES ('twice', 1)")
        conn.execute("INSERT INTO counters VALUES ('twice', 1)")
    raise ValueError("boom")


@pytest.mark.parametrize(("failure", "raised"),
                         [("code", ValueError), ("database", LedgerError)])
async def test_failing_write_does_not_undo_its_batch(
    open_ledger: Callable[..., Awaitable[SqliteLedger]], failure: str,
    raised: type[Exception],
) -> None:
    """A write raising in a batch is rolled back alone; the other writes of the batch commit."""
    ledger = await open_ledger()
    before = ledger.db.batches
    results = await asyncio.gather(
        ledger.db.write(partial(_insert_event, "a")),
        ledger.db.write(partial(_insert_then_fail, failure)),
        ledger.db.write(partial(_insert_event, "b")),
        return_exceptions=True,
    )
    assert ledger.db.batches - before == 1
    assert isinstance(results[0], int)
    assert isinstance(results[1], raised)
    assert isinstance(results[2], int)
    reasons = sorted(e.reason for e in await ledger.security.recent())
    assert reasons == ["a", "b"]


async def test_a_batch_runner_failing_on_its_own_fails_its_writes_and_goes_on() -> None:
    """A batch that fails other than by the driver (a bug in the runner) fails each of
    its writes with LedgerError; none waits forever, and the next batch runs."""

    class Flaky(GroupCommit):
        def __init__(self) -> None:
            super().__init__()
            self.runs = 0

        def _run_batch(self, batch: list[Any]) -> list[tuple[bool, Any]]:
            self.runs += 1
            if self.runs == 1:
                raise AssertionError("runner bug")
            return [(True, fn(None)) for fn, _ in batch]

    db = Flaky()
    db._start_commits()
    with pytest.raises(LedgerError, match="AssertionError: runner bug"):
        await asyncio.wait_for(db.write(lambda _: 1), 5)
    assert await asyncio.wait_for(db.write(lambda _: 2), 5) == 2
    await db._drain()


def _audited(subject: str, conn: Conn) -> int:
    return audit_store.append(conn, NOW, "security.event", "test", subject, {"n": subject})


def _audited_then_fail(conn: Conn) -> None:
    audit_store.append(conn, NOW, "security.event", "test", "undone", {})
    raise ValueError("boom")


async def test_the_chain_holds_across_failed_writes_and_other_appenders(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
) -> None:
    """The writer keeps the chain's head within a batch (no read per append): a write
    rolled back takes its entries and the kept head with it, and an entry appended
    between batches by another writer (an instance, a tool) is chained onto."""
    ledger = await open_ledger()
    first = await asyncio.gather(
        ledger.db.write(partial(_audited, "a")), ledger.db.write(_audited_then_fail),
        ledger.db.write(partial(_audited, "b")), ledger.db.write(_audited_then_fail),
        return_exceptions=True)
    assert [isinstance(r, int) for r in first] == [True, False, True, False]
    assert first[2] == first[0] + 1, "the undone entry left no gap"

    def outside(conn: Conn) -> None:  # as another instance would, in its own transaction
        conn.execute("BEGIN IMMEDIATE")
        audit_store.append(conn, NOW, "security.event", "other", "outside", {})
        conn.execute("COMMIT")

    await asyncio.to_thread(_with_offline, ledger, outside)
    after = await ledger.db.write(partial(_audited, "c"))
    assert after == first[2] + 2

    def chain(conn: Conn) -> Any:
        return verify_chain(list(audit_store.rows(conn)))

    report = await ledger.db.read(chain)
    assert report.ok, report.problem
    subjects = [e.subject for e in reversed(await ledger.audit.entries(10))]
    assert subjects[-4:] == ["a", "b", "outside", "c"]


def _with_offline(ledger: StoreLedger, fn: Callable[[Conn], None]) -> None:
    """Run ``fn`` on a connection of its own to ``ledger``'s database."""
    if isinstance(ledger, SqliteLedger):
        conn: Any = sqlite3.connect(ledger.path, isolation_level=None)
    else:
        conn = pg_connect(ledger.url)
    try:
        fn(conn)
    finally:
        conn.close()


async def test_data_survives_close_and_reopen(
    tmp_path: Path, open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage], make_entry: Callable[..., InboxEntry],
) -> None:
    """Messages, deliveries and inbox entries written before close are there after reopening."""
    path = tmp_path / "durable" / "l.db"
    ledger = await open_ledger(path)
    m = make_message((BE, LU))
    entry = make_entry()
    await ledger.outbox.submit(m, None, NOW)
    await ledger.outbox.transition(m.id, BE, partial(on_confirmed, now=NOW))
    await ledger.inbox.ingest(entry, None, NOW)
    await ledger.close()
    reopened = await open_ledger(path)
    assert await _states(reopened, m.id) == {BE: "sent", LU: "queued"}
    assert await reopened.inbox.get(BE, entry.id) == entry
    assert [d.recipient for d in await reopened.outbox.due(NOW, 10, set())] == [LU]


async def test_write_after_close_refused(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """Once closing, the ledger refuses new writes with LedgerError."""
    ledger = await open_ledger()
    await ledger.close()
    with pytest.raises(LedgerError, match="closing"):
        await ledger.outbox.submit(make_message(), None, NOW)


async def test_reader_reads_while_write_transaction_is_open(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """A read completes while the writer holds an open transaction (WAL, no 'locked')."""
    ledger = await open_ledger()
    committed = make_message((BE,))
    await ledger.outbox.submit(committed, None, NOW)
    started, release = threading.Event(), threading.Event()

    def slow_write(conn: sqlite3.Connection) -> int:
        rowid = _insert_event("slow", conn)
        started.set()
        release.wait(timeout=10)
        return rowid

    writing = asyncio.ensure_future(ledger.db.write(slow_write))
    try:
        assert await asyncio.to_thread(started.wait, 10)
        view = await asyncio.wait_for(ledger.outbox.get(committed.id), timeout=5)
        events = await asyncio.wait_for(ledger.security.recent(), timeout=5)
        assert view is not None
        assert events == []
        assert not writing.done()
    finally:
        release.set()
    assert await writing > 0
    assert [e.reason for e in await ledger.security.recent()] == ["slow"]


async def test_reads_interleaved_with_many_writes(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """Reads issued alongside 100 concurrent submits all succeed."""
    ledger = await open_ledger()
    messages = [make_message((BE, LU)) for _ in range(100)]
    tasks: list[Awaitable[Any]] = []
    for m in messages:
        tasks.append(ledger.outbox.submit(m, None, NOW))
        tasks.append(ledger.outbox.due(NOW, 500, set()))
    results = await asyncio.gather(*tasks)
    assert all(isinstance(r, list) for r in results[1::2])
    assert len(await ledger.outbox.due(NOW, 500, set())) == 200


# ---------------------------------------------------------------------------------------
# Every delivery change goes through a pure step, and each change of state is audited
# ---------------------------------------------------------------------------------------


async def _delivery_audit(ledger: SqliteLedger, message_id: str) -> list[tuple[Any, Any]]:
    entries = await ledger.audit.entries(1000, kind="delivery.state", subject=message_id)
    return [(e.data["from"], e.data["state"]) for e in reversed(entries)]


async def test_duplicate_ingest_requeues_the_sent_receipt_with_an_audit_entry(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_entry: Callable[..., InboxEntry], make_receipt: Callable[..., OutgoingMessage],
) -> None:
    """A peer resending a message puts our sent receipt back in the queue through the
    on_resend_requested step, and the audit log records sent -> queued."""
    ledger = await open_ledger()
    entry = make_entry()
    receipt = make_receipt(entry)
    await ledger.inbox.ingest(entry, receipt, NOW)
    await ledger.outbox.transition(receipt.id, BE, partial(on_confirmed, now=NOW))
    assert await _delivery_audit(ledger, receipt.id) == [(None, "queued"), ("queued", "sent")]
    repeat = make_entry(message_id=entry.id, received_at=NOW + SEC)
    assert (await ledger.inbox.ingest(repeat, None, NOW + SEC))[0] is IngestOutcome.DUPLICATE
    assert await _states(ledger, receipt.id) == {BE: "queued"}
    assert await _delivery_audit(ledger, receipt.id) == [
        (None, "queued"), ("queued", "sent"), ("sent", "queued")]


async def test_expiry_goes_through_the_step_and_is_audited(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """The expiry sweep applies on_expiry (queued only) and audits queued -> expired."""
    ledger = await open_ledger()
    m = make_message((BE, LU), lifetime=SEC)
    await ledger.outbox.submit(m, None, NOW)
    await ledger.outbox.transition(m.id, LU, partial(on_confirmed, now=NOW))
    assert await ledger.outbox.expire(NOW + 2 * SEC, frozenset()) == [(m.id, BE)]
    trail = await _delivery_audit(ledger, m.id)
    assert trail.count(("queued", "expired")) == 1
    assert await _states(ledger, m.id) == {BE: "expired", LU: "sent"}


async def test_expiry_leaves_out_deliveries_in_flight(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_message: Callable[..., OutgoingMessage],
) -> None:
    """A delivery whose publish is under way is not expired: its confirm may still come."""
    ledger = await open_ledger()
    m = make_message((BE,), lifetime=SEC)
    await ledger.outbox.submit(m, None, NOW)
    assert await ledger.outbox.expire(NOW + 2 * SEC, frozenset({(m.id, BE)})) == []
    assert await _states(ledger, m.id) == {BE: "queued"}


def test_only_the_delivery_module_writes_delivery_rows() -> None:
    """No SQL outside adapters/stores/deliveries.py inserts, updates or deletes deliveries
    (but the schema's migrations, which fill new columns)."""
    root = Path(__file__).resolve().parents[2] / "gateway"
    writers = [str(p.relative_to(root)) for p in root.rglob("*.py")
               if any(w in p.read_text(encoding="utf-8").upper()
                      for w in ("INTO DELIVERIES", "UPDATE DELIVERIES", "DELETE FROM DELIVERIES"))]
    assert sorted(writers) == ["adapters/sqlite/schema.py", "adapters/stores/deliveries.py"]


async def test_unacknowledged_lists_what_waits_of_one_priority_newest_first(
    open_ledger: Callable[..., Awaitable[SqliteLedger]],
    make_entry: Callable[..., InboxEntry], make_receipt: Callable[..., OutgoingMessage],
) -> None:
    """The live view's read of what waits: delivered, of that priority, newest first;
    an acknowledged or other-priority message is not listed."""
    ledger = await open_ledger()
    old = make_entry(priority="flash", received_at=NOW)
    new = make_entry(priority="flash", received_at=NOW + SEC)
    done = make_entry(priority="flash", received_at=NOW + 2 * SEC)
    other = make_entry(priority="urgent", received_at=NOW + 3 * SEC)
    for e in (old, new, done, other):
        await ledger.inbox.ingest(e, make_receipt(e), e.received_at)
    await ledger.inbox.acknowledge(BE, done.id, "officer",
                                   make_receipt(done, ReceiptState.ACKNOWLEDGED), NOW + 4 * SEC)
    assert [e.id for e in await ledger.inbox.unacknowledged("flash", 10)] == [new.id, old.id]
    assert [e.id for e in await ledger.inbox.unacknowledged("flash", 1)] == [new.id]
    assert [e.id for e in await ledger.inbox.unacknowledged("urgent", 10)] == [other.id]


async def test_a_job_lease_has_one_holder_until_it_runs_out_or_is_given_up(
        open_ledger: Callable[..., Awaitable[SqliteLedger]]) -> None:
    """Two instances on one ledger: the first takes the lease and renews it; the second
    gets it only once it ran out, or at once after a release."""
    one, two = await open_ledger(), await open_ledger()
    later = NOW + timedelta(seconds=15)
    assert await one.leases.acquire("jobs", "one", NOW, later)
    assert not await two.leases.acquire("jobs", "two", NOW + timedelta(seconds=5), later)
    assert await one.leases.acquire("jobs", "one", NOW + timedelta(seconds=5),
                                    NOW + timedelta(seconds=20))  # renewed
    assert await two.leases.holder("jobs", NOW + timedelta(seconds=19)) == "one"
    assert not await two.leases.acquire("jobs", "two", NOW + timedelta(seconds=19),
                                        NOW + timedelta(seconds=34))
    assert await two.leases.acquire("jobs", "two", NOW + timedelta(seconds=21),
                                    NOW + timedelta(seconds=36))  # ran out
    assert not await one.leases.acquire("jobs", "one", NOW + timedelta(seconds=22),
                                        NOW + timedelta(seconds=37))
    await one.leases.release("jobs", "one")  # not its lease: nothing changes
    assert await one.leases.holder("jobs", NOW + timedelta(seconds=22)) == "two"
    await two.leases.release("jobs", "two")
    assert await one.leases.acquire("jobs", "one", NOW + timedelta(seconds=23),
                                    NOW + timedelta(seconds=38))
