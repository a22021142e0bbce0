"""The hash-chained audit log and its signed checkpoints, stored in the ledger file.

Entries are appended by :func:`append` inside the same transaction as the change they
record, so the log and the ledger can never disagree: a write that rolls back takes
its entry with it. The chain arithmetic lives in :mod:`gateway.protocol.auditlog`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from gateway.adapters.stores.sql import Conn, Db, Row
from gateway.protocol.auditlog import GENESIS, StoredEntry, content_bytes, link, sha256_hex
from gateway.protocol.types import format_time
from gateway.service.records import AuditEntry

#: Longest ``actor``, ``subject`` and string value in ``data`` kept in an entry.
MAX_FIELD = 500

#: Audit kinds of earlier releases (``verb_noun`` and bare verbs) and their ``noun.verb``
#: names. Step 2 renames the searchable ``kind`` column; each entry's hashed content
#: keeps the name it was written with, so the chain still verifies.
LEGACY_KINDS = {
    "login": "session.login", "logout": "session.logout",
    "login_failed": "session.login_failed", "language": "session.language",
    "acknowledge": "message.acknowledge_requested", "compose": "message.composed",
    "commcheck": "commcheck.started", "key_rotate": "key.rotation_requested",
    "key_revoke": "key.revocation_requested",
}


def _clip(value: Any) -> Any:
    if isinstance(value, str):
        return value[:MAX_FIELD]
    if isinstance(value, list | tuple):
        return [_clip(v) for v in value]
    return value


def head_of_archives(conn: Conn) -> tuple[int, str]:
    """The last archived entry's sequence number and chain hash (0 and the genesis hash
    when nothing is archived): the live log continues from there (retention)."""
    row = conn.execute("SELECT last_seq, head FROM archives WHERE last_seq > 0 "
                       "ORDER BY last_seq DESC LIMIT 1").fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def head(conn: Conn) -> tuple[int, str]:
    """The last sequence number and chain hash (0 and the genesis hash when empty)."""
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:  # empty, or every entry archived (retention)
        return head_of_archives(conn)
    return int(row[0]), str(row[1])


class ChainHead:
    """The chain's head as the ledger writer last appended it in its current batch, so
    that an append within a batch reads it here rather than from the table.

    Only a writer connection carries one (as ``conn.chain_head``). Its batch runner
    calls :meth:`forget` once it holds the write lock at the start of every batch (an
    instance or tool may have appended since) and after every rollback to a savepoint
    (the entries of the write undone went with it); within a batch nothing else can
    append, so the value it keeps is the table's."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: tuple[int, str] | None = None

    def forget(self) -> None:
        """Read the head from the table at the next append."""
        self.value = None


def append(conn: Conn, at: datetime, kind: str, actor: str, subject: str,  # noqa: PLR0917 - the entry fields in their stored order
           data: dict[str, Any]) -> int:
    """Append one entry in the caller's transaction; returns its sequence number."""
    known: ChainHead | None = getattr(conn, "chain_head", None)
    last, prev = known.value if known is not None and known.value is not None else head(conn)
    seq = last + 1
    actor, subject = actor[:MAX_FIELD], subject[:MAX_FIELD]
    content = content_bytes(seq, at, kind, actor, subject,
                            {k: _clip(v) for k, v in data.items()})
    digest = sha256_hex(content)
    top = link(prev, digest)
    conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?)",
                 (seq, format_time(at), kind, actor, subject, content, digest, prev, top))
    if known is not None:
        known.value = (seq, top)
    return seq


def stored(row: Row | tuple[Any, ...]) -> StoredEntry:
    """A row of ``SELECT seq, content, content_sha256, prev, hash`` as a chain entry."""
    content = row[1] if isinstance(row[1], bytes) else str(row[1]).encode()  # edited by hand
    return StoredEntry(seq=int(row[0]), content=content, content_sha256=str(row[2]),
                       prev=str(row[3]), hash=str(row[4]))


def rows(conn: Conn, first: int = 1, last: int | None = None
         ) -> Iterator[StoredEntry]:
    """Stored entries from ``first`` to ``last`` (inclusive), in order, streamed."""
    cur = conn.execute(
        "SELECT seq, content, content_sha256, prev, hash FROM audit_log "
        "WHERE seq >= ? AND seq <= ? ORDER BY seq", (first, last if last is not None else 2**62))
    for row in cur:
        yield stored(row)


def entry(row: Row) -> AuditEntry:
    """A stored entry as a record (``kind`` as searched: see schema.LEGACY_KINDS)."""
    content = json.loads(bytes(row["content"]))
    data = content.get("data", {}) if isinstance(content, dict) else {}
    return AuditEntry(seq=row["seq"], at=row["at"], kind=row["kind"], actor=row["actor"],
                      subject=row["subject"], data=data if isinstance(data, dict) else {},
                      hash=row["hash"])


def store_checkpoint(conn: Conn, seq: int, at: datetime, head_hash: str,
                     wire: bytes) -> None:
    """Keep a signed checkpoint (a second one for the same sequence number is ignored)."""
    conn.execute("INSERT INTO audit_checkpoints VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                 (seq, format_time(at), head_hash, wire))


def checkpoint_now(conn: Conn, at: datetime,
                   sign: Callable[[int, str], bytes]) -> tuple[int, str, bytes]:
    """Sign the current head with ``sign(seq, head)`` and keep it, in the caller's
    transaction; returns (seq, head, signed bytes)."""
    seq, top = head(conn)
    wire = sign(seq, top)
    store_checkpoint(conn, seq, at, top, wire)
    return seq, top, wire


def checkpoints(conn: Conn) -> list[tuple[int, bytes]]:
    """Every stored checkpoint as (seq, signed bytes), oldest first."""
    return [(int(r[0]), bytes(r[1]))
            for r in conn.execute("SELECT seq, wire FROM audit_checkpoints ORDER BY seq")]


class AuditStore:
    """The audit log as a store (:class:`gateway.service.ports.AuditStore`)."""

    def __init__(self, db: Db, clock: Callable[[], datetime]) -> None:
        self._db, self._now = db, clock

    async def record(self, actor: str, action: str, target: str, detail: str,
                     at: datetime) -> None:
        """See :meth:`gateway.service.ports.AuditStore.record`."""

        def run(conn: Conn) -> None:
            append(conn, at, action[:50], actor[:100], target[:200], {"detail": detail[:1000]})

        await self._db.write(run)

    async def entries(self, limit: int = 100, kind: str | None = None,
                      subject: str | None = None, before: int | None = None
                      ) -> list[AuditEntry]:
        """See :meth:`gateway.service.ports.AuditStore.entries` (an old kind name finds
        the entries of its new name)."""
        where, args = ["1=1"], list[Any]()
        if kind is not None:
            where.append("kind = ?")
            args.append(LEGACY_KINDS.get(kind, kind))
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        if before is not None:
            where.append("seq < ?")
            args.append(before)

        def run(conn: Conn) -> list[AuditEntry]:
            rows = conn.execute(
                f"SELECT * FROM audit_log WHERE {' AND '.join(where)} "  # noqa: S608 - fixed clauses
                "ORDER BY seq DESC LIMIT ?", [*args, limit])
            return [entry(r) for r in rows]

        return await self._db.read(run)

    async def checkpoint(self, sign: Callable[[int, str], bytes], *,
                         force: bool = False) -> bytes | None:
        """See :meth:`gateway.service.ports.AuditStore.checkpoint`: None when nothing was
        appended since the last checkpoint (unless ``force``)."""
        at = self._now()

        def run(conn: Conn) -> bytes | None:
            seq, _ = head(conn)
            latest = conn.execute("SELECT wire FROM audit_checkpoints WHERE seq=?",
                                  (seq,)).fetchone()
            if latest is not None:
                return bytes(latest[0]) if force else None
            return checkpoint_now(conn, at, sign)[2]

        return await self._db.write(run)

    async def latest_checkpoint(self) -> bytes | None:
        """See :meth:`gateway.service.ports.AuditStore.latest_checkpoint`."""

        def run(conn: Conn) -> bytes | None:
            row = conn.execute(
                "SELECT wire FROM audit_checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
            return None if row is None else bytes(row[0])

        return await self._db.read(run)
