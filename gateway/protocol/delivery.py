"""The per-recipient delivery state machine (pure: time and randomness are arguments).

    ┌─ publish failed or unknown: stay queued, next attempt later (identical bytes);
    │  when the peer's link is down the peer is backed off, not each message
    ▼  │
  queued ──broker confirm──▶ sent ──"delivered"──▶ delivered ──"acknowledged"──▶ acknowledged
    │                          │                     │
    ├──────────────────────────┴── "rejected" ───────┴──────────────────────────▶ rejected
    └──── expiry passes while still queued ─────────────────────────────────────▶ expired

A receipt may overtake the publish confirm, so receipts apply from ``queued`` too.
States only move forward: a late ``delivered`` after ``acknowledged`` is ignored, and
the final states (acknowledged, rejected, expired) never change. One step moves back:
when a peer sends a message again, it has not heard our receipt for it, so that
receipt (``sent`` is its last state: receipts get no receipts) is queued again.

Every change of a delivery row is one of these steps, applied by the ledger's
``transition``; each change of state is written to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class DeliveryState(StrEnum):
    """State of one message towards one recipient."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    EXPIRED = "expired"


FINAL = frozenset({DeliveryState.ACKNOWLEDGED, DeliveryState.REJECTED, DeliveryState.EXPIRED})
_RANK = {
    DeliveryState.QUEUED: 0,
    DeliveryState.SENT: 1,
    DeliveryState.DELIVERED: 2,
    DeliveryState.ACKNOWLEDGED: 3,
    DeliveryState.REJECTED: 3,
    DeliveryState.EXPIRED: 3,
}


_RECEIPT_STATES = frozenset(
    {DeliveryState.DELIVERED, DeliveryState.ACKNOWLEDGED, DeliveryState.REJECTED})


def backoff(base: timedelta, cap: timedelta, failures: int, jitter: float) -> timedelta:
    """``base * 2^(failures-1)``, at most ``cap``, times ``0.5 + jitter/2`` (``jitter``
    uniform in [0, 1)): the one capped exponential of retries and peer probes."""
    exp: timedelta = base * (2 ** min(max(failures - 1, 0), 30))
    capped: timedelta = min(exp, cap)
    return capped * (0.5 + jitter / 2)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times [0.5, 1)."""

    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=5)
    #: A refusal that retrying cannot fix quickly (access refused) waits this long.
    refused_delay: timedelta = timedelta(minutes=5)

    def delay(self, attempts: int, jitter: float) -> timedelta:
        """Delay before attempt ``attempts + 1``; ``jitter`` is uniform in [0, 1)."""
        return backoff(self.base, self.cap, attempts, jitter)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row of the outbox: a message towards one recipient."""

    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    acknowledged_at: datetime | None = None
    rejected_at: datetime | None = None
    expired_at: datetime | None = None
    reason: str | None = None


def new_delivery(now: datetime) -> Delivery:
    """A delivery that is due immediately."""
    return Delivery(state=DeliveryState.QUEUED, attempts=0, next_attempt_at=now)


def on_claimed(d: Delivery, lease_until: datetime) -> Delivery:
    """Taken for sending: not due again before ``lease_until``, so it is not taken twice
    while in flight, and is due again if the node dies before recording the outcome."""
    if d.state is not DeliveryState.QUEUED:
        return d
    return replace(d, next_attempt_at=lease_until)


def on_resend_requested(d: Delivery, now: datetime) -> Delivery:
    """The peer sent the message this receipt answers again: it did not hear the
    receipt, so the receipt (queued or sent) is due again at once, the same bytes."""
    if d.state not in (DeliveryState.QUEUED, DeliveryState.SENT):
        return d
    return replace(d, state=DeliveryState.QUEUED, next_attempt_at=now)


def on_confirmed(d: Delivery, now: datetime) -> Delivery:
    """The broker confirmed the publish: the message is durable in the peer's inbox."""
    if d.state is not DeliveryState.QUEUED:
        return d
    return replace(d, state=DeliveryState.SENT, sent_at=now, next_attempt_at=None,
                   attempts=d.attempts + 1, last_error=None)


def on_failed(
    d: Delivery, now: datetime, error: str, *, retryable: bool, policy: RetryPolicy,
    jitter: float,
) -> Delivery:
    """The publish failed or its outcome is unknown: schedule a resend of the same bytes."""
    if d.state is not DeliveryState.QUEUED:
        return d
    attempts = d.attempts + 1
    delay = policy.delay(attempts, jitter) if retryable else policy.refused_delay
    return replace(d, attempts=attempts, next_attempt_at=now + delay, last_error=error[:500])


def on_held(d: Delivery, now: datetime, error: str) -> Delivery:
    """The publish failed because the peer's link is down: the peer is backed off as a
    whole (:mod:`gateway.protocol.peerhealth`), so the delivery itself stays due and
    goes as soon as the peer is reachable again, the identical bytes."""
    if d.state is not DeliveryState.QUEUED:
        return d
    return replace(d, attempts=d.attempts + 1, next_attempt_at=now, last_error=error[:500])


def on_receipt(
    d: Delivery, state: DeliveryState, at: datetime, reason: str | None = None
) -> Delivery:
    """Apply a verified receipt; states only move forward and finals stay final.

    Raises ``ValueError`` for a state no receipt can carry (queued, sent, expired).
    """
    if state not in _RECEIPT_STATES:
        raise ValueError(f"a receipt cannot move a delivery to {state}")
    if d.state in FINAL or _RANK[state] <= _RANK[d.state]:
        return d
    if state is DeliveryState.DELIVERED:
        return replace(d, state=state, delivered_at=at, next_attempt_at=None,
                       sent_at=d.sent_at or at)
    if state is DeliveryState.ACKNOWLEDGED:
        return replace(d, state=state, acknowledged_at=at, delivered_at=d.delivered_at or at,
                       next_attempt_at=None, sent_at=d.sent_at or at)
    return replace(d, state=state, rejected_at=at, reason=reason, next_attempt_at=None)


def on_expiry(d: Delivery, now: datetime, expires: datetime) -> Delivery:
    """A message still queued at its expiry is expired; a sent one awaits its receipt.

    The recipient holds a sent message durably and answers it, if only with a
    ``rejected``/``expired`` receipt, so the sender still learns the outcome.
    """
    if d.state is DeliveryState.QUEUED and now >= expires:
        return replace(d, state=DeliveryState.EXPIRED, expired_at=now, next_attempt_at=None,
                       reason="expired")
    return d
