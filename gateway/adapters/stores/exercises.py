"""Exercise runs (:class:`gateway.service.ports.ExerciseStore`), kept in the audit log.

Every event of a run is an entry ``exercise.<event>`` whose subject is the run's id;
``exercise.started`` holds the whole scenario played. The run's state is the fold of
its entries (:func:`gateway.protocol.exercise.fold`): no table of its own.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gateway.adapters.stores.audit import append
from gateway.adapters.stores.sql import Conn, Db
from gateway.protocol.exercise import Event
from gateway.protocol.types import parse_optional_time

PREFIX = "exercise."
#: Events that end a run.
ENDS = ("exercise.stopped", "exercise.finished")


def _data(row: Any) -> dict[str, Any]:
    data = json.loads(bytes(row["content"])).get("data", {})
    return data if isinstance(data, dict) else {}


class ExercisesStore:
    """Keeps and reads the events of exercise runs."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def record(self, run_id: str, kind: str, actor: str, data: dict[str, Any],
                     at: datetime) -> None:
        """Keep one event of run ``run_id``."""

        def run(conn: Conn) -> None:
            append(conn, at, PREFIX + kind, actor, run_id, data)

        await self._db.write(run)

    async def events(self, run_id: str) -> list[Event]:
        """The events of one run, oldest first (none: no such run)."""

        def run(conn: Conn) -> list[Event]:
            return [Event(kind=str(r["kind"])[len(PREFIX):],
                          at=parse_optional_time(r["at"]) or datetime.min, data=_data(r))
                    for r in conn.execute(
                        "SELECT kind, at, content FROM audit_log WHERE subject = ?"
                        " ORDER BY seq", (run_id,))
                    if str(r["kind"]).startswith(PREFIX)]

        return await self._db.read(run)

    async def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest runs, newest first: ``id``, ``name``, ``started_at``, ``by`` and
        ``ended`` (stopped or finished)."""

        def run(conn: Conn) -> list[dict[str, Any]]:
            started = [{"id": r["subject"], "name": _data(r).get("name"), "by": r["actor"],
                        "started_at": r["at"], "ended": False}
                       for r in conn.execute(
                           "SELECT subject, actor, at, content FROM audit_log WHERE kind = ?"
                           " ORDER BY seq DESC LIMIT ?", ("exercise.started", limit))]
            if started:
                marks = ",".join("?" * len(started))
                ended = {r["subject"] for r in conn.execute(
                    "SELECT subject FROM audit_log WHERE kind IN (?, ?)"  # noqa: S608 - placeholders only
                    f" AND subject IN ({marks})", (*ENDS, *(s["id"] for s in started)))}
                for s in started:
                    s["ended"] = s["id"] in ended
            return started

        return await self._db.read(run)
