"""The embedded ledger: one SQLite file in WAL mode, one store per concern
(:class:`gateway.service.ports.Ledger`).

Every store writes through the one :class:`Database` writer (group commit); its schema
is brought to this release's version when the file is opened (:mod:`.schema`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from gateway.adapters.sqlite.audit import SqliteAudit
from gateway.adapters.sqlite.db import Database
from gateway.adapters.sqlite.directory import SqliteDirectory
from gateway.adapters.sqlite.evidence import export_in_node
from gateway.adapters.sqlite.inbox import SqliteInbox
from gateway.adapters.sqlite.incidents import SqliteIncidents
from gateway.adapters.sqlite.keys import SqliteKeys
from gateway.adapters.sqlite.outbox import SqliteOutbox
from gateway.adapters.sqlite.receipts import SqliteReceipts
from gateway.adapters.sqlite.schema import migrate
from gateway.adapters.sqlite.security import SqliteSecurity
from gateway.adapters.sqlite.sessions import SqliteSessions
from gateway.config import Settings
from gateway.protocol.keys import KeyRing, SigningKey
from gateway.service.changes import ChangeSignal
from gateway.service.records import Backlog, LedgerStats


def _oldest(conn: sqlite3.Connection, recipient: str) -> str | None:
    """When the oldest not yet delivered message to ``recipient`` was submitted (two
    lookups on the ``deliveries_peer_state`` index, never a scan)."""
    found = [conn.execute(
        "SELECT MIN(submitted_at) FROM deliveries WHERE receipt = ? AND recipient = ?"
        " AND state = ?", (receipt, recipient, state)).fetchone()[0]
        for receipt, state in ((0, "queued"), (1, "queued"), (0, "sent"))]
    known = [f for f in found if f is not None]
    return min(known) if known else None


def _stats(conn: sqlite3.Connection) -> LedgerStats:
    """From the counters kept with every change (schema step 4): the cost does not grow
    with the history. Backlog: not yet delivered; a sent receipt is done (receipts get
    no receipts)."""
    states: dict[str, int] = {}
    pending: dict[str, int] = {}
    for r in conn.execute("SELECT recipient, receipt, state, n FROM delivery_counts"
                          " WHERE n != 0"):
        states[r["state"]] = states.get(r["state"], 0) + r["n"]
        if r["state"] == "queued" or (r["state"] == "sent" and not r["receipt"]):
            pending[r["recipient"]] = pending.get(r["recipient"], 0) + r["n"]
    backlog = {peer: Backlog(count=n, oldest=_oldest(conn, peer) or "")
               for peer, n in sorted(pending.items()) if n > 0}
    counters = dict(conn.execute("SELECT name, n FROM counters").fetchall())
    return LedgerStats(deliveries=states, backlog=backlog,
                       security_events=int(counters.get("security_events", 0)),
                       inbox=int(counters.get("inbox", 0)))


class SqliteLedger:
    """The SQLite ledger. Use :meth:`open` before anything else."""

    def __init__(self, path: Path, clock: Callable[[], datetime] | None = None, *,
                 writer_cache_kib: int | None = None) -> None:
        self.path = path
        now = clock or (lambda: datetime.now(UTC))
        self.db = Database(path, partial(self._migrate, path=path),
                           writer_cache_kib=writer_cache_kib)
        #: The schema version the file had when opened (before migrating).
        self.found_version: int | None = None
        self.outbox = SqliteOutbox(self.db, now)
        self.inbox = SqliteInbox(self.db)
        self.receipts = SqliteReceipts(self.db)
        self.audit = SqliteAudit(self.db, now)
        self.directory = SqliteDirectory(self.db)
        self.security = SqliteSecurity(self.db)
        self.sessions = SqliteSessions(self.db)
        self.keys = SqliteKeys(self.db)
        self.incidents = SqliteIncidents(self.db)

    def _migrate(self, conn: sqlite3.Connection, path: Path) -> None:
        self.found_version = migrate(conn, path)

    async def open(self) -> None:
        """Create or open the ledger file, migrating its schema to this release's."""
        await self.db.open()

    async def close(self) -> None:
        """Commit pending writes and close."""
        await self.db.close()

    @property
    def changes(self) -> ChangeSignal:
        """See :meth:`gateway.service.ports.Ledger.changes`."""
        return self.db.changes

    def query_counts(self) -> tuple[int, int]:
        """See :meth:`gateway.service.ports.Ledger.query_counts`."""
        return self.db.reads, self.db.writes

    async def ping(self) -> None:
        """See :meth:`gateway.service.ports.Ledger.ping`."""
        await self.db.read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def stats(self) -> LedgerStats:
        """See :meth:`gateway.service.ports.Ledger.stats`."""
        return await self.db.read(_stats)

    async def evidence(self, settings: Settings, message_id: str, now: datetime,
                       current: SigningKey, ring: KeyRing) -> bytes:
        """The signed evidence bundle of one message (through the one writer: it keeps
        the checkpoint its proof ends at)."""
        return await export_in_node(self.db, settings, message_id, now, current, ring)
