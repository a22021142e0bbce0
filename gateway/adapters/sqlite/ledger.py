"""The embedded ledger: one SQLite file in WAL mode (:class:`gateway.service.ports.Ledger`).

Every store writes through the one :class:`Database` writer (group commit); its schema
is brought to this release's version when the file is opened (:mod:`.schema`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from gateway.adapters.sqlite.db import Database
from gateway.adapters.sqlite.schema import migrate
from gateway.adapters.stores.ledger import StoreLedger


class SqliteLedger(StoreLedger):
    """The SQLite ledger. Use :meth:`open` before anything else."""

    db: Database

    def __init__(self, path: Path, clock: Callable[[], datetime] | None = None, *,
                 writer_cache_kib: int | None = None) -> None:
        self.path = path
        now = clock or (lambda: datetime.now(UTC))
        super().__init__(Database(path, partial(self._migrate, path=path),
                                  writer_cache_kib=writer_cache_kib), now)
        #: The schema version the file had when opened (before migrating).
        self.found_version: int | None = None

    def _migrate(self, conn: sqlite3.Connection, path: Path) -> None:
        self.found_version = migrate(conn, path)

