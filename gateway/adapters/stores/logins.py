"""Failed console logins, kept in the ledger (:class:`gateway.service.ports.LoginFailureStore`).

The console throttles logins per client address and name, per address and per account
(:mod:`gateway.web.console.auth`). Kept here rather than in one process's memory, the
limits hold across the instances of a node (a guesser sent to every instance in turn
gains nothing) and across restarts. Rows older than a day go.
"""

from __future__ import annotations

from gateway.adapters.stores.sql import Conn, Db
from gateway.service.records import LoginHistory

#: How long a failure is kept (longer than every window and back-off it feeds).
KEEP_SECONDS = 86400.0
PAIR_WINDOW = 60.0
ADDRESS_WINDOW = 600.0


class LoginsStore:
    """The login_failures table (schema step 7)."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def failed(self, remote: str, name: str, at: float) -> None:
        """See :meth:`gateway.service.ports.LoginFailureStore.failed`."""

        def run(conn: Conn) -> None:
            conn.execute("DELETE FROM login_failures WHERE at < ?", (at - KEEP_SECONDS,))
            conn.execute("INSERT INTO login_failures (at, remote, name) VALUES (?, ?, ?)",
                         (at, remote, name.lower()))

        await self._db.write(run)

    async def succeeded(self, remote: str, name: str) -> None:
        """See :meth:`gateway.service.ports.LoginFailureStore.succeeded`."""

        def run(conn: Conn) -> None:
            conn.execute("UPDATE login_failures SET cleared = 1 WHERE name = ? AND cleared = 0",
                         (name.lower(),))

        await self._db.write(run)

    async def history(self, remote: str, name: str, now: float) -> LoginHistory:
        """See :meth:`gateway.service.ports.LoginFailureStore.history`."""
        lower = name.lower()

        def run(conn: Conn) -> LoginHistory:
            pair = [float(r[0]) for r in conn.execute(
                "SELECT at FROM login_failures WHERE remote = ? AND at >= ? AND name = ?"
                " AND cleared = 0 ORDER BY at", (remote, now - PAIR_WINDOW, lower))]
            address = [float(r[0]) for r in conn.execute(
                "SELECT at FROM login_failures WHERE remote = ? AND at >= ? ORDER BY at",
                (remote, now - ADDRESS_WINDOW))]
            count, last = conn.execute(
                "SELECT COUNT(*), COALESCE(MAX(at), 0) FROM login_failures WHERE name = ?"
                " AND cleared = 0", (lower,)).fetchone()
            return LoginHistory(pair=tuple(pair), address=tuple(address),
                                account_failures=int(count), last_failure=float(last))

        return await self._db.read(run)
