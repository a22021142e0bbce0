"""Receipts peers sent about our messages (:class:`gateway.service.ports.ReceiptStore`)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import partial

from gateway.adapters.stores.audit import append
from gateway.adapters.stores.deliveries import apply, t
from gateway.adapters.stores.sql import Conn, Db
from gateway.protocol.delivery import DeliveryState, on_receipt
from gateway.protocol.receipts import plausible_at
from gateway.protocol.types import parse_optional_time
from gateway.service.records import IncomingReceipt, ReceiptOutcome, StoredReceipt


class ReceiptsStore:
    """The receipts_in table; applying a receipt moves its delivery."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def apply(self, receipt: IncomingReceipt, now: datetime) -> ReceiptOutcome:
        """See :meth:`gateway.service.ports.ReceiptStore.apply`."""

        def run(conn: Conn) -> ReceiptOutcome:
            if conn.execute("SELECT 1 FROM receipts_in WHERE issuer=? AND id=?",
                            (receipt.issuer, receipt.id)).fetchone():
                return ReceiptOutcome.DUPLICATE
            row = conn.execute(
                "SELECT d.*, o.digest, o.created AS message_created FROM deliveries d"
                " JOIN outbox o ON o.id = d.message_id"
                " WHERE d.message_id=? AND d.recipient=? AND o.type != 'receipt'",
                (receipt.message_id, receipt.issuer),
            ).fetchone()
            if row is None or row["digest"] != receipt.message_sha256:
                return ReceiptOutcome.UNEXPECTED
            created = parse_optional_time(row["message_created"])
            if created is not None and not plausible_at(receipt.at, created):
                return ReceiptOutcome.IMPLAUSIBLE
            conn.execute(
                "INSERT INTO receipts_in VALUES (?,?,?,?,?,?,?,?,?)",
                (receipt.issuer, receipt.id, receipt.message_id, receipt.state, receipt.reason,
                 t(receipt.at), receipt.message_sha256, receipt.wire, t(now)),
            )
            append(conn, now, "receipt.received", receipt.issuer, receipt.message_id,
                   {"receipt_id": receipt.id, "issuer": receipt.issuer, "state": receipt.state,
                    "reason": receipt.reason, "at": t(receipt.at),
                    "wire_sha256": hashlib.sha256(receipt.wire).hexdigest()})
            apply(conn, row, partial(on_receipt, state=DeliveryState(receipt.state),
                                     at=receipt.at, reason=receipt.reason), now)
            return ReceiptOutcome.APPLIED

        return await self._db.write(run)

    async def for_message(self, message_id: str) -> list[StoredReceipt]:
        """See :meth:`gateway.service.ports.ReceiptStore.for_message`."""

        def run(conn: Conn) -> list[StoredReceipt]:
            rows = conn.execute("SELECT * FROM receipts_in WHERE message_id=? ORDER BY at",
                                (message_id,)).fetchall()
            return [StoredReceipt(issuer=r["issuer"], id=r["id"], state=r["state"],
                                  reason=r["reason"], at=r["at"], received_at=r["received_at"],
                                  wire=bytes(r["wire"])) for r in rows]

        return await self._db.read(run)
