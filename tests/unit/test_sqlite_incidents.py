"""Incident threads from a real SQLite ledger: gateway.adapters.sqlite_incidents."""

from __future__ import annotations

import csv
import hashlib
import io
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.adapters.postgres.ledger import PostgresLedger
from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.adapters.sqlite.schema import migrate
from gateway.adapters.stores.incidents import _DELIVERIES, _INBOX, _OUTBOX
from gateway.adapters.stores.ledger import StoreLedger
from gateway.protocol.delivery import DeliveryState, on_confirmed, on_receipt
from gateway.protocol.keys import SigningKey, default_key_id
from gateway.protocol.receipts import ReceiptState, receipt_envelope
from gateway.protocol.signing import seal
from gateway.protocol.types import Mode, Priority, format_time
from gateway.service.incidents import build_thread, summarise_incidents, timeline_csv
from gateway.service.ports import InboxEntry, OutgoingMessage
from gateway.service.submit import outgoing

ME, BE, DE = "NL-NCC", "BE-NCCN", "DE-NW"
INC, OTHER = "EU-2026-0042", "BE-2026-0001"
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _key(centre: str) -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(centre.encode()).digest())
    return SigningKey(kid=default_key_id(centre, private.public_key()), private=private)


KEYS = {c: _key(c) for c in (ME, BE, DE)}


def sitrep(number: int, *, purpose: str | None = None, supersedes: int | None = None,
           severity: str = "moderate", title: str = "Storm surge") -> dict[str, Any]:
    """A sitrep body on INC."""
    body: dict[str, Any] = {
        "incident": {"id": INC, "title": title, "phase": "response"},
        "report_number": number, "severity": severity,
        "summary": {"en": f"Report {number}", "nl": f"Rapport {number}"},
    }
    if purpose:
        body["purpose"] = purpose
    if supersedes:
        body["supersedes"] = supersedes
    return body


def envelope(sender: str, to: tuple[str, ...], created: datetime, body: dict[str, Any], *,
             msg_type: str = "sitrep", incident: str | None = INC, mode: str = "actual"
             ) -> dict[str, Any]:
    """A JSON-ready envelope."""
    env: dict[str, Any] = {
        "v": 1, "id": str(uuid.uuid4()), "type": msg_type, "from": sender, "to": list(to),
        "created": format_time(created), "expires": format_time(created + timedelta(days=1)),
        "mode": mode, "tlp": "AMBER", "priority": "urgent", "body": body,
    }
    if incident is not None:
        env["incident"] = incident
    return env


def ours(created: datetime, body: dict[str, Any], to: tuple[str, ...] = (BE, DE),
         **kw: Any) -> OutgoingMessage:
    """One of our sealed messages."""
    return outgoing(envelope(ME, to, created, body, **kw), KEYS[ME], to)


def received(sender: str, created: datetime, body: dict[str, Any], *,
             state: str = "delivered", **kw: Any) -> InboxEntry:
    """A sealed message from ``sender`` as recorded in our inbox a minute after creation."""
    env = envelope(sender, (ME, DE if sender == BE else BE), created, body, **kw)
    sealed = seal(env, KEYS[sender])
    rejected = state == "rejected"
    return InboxEntry(
        sender=sender, id=env["id"], type=env["type"], priority="urgent", mode=env["mode"],
        tlp="AMBER", incident=env.get("incident"), created=None if rejected else created,
        expires=None if rejected else created + timedelta(days=1), digest=sealed.digest,
        wire=sealed.wire, received_at=created + MIN, state=state,
        reason="schema_invalid" if rejected else None)


def receipt_for(entry: InboxEntry, state: ReceiptState, now: datetime) -> OutgoingMessage:
    """Our receipt answering an inbox entry."""
    env = receipt_envelope(
        receipt_id=uuid.uuid4(), issuer=ME, sender=entry.sender, message_id=entry.id,
        digest=entry.digest, state=state, now=now, mode=Mode.ACTUAL, priority=Priority.URGENT)
    return outgoing(env, KEYS[ME], (entry.sender,), answers=(entry.sender, entry.id))


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteLedger]:
    """An open ledger on each engine, closed at teardown."""
    if request.param == "sqlite":
        led: StoreLedger = SqliteLedger(tmp_path / "l.db")
    else:
        led = PostgresLedger(request.getfixturevalue("postgres").ledger_url())
    await led.open()
    yield led  # type: ignore[misc] # the stores are the same on both engines
    await led.close()


@pytest.fixture
async def sqlite_ledger(tmp_path: Path) -> AsyncIterator[SqliteLedger]:
    """An open SQLite ledger (for what only SQLite has: its query plans), closed at teardown."""
    led = SqliteLedger(tmp_path / "l.db")
    await led.open()
    yield led
    await led.close()


async def _store(ledger: SqliteLedger) -> dict[str, str]:
    """A busy incident: our sitreps 1, 2 and an alert; BE's 1, 2, 4; DE's rejected one."""
    nl1 = ours(T0, sitrep(1, purpose="initial"))
    nl2 = ours(T0 + 40 * MIN, sitrep(2, purpose="update", supersedes=1, severity="severe"))
    alert = ours(T0 + 25 * MIN, {"identifier": "NL-CAP-1", "sender": ME,
                                 "infos": [{"headline": "Evacuate Zone A",
                                            "severity": "Extreme"}]},
                 to=(BE,), msg_type="alert")
    elsewhere = ours(T0, sitrep(1), incident=OTHER)
    no_incident = ours(T0, sitrep(1), incident=None)
    fake_receipt = ours(T0, {"note": "receipts never join a thread"}, msg_type="receipt")
    for m in (nl1, nl2, alert, elsewhere, no_incident, fake_receipt):
        await ledger.outbox.submit(m, None, m.created)
    await ledger.outbox.transition(nl1.id, BE, partial(on_confirmed, now=T0 + MIN))
    await ledger.outbox.transition(nl1.id, BE, partial(
        on_receipt, state=DeliveryState.DELIVERED, at=T0 + 2 * MIN))
    await ledger.outbox.transition(nl1.id, BE, partial(
        on_receipt, state=DeliveryState.ACKNOWLEDGED, at=T0 + 9 * MIN))
    await ledger.outbox.transition(nl1.id, DE, partial(on_confirmed, now=T0 + MIN))

    be = [received(BE, T0 + 10 * MIN, sitrep(1, purpose="initial")),
          received(BE, T0 + 20 * MIN, sitrep(2, title="Storm surge Scheldt")),
          received(BE, T0 + 50 * MIN, sitrep(4, supersedes=3, severity="extreme",
                                             title="Storm surge Scheldt"))]
    de = received(DE, T0 + 30 * MIN, sitrep(1), state="rejected")
    for entry in [*be, de]:
        receipt = None if entry.state == "rejected" else receipt_for(
            entry, ReceiptState.DELIVERED, entry.received_at)
        await ledger.inbox.ingest(entry, receipt, entry.received_at)
    ack = receipt_for(be[0], ReceiptState.ACKNOWLEDGED, T0 + 15 * MIN)
    assert await ledger.inbox.acknowledge(BE, be[0].id, "Officer A", ack, T0 + 15 * MIN)
    return {"nl1": nl1.id, "nl2": nl2.id, "alert": alert.id, "be1": be[0].id,
            "be2": be[1].id, "be4": be[2].id, "de": de.id}


async def test_thread_from_the_ledger(ledger: SqliteLedger) -> None:
    """Outbox with deliveries and inbox make the right centres, timeline and warnings."""
    ids = await _store(ledger)
    items = await ledger.incidents.thread_items(INC)
    assert {i.type for i in items} == {"sitrep", "alert"}
    thread = build_thread(INC, items, ME)

    assert thread["title"] == "Storm surge Scheldt"
    assert thread["highest_severity"] == "extreme"
    assert [(c["centre"], c["message_id"], c["report_number"]) for c in thread["centres"]] == [
        (BE, ids["be4"], 4), (ME, ids["nl2"], 2)]
    be_latest = thread["centres"][0]
    assert be_latest["summary"] == {"en": "Report 4", "nl": "Rapport 4"}
    assert (be_latest["created"], be_latest["phase"], be_latest["severity"]) == (
        "2026-11-27T08:50:00.000Z", "response", "extreme")

    timeline = thread["timeline"]
    assert [e["id"] for e in timeline] == [
        ids["nl1"], ids["be1"], ids["be2"], ids["alert"], ids["nl2"], ids["be4"]]
    nl1, be1 = timeline[0], timeline[1]
    assert nl1["from"] == ME
    assert nl1["to"] == [BE, DE]
    assert nl1["submitted_at"] == "2026-11-27T08:00:00.000Z"
    assert [(r["centre"], r["state"], r["sent_at"], r["delivered_at"], r["acknowledged_at"])
            for r in nl1["recipients"]] == [
        (BE, "acknowledged", "2026-11-27T08:01:00.000Z", "2026-11-27T08:02:00.000Z",
         "2026-11-27T08:09:00.000Z"),
        (DE, "sent", "2026-11-27T08:01:00.000Z", None, None)]
    assert (be1["from"], be1["to"], be1["received_at"], be1["state"], be1["acknowledged_at"],
            be1["acknowledged_by"]) == (
        BE, [ME, DE], "2026-11-27T08:11:00.000Z", "acknowledged", "2026-11-27T08:15:00.000Z",
        "Officer A")
    assert (timeline[3]["type"], timeline[3]["title"], timeline[3]["severity"]) == (
        "alert", "Evacuate Zone A", "extreme")

    assert [(w["kind"], w["centre"], w["report_numbers"]) for w in thread["warnings"]] == [
        ("missing_report", BE, [3]), ("superseded_unknown", BE, [3])]
    assert thread["counts"] == {
        "messages": 6, "sent": 3, "received": 3, "rejected": 1,
        "by_type": {"alert": 1, "sitrep": 5}, "centres": 2, "warnings": 2}

    rows = list(csv.DictReader(io.StringIO(timeline_csv(thread), newline="")))
    assert len(rows) == 3 + 3 + 2 + 3  # two sitreps to 2 centres, an alert to 1, 3 received
    assert [(r["event"], r["recipient"], r["state"]) for r in rows[:3]] == [
        ("sent", "", ""), ("sent", BE, "acknowledged"), ("sent", DE, "sent")]
    assert (rows[3]["event"], rows[3]["recipient"], rows[3]["acknowledged_by"]) == (
        "received", ME, "Officer A")


async def test_index_of_all_incidents(ledger: SqliteLedger) -> None:
    """incident=None loads every message with an incident; the index has one row each."""
    await _store(ledger)
    rows = summarise_incidents(await ledger.incidents.thread_items(None), ME)
    assert [(r["incident"], r["messages"], r["rejected"], r["warnings"], r["centres"])
            for r in rows] == [(INC, 6, 1, 2, [BE, ME]), (OTHER, 1, 0, 0, [ME])]
    assert rows[0]["last_activity"] == "2026-11-27T08:51:00.000Z"
    assert rows[0]["highest_severity"] == "extreme"


async def test_unknown_incident_loads_nothing(ledger: SqliteLedger) -> None:
    """An incident nobody wrote about gives no items (the API answers 404)."""
    await _store(ledger)
    assert await ledger.incidents.thread_items("NOPE-1") == []


async def test_queries_use_the_incident_indexes(sqlite_ledger: SqliteLedger) -> None:
    """After a load the indexes exist and the per-incident queries search them."""
    ledger = sqlite_ledger
    await ledger.incidents.thread_items(INC)

    def plans(conn: sqlite3.Connection) -> list[str]:
        return [" ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {q[True]}", (INC,)))
                for q in (_OUTBOX, _INBOX, _DELIVERIES)]

    outbox, inbox, deliveries = await ledger.db.read(plans)
    assert "outbox_incident" in outbox
    assert "inbox_incident" in inbox
    assert "outbox_incident" in deliveries
    assert "sqlite_autoindex_deliveries_1" in deliveries  # (message_id, recipient) key


def test_incident_indexes_are_in_the_schema() -> None:
    """The incident indexes come with the schema's migrations, on any new ledger."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"outbox_incident_listed", "inbox_incident_listed", "incident_index_activity"} \
        <= names
    conn.close()
