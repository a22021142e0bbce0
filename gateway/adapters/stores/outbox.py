"""Our messages and their deliveries (:class:`gateway.service.ports.OutboxStore`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

from gateway.adapters.stores.deliveries import (
    apply,
    insert_outgoing,
    overdue,
    t,
    unacknowledged_out,
)
from gateway.adapters.stores.sql import Conn, Db, Row
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

#: Most urgent first: the order in which due deliveries go, a backlog included.
PRIORITY_ORDER = ("flash", "urgent", "routine")
_RANK = {p: n for n, p in enumerate(PRIORITY_ORDER)}


def _queued_peers(conn: Conn, skip_peers: frozenset[str],
                  only: frozenset[str] | None) -> list[str]:
    """Recipients with queued deliveries (from the counters), except ``skip_peers`` (and
    only those in ``only``, if given)."""
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT recipient FROM delivery_counts WHERE state = 'queued' AND n > 0")
        if r[0] not in skip_peers and (only is None or r[0] in only)]


def _due_rows(conn: Conn, now: datetime, limit: int,
              skip_peers: frozenset[str], only: frozenset[str] | None = None
              ) -> list[Row]:
    """Queued deliveries due at ``now``, most urgent first, then oldest due, except to
    ``skip_peers``: one range on ``deliveries_peer_due`` per peer and priority, so rows
    of a skipped peer (however many wait for it) are never read."""
    rows: list[Row] = []
    for peer in _queued_peers(conn, skip_peers, only):
        for priority in PRIORITY_ORDER:
            taken = conn.execute(
                "SELECT d.*, o.type, o.wire FROM deliveries d JOIN outbox o"
                " ON o.id = d.message_id WHERE d.recipient = ? AND d.priority = ?"
                " AND d.state = 'queued' AND d.next_attempt_at <= ?"
                " ORDER BY d.next_attempt_at LIMIT ?", (peer, priority, t(now), limit)
            ).fetchall()
            rows.extend(taken)
    rows.sort(key=lambda r: (_RANK.get(r["priority"], len(_RANK)), r["next_attempt_at"]))
    return rows[:limit]


def _due(row: Row) -> DueDelivery:
    return DueDelivery(message_id=row["message_id"], recipient=row["recipient"],
                       type=row["type"], wire=bytes(row["wire"]),
                       expires=parse_optional_time(row["expires"]) or datetime.min,
                       attempts=row["attempts"])


def _recipient(d: Row) -> RecipientState:
    return RecipientState(
        centre=d["recipient"], state=d["state"], attempts=d["attempts"], sent_at=d["sent_at"],
        delivered_at=d["delivered_at"], acknowledged_at=d["acknowledged_at"],
        rejected_at=d["rejected_at"], expired_at=d["expired_at"], reason=d["reason"],
        last_error=d["last_error"], next_attempt_at=d["next_attempt_at"])


def _views(conn: Conn, rows: list[Row]) -> list[OutgoingView]:
    """The views of outbox ``rows``, their deliveries read in one statement."""
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    recipients: dict[str, list[RecipientState]] = {i: [] for i in ids}
    for d in conn.execute(
            "SELECT * FROM deliveries WHERE message_id IN "  # noqa: S608 - placeholders only
            f"({','.join('?' * len(ids))}) ORDER BY message_id, recipient", ids):
        recipients[d["message_id"]].append(_recipient(d))
    return [OutgoingView(
        id=row["id"], type=row["type"], incident=row["incident"], priority=row["priority"],
        mode=row["mode"], tlp=row["tlp"], created=row["created"], expires=row["expires"],
        submitted_at=row["submitted_at"], sha256=row["digest"], wire=bytes(row["wire"]),
        recipients=tuple(recipients[row["id"]])) for row in rows]


def _listed(filters: Mapping[str, str], after: tuple[str, ...] | None, limit: int
            ) -> tuple[str, list[Any]]:
    """The query for one page of the outbox (newest first) and its arguments.

    With a state or peer filter the page is found on a deliveries index (those rows are
    few among many); otherwise on an outbox index. Either way the page costs one range
    scan from the cursor on, however long the history.
    """
    where: list[str] = []
    args: list[Any] = []
    on_deliveries = "state" in filters or "peer" in filters
    for key, column in (("incident", "o.incident"), ("type", "o.type"),
                        ("mode", "o.mode")):  # most selective first
        if key in filters:
            # "+column": only the first filter may choose the index (see the inbox's list);
            # a mode, which most messages share, never picks it over a deliveries index
            hint = bool(where) or (key == "mode" and on_deliveries)
            where.append(f"{'+' if hint else ''}{column} = ?")
            args.append(filters[key])
    if "since" in filters:
        where.append("o.submitted_at >= ?")
        args.append(filters["since"])
    if on_deliveries:
        sub, sub_args = ["d.receipt = 0"], []
        for key, column in (("peer", "d.recipient"), ("state", "d.state")):
            if key in filters:
                sub.append(f"{column} = ?")
                sub_args.append(filters[key])
        if after is not None:
            sub.append("(d.submitted_at, d.message_id) < (?, ?)")
            sub_args.extend(after)
        clauses = " AND ".join(sub + where)
        sql = ("SELECT o.* FROM (SELECT DISTINCT d.submitted_at s, d.message_id m "  # noqa: S608 - fixed clauses
               f"FROM deliveries d JOIN outbox o ON o.id = d.message_id WHERE {clauses}"
               " ORDER BY s DESC, m DESC LIMIT ?) p JOIN outbox o ON o.id = p.m"
               " ORDER BY p.s DESC, p.m DESC")
        return sql, [*sub_args, *args, limit]
    where.append("o.type != 'receipt'")
    if after is not None:
        where.append("(o.submitted_at, o.id) < (?, ?)")
        args.extend(after)
    sql = (f"SELECT * FROM outbox o WHERE {' AND '.join(where)} "  # noqa: S608 - fixed clauses
           "ORDER BY o.submitted_at DESC, o.id DESC LIMIT ?")
    return sql, [*args, limit]


class OutboxStore:
    """The outbox, idempotency keys and deliveries."""

    def __init__(self, db: Db, clock: Callable[[], datetime]) -> None:
        self._db, self._now = db, clock

    async def submit(
        self, message: OutgoingMessage, idempotency: IdempotencyKey | None, now: datetime
    ) -> tuple[str, bool]:
        """See :meth:`gateway.service.ports.OutboxStore.submit`."""

        def run(conn: Conn) -> tuple[str, bool]:
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

        def run(conn: Conn) -> list[DueDelivery]:
            rows = _due_rows(conn, now, limit + len(exclude), skip_peers)
            return [_due(r) for r in rows
                    if (r["message_id"], r["recipient"]) not in exclude][:limit]

        return await self._db.read(run)

    async def claim(self, now: datetime, limit: int, lease_until: datetime,
                    skip_peers: frozenset[str] = frozenset(),
                    only: frozenset[str] | None = None) -> list[DueDelivery]:
        """See :meth:`gateway.service.ports.OutboxStore.claim`."""

        def run(conn: Conn) -> list[DueDelivery]:
            rows = _due_rows(conn, now, limit, skip_peers, only)
            for r in rows:
                apply(conn, r, partial(on_claimed, lease_until=lease_until), now)
            return [_due(r) for r in rows]

        return await self._db.write(run)

    async def transition(
        self, message_id: str, recipient: str, step: Callable[[Delivery], Delivery]
    ) -> Delivery | None:
        """See :meth:`gateway.service.ports.OutboxStore.transition`."""
        at = self._now()

        def run(conn: Conn) -> Delivery | None:
            row = conn.execute(
                "SELECT * FROM deliveries WHERE message_id=? AND recipient=?",
                (message_id, recipient),
            ).fetchone()
            return None if row is None else apply(conn, row, step, at)

        return await self._db.write(run)

    async def expire(self, now: datetime,
                     exclude: frozenset[tuple[str, str]] = frozenset()) -> list[tuple[str, str]]:
        """See :meth:`gateway.service.ports.OutboxStore.expire`."""

        def run(conn: Conn) -> list[tuple[str, str]]:
            rows = conn.execute(  # the deliveries_expiry index: only what has expired
                "SELECT * FROM deliveries WHERE state = 'queued' AND expires <= ?",
                (t(now),)).fetchall()
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

        def run(conn: Conn) -> OutgoingView | None:
            row = conn.execute("SELECT * FROM outbox WHERE id=?", (message_id,)).fetchone()
            return None if row is None else _views(conn, [row])[0]

        return await self._db.read(run)

    async def list(self, filters: Mapping[str, str], limit: int,
                   after: tuple[str, ...] | None = None) -> list[OutgoingView]:
        """See :meth:`gateway.service.ports.OutboxStore.list`."""
        sql, args = _listed(filters, after, limit)

        def run(conn: Conn) -> list[OutgoingView]:
            return _views(conn, conn.execute(sql, args).fetchall())

        return await self._db.read(run)

    async def recent(self, mode: str, since: str) -> int:
        """See :meth:`gateway.service.ports.OutboxStore.recent`: a range of
        ``outbox_mode_listed`` as long as the window, however long the history."""

        def run(conn: Conn) -> int:
            return int(conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE mode = ? AND type != 'receipt'"
                " AND submitted_at >= ?", (mode, since)).fetchone()[0])

        return await self._db.read(run)

    async def overdue(self, cutoffs: Mapping[str, str]) -> int:
        """See :meth:`gateway.service.ports.OutboxStore.overdue`: per priority, the
        counter of unacknowledged actual pairs less those created after the cutoff (a
        range of ``deliveries_unacked`` as long as the deadline, however long the
        history); exercise and test messages have no deadline."""

        return await self._db.read(partial(
            overdue, cutoffs=cutoffs, counter_of=unacknowledged_out,
            recent_sql="SELECT COUNT(*) FROM deliveries WHERE receipt = 0 AND actual = 1 AND"
                       " state IN ('queued', 'sent', 'delivered') AND priority = ? AND"
                       " created > ?"))
