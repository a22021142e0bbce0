"""An in-memory node for testing the web layer (``gateway.web``) without a broker.

:class:`FakeNode` implements :class:`gateway.service.node.NodeApi` on dictionaries and
lists: fake stores that return the records of :mod:`gateway.service.records`, link states
a test sets, and recording fakes of the node's actions (key rotation, revocation,
directory publication, checkpoints, evidence). The submitter and the acknowledger are
recording fakes with the real classes' signatures; the communication tests are the real
:class:`~gateway.service.commcheck.CommChecks` on the fake submitter. Any store method
can be made to fail by putting an exception in :attr:`FakeLedger.faults` under
``"<store>.<method>"`` (``"stats"`` for :meth:`FakeLedger.stats`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import Settings
from gateway.errors import ConfigError, IdempotencyConflict, NotFound
from gateway.metrics import Metrics
from gateway.protocol.delivery import Delivery
from gateway.protocol.directory import ContactPoint
from gateway.protocol.exercise import Event
from gateway.protocol.keys import KeyRing, SigningKey, default_key_id, public_key_text
from gateway.protocol.peerhealth import PeerHealth
from gateway.protocol.types import format_time
from gateway.service.acknowledge import Acknowledger
from gateway.service.changes import ChangeSignal
from gateway.service.commcheck import CommChecks
from gateway.service.exercise import Exercises
from gateway.service.fallback import Fallbacks
from gateway.service.incidents import IncidentSummary, ThreadItem, summarise_incidents
from gateway.service.node import NodeApi
from gateway.service.ports import Clock
from gateway.service.records import (
    AuditEntry,
    Backlog,
    DueDelivery,
    IdempotencyKey,
    InboxEntry,
    IncomingReceipt,
    IngestOutcome,
    LedgerStats,
    LoginHistory,
    OutgoingMessage,
    OutgoingView,
    ReceiptOutcome,
    RecipientState,
    SecurityEvent,
    SecurityEventView,
    SessionRecord,
    StoredDirectory,
    StoredReceipt,
    SuppressedCount,
)
from gateway.service.submit import AlertSubmission, SitrepSubmission, Submitter
from gateway.web.console.auth import hash_password

ME = "BE-NCCN"
NL, LU, DE = "NL-NCC", "LU-HCPN", "DE-NW"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
#: The id the fake submitter answers with unless told otherwise.
MESSAGE_ID = "0b0e7f52-6a0e-4f5c-9d43-2c1c8f1e9a01"

#: Bearer tokens by client: ``full`` may do everything, ``no-<scope>`` all but <scope>.
SCOPES = ("read", "submit", "acknowledge", "admin")
TOKENS = {"full": "token-full-0123456789"} | {
    f"no-{scope}": f"token-no-{scope}-0123456789" for scope in SCOPES}
OPERATOR, OPERATOR_PASSWORD = "duty", "correct horse battery staple"


def auth(client: str = "full") -> dict[str, str]:
    """The Authorization header of one of :data:`TOKENS`."""
    return {"Authorization": f"Bearer {TOKENS[client]}"}


def _scopes(client: str) -> list[str]:
    return list(SCOPES) if client == "full" else [s for s in SCOPES if f"no-{s}" != client]


def centre_key(centre: str) -> SigningKey:
    """A deterministic signing key for a centre."""
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(centre.encode()).digest())
    return SigningKey(kid=default_key_id(centre, private.public_key()), private=private)


@functools.cache
def password_hash() -> str:
    """The argon2 hash of :data:`OPERATOR_PASSWORD` (hashed once per process: it is slow)."""
    return hash_password(OPERATOR_PASSWORD)


def _peer(centre: str, *, groups: Sequence[str] = ("eu",), suspended: bool = False
          ) -> dict[str, Any]:
    key = centre_key(centre)
    return {
        "id": centre, "name": f"Centre {centre}", "country": centre[:2],
        "groups": list(groups), "suspended": suspended,
        "keys": [{"kid": key.kid, "public_key": public_key_text(key.public()),
                  "not_after": "2027-06-30T00:00:00Z"}],
        "inbox_url": f"amqps://{ME}:secret@{centre.lower()}.example/",
        "granted_user": f"{centre}@{ME}", "tls": {"spki_sha256": ["ab" * 32]},
    }


def settings_dict(*, operators: Sequence[tuple[str, str]] = ((OPERATOR, "operator"),)
                  ) -> dict[str, Any]:
    """A minimal raw configuration: three peers (DE-NW suspended), :data:`TOKENS`, and
    console accounts (name, role) that all have :data:`OPERATOR_PASSWORD`."""
    key = centre_key(ME)
    return {
        "node": {"centre": ME, "name": "Centre de crise", "country": "BE",
                 "data_dir": "/nonexistent/data", "signing_key_file": "/nonexistent/key",
                 "signing_key_id": key.kid},
        "broker": {"url": "amqp://gw:secret@127.0.0.1:5672/"},
        "api": {"tokens": {client: {"sha256": hashlib.sha256(token.encode()).hexdigest(),
                                    "scopes": _scopes(client)}
                           for client, token in TOKENS.items()}},
        "peers": [_peer(NL), _peer(LU), _peer(DE, groups=(), suspended=True)],
        "console": {"operators": [{"name": n, "role": r, "password_hash": password_hash()}
                                  for n, r in operators]},
    }


def make_settings(**changes: Any) -> Settings:
    """Validated settings from :func:`settings_dict`, top-level tables replaced or added
    by ``changes`` (``api={...}`` replaces the whole ``[api]`` table)."""
    return Settings.model_validate(
        {**settings_dict(operators=changes.pop("operators", ((OPERATOR, "operator"),))),
         **changes})


# -- records ---------------------------------------------------------------------------


def wire(envelope: Mapping[str, Any]) -> bytes:
    """Signed-object bytes as the ledger stores them (the signature is not checked)."""
    return json.dumps({"envelope": dict(envelope),
                       "signature": {"alg": "Ed25519", "kid": f"{envelope['from']}.k1",
                                     "sig": "c2lnbmF0dXJl"}}).encode()


def envelope(message_id: str, *, sender: str = ME, to: Sequence[str] = (NL,),
             msg_type: str = "sitrep", priority: str = "urgent",
             incident: str | None = "BE-2026-0001", created: datetime = NOW,
             body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A plausible envelope (only what the shapes and templates read)."""
    return {"v": 1, "id": message_id, "type": msg_type, "from": sender, "to": list(to),
            "created": format_time(created), "expires": format_time(created + timedelta(days=1)),
            "mode": "actual", "tlp": "AMBER", "priority": priority, "incident": incident,
            "body": dict(body or {"summary": {"en": "Flooding of the Meuse."}})}


def recipient(centre: str, state: str = "delivered", **times: str | None) -> RecipientState:
    """One recipient's state of an outgoing message."""
    values: dict[str, Any] = {
        "sent_at": None, "delivered_at": None, "acknowledged_at": None, "rejected_at": None,
        "expired_at": None, "reason": None, "last_error": None, "next_attempt_at": None}
    values.update(times)
    return RecipientState(centre=centre, state=state, attempts=1, **values)


def outgoing_view(message_id: str, *, msg_type: str = "sitrep", created: datetime = NOW,
                  recipients: Sequence[RecipientState] = ()) -> OutgoingView:
    """One of our messages as the outbox store returns it."""
    env = envelope(message_id, msg_type=msg_type, created=created,
                   to=[r.centre for r in recipients] or [NL])
    return OutgoingView(
        id=message_id, type=msg_type, incident=env["incident"], priority=env["priority"],
        mode="actual", tlp="AMBER", created=env["created"], expires=env["expires"],
        submitted_at=env["created"], sha256="d" * 64, wire=wire(env),
        recipients=tuple(recipients) or (recipient(NL),))


def inbox_entry(message_id: str, *, sender: str = NL, state: str = "delivered",
                priority: str = "urgent", msg_type: str = "sitrep",
                received_at: datetime = NOW) -> InboxEntry:
    """An incoming message as the inbox store returns it."""
    env = envelope(message_id, sender=sender, to=[ME], msg_type=msg_type, priority=priority,
                   created=received_at - timedelta(seconds=2))
    return InboxEntry(
        sender=sender, id=message_id, type=msg_type, priority=priority, mode="actual",
        tlp="AMBER", incident=env["incident"], created=received_at - timedelta(seconds=2),
        expires=received_at + timedelta(days=1), digest="e" * 64, wire=wire(env),
        received_at=received_at, state=state)


def stored_receipt(issuer: str, message_id: str, state: str = "delivered") -> StoredReceipt:
    """A signed receipt a peer sent about one of our messages."""
    receipt_id = "7d4f1a2b-0c3e-4d5f-8a6b-9c0d1e2f3a4b"
    env = {"v": 1, "id": receipt_id, "type": "receipt", "from": issuer, "to": [ME],
           "created": format_time(NOW), "body": {"message_id": message_id, "state": state}}
    return StoredReceipt(issuer=issuer, id=receipt_id, state=state, reason=None,
                         at=format_time(NOW), received_at=format_time(NOW), wire=wire(env))


# -- stores ----------------------------------------------------------------------------


class _Store:
    """What every fake store shares: the ledger's faults and a log of the calls."""

    name = "store"

    def __init__(self, faults: dict[str, Exception]) -> None:
        self._faults = faults
        #: (method, arguments) of every call, oldest first.
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        fault = self._faults.get(f"{self.name}.{method}")
        if fault is not None:
            raise fault


def _matches(record: object, filters: Mapping[str, str], keys: Sequence[str]) -> bool:
    return all(getattr(record, k) == filters[k] for k in keys if k in filters)


class FakeOutbox(_Store):
    """Our messages, held as :class:`OutgoingView` records."""

    name = "outbox"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.views: dict[str, OutgoingView] = {}
        self.submitted: list[tuple[OutgoingMessage, IdempotencyKey | None]] = []

    def add(self, *views: OutgoingView) -> None:
        """Hold these messages."""
        for view in views:
            self.views[view.id] = view

    async def submit(self, message: OutgoingMessage, idempotency: IdempotencyKey | None,
                     now: datetime) -> tuple[str, bool]:
        """Record the message (nothing is delivered)."""
        self._call("submit", message, idempotency, now)
        for earlier, key in self.submitted:
            if idempotency is not None and key is not None and key.key == idempotency.key:
                if key.request_sha256 != idempotency.request_sha256:
                    raise IdempotencyConflict("Idempotency conflict", "another request")
                return earlier.id, False
        self.submitted.append((message, idempotency))
        return message.id, True

    async def due(self, now: datetime, limit: int, exclude: set[tuple[str, str]],
                  skip_peers: frozenset[str] = frozenset()) -> list[DueDelivery]:
        """Nothing is ever due: the web layer does not deliver."""
        self._call("due", now, limit, exclude, skip_peers)
        return []

    async def claim(self, now: datetime, limit: int, lease_until: datetime,
                    skip_peers: frozenset[str] = frozenset(),
                    only: frozenset[str] | None = None) -> list[DueDelivery]:
        """Nothing is ever due: the web layer does not deliver."""
        self._call("claim", now, limit, lease_until, skip_peers)
        return []

    async def transition(self, message_id: str, recipient: str,
                         step: Callable[[Delivery], Delivery]) -> Delivery | None:
        """No delivery rows are held."""
        self._call("transition", message_id, recipient)
        return None

    async def expire(self, now: datetime,
                     exclude: frozenset[tuple[str, str]] = frozenset()) -> list[tuple[str, str]]:
        """Nothing expires."""
        self._call("expire", now, exclude)
        return []

    async def get(self, message_id: str) -> OutgoingView | None:
        """The held message with this id."""
        self._call("get", message_id)
        return self.views.get(message_id)

    async def list(self, filters: Mapping[str, str], limit: int,
                   after: tuple[str, ...] | None = None) -> list[OutgoingView]:
        """Held messages (not receipts), newest first, filtered by type, incident and
        mode, past the cursor ``after``."""
        self._call("list", dict(filters), limit, *(() if after is None else (after,)))
        found = [v for v in self.views.values()
                 if v.type != "receipt" and _matches(v, filters, ("type", "incident", "mode"))
                 and (after is None or v.cursor < after)]
        return sorted(found, key=lambda v: v.cursor, reverse=True)[:limit]

    async def recent(self, mode: str, since: str) -> int:
        """Held messages (not receipts) of ``mode`` submitted at or after ``since``."""
        self._call("recent", mode, since)
        return sum(1 for v in self.views.values() if v.type != "receipt"
                   and v.mode == mode and v.submitted_at >= since)

    async def overdue(self, cutoffs: Mapping[str, str]) -> int:
        """Unacknowledged recipients of held messages created by their cutoff."""
        self._call("overdue", dict(cutoffs))
        return sum(1 for v in self.views.values() if v.type != "receipt"
                   and v.created <= cutoffs.get(v.priority, "")
                   for r in v.recipients if r.state in ("queued", "sent", "delivered"))


class FakeInbox(_Store):
    """Incoming messages, held as :class:`InboxEntry` records."""

    name = "inbox"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.entries: dict[tuple[str, str], InboxEntry] = {}

    def add(self, *entries: InboxEntry) -> None:
        """Hold these messages."""
        for entry in entries:
            self.entries[entry.sender, entry.id] = entry

    async def ingest(self, entry: InboxEntry, receipt: OutgoingMessage | None,
                     now: datetime) -> tuple[IngestOutcome, str]:
        """Hold the entry (the receipt is dropped)."""
        self._call("ingest", entry, receipt, now)
        self.add(entry)
        return IngestOutcome.NEW, entry.state

    async def get(self, sender: str, message_id: str) -> InboxEntry | None:
        """One held message."""
        self._call("get", sender, message_id)
        return self.entries.get((sender, message_id))

    async def find(self, message_id: str) -> list[InboxEntry]:
        """Held messages with this id, one per sender."""
        self._call("find", message_id)
        return [e for (_, i), e in self.entries.items() if i == message_id]

    async def acknowledge(self, sender: str, message_id: str, by: str,
                          receipt: OutgoingMessage, now: datetime, *,
                          actor: str | None = None) -> bool:
        """Mark a held message acknowledged (the receipt is dropped)."""
        self._call("acknowledge", sender, message_id, by, receipt, now, actor)
        entry = self.entries[sender, message_id]
        if entry.state == "acknowledged":
            return False
        self.add(dataclasses.replace(entry, state="acknowledged", acknowledged_at=now,
                                     acknowledged_by=by))
        return True

    async def list(self, filters: Mapping[str, str], limit: int,
                   after: tuple[str, ...] | None = None) -> list[InboxEntry]:
        """Held messages, newest first, filtered by sender, type, incident, state,
        priority and mode, past the cursor ``after``."""
        self._call("list", dict(filters), limit, *(() if after is None else (after,)))
        found = [e for e in self.entries.values()
                 if _matches(e, filters, ("sender", "type", "incident", "state", "priority",
                                          "mode"))
                 and (after is None or e.cursor < after)]
        return sorted(found, key=lambda e: e.cursor, reverse=True)[:limit]

    async def recent(self, mode: str, since: str) -> int:
        """Held messages (not receipts) of ``mode`` received at or after ``since``."""
        self._call("recent", mode, since)
        return sum(1 for e in self.entries.values() if e.type != "receipt"
                   and e.mode == mode and format_time(e.received_at) >= since)

    async def unacknowledged(self, priority: str, limit: int, *,
                             actual: bool = False) -> list[InboxEntry]:
        """Held delivered messages of ``priority`` (actual ones only, with ``actual``),
        newest first."""
        self._call("unacknowledged", priority, limit)
        found = [e for e in self.entries.values()
                 if e.state == "delivered" and e.priority == priority
                 and (not actual or e.mode == "actual")]
        return sorted(found, key=lambda e: e.received_at, reverse=True)[:limit]

    async def waiting(self) -> int:
        """Held delivered messages."""
        self._call("waiting")
        return sum(1 for e in self.entries.values() if e.state == "delivered")

    async def overdue(self, cutoffs: Mapping[str, str]) -> int:
        """Held delivered messages received by their priority's cutoff."""
        self._call("overdue", dict(cutoffs))
        return sum(1 for e in self.entries.values() if e.state == "delivered"
                   and format_time(e.received_at) <= cutoffs.get(e.priority, ""))


class FakeReceipts(_Store):
    """Signed receipts peers sent, by the message they concern."""

    name = "receipts"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.by_message: dict[str, list[StoredReceipt]] = {}

    async def apply(self, receipt: IncomingReceipt, now: datetime) -> ReceiptOutcome:
        """Keep nothing: receipts are given to the fake with :attr:`by_message`."""
        self._call("apply", receipt, now)
        return ReceiptOutcome.UNEXPECTED

    async def for_message(self, message_id: str) -> list[StoredReceipt]:
        """The receipts held for one message."""
        self._call("for_message", message_id)
        return list(self.by_message.get(message_id, []))


class FakeAudit(_Store):
    """The audit log as a list; :attr:`recorded` holds what the web layer wrote."""

    name = "audit"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.items: list[AuditEntry] = []
        #: (actor, action, target, detail, at) of every record() call.
        self.recorded: list[tuple[str, str, str, str, datetime]] = []

    async def record(self, actor: str, action: str, target: str, detail: str,
                     at: datetime) -> None:
        """Note the entry (no chain is computed)."""
        self._call("record", actor, action, target, detail, at)
        self.recorded.append((actor, action, target, detail, at))

    async def entries(self, limit: int = 100, kind: str | None = None,
                      subject: str | None = None, before: int | None = None
                      ) -> list[AuditEntry]:
        """The held entries of this kind and subject, newest first, below ``before``."""
        self._call("entries", limit, kind, subject, *(() if before is None else (before,)))
        found = [e for e in self.items
                 if kind in (None, e.kind) and subject in (None, e.subject)
                 and (before is None or e.seq < before)]
        return sorted(found, key=lambda e: e.seq, reverse=True)[:limit]

    async def checkpoint(self, sign: Callable[[int, str], bytes], *,
                         force: bool = False) -> bytes | None:
        """Sign a fixed head."""
        self._call("checkpoint", force)
        return sign(len(self.items), "0" * 64)

    async def latest_checkpoint(self) -> bytes | None:
        """None: no checkpoint is kept."""
        self._call("latest_checkpoint")
        return None


class FakeDirectory(_Store):
    """Peers' contact points, by centre."""

    name = "directory"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.held: dict[str, StoredDirectory] = {}

    async def store(self, centre: str, message_id: str, created: datetime,
                    entries: Sequence[ContactPoint], now: datetime) -> bool:
        """Keep a centre's contact points."""
        self._call("store", centre, message_id, created, entries, now)
        self.held[centre] = StoredDirectory(
            centre=centre, created=format_time(created), received_at=format_time(now),
            message_id=message_id, entries=tuple(entries))
        return True

    async def all(self) -> dict[str, StoredDirectory]:
        """Every held centre's contact points."""
        self._call("all")
        return dict(self.held)


class FakeSecurity(_Store):
    """Security events and suppressed counts, as given to the fake."""

    name = "security"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.events: list[SecurityEventView] = []
        self.counts: list[SuppressedCount] = []

    async def record(self, event: SecurityEvent) -> None:
        """Keep the event (without its payload)."""
        self._call("record", event)
        self.events.insert(0, SecurityEventView(
            seq=len(self.events) + 1, at=format_time(event.at), reason=event.reason,
            detail=event.detail, claimed_sender=event.claimed_sender,
            claimed_id=event.claimed_id, amqp_user=event.amqp_user,
            payload_sha256=hashlib.sha256(event.payload).hexdigest()))

    async def recent(self, limit: int = 100, before: int | None = None
                     ) -> list[SecurityEventView]:
        """The held events, newest first, below ``before``."""
        self._call("recent", limit, *(() if before is None else (before,)))
        return [e for e in self.events if before is None or e.seq < before][:limit]

    async def suppressed(self) -> list[SuppressedCount]:
        """The held counts."""
        self._call("suppressed")
        return list(self.counts)


class FakeSessions(_Store):
    """Console sessions by token digest."""

    name = "sessions"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.rows: dict[str, SessionRecord] = {}

    async def save(self, digest: str, session: SessionRecord) -> None:
        """Keep one session."""
        self._call("save", digest)
        self.rows[digest] = session

    async def drop(self, digest: str) -> None:
        """Forget one session."""
        self._call("drop", digest)
        self.rows.pop(digest, None)

    async def load(self, now: float) -> dict[str, SessionRecord]:
        """Every session not expired at ``now``."""
        self._call("load", now)
        return {d: s for d, s in self.rows.items() if s.expires >= now}

    async def get(self, digest: str, now: float) -> SessionRecord | None:
        """One session not expired at ``now``."""
        self._call("get", digest)
        row = self.rows.get(digest)
        return row if row is not None and row.expires >= now else None


class FakeIncidents(_Store):
    """Thread items, as given to the fake."""

    name = "incidents"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.items: list[ThreadItem] = []

    async def thread_items(self, incident: str | None) -> list[ThreadItem]:
        """The held items on ``incident`` (None: all)."""
        self._call("thread_items", incident)
        return [i for i in self.items if incident is None or i.incident == incident]

    async def index(self, after: tuple[str, ...] | None, limit: int, *,
                    exercise: bool | None = None) -> list[IncidentSummary]:
        """The held items summarised (the pure computation the ledger's index keeps),
        of one board (``exercise``; None: all)."""
        self._call("index", after, limit)
        rows = [IncidentSummary(**{**r, "centres": tuple(r["centres"])})
                for r in summarise_incidents(self.items, ME)]
        rows = [r for r in rows if exercise is None or r.exercise == exercise]
        if after is not None:
            rows = [r for r in rows if r.last_activity < after[0]
                    or (r.last_activity == after[0] and r.incident > after[1])]
        return rows[:limit]

    async def summary(self, incident: str) -> IncidentSummary | None:
        """The held items of ``incident`` summarised (None when it has none)."""
        self._call("summary", incident)
        rows = [IncidentSummary(**{**r, "centres": tuple(r["centres"])})
                for r in summarise_incidents(self.items, ME) if r["incident"] == incident]
        return rows[0] if rows else None


class FakeLogins(_Store):
    """Failed logins in memory (the limits' arithmetic is tested on the real stores)."""

    name = "logins"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.rows: list[list[Any]] = []

    async def failed(self, remote: str, name: str, at: float) -> None:
        """Count one failure."""
        self._call("failed", remote)
        self.rows.append([at, remote, name.lower(), False])

    async def succeeded(self, remote: str, name: str) -> None:
        """Clear the account's failures."""
        self._call("succeeded", remote)
        for row in self.rows:
            if row[2] == name.lower():
                row[3] = True

    async def history(self, remote: str, name: str, now: float) -> LoginHistory:
        """What the limits look at."""
        self._call("history", remote)
        mine = [r for r in self.rows if r[2] == name.lower() and not r[3]]
        return LoginHistory(
            pair=tuple(r[0] for r in mine if r[1] == remote and r[0] >= now - 60),
            address=tuple(r[0] for r in self.rows if r[1] == remote and r[0] >= now - 600),
            account_failures=len(mine), last_failure=max((r[0] for r in mine), default=0.0))


class FakeEscalations(_Store):
    """Escalation steps in memory (the real store is tested on real nodes)."""

    name = "escalations"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.taken: list[tuple[Any, str | None, Any]] = []

    async def waiting(self, priorities: Any, since: Any, until: Any) -> list[Any]:
        """Nothing waits here."""
        self._call("waiting", since)
        return []

    async def done(self, message_ids: Any) -> dict[str, list[Any]]:
        """Nothing tried."""
        self._call("done", message_ids)
        return {}

    async def record(self, action: Any, error: str | None, at: Any) -> None:
        """Keep a step."""
        self._call("record", action)
        self.taken.append((action, error, at))

    async def steps(self, message_id: str) -> list[dict[str, Any]]:
        """None taken."""
        self._call("steps", message_id)
        return []

    async def noticed(self, sender: str, notice: Any, at: Any) -> None:
        """Keep a peer's notice."""
        self._call("noticed", sender)

    async def notices(self, sender: str, message_id: str) -> list[dict[str, Any]]:
        """None kept."""
        self._call("notices", message_id)
        return []


class FakeCommChecks(_Store):
    """The fallback leg in memory (the real store is tested on real nodes)."""

    name = "commchecks"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.events: list[tuple[str, str, str, dict[str, Any]]] = []

    async def code_sent(self, check_id: str, peer: str, **data: Any) -> None:
        """Keep a code sent."""
        self._call("code_sent", check_id)
        self.events.append(("sent", check_id, peer, data))

    async def code_failed(self, check_id: str, peer: str, **data: Any) -> None:
        """Keep a code not sent."""
        self._call("code_failed", check_id)
        self.events.append(("failed", check_id, peer, data))

    async def returned(self, check_id: str, peer: str, **data: Any) -> None:
        """Keep a code returned."""
        self._call("returned", check_id)
        self.events.append(("returned", check_id, peer, data))

    async def state(self, check_id: str, peer: str) -> tuple[Any, int, bool]:
        """Nothing sent here."""
        self._call("state", check_id)
        return None, 0, False

    async def fallbacks(self, check_ids: Any) -> dict[str, dict[str, dict[str, Any]]]:
        """No fallback legs."""
        self._call("fallbacks", check_ids)
        return {}


class FakeExercises(_Store):
    """Exercise events in memory (the real store is tested on real nodes)."""

    name = "exercises"

    def __init__(self, faults: dict[str, Exception]) -> None:
        super().__init__(faults)
        self.kept: list[tuple[str, Any]] = []

    async def record(self, run_id: str, kind: str, actor: str, data: dict[str, Any],
                     at: Any) -> None:
        """Keep an event."""
        self._call("record", run_id)
        self.kept.append((run_id, Event(kind=kind, at=at, data=data)))

    async def events(self, run_id: str) -> list[Any]:
        """The events kept for ``run_id``."""
        self._call("events", run_id)
        return [e for r, e in self.kept if r == run_id]

    async def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """None."""
        self._call("runs", limit)
        return []


class FakeLedger:
    """Every store in memory; :attr:`stats_value` is what :meth:`stats` answers."""

    def __init__(self) -> None:
        #: Exceptions to raise, by ``"<store>.<method>"`` (or ``"stats"``); they persist.
        self.faults: dict[str, Exception] = {}
        self._outbox, self._inbox = FakeOutbox(self.faults), FakeInbox(self.faults)
        self._receipts, self._audit = FakeReceipts(self.faults), FakeAudit(self.faults)
        self._directory = FakeDirectory(self.faults)
        self._security, self._sessions = FakeSecurity(self.faults), FakeSessions(self.faults)
        self._incidents = FakeIncidents(self.faults)
        self._logins = FakeLogins(self.faults)
        self._escalations = FakeEscalations(self.faults)
        self._commchecks = FakeCommChecks(self.faults)
        self._exercises = FakeExercises(self.faults)
        self.stats_value = LedgerStats(deliveries={}, backlog={}, security_events=0, inbox=0)
        self._changes = ChangeSignal()

    @property
    def changes(self) -> ChangeSignal:
        """Never bumped here: live views refresh on their own timer."""
        return self._changes

    def query_counts(self) -> tuple[int, int]:
        """Not counted in memory."""
        return 0, 0

    @property
    def outbox(self) -> FakeOutbox:
        """Our messages."""
        return self._outbox

    @property
    def logins(self) -> FakeLogins:
        """Failed console logins."""
        return self._logins

    @property
    def escalations(self) -> FakeEscalations:
        """Escalation steps."""
        return self._escalations

    @property
    def exercises(self) -> FakeExercises:
        """Exercise runs."""
        return self._exercises

    @property
    def commchecks(self) -> FakeCommChecks:
        """The fallback leg of communication tests."""
        return self._commchecks

    @property
    def inbox(self) -> FakeInbox:
        """Incoming messages."""
        return self._inbox

    @property
    def receipts(self) -> FakeReceipts:
        """Receipts about our messages."""
        return self._receipts

    @property
    def audit(self) -> FakeAudit:
        """The audit log."""
        return self._audit

    @property
    def directory(self) -> FakeDirectory:
        """Peers' contact points."""
        return self._directory

    @property
    def security(self) -> FakeSecurity:
        """Security events."""
        return self._security

    @property
    def sessions(self) -> FakeSessions:
        """Console sessions."""
        return self._sessions

    @property
    def incidents(self) -> FakeIncidents:
        """Incident threads."""
        return self._incidents

    def set_backlog(self, **per_peer: int) -> None:
        """Make :meth:`stats` report these backlogs (``NL_NCC=3`` for NL-NCC)."""
        backlog = {peer.replace("_", "-"): Backlog(count=n, oldest=format_time(NOW))
                   for peer, n in per_peer.items()}
        self.stats_value = dataclasses.replace(self.stats_value, backlog=backlog)

    async def ping(self) -> None:
        """Nothing, unless a ``"ping"`` fault is set."""
        fault = self.faults.get("ping")
        if fault is not None:
            raise fault

    async def stats(self) -> LedgerStats:
        """:attr:`stats_value`, unless a ``"stats"`` fault is set."""
        fault = self.faults.get("stats")
        if fault is not None:
            raise fault
        return self.stats_value


# -- services --------------------------------------------------------------------------


class FakeSubmitter(Submitter):
    """Records submissions and answers :attr:`result`, or raises :attr:`error`."""

    def __init__(self) -> None:  # the real one's collaborators are not needed
        self.sitreps: list[tuple[SitrepSubmission, IdempotencyKey | None]] = []
        self.alerts: list[tuple[AlertSubmission, IdempotencyKey | None]] = []
        #: (msg_type, to) of every other submission (communication tests).
        self.bodies: list[tuple[str, tuple[str, ...]]] = []
        self.result: tuple[str, bool] = (MESSAGE_ID, True)
        self.error: Exception | None = None

    def _answer(self) -> tuple[str, bool]:
        if self.error is not None:
            raise self.error
        return self.result

    async def submit_sitrep(self, sub: SitrepSubmission,
                            idempotency: IdempotencyKey | None = None) -> tuple[str, bool]:
        """Record the sitrep submission."""
        self.sitreps.append((sub, idempotency))
        return self._answer()

    async def submit_alert(self, sub: AlertSubmission,
                           idempotency: IdempotencyKey | None = None) -> tuple[str, bool]:
        """Record the alert submission."""
        self.alerts.append((sub, idempotency))
        return self._answer()

    async def submit_body(self, *, to: tuple[str, ...], msg_type: str,
                          **_: Any) -> tuple[str, bool]:
        """Record any other submission's type and recipients."""
        self.bodies.append((msg_type, to))
        return self._answer()


class FakeAcknowledger(Acknowledger):
    """Records acknowledgements; marks the fake inbox's entry acknowledged (NotFound when
    there is none), or raises :attr:`error`."""

    def __init__(self, inbox: FakeInbox, clock: Clock) -> None:  # no key, no ledger needed
        self._inbox, self._clock = inbox, clock
        #: (message_id, by, sender, actor) of every call.
        self.calls: list[tuple[str, str, str | None, str | None]] = []
        self.error: Exception | None = None

    async def acknowledge(self, message_id: str, by: str, sender: str | None = None, *,
                          actor: str | None = None) -> InboxEntry:
        """Record the call, then acknowledge the held entry."""
        self.calls.append((message_id, by, sender, actor))
        if self.error is not None:
            raise self.error
        entries = [e for e in self._inbox.entries.values()
                   if e.id == message_id and sender in (None, e.sender)]
        if not entries:
            raise NotFound("Not found", f"no incoming message {message_id}")
        acked = dataclasses.replace(entries[0], state="acknowledged",
                                    acknowledged_at=self._clock.now(), acknowledged_by=by)
        self._inbox.add(acked)
        return acked


# -- links and the node ----------------------------------------------------------------


@dataclass
class FakePeerLink:
    """A peer link's state, as the test sets it."""

    connected: bool = True
    secure: bool = True
    tls_problem: str | None = None
    last_error: str | None = None
    failed: bool = False

    def down(self, error: str = "connection refused", tls: str | None = None) -> None:
        """Make the link fail as after a failed attempt."""
        self.connected, self.failed, self.last_error, self.tls_problem = False, True, error, tls


@dataclass
class FakeInboxLink:
    """Our own broker link's state, as the test sets it."""

    connected: bool = True
    secure: bool = False
    tls_problem: str | None = None
    last_error: str | None = None
    dead_letters: int = 0


@dataclass
class FixedClock:
    """A clock stopped at ``at``."""

    at: datetime = NOW

    def now(self) -> datetime:
        """The set time."""
        return self.at


class _NoEmail:
    """An e-mail channel that refuses every mail."""

    async def send(self, address: str, subject: str, text: str) -> str | None:
        """Refuse."""
        return "no e-mail in unit tests"


def _no_email(_section: object) -> _NoEmail:
    return _NoEmail()


def _no_remote(centre: Any) -> Any:
    raise AssertionError(f"no remote centre in unit tests ({centre.id})")


@dataclass
class FakeNode:
    """A :class:`~gateway.service.node.NodeApi` in memory. :attr:`actions` records the
    node-level calls (``("rotate_key", overlap)``, ``("revoke_peer_key", (peer, kid))``,
    ``("publish_directory", only_if_changed)``, ``("checkpoint", force)``,
    ``("evidence", message_id)``)."""

    current: Settings = field(default_factory=make_settings)
    fixed_clock: FixedClock = field(default_factory=FixedClock)
    fake_ledger: FakeLedger = field(default_factory=FakeLedger)
    fake_metrics: Metrics = field(default_factory=Metrics)
    links: dict[str, FakePeerLink] = field(default_factory=dict)
    #: Peers the dispatcher would be backing off.
    down: dict[str, PeerHealth] = field(default_factory=dict)
    inbox: FakeInboxLink = field(default_factory=FakeInboxLink)
    actions: list[tuple[str, object]] = field(default_factory=list)
    reload_subscribers: list[Callable[[Settings], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for peer in self.current.peers:
            self.links.setdefault(peer.id, FakePeerLink())
        self.signing_key = centre_key(self.current.node.centre)
        self.fake_submitter = FakeSubmitter()
        self.fake_acknowledger = FakeAcknowledger(self.fake_ledger.inbox, self.fixed_clock)
        self._commchecks = CommChecks(submitter=self.fake_submitter,
                                      peers=lambda: self.current.peers)
        self._fallbacks = Fallbacks(
            me=self.me, settings=lambda: self.current, store=self.fake_ledger.commchecks,
            directory=self.fake_ledger.directory, inbox=self.fake_ledger.inbox,
            submitter=self.fake_submitter, email=_no_email, clock=self.fixed_clock.now)
        self._exercises = Exercises(
            me=self.me, settings=lambda: self.current, store=self.fake_ledger.exercises,
            submitter=self.fake_submitter, remote=_no_remote, clock=self.fixed_clock.now)

    @property
    def me(self) -> str:
        """Our centre id."""
        return self.current.node.centre

    @property
    def clock(self) -> Clock:
        """The fixed clock."""
        return self.fixed_clock

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self.current

    @property
    def key(self) -> SigningKey:
        """Our signing key."""
        return self.signing_key

    @property
    def ring(self) -> KeyRing:
        """The peers' pinned keys."""
        return self.current.key_ring()

    @property
    def ledger(self) -> FakeLedger:
        """The fake stores."""
        return self.fake_ledger

    @property
    def metrics(self) -> Metrics:
        """Real metrics in a registry of their own."""
        return self.fake_metrics

    @property
    def submitter(self) -> FakeSubmitter:
        """The recording submitter."""
        return self.fake_submitter

    @property
    def acknowledger(self) -> FakeAcknowledger:
        """The recording acknowledger."""
        return self.fake_acknowledger

    @property
    def commchecks(self) -> CommChecks:
        """Real communication tests on the recording submitter."""
        return self._commchecks

    @property
    def fallbacks(self) -> Fallbacks:
        """The real fallback leg on the fake stores (no e-mail goes out)."""
        return self._fallbacks

    @property
    def exercises(self) -> Exercises:
        """Real exercises on the fake stores (no remote centre)."""
        return self._exercises

    def peer_links(self) -> Mapping[str, FakePeerLink]:
        """The fake link of every peer that has one."""
        return self.links

    def unreachable(self) -> Mapping[str, PeerHealth]:
        """The peers set as backed off (:attr:`down`)."""
        return self.down

    @property
    def inbox_link(self) -> FakeInboxLink:
        """The fake link to our own broker."""
        return self.inbox

    def subscribe_reload(self, callback: Callable[[Settings], None]) -> None:
        """Call ``callback`` on every :meth:`reload`."""
        self.reload_subscribers.append(callback)

    def reload(self, settings: Settings) -> None:
        """Put new settings in force and tell the subscribers, as a SIGHUP would."""
        self.current = settings
        for callback in self.reload_subscribers:
            callback(settings)

    async def rotate_key(self, overlap: timedelta) -> dict[str, str]:
        """Record the rotation; answer as the real node does."""
        self.actions.append(("rotate_key", overlap))
        new = centre_key(f"{self.me}-next")
        return {"kid": new.kid, "fingerprint": "0000 1111 2222 3333 4444",
                "message_id": MESSAGE_ID, "previous_kid": self.signing_key.kid}

    async def revoke_peer_key(self, peer: str, kid: str) -> None:
        """Record the revocation; ConfigError for a key that is not configured."""
        self.actions.append(("revoke_peer_key", (peer, kid)))
        configured = self.current.peer(peer)
        if configured is None or all(k.kid != kid for k in configured.keys):
            raise ConfigError(f"{peer} has no key {kid}")

    async def publish_directory(self, *, only_if_changed: bool = False) -> str | None:
        """Record the publication."""
        self.actions.append(("publish_directory", only_if_changed))
        return MESSAGE_ID

    async def checkpoint(self, *, force: bool = False) -> bytes | None:
        """Record the checkpoint; a fixed signed object."""
        self.actions.append(("checkpoint", force))
        return b'{"envelope":{"type":"checkpoint"},"signature":{}}'

    async def evidence(self, message_id: str) -> bytes:
        """Record the request; NotFound unless the message is in the fake outbox."""
        self.actions.append(("evidence", message_id))
        if message_id not in self.fake_ledger.outbox.views:
            raise NotFound("Not found", f"no message {message_id}")
        return b'{"bundle":"' + message_id.encode() + b'"}'


def as_node_api(node: FakeNode) -> NodeApi:
    """The fake as the web layer types it (mypy checks here that it is a NodeApi)."""
    return node


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """An HTTP client of ``app`` served on a free loopback port (startup and cleanup run)."""
    async with TestClient(TestServer(app)) as client:
        yield client
