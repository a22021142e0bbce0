"""Delivery rows and outgoing messages, shared by the stores that write them.

A delivery row changes only through :func:`apply`, which runs a pure step of
:mod:`gateway.protocol.delivery` and writes the result with :func:`_store` (the one
statement that writes ``deliveries``); each change of state is appended to the audit
log in the same transaction. Times are stored as fixed-width RFC 3339 UTC strings,
which sort chronologically.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway.adapters.sqlite.audit import append
from gateway.protocol.delivery import Delivery, DeliveryState, new_delivery
from gateway.protocol.types import format_time, parse_optional_time
from gateway.service.records import InboxEntry, OutgoingMessage

_COLS = ("state", "attempts", "next_attempt_at", "last_error", "sent_at", "delivered_at",
         "acknowledged_at", "rejected_at", "expired_at", "reason")
_TIME_COLS = frozenset({"next_attempt_at", "sent_at", "delivered_at", "acknowledged_at",
                        "rejected_at", "expired_at"})
_UPSERT = (
    "INSERT INTO deliveries (message_id, recipient, " + ", ".join(_COLS) + ") "
    "VALUES (?, ?, " + ", ".join("?" * len(_COLS)) + ") "
    "ON CONFLICT (message_id, recipient) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLS)
)


def t(value: datetime | None) -> str | None:
    """A time as stored (None stays None)."""
    return None if value is None else format_time(value)


def delivery(row: sqlite3.Row) -> Delivery:
    """The delivery a ``deliveries`` row (``SELECT d.*``) holds."""
    values: dict[str, Any] = {c: row[c] for c in _COLS}
    for c in _TIME_COLS:
        values[c] = parse_optional_time(values[c])
    values["state"] = DeliveryState(values["state"])
    return Delivery(**values)


def _store(conn: sqlite3.Connection, message_id: str, recipient: str,  # noqa: PLR0917 - private, one caller per case
           d: Delivery, before: DeliveryState | None, at: datetime) -> None:
    if d.state is not before:
        append(conn, at, "delivery.state", "ledger", message_id,
               {"recipient": recipient, "from": None if before is None else before.value,
                "state": d.state.value, "attempts": d.attempts, "reason": d.reason})
    values = [t(v) if isinstance(v, datetime) else v for v in (getattr(d, c) for c in _COLS)]
    values[0] = d.state.value
    conn.execute(_UPSERT, [message_id, recipient, *values])


def apply(conn: sqlite3.Connection, row: sqlite3.Row, step: Callable[[Delivery], Delivery],
          at: datetime) -> Delivery:
    """Run a pure step on the delivery in ``row`` (``SELECT d.*``) and keep the result."""
    before = delivery(row)
    after = step(before)
    if after != before:
        _store(conn, row["message_id"], row["recipient"], after, before.state, at)
    return after


def insert_outgoing(conn: sqlite3.Connection, m: OutgoingMessage, now: datetime,
                    actor: str = "local") -> None:
    """Store one of our messages (or a receipt) with a new delivery per recipient."""
    answers = m.answers or (None, None)
    if m.answers is not None:
        state = json.loads(m.wire)["envelope"]["body"].get("state")
        append(conn, now, "receipt.issued", actor, m.answers[1],
               {"receipt_id": m.id, "to": m.answers[0], "state": state, "sha256": m.digest,
                "wire_sha256": hashlib.sha256(m.wire).hexdigest()})
    else:
        append(conn, now, "message.submitted", actor, m.id,
               {"type": m.type, "sha256": m.digest, "to": list(m.recipients),
                "incident": m.incident, "priority": m.priority, "tlp": m.tlp,
                "wire_sha256": hashlib.sha256(m.wire).hexdigest()})
    conn.execute(
        "INSERT INTO outbox (id, type, created, expires, priority, mode, tlp, incident, digest,"
        " wire, submitted_at, answers_sender, answers_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (m.id, m.type, t(m.created), t(m.expires), m.priority, m.mode, m.tlp, m.incident,
         m.digest, m.wire, t(now), answers[0], answers[1]),
    )
    for recipient in m.recipients:
        _store(conn, m.id, recipient, new_delivery(now), None, now)


def inbox_entry(row: sqlite3.Row) -> InboxEntry:
    """The incoming message an ``inbox`` row holds."""
    return InboxEntry(
        sender=row["sender"], id=row["id"], type=row["type"], priority=row["priority"],
        mode=row["mode"], tlp=row["tlp"], incident=row["incident"],
        created=parse_optional_time(row["created"]),
        expires=parse_optional_time(row["expires"]), digest=row["digest"],
        wire=bytes(row["wire"]),
        received_at=parse_optional_time(row["received_at"]) or datetime.min,
        state=row["state"], reason=row["reason"], detail=row["detail"],
        acknowledged_at=parse_optional_time(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
    )
