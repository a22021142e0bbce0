"""The records that cross the ledger's ports: what services hand to the stores and what
the stores give back. Frozen dataclasses with named, typed fields; nothing here does I/O.

Signed messages travel as their wire bytes (``wire``): whoever needs the envelope parses
them (:func:`signed_parts`), so no loosely typed dictionary crosses a store's interface.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeAlias

from gateway.protocol.directory import ContactPoint
from gateway.protocol.types import format_time

#: A JSON value as stored in an audit entry's data.
JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"


def signed_parts(wire: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(envelope, signature) of signed bytes the ledger stored (already verified, or
    ours): the one place such bytes are parsed back for showing them."""
    signed = json.loads(wire)
    return signed["envelope"], signed["signature"]


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

    @property
    def cursor(self) -> tuple[str, str, str]:
        """Its place in the inbox's order (see :mod:`gateway.service.paging`)."""
        return format_time(self.received_at), self.sender, self.id


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


@dataclass(frozen=True, slots=True)
class RecipientState:
    """Where one of our messages stands with one recipient (times as stored, RFC 3339)."""

    centre: str
    state: str
    attempts: int
    sent_at: str | None
    delivered_at: str | None
    acknowledged_at: str | None
    rejected_at: str | None
    expired_at: str | None
    reason: str | None
    last_error: str | None
    next_attempt_at: str | None


@dataclass(frozen=True, slots=True)
class OutgoingView:
    """One of our messages with its recipients' states (times as stored, RFC 3339)."""

    id: str
    type: str
    incident: str | None
    priority: str
    mode: str
    tlp: str
    created: str
    expires: str
    submitted_at: str
    sha256: str
    wire: bytes
    recipients: tuple[RecipientState, ...]

    @property
    def cursor(self) -> tuple[str, str]:
        """Its place in the outbox's order (see :mod:`gateway.service.paging`)."""
        return self.submitted_at, self.id


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    """A signed receipt a peer sent about one of our messages (evidence)."""

    issuer: str
    id: str
    state: str
    reason: str | None
    at: str
    received_at: str
    wire: bytes


@dataclass(frozen=True, slots=True)
class StoredDirectory:
    """A centre's latest contact points, as it sent them."""

    centre: str
    created: str
    received_at: str
    message_id: str
    entries: tuple[ContactPoint, ...]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the hash-chained audit log."""

    seq: int
    at: str
    kind: str
    actor: str
    subject: str
    data: Mapping[str, JsonValue]
    hash: str


@dataclass(frozen=True, slots=True)
class SecurityEventView:
    """A stored security event, without its payload."""

    seq: int
    at: str
    reason: str
    detail: str
    claimed_sender: str | None
    claimed_id: str | None
    amqp_user: str | None
    payload_sha256: str


@dataclass(frozen=True, slots=True)
class SuppressedCount:
    """Security events over the daily quota: counted per publisher, day and reason."""

    publisher: str
    day: str
    reason: str
    count: int
    bytes: int
    last_at: str
    last_sha256: str


@dataclass(frozen=True, slots=True)
class Backlog:
    """Deliveries to one peer not yet done, and the oldest one's submission time."""

    count: int
    oldest: str


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """Counters for /metrics and /readyz."""

    deliveries: Mapping[str, int]
    backlog: Mapping[str, Backlog]
    security_events: int
    inbox: int


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A console session as kept across restarts (under its token's digest)."""

    name: str
    role: str
    csrf: str
    expires: float
    lang: str
    tag: str


@dataclass(frozen=True, slots=True)
class LoginHistory:
    """Failed console logins that bear on the next attempt (epoch seconds): of this
    address and name in the last minute, of this address in the last ten minutes, and
    of the account since its last success."""

    pair: tuple[float, ...]
    address: tuple[float, ...]
    account_failures: int
    last_failure: float


@dataclass(frozen=True, slots=True)
class LearnedKey:
    """A change to a peer's pinned keys that the node made itself, kept in the ledger
    (never in the operator's file): a key pinned by the peer's key-update, a validity
    it ended, a key it unpinned, or a revocation. Times as datetimes; ``public_key`` in
    base64url."""

    peer: str
    kid: str
    public_key: str
    not_before: datetime | None
    not_after: datetime | None
    revoked: bool
    unpinned: bool
    source: str


@dataclass(frozen=True, slots=True)
class OwnKey:
    """One of our signing keys, as the ledger records the rotation history: its private
    key file, its public key (base64url), and whether it is the one we sign with now."""

    kid: str
    file: str
    public_key: str
    current: bool
    created: datetime
    announced_in: str | None = None
