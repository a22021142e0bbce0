"""The embedded ledger: SQLite in WAL mode, implementing :class:`service.ports.Ledger`.

Times are stored as fixed-width RFC 3339 UTC strings, which sort chronologically.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.adapters import sqlite_audit
from gateway.adapters.sqlite_audit import AUDIT_SCHEMA, append
from gateway.adapters.sqlite_db import Database
from gateway.adapters.sqlite_incidents import INCIDENT_INDEXES
from gateway.errors import SubmissionError
from gateway.protocol.delivery import Delivery, DeliveryState, new_delivery, on_receipt
from gateway.protocol.receipts import plausible_at
from gateway.protocol.types import format_time
from gateway.service.ports import (
    DueDelivery,
    IdempotencyKey,
    InboxEntry,
    IncomingReceipt,
    IngestOutcome,
    OutgoingMessage,
    ReceiptOutcome,
    SecurityEvent,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
  id TEXT PRIMARY KEY, type TEXT NOT NULL, created TEXT NOT NULL, expires TEXT NOT NULL,
  priority TEXT NOT NULL, mode TEXT NOT NULL, tlp TEXT NOT NULL, incident TEXT,
  digest TEXT NOT NULL, wire BLOB NOT NULL, submitted_at TEXT NOT NULL,
  answers_sender TEXT, answers_id TEXT
);
CREATE INDEX IF NOT EXISTS outbox_answers ON outbox(answers_sender, answers_id);
CREATE INDEX IF NOT EXISTS outbox_type_time ON outbox(type, submitted_at);
CREATE TABLE IF NOT EXISTS deliveries (
  message_id TEXT NOT NULL REFERENCES outbox(id), recipient TEXT NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at TEXT, last_error TEXT,
  sent_at TEXT, delivered_at TEXT, acknowledged_at TEXT, rejected_at TEXT, expired_at TEXT,
  reason TEXT, PRIMARY KEY (message_id, recipient)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_attempt_at) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS idempotency (
  client TEXT NOT NULL, key TEXT NOT NULL, request_sha256 TEXT NOT NULL,
  message_id TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (client, key)
);
CREATE TABLE IF NOT EXISTS inbox (
  sender TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, priority TEXT NOT NULL,
  mode TEXT NOT NULL, tlp TEXT NOT NULL, incident TEXT, created TEXT, expires TEXT,
  digest TEXT NOT NULL, wire BLOB NOT NULL, received_at TEXT NOT NULL, state TEXT NOT NULL,
  reason TEXT, detail TEXT, acknowledged_at TEXT, acknowledged_by TEXT,
  PRIMARY KEY (sender, id)
);
CREATE INDEX IF NOT EXISTS inbox_received ON inbox(received_at);
CREATE INDEX IF NOT EXISTS inbox_id ON inbox(id);
CREATE TABLE IF NOT EXISTS receipts_in (
  issuer TEXT NOT NULL, id TEXT NOT NULL, message_id TEXT NOT NULL, state TEXT NOT NULL,
  reason TEXT, at TEXT NOT NULL, message_sha256 TEXT NOT NULL, wire BLOB NOT NULL,
  received_at TEXT NOT NULL, PRIMARY KEY (issuer, id)
);
CREATE INDEX IF NOT EXISTS receipts_in_message ON receipts_in(message_id);
CREATE TABLE IF NOT EXISTS directory (
  centre TEXT PRIMARY KEY, created TEXT NOT NULL, message_id TEXT NOT NULL,
  entries TEXT NOT NULL, received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS security_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, reason TEXT NOT NULL,
  detail TEXT NOT NULL, claimed_sender TEXT, claimed_id TEXT, amqp_user TEXT,
  payload_sha256 TEXT NOT NULL,
  payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS security_by_publisher ON security_events(amqp_user, at);
CREATE TABLE IF NOT EXISTS security_suppressed (
  publisher TEXT NOT NULL, day TEXT NOT NULL, reason TEXT NOT NULL,
  count INTEGER NOT NULL, bytes INTEGER NOT NULL, last_at TEXT NOT NULL,
  last_sha256 TEXT NOT NULL, PRIMARY KEY (publisher, day, reason)
);
CREATE TABLE IF NOT EXISTS console_sessions (
  token_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
  expires REAL NOT NULL, lang TEXT NOT NULL, tag TEXT NOT NULL
);
"""

_DELIVERY_COLS = ("state", "attempts", "next_attempt_at", "last_error", "sent_at",
                  "delivered_at", "acknowledged_at", "rejected_at", "expired_at", "reason")
_TIME_COLS = frozenset({"next_attempt_at", "sent_at", "delivered_at", "acknowledged_at",
                        "rejected_at", "expired_at"})
MAX_STORED_PAYLOAD = 64 * 1024
#: Per publisher and UTC day: payload bytes kept, and security events kept one by one.
SECURITY_PAYLOAD_BYTES = 1024 * 1024
SECURITY_ROWS_PER_DAY = 1000


def _t(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def _row_to_delivery(row: sqlite3.Row) -> Delivery:
    values: dict[str, Any] = {c: row[c] for c in _DELIVERY_COLS}
    for c in _TIME_COLS:
        values[c] = _dt(values[c])
    values["state"] = DeliveryState(values["state"])
    return Delivery(**values)


def _write_delivery(conn: sqlite3.Connection, message_id: str, recipient: str,  # noqa: PLR0917 - private helper
                    d: Delivery, before: DeliveryState | None, at: datetime) -> None:
    """Upsert a delivery row; a new row or a change of state goes to the audit log."""
    if d.state is not before:
        append(conn, at, "delivery.state", "ledger", message_id,
               {"recipient": recipient, "from": None if before is None else before.value,
                "state": d.state.value, "attempts": d.attempts, "reason": d.reason})
    values = [getattr(d, c) for c in _DELIVERY_COLS]
    values = [_t(v) if isinstance(v, datetime) else v for v in values]
    values[0] = d.state.value
    conn.execute(
        "INSERT INTO deliveries (message_id, recipient, " + ", ".join(_DELIVERY_COLS) + ") "
        "VALUES (?, ?, " + ", ".join("?" * len(_DELIVERY_COLS)) + ") "
        "ON CONFLICT (message_id, recipient) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in _DELIVERY_COLS),
        [message_id, recipient, *values],
    )


def _insert_outgoing(conn: sqlite3.Connection, m: OutgoingMessage, now: datetime,
                     actor: str = "local") -> None:
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
        (m.id, m.type, _t(m.created), _t(m.expires), m.priority, m.mode, m.tlp, m.incident,
         m.digest, m.wire, _t(now), answers[0], answers[1]),
    )
    for recipient in m.recipients:
        _write_delivery(conn, m.id, recipient, new_delivery(now), None, now)


def _due_rows(conn: sqlite3.Connection, now: datetime, limit: int,
              skip_peers: frozenset[str]) -> list[sqlite3.Row]:
    """Queued deliveries due at ``now``, oldest first, except to ``skip_peers``."""
    skip = sorted(skip_peers)
    query = (
        "SELECT d.rowid, d.message_id, d.recipient, d.attempts, o.type, o.wire, o.expires "  # noqa: S608 - placeholders only
        "FROM deliveries d JOIN outbox o ON o.id = d.message_id "
        "WHERE d.state = 'queued' AND d.next_attempt_at <= ? "
        f"AND d.recipient NOT IN ({','.join('?' * len(skip))}) "
        "ORDER BY d.next_attempt_at LIMIT ?"
    )
    return conn.execute(query, (_t(now), *skip, limit)).fetchall()


def _due(row: sqlite3.Row) -> DueDelivery:
    return DueDelivery(message_id=row["message_id"], recipient=row["recipient"],
                       type=row["type"], wire=bytes(row["wire"]),
                       expires=_dt(row["expires"]) or datetime.min, attempts=row["attempts"])


def _entry(row: sqlite3.Row) -> InboxEntry:
    return InboxEntry(
        sender=row["sender"], id=row["id"], type=row["type"], priority=row["priority"],
        mode=row["mode"], tlp=row["tlp"], incident=row["incident"], created=_dt(row["created"]),
        expires=_dt(row["expires"]), digest=row["digest"], wire=bytes(row["wire"]),
        received_at=_dt(row["received_at"]) or datetime.min, state=row["state"],
        reason=row["reason"], detail=row["detail"], acknowledged_at=_dt(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
    )


class SqliteLedger:
    """The SQLite ledger. Use :meth:`open` before anything else."""

    def __init__(self, path: Path, clock: Callable[[], datetime] | None = None) -> None:
        self.path = path
        self.db = Database(path, SCHEMA + AUDIT_SCHEMA + INCIDENT_INDEXES)
        self._now = clock or (lambda: datetime.now(UTC))

    async def open(self) -> None:
        """Create or open the ledger file."""
        await self.db.open()

    async def close(self) -> None:
        """Commit pending writes and close."""
        await self.db.close()

    # -- outbox --------------------------------------------------------------------

    async def submit(
        self, message: OutgoingMessage, idempotency: IdempotencyKey | None, now: datetime
    ) -> tuple[str, bool]:
        """See :meth:`service.ports.Ledger.submit`."""

        def run(conn: sqlite3.Connection) -> tuple[str, bool]:
            if idempotency is not None:
                row = conn.execute(
                    "SELECT request_sha256, message_id FROM idempotency WHERE client=? AND key=?",
                    (idempotency.client, idempotency.key),
                ).fetchone()
                if row is not None:
                    if row["request_sha256"] != idempotency.request_sha256:
                        raise SubmissionError(
                            422, "Idempotency key reused",
                            "this Idempotency-Key was used with a different request (body, "
                            "query or media type)",
                        )
                    return str(row["message_id"]), False
                conn.execute(
                    "INSERT INTO idempotency VALUES (?,?,?,?,?)",
                    (idempotency.client, idempotency.key, idempotency.request_sha256,
                     message.id, _t(now)),
                )
            _insert_outgoing(conn, message, now,
                             idempotency.client if idempotency is not None else "local")
            return message.id, True

        return await self.db.write(run)

    async def due(self, now: datetime, limit: int, exclude: set[tuple[str, str]],
                  skip_peers: frozenset[str] = frozenset()) -> list[DueDelivery]:
        """See :meth:`service.ports.Ledger.due`."""

        def run(conn: sqlite3.Connection) -> list[DueDelivery]:
            rows = _due_rows(conn, now, limit + len(exclude), skip_peers)
            return [_due(r) for r in rows
                    if (r["message_id"], r["recipient"]) not in exclude][:limit]

        return await self.db.read(run)

    async def claim(self, now: datetime, limit: int, lease_until: datetime,
                    skip_peers: frozenset[str] = frozenset()) -> list[DueDelivery]:
        """See :meth:`service.ports.Ledger.claim`."""

        def run(conn: sqlite3.Connection) -> list[DueDelivery]:
            rows = _due_rows(conn, now, limit, skip_peers)
            conn.executemany("UPDATE deliveries SET next_attempt_at = ? WHERE rowid = ?",
                             [(_t(lease_until), r["rowid"]) for r in rows])
            return [_due(r) for r in rows]

        return await self.db.write(run)

    async def transition(
        self, message_id: str, recipient: str, step: Callable[[Delivery], Delivery]
    ) -> Delivery | None:
        """See :meth:`service.ports.Ledger.transition`."""

        at = self._now()

        def run(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(
                "SELECT * FROM deliveries WHERE message_id=? AND recipient=?",
                (message_id, recipient),
            ).fetchone()
            if row is None:
                return None
            before = _row_to_delivery(row)
            after = step(before)
            if after != before:
                _write_delivery(conn, message_id, recipient, after, before.state, at)
            return after

        return await self.db.write(run)

    async def expire(self, now: datetime) -> list[tuple[str, str]]:
        """See :meth:`service.ports.Ledger.expire`."""

        def run(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute(
                "SELECT d.message_id, d.recipient FROM deliveries d "
                "JOIN outbox o ON o.id = d.message_id "
                "WHERE d.state = 'queued' AND o.expires <= ?",
                (_t(now),),
            ).fetchall()
            for r in rows:
                conn.execute(
                    "UPDATE deliveries SET state='expired', expired_at=?, next_attempt_at=NULL,"
                    " reason='expired' WHERE message_id=? AND recipient=?",
                    (_t(now), r[0], r[1]),
                )
                append(conn, now, "delivery.state", "ledger", r[0],
                       {"recipient": r[1], "from": "queued", "state": "expired",
                        "reason": "expired"})
            return [(r[0], r[1]) for r in rows]

        return await self.db.write(run)

    # -- inbox ---------------------------------------------------------------------

    async def ingest(
        self, entry: InboxEntry, receipt: OutgoingMessage | None, now: datetime
    ) -> tuple[IngestOutcome, str]:
        """See :meth:`service.ports.Ledger.ingest`."""

        def run(conn: sqlite3.Connection) -> tuple[IngestOutcome, str]:
            row = conn.execute(
                "SELECT digest, state FROM inbox WHERE sender=? AND id=?",
                (entry.sender, entry.id),
            ).fetchone()
            if row is not None:
                if row["digest"] != entry.digest:
                    return IngestOutcome.CONFLICT, str(row["state"])
                append(conn, now, "message.duplicate", entry.sender, entry.id,
                       {"from": entry.sender, "sha256": entry.digest})
                conn.execute(
                    "UPDATE deliveries SET state='queued', next_attempt_at=? WHERE message_id IN"
                    " (SELECT id FROM outbox WHERE answers_sender=? AND answers_id=?)"
                    " AND state IN ('queued', 'sent')",
                    (_t(now), entry.sender, entry.id),
                )
                return IngestOutcome.DUPLICATE, str(row["state"])
            conn.execute(
                "INSERT INTO inbox VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (entry.sender, entry.id, entry.type, entry.priority, entry.mode, entry.tlp,
                 entry.incident, _t(entry.created), _t(entry.expires), entry.digest, entry.wire,
                 _t(entry.received_at), entry.state, entry.reason, entry.detail,
                 _t(entry.acknowledged_at), entry.acknowledged_by),
            )
            append(conn, now, "message.received", entry.sender, entry.id,
                   {"from": entry.sender, "type": entry.type, "sha256": entry.digest,
                    "state": entry.state, "reason": entry.reason,
                    "wire_sha256": hashlib.sha256(entry.wire).hexdigest()})
            if receipt is not None:
                _insert_outgoing(conn, receipt, now, "ledger")
            return IngestOutcome.NEW, entry.state

        return await self.db.write(run)

    async def inbox_entry(self, sender: str, message_id: str) -> InboxEntry | None:
        """See :meth:`service.ports.Ledger.inbox_entry`."""

        def run(conn: sqlite3.Connection) -> InboxEntry | None:
            row = conn.execute(
                "SELECT * FROM inbox WHERE sender=? AND id=?", (sender, message_id)
            ).fetchone()
            return None if row is None else _entry(row)

        return await self.db.read(run)

    async def find_inbox(self, message_id: str) -> list[InboxEntry]:
        """See :meth:`service.ports.Ledger.find_inbox`."""

        def run(conn: sqlite3.Connection) -> list[InboxEntry]:
            rows = conn.execute("SELECT * FROM inbox WHERE id=?", (message_id,)).fetchall()
            return [_entry(r) for r in rows]

        return await self.db.read(run)

    async def acknowledge(
        self, sender: str, message_id: str, by: str, receipt: OutgoingMessage, now: datetime,
        *, actor: str | None = None,
    ) -> bool:
        """See :meth:`service.ports.Ledger.acknowledge`."""

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE inbox SET state='acknowledged', acknowledged_at=?, acknowledged_by=?"
                " WHERE sender=? AND id=? AND state='delivered'",
                (_t(now), by, sender, message_id),
            )
            if cur.rowcount == 0:
                return False
            who = actor or by
            append(conn, now, "message.acknowledged", who, message_id,
                   {"from": sender, "by": by})
            _insert_outgoing(conn, receipt, now, who)
            return True

        return await self.db.write(run)

    async def inbox(self, filters: dict[str, str], limit: int) -> list[InboxEntry]:
        """See :meth:`service.ports.Ledger.inbox`."""
        where, args = ["type != 'receipt'"], []
        for column in ("sender", "type", "incident", "state", "priority"):
            if column in filters:
                where.append(f"{column} = ?")
                args.append(filters[column])

        def run(conn: sqlite3.Connection) -> list[InboxEntry]:
            rows = conn.execute(
                f"SELECT * FROM inbox WHERE {' AND '.join(where)} "  # noqa: S608 - fixed column names
                "ORDER BY received_at DESC LIMIT ?", [*args, limit],
            ).fetchall()
            return [_entry(r) for r in rows]

        return await self.db.read(run)

    # -- receipts ------------------------------------------------------------------

    async def apply_receipt(self, receipt: IncomingReceipt, now: datetime) -> ReceiptOutcome:
        """See :meth:`service.ports.Ledger.apply_receipt`."""

        def run(conn: sqlite3.Connection) -> ReceiptOutcome:
            if conn.execute(
                "SELECT 1 FROM receipts_in WHERE issuer=? AND id=?", (receipt.issuer, receipt.id)
            ).fetchone():
                return ReceiptOutcome.DUPLICATE
            row = conn.execute(
                "SELECT d.*, o.digest, o.created AS message_created FROM deliveries d"
                " JOIN outbox o ON o.id = d.message_id"
                " WHERE d.message_id=? AND d.recipient=? AND o.type != 'receipt'",
                (receipt.message_id, receipt.issuer),
            ).fetchone()
            if row is None or row["digest"] != receipt.message_sha256:
                return ReceiptOutcome.UNEXPECTED
            created = _dt(row["message_created"])
            if created is not None and not plausible_at(receipt.at, created):
                return ReceiptOutcome.IMPLAUSIBLE
            conn.execute(
                "INSERT INTO receipts_in VALUES (?,?,?,?,?,?,?,?,?)",
                (receipt.issuer, receipt.id, receipt.message_id, receipt.state, receipt.reason,
                 _t(receipt.at), receipt.message_sha256, receipt.wire, _t(now)),
            )
            append(conn, now, "receipt.received", receipt.issuer, receipt.message_id,
                   {"receipt_id": receipt.id, "issuer": receipt.issuer, "state": receipt.state,
                    "reason": receipt.reason, "at": _t(receipt.at),
                    "wire_sha256": hashlib.sha256(receipt.wire).hexdigest()})
            before = _row_to_delivery(row)
            after = on_receipt(before, DeliveryState(receipt.state), receipt.at, receipt.reason)
            if after != before:
                _write_delivery(conn, receipt.message_id, receipt.issuer, after, before.state,
                                now)
            return ReceiptOutcome.APPLIED

        return await self.db.write(run)

    async def receipts_for(self, message_id: str) -> list[dict[str, Any]]:
        """See :meth:`service.ports.Ledger.receipts_for`."""

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT * FROM receipts_in WHERE message_id=? ORDER BY at", (message_id,)
            ).fetchall()
            return [
                {"issuer": r["issuer"], "id": r["id"], "state": r["state"], "reason": r["reason"],
                 "at": r["at"], "received_at": r["received_at"],
                 "signed": json.loads(bytes(r["wire"]))}
                for r in rows
            ]

        return await self.db.read(run)

    async def record_security_event(self, event: SecurityEvent) -> None:
        """See :meth:`service.ports.Ledger.record_security_event`.

        Bounded per publisher (the broker-authenticated user) and UTC day: the first
        :data:`SECURITY_PAYLOAD_BYTES` of payloads are kept (each cut at
        :data:`MAX_STORED_PAYLOAD`), then only their hashes; after
        :data:`SECURITY_ROWS_PER_DAY` events only counts per reason (with the last hash)
        grow, so garbage cannot fill the disk or the audit log.
        """
        digest = hashlib.sha256(event.payload).hexdigest()
        publisher = event.amqp_user or "-"
        day = format_time(event.at)[:10]

        def run(conn: sqlite3.Connection) -> None:
            rows, stored = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM security_events"
                " WHERE amqp_user IS ? AND at >= ?",
                (event.amqp_user, day)).fetchone()
            if rows >= SECURITY_ROWS_PER_DAY:
                conn.execute(
                    "INSERT INTO security_suppressed VALUES (?,?,?,1,?,?,?)"
                    " ON CONFLICT (publisher, day, reason) DO UPDATE SET count = count + 1,"
                    " bytes = bytes + excluded.bytes, last_at = excluded.last_at,"
                    " last_sha256 = excluded.last_sha256",
                    (publisher, day, event.reason, len(event.payload), _t(event.at), digest))
                if conn.execute("SELECT SUM(count) FROM security_suppressed WHERE publisher=?"
                                " AND day=?", (publisher, day)).fetchone()[0] == 1:
                    append(conn, event.at, "security.suppressed", publisher, "-",
                           {"day": day, "after": SECURITY_ROWS_PER_DAY})
                return
            keep = event.payload[:MAX_STORED_PAYLOAD] \
                if stored < SECURITY_PAYLOAD_BYTES else b""
            conn.execute(
                "INSERT INTO security_events (at, reason, detail, claimed_sender, claimed_id,"
                " amqp_user, payload_sha256, payload) VALUES (?,?,?,?,?,?,?,?)",
                (_t(event.at), event.reason, event.detail[:1000], event.claimed_sender,
                 event.claimed_id, event.amqp_user, digest, keep),
            )
            append(conn, event.at, "security.event", publisher, event.claimed_id or "-",
                   {"reason": event.reason, "claimed_sender": event.claimed_sender,
                    "payload_sha256": digest})

        await self.db.write(run)

    async def suppressed_security_events(self) -> list[dict[str, Any]]:
        """Security events counted but not stored one by one (over the daily quota)."""

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute("SELECT * FROM security_suppressed ORDER BY day DESC,"
                                " publisher, reason LIMIT 500")
            return [dict(r) for r in rows]

        return await self.db.read(run)

    async def store_directory(self, centre: str, message_id: str, created: datetime,
                              entries: list[dict[str, Any]], now: datetime) -> bool:
        """Keep ``centre``'s contact points if newer than what we hold; True if stored."""

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT created FROM directory WHERE centre=?",
                               (centre,)).fetchone()
            if row is not None and row["created"] >= _t(created):
                return False
            conn.execute(
                "INSERT INTO directory VALUES (?,?,?,?,?) ON CONFLICT (centre) DO UPDATE SET "
                "created=excluded.created, message_id=excluded.message_id, "
                "entries=excluded.entries, received_at=excluded.received_at",
                (centre, _t(created), message_id, json.dumps(entries), _t(now)))
            append(conn, now, "directory.stored", centre, message_id,
                   {"centre": centre, "created": _t(created), "entries": len(entries)})
            return True

        return await self.db.write(run)

    async def directories(self) -> dict[str, dict[str, Any]]:
        """Every peer's latest contact points: centre -> {created, received_at, entries}."""

        def run(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            return {r["centre"]: {"created": r["created"], "received_at": r["received_at"],
                                  "message_id": r["message_id"],
                                  "entries": json.loads(r["entries"])}
                    for r in conn.execute("SELECT * FROM directory")}

        return await self.db.read(run)

    async def audit(self, actor: str, action: str, target: str, detail: str,
                    at: datetime) -> None:
        """Append an operator, peer or key action to the audit log."""

        def run(conn: sqlite3.Connection) -> None:
            append(conn, at, action[:50], actor[:100], target[:200], {"detail": detail[:1000]})

        await self.db.write(run)

    async def audit_entries(self, limit: int = 100, kind: str | None = None,
                            subject: str | None = None) -> list[dict[str, Any]]:
        """The most recent audit-log entries, newest first (optionally one kind/subject)."""
        where, args = ["1=1"], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                f"SELECT * FROM audit_log WHERE {' AND '.join(where)} "  # noqa: S608 - fixed clauses
                "ORDER BY seq DESC LIMIT ?", [*args, limit])
            return [sqlite_audit.view(r) for r in rows]

        return await self.db.read(run)

    async def checkpoint(self, sign: Callable[[int, str], bytes], *,
                         force: bool = False) -> bytes | None:
        """Sign the chain head with ``sign(seq, head)`` and keep the checkpoint.

        Returns the signed bytes, or None when nothing was appended since the last
        checkpoint (unless ``force``).
        """
        at = self._now()

        def run(conn: sqlite3.Connection) -> bytes | None:
            seq, _ = sqlite_audit.head(conn)
            latest = conn.execute("SELECT wire FROM audit_checkpoints WHERE seq=?",
                                  (seq,)).fetchone()
            if latest is not None:
                return bytes(latest[0]) if force else None
            return sqlite_audit.checkpoint_now(conn, at, sign)[2]

        return await self.db.write(run)

    async def latest_checkpoint(self) -> bytes | None:
        """The most recent signed checkpoint, if any."""

        def run(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT wire FROM audit_checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
            return None if row is None else bytes(row[0])

        return await self.db.read(run)

    # -- console sessions (web.console.auth.SessionStore) -------------------------------

    async def save_session(self, digest: str, row: dict[str, Any]) -> None:
        """Keep a console session under the SHA-256 of its cookie token."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM console_sessions WHERE expires < ?", (time.time(),))
            conn.execute("INSERT OR REPLACE INTO console_sessions VALUES (?,?,?,?,?,?,?)",
                         (digest, row["name"], row["role"], row["csrf"], row["expires"],
                          row["lang"], row["tag"]))

        await self.db.write(run)

    async def drop_session(self, digest: str) -> None:
        """Forget one console session."""
        await self.db.write(lambda conn: conn.execute(
            "DELETE FROM console_sessions WHERE token_sha256=?", (digest,)))

    async def load_sessions(self, now: float) -> dict[str, dict[str, Any]]:
        """Every console session that has not expired at ``now`` (epoch seconds)."""

        def run(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            rows = conn.execute("SELECT * FROM console_sessions WHERE expires >= ?", (now,))
            return {r["token_sha256"]: {k: r[k] for k in ("name", "role", "csrf", "expires",
                                                          "lang", "tag")} for r in rows}

        return await self.db.read(run)

    async def security_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent security events (without payloads)."""

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT seq, at, reason, detail, claimed_sender, claimed_id, amqp_user,"
                " payload_sha256"
                " FROM security_events ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
            return [dict(r) for r in rows]

        return await self.db.read(run)

    # -- views ---------------------------------------------------------------------

    async def message(self, message_id: str) -> dict[str, Any] | None:
        """See :meth:`service.ports.Ledger.message`."""

        def run(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT * FROM outbox WHERE id=?", (message_id,)).fetchone()
            if row is None:
                return None
            return _message_view(conn, row)

        return await self.db.read(run)

    async def messages(self, filters: dict[str, str], limit: int) -> list[dict[str, Any]]:
        """See :meth:`service.ports.Ledger.messages`."""
        where, args = ["o.type != 'receipt'"], []
        if "type" in filters:
            where.append("o.type = ?")
            args.append(filters["type"])
        if "incident" in filters:
            where.append("o.incident = ?")
            args.append(filters["incident"])
        if "state" in filters or "peer" in filters:
            sub, sub_args = ["d.message_id = o.id"], []
            if "state" in filters:
                sub.append("d.state = ?")
                sub_args.append(filters["state"])
            if "peer" in filters:
                sub.append("d.recipient = ?")
                sub_args.append(filters["peer"])
            where.append(f"EXISTS (SELECT 1 FROM deliveries d WHERE {' AND '.join(sub)})")  # noqa: S608 - fixed clauses
            args.extend(sub_args)
        if "since" in filters:
            where.append("o.submitted_at >= ?")
            args.append(filters["since"])

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                f"SELECT * FROM outbox o WHERE {' AND '.join(where)} "  # noqa: S608 - fixed clauses
                "ORDER BY o.submitted_at DESC LIMIT ?", [*args, limit],
            ).fetchall()
            return [_message_view(conn, r) for r in rows]

        return await self.db.read(run)

    async def stats(self) -> dict[str, Any]:
        """See :meth:`service.ports.Ledger.stats`."""

        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            # Backlog: not yet delivered. A sent receipt is done (receipts get no receipts).
            per_peer = {
                r["recipient"]: {"count": r["n"], "oldest": r["oldest"]}
                for r in conn.execute(
                    "SELECT d.recipient, COUNT(*) n, MIN(o.submitted_at) oldest"
                    " FROM deliveries d JOIN outbox o ON o.id = d.message_id"
                    " WHERE d.state = 'queued' OR (d.state = 'sent' AND o.type != 'receipt')"
                    " GROUP BY d.recipient"
                )
            }
            states = {
                r[0]: r[1] for r in conn.execute(
                    "SELECT state, COUNT(*) FROM deliveries GROUP BY state"
                )
            }
            events = conn.execute("SELECT COUNT(*) FROM security_events").fetchone()[0]
            events += conn.execute(
                "SELECT COALESCE(SUM(count), 0) FROM security_suppressed").fetchone()[0]
            inbox = conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
            return {"deliveries": states, "backlog": per_peer, "security_events": events,
                    "inbox": inbox}

        return await self.db.read(run)


def _message_view(conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    signed = json.loads(bytes(row["wire"]))
    recipients = []
    for d in conn.execute(
        "SELECT * FROM deliveries WHERE message_id=? ORDER BY recipient", (row["id"],)
    ):
        recipients.append({
            "centre": d["recipient"], "state": d["state"], "attempts": d["attempts"],
            "sent_at": d["sent_at"], "delivered_at": d["delivered_at"],
            "acknowledged_at": d["acknowledged_at"], "rejected_at": d["rejected_at"],
            "expired_at": d["expired_at"], "reason": d["reason"], "last_error": d["last_error"],
            "next_attempt_at": d["next_attempt_at"],
        })
    return {
        "id": row["id"], "type": row["type"], "incident": row["incident"],
        "priority": row["priority"], "mode": row["mode"], "tlp": row["tlp"],
        "created": row["created"], "expires": row["expires"], "submitted_at": row["submitted_at"],
        "sha256": row["digest"], "envelope": signed["envelope"], "signature": signed["signature"],
        "recipients": recipients,
    }
