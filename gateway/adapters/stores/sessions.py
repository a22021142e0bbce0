"""Console sessions that outlive a restart (:class:`gateway.service.ports.SessionStore`)."""

from __future__ import annotations

import time

from gateway.adapters.stores.sql import Conn, Db, Row
from gateway.service.records import SessionRecord


class SessionsStore:
    """The console_sessions table, keyed by the SHA-256 of the cookie token."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def save(self, digest: str, session: SessionRecord) -> None:
        """See :meth:`gateway.service.ports.SessionStore.save` (drops expired ones)."""

        def run(conn: Conn) -> None:
            conn.execute("DELETE FROM console_sessions WHERE expires < ?", (time.time(),))
            conn.execute("INSERT INTO console_sessions VALUES (?,?,?,?,?,?,?)"
                         " ON CONFLICT (token_sha256) DO UPDATE SET name = excluded.name,"
                         " role = excluded.role, csrf = excluded.csrf,"
                         " expires = excluded.expires, lang = excluded.lang,"
                         " tag = excluded.tag",
                         (digest, session.name, session.role, session.csrf, session.expires,
                          session.lang, session.tag))

        await self._db.write(run)

    async def drop(self, digest: str) -> None:
        """See :meth:`gateway.service.ports.SessionStore.drop`."""

        def run(conn: Conn) -> None:
            conn.execute("DELETE FROM console_sessions WHERE token_sha256=?", (digest,))

        await self._db.write(run)

    async def load(self, now: float) -> dict[str, SessionRecord]:
        """See :meth:`gateway.service.ports.SessionStore.load`."""

        def run(conn: Conn) -> dict[str, SessionRecord]:
            rows = conn.execute("SELECT * FROM console_sessions WHERE expires >= ?", (now,))
            return {r["token_sha256"]: _record(r) for r in rows}

        return await self._db.read(run)

    async def get(self, digest: str, now: float) -> SessionRecord | None:
        """See :meth:`gateway.service.ports.SessionStore.get`."""

        def run(conn: Conn) -> SessionRecord | None:
            row = conn.execute("SELECT * FROM console_sessions WHERE token_sha256 = ? AND"
                               " expires >= ?", (digest, now)).fetchone()
            return None if row is None else _record(row)

        return await self._db.read(run)


def _record(r: Row) -> SessionRecord:
    return SessionRecord(name=r["name"], role=r["role"], csrf=r["csrf"], expires=r["expires"],
                         lang=r["lang"], tag=r["tag"])
