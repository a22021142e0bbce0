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
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from gateway.adapters.stores.audit import append
from gateway.adapters.stores.incident_index import record_sent
from gateway.adapters.stores.sql import Conn, Row
from gateway.protocol.delivery import Delivery, DeliveryState, new_delivery
from gateway.protocol.types import format_time, parse_optional_time
from gateway.service.records import InboxEntry, OutgoingMessage

_COLS = ("state", "attempts", "next_attempt_at", "last_error", "sent_at", "delivered_at",
         "acknowledged_at", "rejected_at", "expired_at", "reason")
_TIME_COLS = frozenset({"next_attempt_at", "sent_at", "delivered_at", "acknowledged_at",
                        "rejected_at", "expired_at"})
_UPDATE = ("UPDATE deliveries SET " + ", ".join(f"{c} = ?" for c in _COLS)  # noqa: S608 - fixed names
           + " WHERE message_id = ? AND recipient = ?")
#: What a new row copies from its message, so that due-time, expiry, backlog and overdue
#: queries run on the deliveries' own indexes (schema step 4).
_META = ("receipt", "priority", "created", "expires", "submitted_at", "actual")
_INSERT = ("INSERT INTO deliveries (message_id, recipient, "  # noqa: S608 - fixed names
           + ", ".join(_COLS + _META) + ") VALUES (?, ?, "
           + ", ".join("?" * (len(_COLS) + len(_META))) + ")")
_COUNT = ("INSERT INTO delivery_counts VALUES (?, ?, ?, ?) ON CONFLICT (recipient, receipt,"
          " state) DO UPDATE SET n = delivery_counts.n + excluded.n")
#: A delivery leaving one state for another: both counts in one statement.
_MOVE = ("INSERT INTO delivery_counts VALUES (?, ?, ?, -1), (?, ?, ?, 1) ON CONFLICT"
         " (recipient, receipt, state) DO UPDATE SET n = delivery_counts.n + excluded.n")


def t(value: datetime | None) -> str | None:
    """A time as stored (None stays None)."""
    return None if value is None else format_time(value)


def delivery(row: Row) -> Delivery:
    """The delivery a ``deliveries`` row (``SELECT d.*``) holds."""
    values: dict[str, Any] = {c: row[c] for c in _COLS}
    for c in _TIME_COLS:
        values[c] = parse_optional_time(values[c])
    values["state"] = DeliveryState(values["state"])
    return Delivery(**values)


def bump(conn: Conn, name: str, by: int = 1) -> None:
    """Add ``by`` to the counter ``name`` (table ``counters``), in the caller's transaction."""
    conn.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET"
                 " n = counters.n + excluded.n", (name, by))


def bump_each(conn: Conn, names: tuple[str, str]) -> None:
    """Add 1 to each of two different counters, in one statement."""
    conn.execute("INSERT INTO counters VALUES (?, 1), (?, 1) ON CONFLICT (name) DO UPDATE SET"
                 " n = counters.n + excluded.n", names)


#: States in which one of our messages still waits for its recipient's acknowledgement.
UNACKNOWLEDGED = frozenset({DeliveryState.QUEUED, DeliveryState.SENT, DeliveryState.DELIVERED})


def unacknowledged_out(priority: str) -> str:
    """The counter of our (message, recipient) pairs not acknowledged, per priority."""
    return f"unacknowledged_out:{priority}"


def counted(mode: str) -> bool:
    """Whether a message of ``mode`` counts among the real unacknowledged and overdue
    messages: exercise and test traffic is shown, marked, but kept out of them."""
    return mode == "actual"


def unacknowledged_in(priority: str) -> str:
    """The counter of received messages delivered but not acknowledged, per priority."""
    return f"unacknowledged_in:{priority}"


def counter(conn: Conn, name: str) -> int:
    """The value of the counter ``name`` (0 if never bumped)."""
    row = conn.execute("SELECT n FROM counters WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def overdue(conn: Conn, cutoffs: Mapping[str, str], counter_of: Callable[[str], str],
            recent_sql: str) -> int:
    """Per priority, the unacknowledged counter (``counter_of(priority)``) less the rows
    still inside the deadline (``recent_sql``, bound to (priority, cutoff): an index range
    as long as the deadline, however long the history)."""
    total = 0
    for priority, cutoff in cutoffs.items():
        recent = conn.execute(recent_sql, (priority, cutoff)).fetchone()[0]
        total += counter(conn, counter_of(priority)) - int(recent)
    return total


def _count(conn: Conn, recipient: str, kind: tuple[int, str, int],
           before: DeliveryState | None, after: DeliveryState) -> None:
    """Keep ``delivery_counts`` (per recipient, receipt or not, state) and the
    unacknowledged counters in step; ``kind`` is (receipt flag, priority, actual flag)."""
    receipt, priority, actual = kind
    if before is None:
        conn.execute(_COUNT, (recipient, receipt, after.value, 1))
    else:  # never the same state: a row is changed once by the statement
        conn.execute(_MOVE, (recipient, receipt, before.value, recipient, receipt, after.value))
    if not receipt and actual:
        change = (after in UNACKNOWLEDGED) - (before in UNACKNOWLEDGED)
        if change:
            bump(conn, unacknowledged_out(priority), change)


def _store(conn: Conn, message_id: str, recipient: str,  # noqa: PLR0917 - private, one caller per case
           d: Delivery, before: DeliveryState | None, at: datetime,
           meta: tuple[Any, ...] | Row) -> None:
    """Write one delivery: a new row (``meta`` is its :data:`_META` values) or a change
    of an existing one (``meta`` is its row)."""
    if d.state is not before:
        append(conn, at, "delivery.state", "ledger", message_id,
               {"recipient": recipient, "from": None if before is None else before.value,
                "state": d.state.value, "attempts": d.attempts, "reason": d.reason})
    values = [t(v) if isinstance(v, datetime) else v for v in (getattr(d, c) for c in _COLS)]
    values[0] = d.state.value
    if isinstance(meta, tuple):
        conn.execute(_INSERT, [message_id, recipient, *values, *meta])
        _count(conn, recipient, (int(meta[0]), str(meta[1]), int(meta[5])), None, d.state)
        return
    conn.execute(_UPDATE, [*values, message_id, recipient])
    if d.state is not before:
        _count(conn, recipient, (int(meta["receipt"]), str(meta["priority"]),
                                 int(meta["actual"])), before, d.state)


def apply(conn: Conn, row: Row, step: Callable[[Delivery], Delivery],
          at: datetime) -> Delivery:
    """Run a pure step on the delivery in ``row`` (``SELECT d.*``) and keep the result."""
    before = delivery(row)
    after = step(before)
    if after != before:
        _store(conn, row["message_id"], row["recipient"], after, before.state, at, row)
    return after


def remove_archived(conn: Conn, message_id: str,
                    archived: set[tuple[str, str]]) -> bool:
    """Delete one of our messages, its deliveries and the receipts we received for it,
    now in an archive (retention), keeping the counters in step. ``archived``: its
    (recipient, state) pairs as archived; if they changed since (or the message is
    gone), nothing is deleted and False is returned."""
    rows = conn.execute("SELECT * FROM deliveries WHERE message_id = ?",
                        (message_id,)).fetchall()
    if not rows or {(d["recipient"], d["state"]) for d in rows} != archived:
        return False
    for d in rows:
        conn.execute(_COUNT, (d["recipient"], d["receipt"], d["state"], -1))
        if not d["receipt"] and d["actual"] and DeliveryState(d["state"]) in UNACKNOWLEDGED:
            bump(conn, unacknowledged_out(d["priority"]), -1)
    conn.execute("DELETE FROM deliveries WHERE message_id = ?", (message_id,))
    conn.execute("DELETE FROM receipts_in WHERE message_id = ?", (message_id,))
    conn.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
    return True


def insert_outgoing(conn: Conn, m: OutgoingMessage, now: datetime,
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
    meta = (int(m.type == "receipt"), m.priority, t(m.created), t(m.expires), t(now),
            int(counted(m.mode)))
    for recipient in m.recipients:
        _store(conn, m.id, recipient, new_delivery(now), None, now, meta)
    if m.answers is None and m.incident is not None:
        record_sent(conn, m, now)


def inbox_entry(row: Row) -> InboxEntry:
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
