"""Leases on the periodic jobs of a node (:class:`gateway.service.ports.LeaseStore`).

Several instances of one node share its ledger; a job (checkpoints, communication-test
schedules, expiry, directory publishing, retention) runs where its lease is held. A
lease is taken, or renewed by its holder, in one statement: an upsert that only
overwrites a lease its holder let run out. The database decides; no instance has to
trust another's clock beyond the lease's length.
"""

from __future__ import annotations

from datetime import datetime

from gateway.adapters.stores.deliveries import t
from gateway.adapters.stores.sql import Conn, Db


class LeasesStore:
    """The job_leases table (schema step 7)."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """See :meth:`gateway.service.ports.LeaseStore.acquire`."""

        def run(conn: Conn) -> bool:
            row = conn.execute(
                "INSERT INTO job_leases VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
                " SET holder = excluded.holder, until = excluded.until"
                " WHERE job_leases.holder = excluded.holder OR job_leases.until < ?"
                " RETURNING holder", (name, holder, t(until), t(now))).fetchone()
            return row is not None and row[0] == holder

        return await self._db.write(run)

    async def release(self, name: str, holder: str) -> None:
        """See :meth:`gateway.service.ports.LeaseStore.release`."""

        def run(conn: Conn) -> None:
            conn.execute("DELETE FROM job_leases WHERE name = ? AND holder = ?", (name, holder))

        await self._db.write(run)

    async def holder(self, name: str, now: datetime) -> str | None:
        """See :meth:`gateway.service.ports.LeaseStore.holder`."""

        def run(conn: Conn) -> str | None:
            row = conn.execute("SELECT holder FROM job_leases WHERE name = ? AND until >= ?",
                               (name, t(now))).fetchone()
            return None if row is None else str(row[0])

        return await self._db.read(run)
