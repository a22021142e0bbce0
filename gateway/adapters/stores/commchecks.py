"""The fallback leg of communication tests (:class:`gateway.service.ports.CommCheckStore`).

Each event is an audit entry whose subject is the test's id: a code sent
(``commcheck.fallback_sent``, with the code's digest, never the code) or not sent
(``commcheck.fallback_failed``), and a peer's returned code taken
(``commcheck.fallback_confirmed``) or refused (``commcheck.fallback_refused``). The
audit log is the record and the memory both, so no table of its own is needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.adapters.stores.audit import append
from gateway.adapters.stores.sql import Conn, Db
from gateway.protocol.commcheck import CodeSent
from gateway.protocol.types import parse_optional_time

SENT, FAILED = "commcheck.fallback_sent", "commcheck.fallback_failed"
CONFIRMED, REFUSED = "commcheck.fallback_confirmed", "commcheck.fallback_refused"
KINDS = (SENT, FAILED, CONFIRMED, REFUSED)
ACTOR = "commcheck"


def _data(row: Any) -> dict[str, Any]:
    data = json.loads(bytes(row["content"])).get("data", {})
    return data if isinstance(data, dict) else {}


class CommChecksStore:
    """Keeps and reads the fallback codes sent and returned, in the audit log."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def code_sent(self, check_id: str, peer: str, *, contact: str, address: str,
                        digest: str, at: datetime) -> None:
        """Keep that a code (its digest) went to ``peer``'s ``contact`` at ``address``."""
        await self._append(at, SENT, check_id, {"peer": peer, "contact": contact,
                                                 "address": address, "digest": digest})

    async def code_failed(self, check_id: str, peer: str, *, contact: str | None,
                          error: str, at: datetime) -> None:
        """Keep that no code reached ``peer``, and why."""
        await self._append(at, FAILED, check_id, {"peer": peer, "contact": contact,
                                                   "error": error})

    async def returned(self, check_id: str, peer: str, *, message_id: str, by: str,
                       refused: str | None, at: datetime) -> None:
        """Keep a code ``peer`` returned in message ``message_id``: taken when
        ``refused`` is None, else refused for that reason."""
        await self._append(at, CONFIRMED if refused is None else REFUSED, check_id,
                           {"peer": peer, "message_id": message_id, "by": by,
                            "why": refused})

    async def _append(self, at: datetime, kind: str, check_id: str,
                      data: dict[str, Any]) -> None:
        def run(conn: Conn) -> None:
            append(conn, at, kind, ACTOR, check_id, data)

        await self._db.write(run)

    async def state(self, check_id: str, peer: str) -> tuple[CodeSent | None, int, bool]:
        """For ``peer`` in test ``check_id``: the code sent (the last one), how many
        distinct messages returned a wrong code, and whether a code was taken."""

        def run(conn: Conn) -> tuple[CodeSent | None, int, bool]:
            sent, wrong, confirmed = None, set(), False
            for r in conn.execute("SELECT kind, at, content FROM audit_log WHERE subject = ?"
                                  " AND kind IN (?, ?, ?) ORDER BY seq",
                                  (check_id, SENT, CONFIRMED, REFUSED)):
                data = _data(r)
                if data.get("peer") != peer:
                    continue
                if r["kind"] == SENT:
                    sent = CodeSent(peer=peer, digest=str(data.get("digest")),
                                    sent_at=parse_optional_time(r["at"]) or datetime.min)
                elif r["kind"] == CONFIRMED:
                    confirmed = True
                else:
                    wrong.add(str(data.get("message_id")))
            return sent, len(wrong), confirmed

        return await self._db.read(run)

    async def fallbacks(self, check_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Per test and peer, the fallback leg as the reports show it: ``contact``,
        ``sent_at``, ``error`` (not sent), ``confirmed_at``, ``confirmed_by``, ``wrong``
        (codes refused) and ``last_refusal``."""
        ids = list(dict.fromkeys(check_ids))
        if not ids:
            return {}

        def run(conn: Conn) -> dict[str, dict[str, dict[str, Any]]]:
            out: dict[str, dict[str, dict[str, Any]]] = {i: {} for i in ids}
            marks = ",".join("?" * len(ids))
            sql = ("SELECT kind, subject, at, content FROM audit_log"  # noqa: S608 - placeholders only
                   f" WHERE subject IN ({marks}) AND kind IN (?, ?, ?, ?) ORDER BY seq")
            for r in conn.execute(sql, (*ids, *KINDS)):
                data = _data(r)
                peer = str(data.get("peer"))
                leg = out[r["subject"]].setdefault(peer, {"wrong": 0})
                if r["kind"] == SENT:
                    leg.update(contact=data.get("contact"), sent_at=r["at"], error=None)
                elif r["kind"] == FAILED:
                    leg.update(contact=data.get("contact"), error=data.get("error"))
                elif r["kind"] == CONFIRMED:
                    leg.setdefault("confirmed_at", r["at"])
                    leg.setdefault("confirmed_by", data.get("by"))
                else:
                    leg["wrong"] += 1
                    leg["last_refusal"] = data.get("why")
            return out

        return await self._db.read(run)
