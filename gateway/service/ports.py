"""Ports: what the services need from the outside, as typing.Protocols. The records that
cross them are in :mod:`gateway.service.records`. Adapters implement these (the SQLite
ledger in :mod:`gateway.adapters.sqlite`); tests may substitute in-memory versions.

The ledger is one store per concern (outbox, inbox, receipts, audit, directory,
security events, console sessions, incident threads), each small and typed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from gateway.protocol.delivery import Delivery
from gateway.protocol.directory import ContactPoint
from gateway.protocol.keys import PinnedKey
from gateway.protocol.keyupdate import KeyUpdatePlan
from gateway.service.changes import ChangeSignal
from gateway.service.incidents import IncidentSummary, ThreadItem
from gateway.service.ports_jobs import (
    CommCheckStore,
    EscalationStore,
    ExerciseStore,
    LeaseStore,
)
from gateway.service.records import (
    AuditEntry,
    DueDelivery,
    IdempotencyKey,
    InboxEntry,
    IncomingReceipt,
    IngestOutcome,
    LearnedKey,
    LedgerStats,
    LoginHistory,
    OutgoingMessage,
    OutgoingView,
    OwnKey,
    ReceiptOutcome,
    SecurityEvent,
    SecurityEventView,
    SessionRecord,
    StoredDirectory,
    StoredReceipt,
    SuppressedCount,
)

__all__ = [  # the records are named here too: services import ports and records alike
    "AuditEntry", "Clock", "DueDelivery", "IdempotencyKey", "InboxEntry", "IncomingReceipt",
    "IngestOutcome", "LedgerStats", "OutgoingMessage", "OutgoingView", "ReceiptOutcome",
    "SecurityEvent", "SecurityEventView", "SessionRecord", "StoredDirectory", "StoredReceipt",
    "SuppressedCount",
]


class Clock(Protocol):
    """Wall-clock time, UTC."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class OutboxStore(Protocol):
    """Our messages and their deliveries, one per recipient."""

    async def submit(
        self, message: OutgoingMessage, idempotency: IdempotencyKey | None, now: datetime
    ) -> tuple[str, bool]:
        """Store a message and one queued delivery per recipient.

        Returns (message id, created). With an idempotency key seen before, returns the
        earlier id and False; raises IdempotencyConflict if the key came with another
        request.
        """
        ...

    async def due(self, now: datetime, limit: int, exclude: set[tuple[str, str]],
                  skip_peers: frozenset[str] = frozenset()) -> list[DueDelivery]:
        """Queued deliveries whose next attempt is due, oldest first, leaving out the
        (message, recipient) pairs in ``exclude`` and the recipients in ``skip_peers``."""
        ...

    async def claim(self, now: datetime, limit: int, lease_until: datetime,
                    skip_peers: frozenset[str] = frozenset(),
                    only: frozenset[str] | None = None) -> list[DueDelivery]:
        """Take due deliveries for sending, most urgent first (flash, urgent, routine),
        then the longest due, leaving out ``skip_peers`` (and, given ``only``, any other
        peer): their next attempt moves to ``lease_until``, so they are not taken again
        while in flight, and become due again if the node dies before recording the
        outcome (the receiver deduplicates the resend)."""
        ...

    async def transition(
        self, message_id: str, recipient: str, step: Callable[[Delivery], Delivery]
    ) -> Delivery | None:
        """Apply a pure state step to one delivery; None when there is no such row."""
        ...

    async def expire(self, now: datetime,
                     exclude: frozenset[tuple[str, str]] = frozenset()) -> list[tuple[str, str]]:
        """Expire queued deliveries whose message has expired, except the (message,
        recipient) pairs in ``exclude`` (in flight); returns the (id, recipient) pairs."""
        ...

    async def get(self, message_id: str) -> OutgoingView | None:
        """One of our messages (receipts too) with its recipients' states."""
        ...

    async def list(self, filters: Mapping[str, str], limit: int,
                   after: tuple[str, ...] | None = None) -> list[OutgoingView]:
        """Our messages (not receipts), newest first (by submission time, then id),
        filtered by type, incident, mode, state, peer or ``since``; ``after`` is the
        :attr:`~gateway.service.records.OutgoingView.cursor` of the previous page's last
        message."""
        ...

    async def recent(self, mode: str, since: str) -> int:
        """How many of our messages (not receipts) of ``mode`` were submitted at or after
        ``since`` (a stored time)."""
        ...

    async def overdue(self, cutoffs: Mapping[str, str]) -> int:
        """How many (message, recipient) pairs are not acknowledged although their
        message was created at or before the cutoff time of its priority (``cutoffs``:
        priority -> stored time)."""
        ...


class InboxStore(Protocol):
    """Messages peers sent us, accepted or rejected."""

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

    async def get(self, sender: str, message_id: str) -> InboxEntry | None:
        """One incoming message."""
        ...

    async def find(self, message_id: str) -> list[InboxEntry]:
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

    async def list(self, filters: Mapping[str, str], limit: int,
                   after: tuple[str, ...] | None = None) -> list[InboxEntry]:
        """Incoming messages, newest first (by reception time, sender, id), filtered by
        sender, type, incident, state, priority or mode; ``after`` is the
        :attr:`~gateway.service.records.InboxEntry.cursor` of the previous page's last
        message."""
        ...

    async def recent(self, mode: str, since: str) -> int:
        """How many incoming messages (not receipts) of ``mode`` were received at or
        after ``since`` (a stored time)."""
        ...

    async def overdue(self, cutoffs: Mapping[str, str]) -> int:
        """How many delivered (not acknowledged) messages were received at or before the
        cutoff time of their priority (``cutoffs``: priority -> stored time)."""
        ...

    async def unacknowledged(self, priority: str, limit: int, *,
                             actual: bool = False) -> Sequence[InboxEntry]:
        """The newest ``limit`` delivered messages of ``priority`` not acknowledged yet
        (with ``actual``, actual ones only: exercise and test traffic never crowds a
        real message out of what waits)."""
        ...

    async def waiting(self) -> int:
        """How many delivered messages are not acknowledged yet (from the counters)."""
        ...


class ReceiptStore(Protocol):
    """Signed receipts peers sent about our messages."""

    async def apply(self, receipt: IncomingReceipt, now: datetime) -> ReceiptOutcome:
        """Store a verified receipt as evidence and move the delivery it concerns."""
        ...

    async def for_message(self, message_id: str) -> list[StoredReceipt]:
        """Signed receipts received for one of our messages, oldest first."""
        ...


class AuditStore(Protocol):
    """The hash-chained audit log and its signed checkpoints."""

    async def record(self, actor: str, action: str, target: str, detail: str,
                     at: datetime) -> None:
        """Append an operator, peer or key action (``action`` is ``noun.verb``)."""
        ...

    async def entries(self, limit: int = 100, kind: str | None = None,
                      subject: str | None = None, before: int | None = None
                      ) -> list[AuditEntry]:
        """The most recent entries, newest first (optionally one kind or subject), with
        a sequence number below ``before`` (the previous page's last) if given."""
        ...

    async def checkpoint(self, sign: Callable[[int, str], bytes], *,
                         force: bool = False) -> bytes | None:
        """Sign the chain's head with ``sign(seq, head)`` and keep it."""
        ...

    async def latest_checkpoint(self) -> bytes | None:
        """The most recent signed checkpoint, if any."""
        ...


class DirectoryStore(Protocol):
    """Every peer's latest contact points."""

    async def store(self, centre: str, message_id: str, created: datetime,
                    entries: Sequence[ContactPoint], now: datetime) -> bool:
        """Keep a centre's contact points if newer than what is held; True if kept."""
        ...

    async def all(self) -> dict[str, StoredDirectory]:
        """Every centre's latest contact points, by centre."""
        ...


class SecurityStore(Protocol):
    """Inputs refused without a receipt, bounded per publisher and day."""

    async def record(self, event: SecurityEvent) -> None:
        """Keep a refused input for the operators (or count it, over the quota)."""
        ...

    async def recent(self, limit: int = 100, before: int | None = None
                     ) -> list[SecurityEventView]:
        """The most recent events, newest first (without payloads), below the sequence
        number ``before`` (the previous page's last) if given."""
        ...

    async def suppressed(self) -> list[SuppressedCount]:
        """Events counted, not stored one by one, per publisher, day and reason."""
        ...


class SessionStore(Protocol):
    """Console sessions that outlive a restart (kept under their token's digest)."""

    async def save(self, digest: str, session: SessionRecord) -> None:
        """Keep one session."""
        ...

    async def drop(self, digest: str) -> None:
        """Forget one session."""
        ...

    async def load(self, now: float) -> dict[str, SessionRecord]:
        """Every session not expired at ``now`` (epoch seconds), by digest."""
        ...

    async def get(self, digest: str, now: float) -> SessionRecord | None:
        """One session, if it exists and has not expired at ``now``."""
        ...


class IncidentStore(Protocol):
    """The messages that make up incident threads."""

    async def thread_items(self, incident: str | None) -> list[ThreadItem]:
        """Every non-receipt message on ``incident`` (None: on any incident)."""
        ...

    async def index(self, after: tuple[str, ...] | None, limit: int, *,
                    exercise: bool | None = None) -> list[IncidentSummary]:
        """One row per incident, most recent activity first (ties by id), from the index
        kept as messages are stored; ``after`` is the previous page's last
        :attr:`~gateway.service.incidents.IncidentSummary.cursor`. ``exercise``: False
        for the real board (incidents with an actual message, or only rejected ones),
        True for the exercises (every message exercise or test traffic), None for all."""
        ...

    async def summary(self, incident: str) -> IncidentSummary | None:
        """The index row of one incident (it keeps counting archived messages)."""
        ...


class KeyStore(Protocol):
    """Keys learned or made at run time: never written to the operator's file."""

    async def learned(self) -> list[LearnedKey]:
        """Every change made to peers' pinned keys, in the order made."""
        ...

    async def apply_update(self, peer: str, plan: KeyUpdatePlan, pinned: Sequence[PinnedKey],
                           source: str, now: datetime) -> None:
        """Apply an accepted key-update plan (``pinned``: the peer's keys in force), with
        its audit entries, in one transaction."""
        ...

    async def revoke(self, peer: str, pinned: PinnedKey, actor: str, now: datetime) -> None:
        """Stop accepting one of a peer's keys, audited."""
        ...

    async def own(self) -> list[OwnKey]:
        """Our signing keys, oldest first; at most one is current."""
        ...

    async def rotate(self, centre: str, announcement: OutgoingMessage, new: OwnKey,
                     previous: OwnKey, now: datetime) -> None:
        """Make ``new`` our current key and queue the key-update announcing it, in one
        transaction: after a crash the node signs with the old key (and nothing was
        announced) or with the new one (and the announcement goes out)."""
        ...


class LoginFailureStore(Protocol):
    """Failed console logins, shared by every instance of the node."""

    async def failed(self, remote: str, name: str, at: float) -> None:
        """Count a failed attempt from ``remote`` for account ``name``."""
        ...

    async def succeeded(self, remote: str, name: str) -> None:
        """The account logged in: its failures no longer slow it (the address's stay)."""
        ...

    async def history(self, remote: str, name: str, now: float) -> LoginHistory:
        """What the limits of the next attempt look at."""
        ...


class Ledger(Protocol):
    """Durable state of a node, one store per concern. Every store method is atomic."""

    @property
    def outbox(self) -> OutboxStore:
        """Our messages and deliveries."""
        ...

    @property
    def inbox(self) -> InboxStore:
        """Messages peers sent us."""
        ...

    @property
    def receipts(self) -> ReceiptStore:
        """Receipts about our messages."""
        ...

    @property
    def audit(self) -> AuditStore:
        """The audit log."""
        ...

    @property
    def directory(self) -> DirectoryStore:
        """Peers' contact points."""
        ...

    @property
    def security(self) -> SecurityStore:
        """Security events."""
        ...

    @property
    def keys(self) -> KeyStore:
        """Learned peer keys and our rotation history."""
        ...

    @property
    def sessions(self) -> SessionStore:
        """Console sessions."""
        ...

    @property
    def incidents(self) -> IncidentStore:
        """Incident threads."""
        ...

    @property
    def logins(self) -> LoginFailureStore:
        """Failed console logins (the login limits)."""
        ...

    @property
    def leases(self) -> LeaseStore:
        """Leases on periodic jobs (several instances of one node)."""
        ...

    @property
    def escalations(self) -> EscalationStore:
        """Escalation of unacknowledged messages."""
        ...

    @property
    def exercises(self) -> ExerciseStore:
        """Exercise runs."""
        ...

    @property
    def commchecks(self) -> CommCheckStore:
        """The fallback leg of communication tests."""
        ...

    @property
    def changes(self) -> ChangeSignal:
        """Bumped after every committed change (what live views wait on)."""
        ...

    def query_counts(self) -> tuple[int, int]:
        """(reads, writes) run since the ledger was opened (for /metrics)."""
        ...

    async def ping(self) -> None:
        """Answer if the ledger answers (readiness: reads no table); raise otherwise."""
        ...

    async def stats(self) -> LedgerStats:
        """Counters for /metrics and /readyz: backlog per peer, security events."""
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

