"""Acknowledgement by a duty officer: a signed ``acknowledged`` receipt to the sender."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from gateway.errors import Ambiguous, NotFound, StateConflict
from gateway.protocol.keys import SigningKey
from gateway.protocol.receipts import ReceiptState, receipt_envelope
from gateway.protocol.types import Mode, Priority
from gateway.service.ports import Clock, InboxEntry, Ledger
from gateway.service.submit import outgoing


class Acknowledger:
    """Acknowledges incoming messages on behalf of an officer or a centre system."""

    def __init__(self, *, me: str, key: SigningKey, ledger: Ledger, clock: Clock,
                 on_receipt_queued: Callable[[], None]) -> None:
        self._me, self._key, self._ledger, self._clock = me, key, ledger, clock
        self._on_receipt_queued = on_receipt_queued

    def use_key(self, key: SigningKey) -> None:
        """Sign with a new key from now on (rotated)."""
        self._key = key

    async def acknowledge(self, message_id: str, by: str, sender: str | None = None, *,
                          actor: str | None = None) -> InboxEntry:
        """Acknowledge and return the updated entry; idempotent. ``by`` is the name in the
        signed receipt; ``actor`` (default ``by``) who is recorded as acting.

        Raises :class:`NotFound` when no such incoming message, :class:`StateConflict` when it
        was rejected, 400 when the id is ambiguous without ``sender``.
        """
        entries = await self._ledger.inbox.find(message_id)
        entries = [e for e in entries if e.type != "receipt" and (sender in (None, e.sender))]
        if not entries:
            raise NotFound("Not found", f"no incoming message {message_id}")
        if len(entries) > 1:
            raise Ambiguous("Ambiguous", "several senders used this id; pass ?from=")
        entry = entries[0]
        if entry.state == ReceiptState.REJECTED.value:
            raise StateConflict("Rejected message",
                f"message was rejected ({entry.reason}); it cannot be acknowledged")
        if entry.state == ReceiptState.DELIVERED.value:
            now = self._clock.now()
            receipt = outgoing(
                receipt_envelope(
                    receipt_id=uuid.uuid4(), issuer=self._me, sender=entry.sender,
                    message_id=entry.id, digest=entry.digest, state=ReceiptState.ACKNOWLEDGED,
                    now=now, mode=Mode(entry.mode), priority=Priority(entry.priority), by=by),
                self._key, (entry.sender,), answers=(entry.sender, entry.id))
            if await self._ledger.inbox.acknowledge(entry.sender, entry.id, by, receipt, now,
                                              actor=actor):
                self._on_receipt_queued()
        updated = await self._ledger.inbox.get(entry.sender, entry.id)
        assert updated is not None
        return updated
