"""The ledger as one object over one database, whichever engine
(:class:`gateway.service.ports.Ledger`): one store per concern, all writing through the
database's one writer (group commit)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.adapters.stores.audit import AuditStore
from gateway.adapters.stores.commchecks import CommChecksStore
from gateway.adapters.stores.directory import DirectoryStore
from gateway.adapters.stores.escalations import EscalationsStore
from gateway.adapters.stores.evidence import export_in_node
from gateway.adapters.stores.exercises import ExercisesStore
from gateway.adapters.stores.inbox import InboxStore
from gateway.adapters.stores.incidents import IncidentsStore
from gateway.adapters.stores.keys import KeysStore
from gateway.adapters.stores.leases import LeasesStore
from gateway.adapters.stores.logins import LoginsStore
from gateway.adapters.stores.outbox import OutboxStore
from gateway.adapters.stores.receipts import ReceiptsStore
from gateway.adapters.stores.security import SecurityStore
from gateway.adapters.stores.sessions import SessionsStore
from gateway.adapters.stores.sql import Conn, Db
from gateway.config import Settings
from gateway.protocol.keys import KeyRing, SigningKey
from gateway.service.changes import ChangeSignal
from gateway.service.records import Backlog, LedgerStats


def _oldest(conn: Conn, recipient: str) -> str | None:
    """When the oldest not yet delivered message to ``recipient`` was submitted (two
    lookups on the ``deliveries_peer_state`` index, never a scan)."""
    found = [conn.execute(
        "SELECT MIN(submitted_at) FROM deliveries WHERE receipt = ? AND recipient = ?"
        " AND state = ?", (receipt, recipient, state)).fetchone()[0]
        for receipt, state in ((0, "queued"), (1, "queued"), (0, "sent"))]
    known = [f for f in found if f is not None]
    return min(known) if known else None


def _stats(conn: Conn) -> LedgerStats:
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


class StoreLedger:
    """The stores over ``db``; an engine's ledger opens and closes ``db``."""

    def __init__(self, db: Db, now: Callable[[], datetime]) -> None:
        self.db = db
        self.outbox = OutboxStore(db, now)
        self.inbox = InboxStore(db)
        self.receipts = ReceiptsStore(db)
        self.audit = AuditStore(db, now)
        self.directory = DirectoryStore(db)
        self.security = SecurityStore(db)
        self.sessions = SessionsStore(db)
        self.keys = KeysStore(db)
        self.incidents = IncidentsStore(db)
        self.leases = LeasesStore(db)
        self.logins = LoginsStore(db)
        self.escalations = EscalationsStore(db)
        self.commchecks = CommChecksStore(db)
        self.exercises = ExercisesStore(db)

    async def open(self) -> None:
        """Open the database, migrating its schema to this release's."""
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
