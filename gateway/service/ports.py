"""Ports: what the services need from the outside, as typing.Protocols, and the records
that cross them. Adapters implement these; tests may substitute in-memory versions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from gateway.protocol.delivery import Delivery


class Clock(Protocol):
    """Wall-clock time, UTC."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A sealed message ready for the outbox, with its recipients."""

    id: str
    type: str
    created: datetime
    expires: datetime
    priority: str
    mode: str
    tlp: str
    incident: str | None
    digest: str
    wire: bytes
    recipients: tuple[str, ...]
    #: For receipts: (sender, message id) of the inbox message this receipt answers.
    answers: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's Idempotency-Key and the hash of the request it came with."""

    client: str
    key: str
    request_sha256: str


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A delivery whose next attempt is due."""

    message_id: str
    recipient: str
    type: str
    wire: bytes
    expires: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """An incoming message (accepted or rejected) as recorded by the receiver."""

    sender: str
    id: str
    type: str
    priority: str
    mode: str
    tlp: str
    incident: str | None
    created: datetime | None
    expires: datetime | None
    digest: str
    wire: bytes
    received_at: datetime
    state: str
    reason: str | None = None
    detail: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


class IngestOutcome(StrEnum):
    """What the ledger did with an incoming message."""

    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


class ReceiptOutcome(StrEnum):
    """What the ledger did with an incoming receipt."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    UNEXPECTED = "unexpected"
    #: For a message we sent, but dated before that message was created.
    IMPLAUSIBLE = "implausible"


@dataclass(frozen=True, slots=True)
class IncomingReceipt:
    """A verified receipt from ``issuer`` about one of our messages."""

    issuer: str
    id: str
    message_id: str
    message_sha256: str
    state: str
    reason: str | None
    at: datetime
    wire: bytes


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """Input refused without a receipt: unauthenticated, forged or malformed."""

    at: datetime
    reason: str
    detail: str
    claimed_sender: str | None
    claimed_id: str | None
    amqp_user: str | None
    payload: bytes


class Ledger(Protocol):
    """Durable state of a node. Every method is atomic: all of it or nothing."""

    async def submit(
        self, message: OutgoingMessage, idempotency: IdempotencyKey | None, now: datetime
    ) -> tuple[str, bool]:
        """Store a message and one queued delivery per recipient.

        Returns (message id, created). With an idempotency key seen before, returns the
        earlier id and False; raises SubmissionError(422) if the key came with another
        request.
        """
        ...

    async def due(self, now: datetime, limit: int, exclude: set[tuple[str, str]],
                  skip_peers: frozenset[str] = frozenset()) -> list[DueDelivery]:
        """Queued deliveries whose next attempt is due, oldest first, leaving out the
        (message, recipient) pairs in ``exclude`` and the recipients in ``skip_peers``."""
        ...

    async def claim(self, now: datetime, limit: int, lease_until: datetime,
                    skip_peers: frozenset[str] = frozenset()) -> list[DueDelivery]:
        """Take due deliveries for sending: their next attempt moves to ``lease_until``, so
        they are not taken again while in flight, and become due again if the node dies
        before recording the outcome (the receiver deduplicates the resend)."""
        ...

    async def transition(
        self, message_id: str, recipient: str, step: Callable[[Delivery], Delivery]
    ) -> Delivery | None:
        """Apply a pure state step to one delivery; None when there is no such row."""
        ...

    async def expire(self, now: datetime) -> list[tuple[str, str]]:
        """Expire queued deliveries whose message has expired; returns (id, recipient)."""
        ...

    async def ingest(
        self, entry: InboxEntry, receipt: OutgoingMessage | None, now: datetime
    ) -> tuple[IngestOutcome, str]:
        """Record an incoming message with its receipt (queued for sending) atomically.

        Returns the outcome and the stored entry's state. A repeat of the same
        (sender, id) with the same digest stores nothing new, re-queues the receipts
        already issued for it (the same signed bytes) and returns DUPLICATE; with another
        digest it returns CONFLICT and changes nothing.
        """
        ...

    async def inbox_entry(self, sender: str, message_id: str) -> InboxEntry | None:
        """One incoming message."""
        ...

    async def find_inbox(self, message_id: str) -> list[InboxEntry]:
        """Incoming messages with this id (one per sender)."""
        ...

    async def acknowledge(
        self, sender: str, message_id: str, by: str, receipt: OutgoingMessage, now: datetime,
        *, actor: str | None = None,
    ) -> bool:
        """Mark an incoming message acknowledged and queue its receipt; False if it already
        was. ``actor`` (who asked: an operator or an API client; default ``by``) is the
        audit entry's actor; ``by`` (the name the receipt carries) is data."""
        ...

    async def apply_receipt(self, receipt: IncomingReceipt, now: datetime) -> ReceiptOutcome:
        """Store a verified receipt as evidence and move the delivery it concerns."""
        ...

    async def record_security_event(self, event: SecurityEvent) -> None:
        """Keep a refused input for the operators."""
        ...

    async def store_directory(self, centre: str, message_id: str, created: datetime,
                              entries: list[dict[str, Any]], now: datetime) -> bool:
        """Keep a centre's contact points if newer than what is held."""
        ...

    async def directories(self) -> dict[str, dict[str, Any]]:
        """Every peer's latest contact points."""
        ...

    async def audit(self, actor: str, action: str, target: str, detail: str,
                    at: datetime) -> None:
        """Append an operator, peer or key action to the hash-chained audit log."""
        ...

    async def audit_entries(self, limit: int = 100, kind: str | None = None,
                            subject: str | None = None) -> list[dict[str, Any]]:
        """The most recent audit-log entries, newest first (optionally one kind/subject)."""
        ...

    async def checkpoint(self, sign: Callable[[int, str], bytes], *,
                         force: bool = False) -> bytes | None:
        """Sign the audit chain's head with ``sign(seq, head)`` and keep it."""
        ...

    async def latest_checkpoint(self) -> bytes | None:
        """The most recent signed checkpoint of the audit chain, if any."""
        ...

    async def security_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent security events, newest first (without payloads)."""
        ...

    async def suppressed_security_events(self) -> list[dict[str, Any]]:
        """Security events counted, not stored one by one, per publisher, day and reason."""
        ...

    async def message(self, message_id: str) -> dict[str, Any] | None:
        """An outgoing message with its recipients' states, for the API."""
        ...

    async def messages(self, filters: dict[str, str], limit: int) -> list[dict[str, Any]]:
        """Outgoing messages, newest first, filtered by type, incident, state or peer."""
        ...

    async def inbox(self, filters: dict[str, str], limit: int) -> list[InboxEntry]:
        """Incoming messages, newest first."""
        ...

    async def receipts_for(self, message_id: str) -> list[dict[str, Any]]:
        """Signed receipts received for one of our messages (evidence)."""
        ...

    async def stats(self) -> dict[str, Any]:
        """Counters for /metrics and /readyz: backlog per peer, security events."""
        ...

    async def close(self) -> None:
        """Flush and close."""
        ...


class Publisher(Protocol):
    """Sends wire bytes to a peer's inbox."""

    async def publish(self, peer: str, wire: bytes, *, message_id: str, msg_type: str) -> None:
        """Publish and wait for the broker's confirm.

        Raises PublishUnknown (resend later) or PublishRefused (broker said no).
        """
        ...


class LocalFanout(Protocol):
    """Republishes verified incoming messages on the centre's own broker."""

    async def republish(self, wire: bytes, *, sender: str, msg_type: str, priority: str) -> None:
        """Best effort with confirms; failures are logged, never block ingestion."""
        ...


PeerIds = Sequence[str]
