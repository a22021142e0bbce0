"""Our messages and their deliveries (:class:`gateway.service.ports.OutboxStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial

from gateway.adapters.sqlite.db import Database
from gateway.adapters.sqlite.deliveries import apply, insert_outgoing, t
from gateway.errors import IdempotencyConflict
from gateway.protocol.delivery import Delivery, DeliveryState, on_claimed, on_expiry
from gateway.protocol.types import parse_optional_time
from gateway.service.records import (
    DueDelivery,
    IdempotencyKey,
    OutgoingMessage,
    OutgoingView,
    RecipientState,
)


def _due_rows(conn: sqlite3.Connection, now: datetime, limit: int,
              skip_peers: frozenset[str]) -> list[sqlite3.Row]:
    """Queued deliveries due at ``now``, oldest first, except to ``skip_peers``."""
    skip = sorted(skip_peers)
    query = (
        "SELECT d.*, o.type, o.wire, o.expires "  # noqa: S608 - placeholders only
        "FROM deliveries d JOIN outbox o ON o.id = d.message_id "
        "WHERE d.state = 'queued' AND d.next_attempt_at <= ? "
        f"AND d.recipient NOT IN ({','.join('?' * len(skip))}) "
        "ORDER BY d.next_attempt_at LIMIT ?"
    )
    return conn.execute(query, (t(now), *skip, limit)).fetchall()


def _due(row: sqlite3.Row) -> DueDelivery:
    return DueDelivery(message_id=row["message_id"], recipient=row["recipient"],
                       type=row["type"], wire=bytes(row["wire"]),
                       expires=parse_optional_time(row["expires"]) or datetime.min,
                       attempts=row["attempts"])


def _view(conn: sqlite3.Connection, row: sqlite3.Row) -> OutgoingView:
    recipients = tuple(
        RecipientState(centre=d["recipient"], state=d["state"], attempts=d["attempts"],
                       sent_at=d["sent_at"], delivered_at=d["delivered_at"],
                       acknowledged_at=d["acknowledged_at"], rejected_at=d["rejected_at"],
                       expired_at=d["expired_at"], reason=d["reason"],
                       last_error=d["last_error"], next_attempt_at=d["next_attempt_at"])
        for d in conn.execute("SELECT * FROM deliveries WHERE message_id=? ORDER BY recipient",
                              (row["id"],)))
    return OutgoingView(
        id=row["id"], type=row["type"], incident=row["incident"], priority=row["priority"],
        mode=row["mode"], tlp=row["tlp"], created=row["created"], expires=row["expires"],
        submitted_at=row["submitted_at"], sha256=row["digest"], wire=bytes(row["wire"]),
        recipients=recipients)


class SqliteOutbox:
    """The outbox, idempotency keys and deliveries."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db, self._now = db, clock

    async def submit(
        self, message: OutgoingMessage, idempotency: IdempotencyKey | None, now: datetime
    ) -> tuple[str, bool]:
        """See :meth:`gateway.service.ports.OutboxStore.submit`."""

        def run(conn: sqlite3.Connection) -> tuple[str, bool]:
            if idempotency is not None:
                row = conn.execute(
                    "SELECT request_sha256, message_id FROM idempotency WHERE client=? AND key=?",
                    (idempotency.client, idempotency.key),
                ).fetchone()
                if row is not None:
                    if row["request_sha256"] != idempotency.request_sha256:
                        raise IdempotencyConflict(
                            "Idempotency key reused",
                            "this Idempotency-Key was used with a different request (body, "
                            "query or media type)")
                    return str(row["message_id"]), False
                conn.execute(
                    "INSERT INTO idempotency VALUES (?,?,?,?,?)",
                    (idempotency.client, idempotency.key, idempotency.request_sha256,
                     message.id, t(now)),
                )
            insert_outgoing(conn, message, now,
                            idempotency.client if idempotency is not None else "local")
            return message.id, True

        return await self._db.write(run)

    async def due(self, now: datetime, limit: int, exclude: set[tuple[str, str]],
                  skip_peers: frozenset[str] = frozenset()) -> list[DueDelivery]:
        """See :meth:`gateway.service.ports.OutboxStore.due`."""

        def run(conn: sqlite3.Connection) -> list[DueDelivery]:
            rows = _due_rows(conn, now, limit + len(exclude), skip_peers)
            return [_due(r) for r in rows
                    if (r["message_id"], r["recipient"]) not in exclude][:limit]

        return await self._db.read(run)

    async def claim(self, now: datetime, limit: int, lease_until: datetime,
                    skip_peers: frozenset[str] = frozenset()) -> list[DueDelivery]:
        """See :meth:`gateway.service.ports.OutboxStore.claim`."""

        def run(conn: sqlite3.Connection) -> list[DueDelivery]:
            rows = _due_rows(conn, now, limit, skip_peers)
            for r in rows:
                apply(conn, r, partial(on_claimed, lease_until=lease_until), now)
            return [_due(r) for r in rows]

        return await self._db.write(run)

    async def transition(
        self, message_id: str, recipient: str, step: Callable[[Delivery], Delivery]
    ) -> Delivery | None:
        """See :meth:`gateway.service.ports.OutboxStore.transition`."""
        at = self._now()

        def run(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(
                "SELECT * FROM deliveries WHERE message_id=? AND recipient=?",
                (message_id, recipient),
            ).fetchone()
            return None if row is None else apply(conn, row, step, at)

        return await self._db.write(run)

    async def expire(self, now: datetime,
                     exclude: frozenset[tuple[str, str]] = frozenset()) -> list[tuple[str, str]]:
        """See :meth:`gateway.service.ports.OutboxStore.expire`."""

        def run(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute(
                "SELECT d.*, o.expires FROM deliveries d JOIN outbox o ON o.id = d.message_id"
                " WHERE d.state = 'queued' AND o.expires <= ?", (t(now),)).fetchall()
            expired = []
            for r in rows:
                if (r["message_id"], r["recipient"]) in exclude:
                    continue
                expires = parse_optional_time(r["expires"]) or now
                step = partial(on_expiry, now=now, expires=expires)
                if apply(conn, r, step, now).state is DeliveryState.EXPIRED:
                    expired.append((str(r["message_id"]), str(r["recipient"])))
            return expired

        return await self._db.write(run)

    async def get(self, message_id: str) -> OutgoingView | None:
        """See :meth:`gateway.service.ports.OutboxStore.get`."""

        def run(conn: sqlite3.Connection) -> OutgoingView | None:
            row = conn.execute("SELECT * FROM outbox WHERE id=?", (message_id,)).fetchone()
            return None if row is None else _view(conn, row)

        return await self._db.read(run)

    async def list(self, filters: Mapping[str, str], limit: int) -> list[OutgoingView]:
        """See :meth:`gateway.service.ports.OutboxStore.list`."""
        where, args = ["o.type != 'receipt'"], []
        for key, column in (("type", "o.type"), ("incident", "o.incident")):
            if key in filters:
                where.append(f"{column} = ?")
                args.append(filters[key])
        if "state" in filters or "peer" in filters:
            sub, sub_args = ["d.message_id = o.id"], []
            for key, column in (("state", "d.state"), ("peer", "d.recipient")):
                if key in filters:
                    sub.append(f"{column} = ?")
                    sub_args.append(filters[key])
            where.append(f"EXISTS (SELECT 1 FROM deliveries d WHERE {' AND '.join(sub)})")  # noqa: S608 - fixed clauses
            args.extend(sub_args)
        if "since" in filters:
            where.append("o.submitted_at >= ?")
            args.append(filters["since"])

        def run(conn: sqlite3.Connection) -> list[OutgoingView]:
            rows = conn.execute(
                f"SELECT * FROM outbox o WHERE {' AND '.join(where)} "  # noqa: S608 - fixed clauses
                "ORDER BY o.submitted_at DESC LIMIT ?", [*args, limit],
            ).fetchall()
            return [_view(conn, r) for r in rows]

        return await self._db.read(run)
