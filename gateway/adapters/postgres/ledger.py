"""The PostgreSQL ledger (:class:`gateway.service.ports.Ledger`): the same stores as
the SQLite one, over a database that several instances of one node share."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from gateway.adapters.postgres.db import PgConn, PgDatabase
from gateway.adapters.postgres.schema import migrate
from gateway.adapters.stores.ledger import StoreLedger


class PostgresLedger(StoreLedger):
    """The PostgreSQL ledger at ``url``. Use :meth:`open` before anything else."""

    db: PgDatabase

    def __init__(self, url: str, clock: Callable[[], datetime] | None = None, *,
                 readers: int = 2) -> None:
        now = clock or (lambda: datetime.now(UTC))
        super().__init__(PgDatabase(url, self._migrate, readers=readers), now)
        self.url = url
        #: The schema version the database had when opened (before migrating).
        self.found_version: int | None = None

    def _migrate(self, conn: PgConn) -> None:
        self.found_version = migrate(conn)

