"""Peers' contact points (:class:`gateway.service.ports.DirectoryStore`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from gateway.adapters.stores.audit import append
from gateway.adapters.stores.deliveries import t
from gateway.adapters.stores.sql import Conn, Db
from gateway.protocol.directory import ContactPoint
from gateway.service.records import StoredDirectory

_ENTRIES = TypeAdapter(tuple[ContactPoint, ...])


def _entries(text: str) -> tuple[ContactPoint, ...]:
    try:
        return _ENTRIES.validate_json(text)
    except ValidationError:  # verified when it came in; a later release may read more
        return ()


class DirectoryStore:
    """The directory table: one row per centre, its latest list."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def store(self, centre: str, message_id: str, created: datetime,
                    entries: Sequence[ContactPoint], now: datetime) -> bool:
        """See :meth:`gateway.service.ports.DirectoryStore.store`."""
        text = json.dumps([e.model_dump(mode="json") for e in entries])

        def run(conn: Conn) -> bool:
            row = conn.execute("SELECT created FROM directory WHERE centre=?",
                               (centre,)).fetchone()
            if row is not None and row["created"] >= t(created):
                return False
            conn.execute(
                "INSERT INTO directory VALUES (?,?,?,?,?) ON CONFLICT (centre) DO UPDATE SET "
                "created=excluded.created, message_id=excluded.message_id, "
                "entries=excluded.entries, received_at=excluded.received_at",
                (centre, t(created), message_id, text, t(now)))
            append(conn, now, "directory.stored", centre, message_id,
                   {"centre": centre, "created": t(created), "entries": len(entries)})
            return True

        return await self._db.write(run)

    async def all(self) -> dict[str, StoredDirectory]:
        """See :meth:`gateway.service.ports.DirectoryStore.all`."""

        def run(conn: Conn) -> dict[str, StoredDirectory]:
            return {r["centre"]: StoredDirectory(
                centre=r["centre"], created=r["created"], received_at=r["received_at"],
                message_id=r["message_id"], entries=_entries(r["entries"]))
                for r in conn.execute("SELECT * FROM directory ORDER BY centre")}

        return await self._db.read(run)
