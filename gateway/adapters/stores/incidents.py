"""Loads incident threads from the SQLite ledger: outbox with deliveries, and inbox
(:class:`gateway.service.ports.IncidentStore`).

Receipts are never part of a thread. Reads run on a reader connection (one snapshot),
on the incident indexes of schema step 4. The incident list is read from the incident
index (:mod:`.incident_index`), never from the messages.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from gateway.adapters.stores.sql import Conn, Db, Row
from gateway.protocol.types import parse_optional_time
from gateway.service.incidents import DeliveryRecord, IncidentSummary, ThreadItem, body_fields

_OUTBOX = {
    True: "SELECT id, type, created, priority, mode, tlp, incident, wire, submitted_at"
          " FROM outbox WHERE incident = ? AND type != 'receipt'",
    False: "SELECT id, type, created, priority, mode, tlp, incident, wire, submitted_at"
           " FROM outbox WHERE incident IS NOT NULL AND type != 'receipt'",
}
_DELIVERIES = {
    True: "SELECT d.message_id, d.recipient, d.state, d.sent_at, d.delivered_at,"
          " d.acknowledged_at, d.rejected_at, d.expired_at, d.reason"
          " FROM outbox o JOIN deliveries d ON d.message_id = o.id"
          " WHERE o.incident = ? AND o.type != 'receipt'",
    False: "SELECT d.message_id, d.recipient, d.state, d.sent_at, d.delivered_at,"
           " d.acknowledged_at, d.rejected_at, d.expired_at, d.reason"
           " FROM outbox o JOIN deliveries d ON d.message_id = o.id"
           " WHERE o.incident IS NOT NULL AND o.type != 'receipt'",
}
_INBOX = {
    True: "SELECT sender, id, type, priority, mode, tlp, incident, created, wire,"
          " received_at, state, reason, acknowledged_at, acknowledged_by"
          " FROM inbox WHERE incident = ? AND type != 'receipt'",
    False: "SELECT sender, id, type, priority, mode, tlp, incident, created, wire,"
           " received_at, state, reason, acknowledged_at, acknowledged_by"
           " FROM inbox WHERE incident IS NOT NULL AND type != 'receipt'",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _envelope(wire: bytes) -> dict[str, Any]:
    try:
        signed = json.loads(wire)
    except ValueError:
        return {}
    envelope = signed.get("envelope") if isinstance(signed, dict) else None
    return envelope if isinstance(envelope, dict) else {}


def _recipients(envelope: dict[str, Any]) -> tuple[str, ...]:
    to = envelope.get("to")
    return tuple(str(c)[:40] for c in to[:64]) if isinstance(to, list) else ()


def _delivery(row: Row) -> DeliveryRecord:
    return DeliveryRecord(
        recipient=row["recipient"], state=row["state"],
        sent_at=parse_optional_time(row["sent_at"]),
        delivered_at=parse_optional_time(row["delivered_at"]),
        acknowledged_at=parse_optional_time(row["acknowledged_at"]),
        rejected_at=parse_optional_time(row["rejected_at"]),
        expired_at=parse_optional_time(row["expired_at"]), reason=row["reason"])


def sent_item(row: Mapping[str, Any], deliveries: list[DeliveryRecord]) -> ThreadItem:
    """The thread item of one of our messages (an ``outbox`` row, or its values)."""
    envelope = _envelope(bytes(row["wire"]))
    sender = envelope.get("from")
    return ThreadItem(
        direction="out", id=row["id"], sender=sender if isinstance(sender, str) else "",
        incident=row["incident"], type=row["type"], created=parse_optional_time(row["created"]),
        recorded_at=parse_optional_time(row["submitted_at"]) or _EPOCH, to=_recipients(envelope),
        priority=row["priority"], tlp=row["tlp"], mode=row["mode"],
        deliveries=tuple(deliveries), **body_fields(row["type"], envelope.get("body")))


def received_item(row: Mapping[str, Any]) -> ThreadItem:
    """The thread item of a received message (an ``inbox`` row, or its values)."""
    envelope = _envelope(bytes(row["wire"]))
    return ThreadItem(
        direction="in", id=row["id"], sender=row["sender"], incident=row["incident"],
        type=row["type"], created=parse_optional_time(row["created"]),
        recorded_at=parse_optional_time(row["received_at"]) or _EPOCH, to=_recipients(envelope),
        priority=row["priority"], tlp=row["tlp"], mode=row["mode"], state=row["state"],
        reason=row["reason"], acknowledged_at=parse_optional_time(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
        **body_fields(row["type"], envelope.get("body")))


def _load(conn: Conn, incident: str | None) -> list[ThreadItem]:
    one = incident is not None
    args = (incident,) if one else ()
    deliveries: dict[str, list[DeliveryRecord]] = defaultdict(list)
    for row in conn.execute(_DELIVERIES[one], args):
        deliveries[row["message_id"]].append(_delivery(row))
    items = [sent_item(row, deliveries[row["id"]]) for row in conn.execute(_OUTBOX[one], args)]
    items.extend(received_item(row) for row in conn.execute(_INBOX[one], args))
    return items


def _summary(row: Row) -> IncidentSummary:
    return IncidentSummary(
        incident=row["incident"], title=row["sitrep_title"] or row["title"],
        centres=tuple(json.loads(row["centres"])), messages=row["messages"],
        rejected=row["rejected"], last_activity=row["last_activity"],
        warnings=row["warnings"], highest_severity=row["highest_severity"],
        actual_messages=row["actual"])


#: Which incidents a board lists (schema step 8 indexes each): real ones (an actual
#: message, or only rejected ones) or exercises (every message exercise or test traffic).
#: The same text as the partial indexes' conditions, so that SQLite can use them.
BOARDS = {False: "(actual > 0 OR messages = 0)", True: "actual = 0 AND messages > 0"}


def summaries(conn: Conn, after: tuple[str, ...] | None, limit: int,
              exercise: bool | None = None) -> list[IncidentSummary]:
    """Incident rows of one board (``exercise``; None: every incident), most recent
    activity first (ties by incident id), past ``after`` (the (last_activity, incident)
    of the previous page's last row)."""
    where: list[str] = [] if exercise is None else [BOARDS[exercise]]
    args: list[str] = []
    if after is not None:
        where.append("last_activity <= ? AND (last_activity < ? OR incident > ?)")
        args += [after[0], after[0], after[1]]
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    rows = conn.execute(f"SELECT * FROM incident_index {clause}"  # noqa: S608 - fixed clauses
                        "ORDER BY last_activity DESC, incident LIMIT ?", (*args, limit))
    return [_summary(r) for r in rows]


class IncidentsStore:
    """Incident threads, read from the outbox, deliveries and inbox; the incident index."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def index(self, after: tuple[str, ...] | None, limit: int, *,
                    exercise: bool | None = None) -> list[IncidentSummary]:
        """One row per incident of a board, most recent activity first, from the incident
        index (``after``: the cursor values of the previous page's last row; see
        :meth:`gateway.service.ports.IncidentStore.index`)."""
        return await self._db.read(partial(summaries, after=after, limit=limit,
                                           exercise=exercise))

    async def summary(self, incident: str) -> IncidentSummary | None:
        """See :meth:`gateway.service.ports.IncidentStore.summary`."""

        def run(conn: Conn) -> IncidentSummary | None:
            row = conn.execute("SELECT * FROM incident_index WHERE incident = ?",
                               (incident,)).fetchone()
            return None if row is None else _summary(row)

        return await self._db.read(run)

    async def thread_items(self, incident: str | None) -> list[ThreadItem]:
        """Every non-receipt message on ``incident`` (None: on any incident), sent and
        received. Rejected inbox messages are included (the thread counts them); a
        message's body is read from its signed wire envelope."""
        return await self._db.read(partial(_load, incident=incident))
