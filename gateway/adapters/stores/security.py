"""Inputs refused without a receipt (:class:`gateway.service.ports.SecurityStore`).

Bounded per publisher (the broker-authenticated user) and UTC day: the first
:data:`SECURITY_PAYLOAD_BYTES` of payloads are kept (each cut at
:data:`MAX_STORED_PAYLOAD`), then only their hashes; after :data:`SECURITY_ROWS_PER_DAY`
events only counts per reason (with the last hash) grow, so garbage cannot fill the disk
or the audit log.
"""

from __future__ import annotations

import hashlib

from gateway.adapters.stores.audit import append
from gateway.adapters.stores.deliveries import bump, t
from gateway.adapters.stores.sql import Conn, Db
from gateway.protocol.types import format_time
from gateway.service.records import SecurityEvent, SecurityEventView, SuppressedCount

MAX_STORED_PAYLOAD = 64 * 1024
#: Per publisher and UTC day: payload bytes kept, and security events kept one by one.
SECURITY_PAYLOAD_BYTES = 1024 * 1024
SECURITY_ROWS_PER_DAY = 1000


def _count(conn: Conn, event: SecurityEvent, publisher: str, day: str,
           digest: str) -> None:
    conn.execute(
        "INSERT INTO security_suppressed VALUES (?,?,?,1,?,?,?)"
        " ON CONFLICT (publisher, day, reason) DO UPDATE SET count = count + 1,"
        " bytes = bytes + excluded.bytes, last_at = excluded.last_at,"
        " last_sha256 = excluded.last_sha256",
        (publisher, day, event.reason, len(event.payload), t(event.at), digest))
    if conn.execute("SELECT SUM(count) FROM security_suppressed WHERE publisher=? AND day=?",
                    (publisher, day)).fetchone()[0] == 1:
        append(conn, event.at, "security.suppressed", publisher, "-",
               {"day": day, "after": SECURITY_ROWS_PER_DAY})


class SecurityStore:
    """The security_events and security_suppressed tables."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def record(self, event: SecurityEvent) -> None:
        """See :meth:`gateway.service.ports.SecurityStore.record` and the module's bounds."""
        digest = hashlib.sha256(event.payload).hexdigest()
        publisher = event.amqp_user or "-"
        day = format_time(event.at)[:10]

        def run(conn: Conn) -> None:
            rows, stored = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM security_events"
                " WHERE amqp_user IS NOT DISTINCT FROM ? AND at >= ?",
                (event.amqp_user, day)).fetchone()
            bump(conn, "security_events")
            if rows >= SECURITY_ROWS_PER_DAY:
                _count(conn, event, publisher, day, digest)
                return
            keep = event.payload[:MAX_STORED_PAYLOAD] \
                if stored < SECURITY_PAYLOAD_BYTES else b""
            conn.execute(
                "INSERT INTO security_events (at, reason, detail, claimed_sender, claimed_id,"
                " amqp_user, payload_sha256, payload) VALUES (?,?,?,?,?,?,?,?)",
                (t(event.at), event.reason, event.detail[:1000], event.claimed_sender,
                 event.claimed_id, event.amqp_user, digest, keep),
            )
            append(conn, event.at, "security.event", publisher, event.claimed_id or "-",
                   {"reason": event.reason, "claimed_sender": event.claimed_sender,
                    "payload_sha256": digest})

        await self._db.write(run)

    async def recent(self, limit: int = 100, before: int | None = None
                     ) -> list[SecurityEventView]:
        """See :meth:`gateway.service.ports.SecurityStore.recent`."""

        def run(conn: Conn) -> list[SecurityEventView]:
            rows = conn.execute(
                "SELECT seq, at, reason, detail, claimed_sender, claimed_id, amqp_user,"
                " payload_sha256 FROM security_events WHERE seq < ? ORDER BY seq DESC"
                " LIMIT ?", (2**62 if before is None else before, limit))
            return [SecurityEventView(**dict(r)) for r in rows]

        return await self._db.read(run)

    async def suppressed(self) -> list[SuppressedCount]:
        """See :meth:`gateway.service.ports.SecurityStore.suppressed`."""

        def run(conn: Conn) -> list[SuppressedCount]:
            rows = conn.execute("SELECT * FROM security_suppressed ORDER BY day DESC,"
                                " publisher, reason LIMIT 500")
            return [SuppressedCount(**dict(r)) for r in rows]

        return await self._db.read(run)
