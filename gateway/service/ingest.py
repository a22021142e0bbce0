"""Ingestion: verify -> bind to the broker-authenticated publisher -> dedup -> admit ->
store with its receipt (one commit) -> republish locally. The AMQP delivery is acked
by the caller only after :meth:`Receiver.handle` returns, i.e. after the commit.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog

from gateway.config_operations import PolicySection
from gateway.errors import (
    GatewayError,
    KeyMaterialError,
    KeyUpdateRefused,
    MalformedInput,
    RejectedMessage,
    VerificationError,
)
from gateway.protocol import ijson, reasons
from gateway.protocol.commcheck import FallbackConfirmation
from gateway.protocol.envelope import MESSAGE_TYPE_PATTERN, EnvelopeHeader
from gateway.protocol.keys import KeyRing, SigningKey, public_key_from_text
from gateway.protocol.keyupdate import KeyUpdate
from gateway.protocol.messages import (
    DirectoryEnvelope,
    EscalationEnvelope,
    FallbackEnvelope,
    KeyUpdateEnvelope,
    admit,
    receiptable,
)
from gateway.protocol.receipts import ReceiptEnvelope, ReceiptState, receipt_envelope
from gateway.protocol.signing import Verified, open_signed
from gateway.protocol.types import Mode, Priority
from gateway.service.directory import Directory
from gateway.service.policy import check_incoming
from gateway.service.ports import (
    Clock,
    InboxEntry,
    IncomingReceipt,
    IngestOutcome,
    Ledger,
    LocalFanout,
    ReceiptOutcome,
    SecurityEvent,
)
from gateway.service.submit import outgoing

log = structlog.get_logger("crisisgw.ingest")

#: Pins a peer's announced key: (peer, update, signing kid, created) -> None; raises
#: :class:`KeyUpdateRefused` when the rotation rule does not allow it.
KeyUpdateHandler = Callable[[str, KeyUpdate, str, datetime], Awaitable[None]]
#: Judges a returned fallback code: (peer, message id, body) -> None; raises
#: :class:`RejectedMessage` when the code does not prove the fallback.
FallbackHandler = Callable[[str, str, FallbackConfirmation], Awaitable[None]]


def _enum_or(value: Any, enum: type[Mode] | type[Priority], default: str) -> str:
    # ``value`` is unvalidated peer input: it may be a list or an object (unhashable).
    return value if isinstance(value, str) and value in {e.value for e in enum} else default


#: Messages that change the node's own state when they arrive (a contact list, a key):
#: no duty officer acts on them, they are acknowledged by the node once applied.
HOUSEKEEPING = frozenset({"directory", "key-update", "escalation", "fallback"})
#: The ``by`` of those acknowledgements.
APPLIED_BY = "applied automatically"


class Receiver:
    """Handles every payload taken from our inbox queue."""

    def __init__(self, *, me: str, key: SigningKey, ring: Callable[[], KeyRing],
                 directory: Callable[[], Directory], ledger: Ledger, clock: Clock,
                 fanout: LocalFanout | None, on_receipt_queued: Callable[[], None],
                 on_outcome: Callable[[str, str], None] | None = None,
                 policy: PolicySection | None = None,
                 on_key_update: KeyUpdateHandler | None = None,
                 on_directory: Callable[[str, DirectoryEnvelope], Awaitable[None]] | None = None,
                 on_applied: Callable[[str, str], Awaitable[object]] | None = None,
                 on_fallback: FallbackHandler | None = None,
                 ) -> None:
        self._on_fallback = on_fallback
        self._on_directory = on_directory
        self._on_applied = on_applied
        self._policy = policy or PolicySection()
        self._on_key_update = on_key_update
        self._me, self._key, self._ring, self._directory = me, key, ring, directory
        self._ledger, self._clock, self._fanout = ledger, clock, fanout
        self._on_receipt_queued = on_receipt_queued
        self._on_outcome = on_outcome or (lambda _kind, _outcome: None)

    def reconfigure(self, *, policy: PolicySection, key: SigningKey | None = None) -> None:
        """Use a new release policy (configuration reloaded) or signing key (rotated)."""
        self._policy = policy
        if key is not None:
            self._key = key

    async def handle(self, body: bytes, amqp_user: str | None) -> str:
        """Process one payload; returns an outcome label. Raises only on ledger failure."""
        try:
            verified = open_signed(body, self._ring())
        except (MalformedInput, VerificationError) as exc:
            return await self._security(exc.reason, exc.detail, body, amqp_user,
                                        *_claims(body, exc))
        directory = self._directory()
        peer = directory.peer(verified.sender)
        if peer is None or peer.suspended:
            return await self._security(reasons.UNKNOWN_SENDER, "sender is not an active peer",
                                        body, amqp_user, verified.sender)
        if amqp_user != peer.granted_user:
            return await self._security(
                reasons.SENDER_MISMATCH,
                f"published as {amqp_user!r}, {verified.sender} publishes as {peer.granted_user!r}",
                body, amqp_user, verified.sender)
        with structlog.contextvars.bound_contextvars(
            message_id=str(verified.envelope.get("id"))[:40], peer=verified.sender
        ):
            if verified.envelope["type"] == "receipt":
                return await self._receipt(verified, body, amqp_user)
            return await self._message(verified, body, amqp_user)

    async def _message(self, verified: Verified, body: bytes, amqp_user: str | None) -> str:
        if not receiptable(verified):
            return await self._security(reasons.MALFORMED, "message id is not a UUID", body,
                                        amqp_user, verified.sender)
        now = self._clock.now()
        raw = verified.envelope
        # Duplicates are rare: build the receipt optimistically; the ledger keeps the first
        # one and, for a repeat, re-sends the receipts already issued instead.
        state, reason, detail = ReceiptState.DELIVERED, None, None
        created = expires = None
        try:
            admitted = admit(verified, self._me, now)
            created, expires = admitted.envelope.created, admitted.envelope.expires
            self._check_policy(verified.sender, admitted.envelope)
            if isinstance(admitted.envelope, KeyUpdateEnvelope):
                await self._key_update(verified, admitted.envelope, body, amqp_user)
            if isinstance(admitted.envelope, DirectoryEnvelope) and self._on_directory:
                # stored before the message itself; a redelivery stores it again, harmlessly
                await self._on_directory(verified.sender, admitted.envelope)
            if isinstance(admitted.envelope, EscalationEnvelope):
                await self._escalation(verified.sender, admitted.envelope)
            if isinstance(admitted.envelope, FallbackEnvelope):
                await self._fallback(verified.sender, raw["id"], admitted.envelope)
        except RejectedMessage as exc:
            state, reason, detail = ReceiptState.REJECTED, exc.reason, exc.detail
            log.warning("message_rejected", reason=exc.reason, detail=exc.detail)
        mode = _enum_or(raw.get("mode"), Mode, Mode.ACTUAL.value)
        priority = _enum_or(raw.get("priority"), Priority, Priority.ROUTINE.value)
        receipt = outgoing(
            receipt_envelope(
                receipt_id=uuid.uuid4(), issuer=self._me, sender=verified.sender,
                message_id=raw["id"], digest=verified.digest, state=state, now=now,
                mode=Mode(mode), priority=Priority(priority), reason=reason, detail=detail),
            self._key, (verified.sender,), answers=(verified.sender, raw["id"]))
        incident = raw.get("incident") if isinstance(raw.get("incident"), str) else None
        entry = InboxEntry(
            sender=verified.sender, id=raw["id"], type=_stored_type(raw["type"]),
            priority=priority,
            mode=mode, tlp=str(raw.get("tlp"))[:16], incident=incident and incident[:64],
            created=created, expires=expires, digest=verified.digest, wire=body,
            received_at=now, state=state.value, reason=reason, detail=detail)
        outcome, stored_state = await self._ledger.inbox.ingest(entry, receipt, now)
        return await self._after(outcome, verified, body, amqp_user, stored_state)

    async def _escalation(self, sender: str, envelope: EscalationEnvelope) -> None:
        """Keep a sender's escalation notice with the message it is about, which must be
        one that sender sent us (else it is refused): the message page shows it."""
        notice = envelope.body
        if await self._ledger.inbox.get(sender, notice.message_id) is None:
            raise RejectedMessage(reasons.SCHEMA_INVALID,
                                  f"no message {notice.message_id} from {sender} here")
        await self._ledger.escalations.noticed(sender, notice, self._clock.now())

    async def _fallback(self, sender: str, message_id: str, envelope: FallbackEnvelope) -> None:
        """Judge a code ``sender`` returned for one of our communication tests."""
        if self._on_fallback is None:
            raise RejectedMessage(reasons.UNSUPPORTED_TYPE, "this node runs no communication tests")
        await self._on_fallback(sender, message_id, envelope.body)

    async def _key_update(self, verified: Verified, envelope: KeyUpdateEnvelope, body: bytes,
                          amqp_user: str | None) -> None:
        """Pin the announced key before the message is stored (a crash in between is
        repaired by the redelivery, which finds the update applied). A refusal by the
        rotation rule is a security event and a ``key_not_valid`` rejection."""
        update = envelope.body
        try:
            public_key_from_text(update.new_key.public_key)
        except KeyMaterialError as exc:
            raise RejectedMessage(reasons.SCHEMA_INVALID, f"announced key refused: {exc}") from exc
        if self._on_key_update is None:
            raise RejectedMessage(reasons.UNSUPPORTED_TYPE, "this node does not take key updates")
        try:
            await self._on_key_update(verified.sender, update, verified.kid, envelope.created)
        except KeyUpdateRefused as exc:
            detail = (f"key-update signed with {verified.kid} announcing {update.new_key.kid} "
                      f"refused (rule {exc.rule}): {exc.detail}")[:500]
            await self._security(reasons.KEY_UPDATE_REFUSED, detail, body, amqp_user,
                                 verified.sender)
            raise RejectedMessage(reasons.KEY_NOT_VALID, detail) from exc
        log.info("peer_key_pinned", new_kid=update.new_key.kid,
                 previous_kid=update.previous_kid)

    def _check_policy(self, sender: str, envelope: EnvelopeHeader) -> None:
        peer = self._directory().peer(sender)
        if peer is None:
            return
        violations = check_incoming(self._policy, peer, mode=envelope.mode.value,
                                    releasable=envelope.releasable or ())
        if violations:
            raise RejectedMessage(reasons.POLICY, "; ".join(
                f"{v.rule}: {v.detail}" for v in violations))

    async def _after(self, outcome: IngestOutcome, verified: Verified, body: bytes,
                     amqp_user: str | None, state: str) -> str:
        if outcome is IngestOutcome.CONFLICT:
            return await self._security(reasons.ID_CONFLICT,
                                        "message id reused with different content", body,
                                        amqp_user, verified.sender)
        self._on_receipt_queued()
        label = f"{outcome.value}_{state}"
        log.info("message_ingested", outcome=outcome.value, state=state)
        self._on_outcome(verified.envelope["type"], label)
        if state == ReceiptState.DELIVERED.value and self._on_applied is not None and \
                verified.envelope["type"] in HOUSEKEEPING:
            # Applied already (a contact list stored, a key pinned): nobody has to act,
            # so the node acknowledges it itself (PROTOCOL.md §7.3).
            try:
                await self._on_applied(verified.sender, str(verified.envelope["id"]))
            except GatewayError as exc:
                log.warning("housekeeping_ack_failed", error=str(exc))
        if state != ReceiptState.REJECTED.value and self._fanout is not None:
            await self._fanout.republish(
                body, sender=verified.sender, msg_type=verified.envelope["type"],
                priority=str(verified.envelope.get("priority")))
        return label

    async def _receipt(self, verified: Verified, body: bytes, amqp_user: str | None) -> str:
        now = self._clock.now()
        try:
            admitted = admit(verified, self._me, now)
        except RejectedMessage as exc:
            # Receipts are never answered (no loops); a bad one is a security event.
            return await self._security(exc.reason, f"receipt refused: {exc.detail}", body,
                                        amqp_user, verified.sender)
        env = admitted.envelope
        assert isinstance(env, ReceiptEnvelope)
        r = env.body
        outcome = await self._ledger.receipts.apply(IncomingReceipt(
            issuer=verified.sender, id=env.id, message_id=r.message_id,
            message_sha256=r.message_sha256, state=r.state.value, reason=r.reason, at=r.at,
            wire=body), now)
        if outcome is ReceiptOutcome.UNEXPECTED:
            return await self._security(reasons.UNEXPECTED_RECEIPT,
                                        f"receipt for {r.message_id}", body, amqp_user,
                                        verified.sender)
        if outcome is ReceiptOutcome.IMPLAUSIBLE:
            return await self._security(
                reasons.UNEXPECTED_RECEIPT,
                f"receipt for {r.message_id} dated {r.at.isoformat()}, before the message was "
                "created", body, amqp_user, verified.sender)
        log.info("receipt_applied", outcome=outcome.value, state=r.state.value,
                 receipt_for=r.message_id)
        self._on_outcome("receipt", f"{outcome.value}_{r.state.value}")
        return f"receipt_{outcome.value}"

    async def _security(self, reason: str, detail: str, body: bytes,  # noqa: PLR0917 - private
                        amqp_user: str | None, claimed: str | None,
                        claimed_id: str | None = None) -> str:
        if claimed_id is None and claimed is not None:
            claimed_id = _claims(body, None)[1]
        log.warning("security_event", reason=reason, detail=detail, amqp_user=amqp_user,
                    claimed_sender=claimed, claimed_id=claimed_id)
        await self._ledger.security.record(SecurityEvent(
            at=self._clock.now(), reason=reason, detail=detail, claimed_sender=claimed,
            claimed_id=claimed_id, amqp_user=amqp_user, payload=body))
        self._on_outcome("security", reason)
        return f"security_{reason}"


_TYPE_RE = re.compile(MESSAGE_TYPE_PATTERN)
#: What is stored as the type of a message whose ``type`` breaks the pattern (§3.1).
UNKNOWN_TYPE = "unknown"


def _stored_type(value: str) -> str:
    """The type as stored and shown: only a string that matches the type pattern, never a
    peer's arbitrary text (the signed wire keeps what was sent)."""
    return value if _TYPE_RE.fullmatch(value) else UNKNOWN_TYPE


def _claims(body: bytes, exc: Exception | None) -> tuple[str | None, str | None]:
    """The sender and id a refused payload *claims* (unverified; for the operators only)."""
    if isinstance(exc, MalformedInput) and exc.reason in (reasons.NOT_IJSON, reasons.TOO_LARGE):
        return None, None
    try:
        envelope = ijson.loads(body).get("envelope", {})
    except (MalformedInput, AttributeError):
        return None, None
    if not isinstance(envelope, dict):
        return None, None
    sender, mid = envelope.get("from"), envelope.get("id")
    return (sender[:40] if isinstance(sender, str) else None,
            mid[:40] if isinstance(mid, str) else None)
