"""Messages peers sent us (:class:`gateway.service.ports.InboxStore`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial

from gateway.adapters.stores.audit import append
from gateway.adapters.stores.deliveries import (
    apply,
    bump,
    bump_each,
    counted,
    counter,
    inbox_entry,
    insert_outgoing,
    overdue,
    t,
    unacknowledged_in,
)
from gateway.adapters.stores.incident_index import record_received
from gateway.adapters.stores.sql import Conn, Db
from gateway.protocol.delivery import on_resend_requested
from gateway.service.records import InboxEntry, IngestOutcome, OutgoingMessage

#: Filters of the inbox list, the most selective first (each has an index that gives its
#: rows in the list's order).
#: Every priority a delivered message can have (admission checked it).
PRIORITIES = ("flash", "urgent", "routine")
_FILTERS = ("incident", "sender", "state", "type", "priority", "mode")


def _resend_receipts(conn: Conn, sender: str, message_id: str,
                     now: datetime) -> None:
    """The peer sent ``message_id`` again: the receipts we issued for it are due again."""
    rows = conn.execute(
        "SELECT * FROM deliveries WHERE state IN ('queued', 'sent') AND message_id IN"
        " (SELECT id FROM outbox WHERE answers_sender=? AND answers_id=?)",
        (sender, message_id)).fetchall()
    for row in rows:
        apply(conn, row, partial(on_resend_requested, now=now), now)


class InboxStore:
    """The inbox table."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def ingest(
        self, entry: InboxEntry, receipt: OutgoingMessage | None, now: datetime
    ) -> tuple[IngestOutcome, str]:
        """See :meth:`gateway.service.ports.InboxStore.ingest`."""

        def run(conn: Conn) -> tuple[IngestOutcome, str]:
            # held, or archived and still inside the dedup window (retention)
            row = conn.execute(
                "SELECT 0 AS kept, digest, state FROM inbox WHERE sender=? AND id=? UNION ALL"
                " SELECT 1 AS kept, digest, state FROM dedup WHERE sender=? AND id=?"
                " ORDER BY kept LIMIT 1",
                (entry.sender, entry.id, entry.sender, entry.id)).fetchone()
            if row is not None:
                if row["digest"] != entry.digest:
                    return IngestOutcome.CONFLICT, str(row["state"])
                append(conn, now, "message.duplicate", entry.sender, entry.id,
                       {"from": entry.sender, "sha256": entry.digest})
                _resend_receipts(conn, entry.sender, entry.id, now)
                return IngestOutcome.DUPLICATE, str(row["state"])
            conn.execute(
                "INSERT INTO inbox VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (entry.sender, entry.id, entry.type, entry.priority, entry.mode, entry.tlp,
                 entry.incident, t(entry.created), t(entry.expires), entry.digest, entry.wire,
                 t(entry.received_at), entry.state, entry.reason, entry.detail,
                 t(entry.acknowledged_at), entry.acknowledged_by),
            )
            append(conn, now, "message.received", entry.sender, entry.id,
                   {"from": entry.sender, "type": entry.type, "sha256": entry.digest,
                    "state": entry.state, "reason": entry.reason,
                    "wire_sha256": hashlib.sha256(entry.wire).hexdigest()})
            if entry.state == "delivered" and counted(entry.mode):
                bump_each(conn, ("inbox", unacknowledged_in(entry.priority)))
            else:
                bump(conn, "inbox")
            if entry.incident is not None and entry.type != "receipt":
                record_received(conn, entry)
            if receipt is not None:
                insert_outgoing(conn, receipt, now, "ledger")
            return IngestOutcome.NEW, entry.state

        return await self._db.write(run)

    async def get(self, sender: str, message_id: str) -> InboxEntry | None:
        """See :meth:`gateway.service.ports.InboxStore.get`."""

        def run(conn: Conn) -> InboxEntry | None:
            row = conn.execute("SELECT * FROM inbox WHERE sender=? AND id=?",
                               (sender, message_id)).fetchone()
            return None if row is None else inbox_entry(row)

        return await self._db.read(run)

    async def find(self, message_id: str) -> list[InboxEntry]:
        """See :meth:`gateway.service.ports.InboxStore.find`."""

        def run(conn: Conn) -> list[InboxEntry]:
            rows = conn.execute("SELECT * FROM inbox WHERE id=?", (message_id,)).fetchall()
            return [inbox_entry(r) for r in rows]

        return await self._db.read(run)

    async def acknowledge(
        self, sender: str, message_id: str, by: str, receipt: OutgoingMessage, now: datetime,
        *, actor: str | None = None,
    ) -> bool:
        """See :meth:`gateway.service.ports.InboxStore.acknowledge`."""

        def run(conn: Conn) -> bool:
            changed = conn.execute(
                "UPDATE inbox SET state='acknowledged', acknowledged_at=?, acknowledged_by=?"
                " WHERE sender=? AND id=? AND state='delivered' RETURNING priority, mode",
                (t(now), by, sender, message_id),
            ).fetchone()
            if changed is None:
                return False
            if counted(changed[1]):
                bump(conn, unacknowledged_in(changed[0]), -1)
            who = actor or by
            append(conn, now, "message.acknowledged", who, message_id,
                   {"from": sender, "by": by})
            insert_outgoing(conn, receipt, now, who)
            return True

        return await self._db.write(run)

    async def list(self, filters: Mapping[str, str], limit: int,
                   after: tuple[str, ...] | None = None) -> list[InboxEntry]:
        """See :meth:`gateway.service.ports.InboxStore.list`."""
        where, args = ["type != 'receipt'"], []
        indexed = False
        for column in _FILTERS:  # most selective first: only it may pick the index
            if column in filters:
                # "+column" keeps SQLite off the other filters' (less selective) indexes
                where.append(f"{'+' if indexed else ''}{column} = ?")
                args.append(filters[column])
                indexed = True
        if after is not None:
            where.append("(received_at, sender, id) < (?, ?, ?)")
            args.extend(after)

        def run(conn: Conn) -> list[InboxEntry]:
            rows = conn.execute(
                f"SELECT * FROM inbox WHERE {' AND '.join(where)} "  # noqa: S608 - fixed column names
                "ORDER BY received_at DESC, sender DESC, id DESC LIMIT ?", [*args, limit],
            ).fetchall()
            return [inbox_entry(r) for r in rows]

        return await self._db.read(run)

    async def overdue(self, cutoffs: Mapping[str, str]) -> int:
        """See :meth:`gateway.service.ports.InboxStore.overdue`: per priority, the
        counter of unacknowledged actual messages less those received after the cutoff (a
        range of ``inbox_unacked_actual`` as long as the deadline, however long the
        history); exercise and test messages have no deadline."""

        return await self._db.read(partial(
            overdue, cutoffs=cutoffs, counter_of=unacknowledged_in,
            recent_sql="SELECT COUNT(*) FROM inbox WHERE state = 'delivered' AND mode ="
                       " 'actual' AND priority = ? AND received_at > ?"))

    async def unacknowledged(self, priority: str, limit: int, *,
                             actual: bool = False) -> Sequence[InboxEntry]:
        """See :meth:`gateway.service.ports.InboxStore.unacknowledged`: a range of
        ``inbox_unacked`` (``inbox_unacked_actual`` for ``actual`` ones only), however
        many messages were ever acknowledged."""
        only = " AND mode = 'actual'" if actual else ""

        def run(conn: Conn) -> list[InboxEntry]:
            return [inbox_entry(r) for r in conn.execute(
                f"SELECT * FROM inbox WHERE state = 'delivered' AND priority = ?{only}"  # noqa: S608 - fixed clause
                " ORDER BY received_at DESC LIMIT ?", (priority, limit))]

        return await self._db.read(run)

    async def recent(self, mode: str, since: str) -> int:
        """See :meth:`gateway.service.ports.InboxStore.recent`: a range of
        ``inbox_mode_listed`` as long as the window, however long the history."""

        def run(conn: Conn) -> int:
            return int(conn.execute(
                "SELECT COUNT(*) FROM inbox WHERE mode = ? AND type != 'receipt'"
                " AND received_at >= ?", (mode, since)).fetchone()[0])

        return await self._db.read(run)

    async def waiting(self) -> int:
        """See :meth:`gateway.service.ports.InboxStore.waiting`."""

        def run(conn: Conn) -> int:
            return sum(counter(conn, unacknowledged_in(p)) for p in PRIORITIES)

        return await self._db.read(run)
