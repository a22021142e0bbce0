"""Escalation steps (:class:`gateway.service.ports.EscalationStore`): what waits, and
what was already tried.

A step taken is an audit entry (``escalation.sent`` or ``escalation.failed``, subject
the message id): the audit log is both the record the issue asks for and the memory of
which steps are done, so no table of its own is needed. What waits is read on the
deliveries' ``(receipt, state, submitted_at)`` index, within the window in which a step
can still fall due.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.adapters.stores.audit import append
from gateway.adapters.stores.deliveries import t
from gateway.adapters.stores.sql import Conn, Db
from gateway.protocol.escalation import WAITING, Action, Done, EscalationNotice, Waiting
from gateway.protocol.types import format_time, parse_optional_time, parse_time

SENT, FAILED, NOTICED = "escalation.sent", "escalation.failed", "escalation.noticed"


class EscalationsStore:
    """Reads what waits and keeps each step taken, in the audit log."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def waiting(self, priorities: Sequence[str], since: datetime, until: datetime
                      ) -> list[tuple[Waiting, bytes]]:
        """Our messages of ``priorities`` submitted in [since, until] that a recipient has
        not acknowledged (nor refused, nor let expire), with their signed bytes."""
        if not priorities:
            return []

        def run(conn: Conn) -> list[tuple[Waiting, bytes]]:
            out = []
            for state in sorted(WAITING):
                for r in conn.execute(
                        "SELECT d.message_id, d.recipient, d.state, d.priority,"
                        " d.submitted_at, o.type, o.mode, o.wire FROM deliveries d"
                        " JOIN outbox o ON o.id = d.message_id WHERE d.receipt = 0"
                        " AND d.state = ? AND d.submitted_at >= ? AND d.submitted_at <= ?"
                        " ORDER BY d.submitted_at", (state, t(since), t(until))):
                    if r["priority"] not in priorities:
                        continue
                    out.append((Waiting(
                        message_id=r["message_id"], recipient=r["recipient"], type=r["type"],
                        priority=r["priority"], mode=r["mode"], state=r["state"],
                        submitted_at=parse_time(r["submitted_at"])), bytes(r["wire"])))
            return out

        return await self._db.read(run)

    async def done(self, message_ids: Sequence[str]) -> dict[str, list[Done]]:
        """The steps tried for each of ``message_ids``."""
        if not message_ids:
            return {}
        ids = list(dict.fromkeys(message_ids))

        def run(conn: Conn) -> dict[str, list[Done]]:
            found: dict[str, list[Done]] = {i: [] for i in ids}
            marks = ",".join("?" * len(ids))
            sql = ("SELECT kind, subject, at, content FROM audit_log WHERE kind IN (?, ?)"  # noqa: S608 - placeholders only
                   f" AND subject IN ({marks})")
            for r in conn.execute(sql, (SENT, FAILED, *ids)):
                data = json.loads(bytes(r["content"])).get("data", {})
                found[r["subject"]].append(Done(
                    recipient=str(data.get("recipient")), step=int(data.get("step", -1)),
                    address=str(data.get("address")), ok=r["kind"] == SENT,
                    at=parse_optional_time(r["at"]) or datetime.min))
            return found

        return await self._db.read(run)

    async def steps(self, message_id: str) -> list[dict[str, Any]]:
        """The steps taken for one message, oldest first, as the console shows them:
        ``recipient``, ``step``, ``channel``, ``contact``, ``address``, ``ok``,
        ``error``, ``at``."""

        def run(conn: Conn) -> list[dict[str, Any]]:
            out = []
            for r in conn.execute(
                    "SELECT kind, at, content FROM audit_log WHERE subject = ?"
                    " AND kind IN (?, ?) ORDER BY seq", (message_id, SENT, FAILED)):
                data = json.loads(bytes(r["content"])).get("data", {})
                out.append({**{k: data.get(k) for k in (
                    "recipient", "step", "channel", "contact", "address", "error")},
                    "ok": r["kind"] == SENT, "at": r["at"]})
            return out

        return await self._db.read(run)

    async def noticed(self, sender: str, notice: EscalationNotice, at: datetime) -> None:
        """Keep a peer's notice that it escalated a message it sent us."""

        def run(conn: Conn) -> None:
            append(conn, at, NOTICED, sender, notice.message_id,
                   {"from": sender, "step": notice.step, "channel": notice.channel.value,
                    "contact": notice.contact, "at": format_time(notice.at)})

        await self._db.write(run)

    async def notices(self, sender: str, message_id: str) -> list[dict[str, Any]]:
        """The notices ``sender`` sent of its escalation of ``message_id``, oldest first:
        ``step``, ``channel``, ``contact``, ``at``."""

        def run(conn: Conn) -> list[dict[str, Any]]:
            out = []
            for r in conn.execute(
                    "SELECT content FROM audit_log WHERE subject = ? AND kind = ?"
                    " ORDER BY seq", (message_id, NOTICED)):
                data = json.loads(bytes(r["content"])).get("data", {})
                if data.get("from") == sender:
                    out.append({k: data.get(k) for k in ("step", "channel", "contact", "at")})
            return out

        return await self._db.read(run)

    async def record(self, action: Action, error: str | None, at: datetime) -> None:
        """Keep one step taken (``error``: why it failed, None when it was sent)."""

        def run(conn: Conn) -> None:
            append(conn, at, SENT if error is None else FAILED, "escalation",
                   action.message_id,
                   {"recipient": action.recipient, "step": action.step,
                    "channel": action.channel.value, "contact": action.contact.name,
                    "address": action.address, "error": error})

        await self._db.write(run)
