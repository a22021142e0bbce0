"""The per-recipient delivery state machine: gateway.protocol.delivery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol.delivery import (
    FINAL,
    Delivery,
    DeliveryState,
    RetryPolicy,
    new_delivery,
    on_claimed,
    on_confirmed,
    on_expiry,
    on_failed,
    on_receipt,
    on_resend_requested,
)

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=1)
POLICY = RetryPolicy(
    base=timedelta(seconds=2), cap=timedelta(seconds=60), refused_delay=timedelta(minutes=7)
)
S = DeliveryState
RECEIPT_STATES = (S.DELIVERED, S.ACKNOWLEDGED, S.REJECTED)
RANK = {S.QUEUED: 0, S.SENT: 1, S.DELIVERED: 2, S.ACKNOWLEDGED: 3, S.REJECTED: 3,
        S.EXPIRED: 3}


def make_delivery() -> Callable[..., Delivery]:
    """Factory of deliveries: a new queued delivery at NOW, with fields overridden."""

    def make(state: DeliveryState = S.QUEUED, **changes: object) -> Delivery:
        return replace(new_delivery(NOW), state=state, **changes)  # type: ignore[arg-type]

    return make


@pytest.fixture
def delivery() -> Callable[..., Delivery]:
    """Factory fixture building a Delivery in a given state."""
    return make_delivery()


def sent(d: Delivery) -> Delivery:
    """The delivery after a confirmed publish at NOW."""
    return on_confirmed(d, NOW)


# --------------------------------------------------------------------------------------
# new_delivery / on_confirmed
# --------------------------------------------------------------------------------------


def test_new_delivery_is_queued_and_due_now() -> None:
    """A new delivery is queued, has no attempts and is due immediately."""
    d = new_delivery(NOW)
    assert d.state is S.QUEUED
    assert d.attempts == 0
    assert d.next_attempt_at == NOW
    assert (d.sent_at, d.last_error, d.reason) == (None, None, None)


@pytest.mark.parametrize("attempts", [0, 1, 5])
def test_confirm_moves_queued_to_sent(delivery: Callable[..., Delivery], attempts: int) -> None:
    """A confirm on a queued delivery: sent, attempts+1, sent_at=now, no retry, error cleared."""
    d = delivery(attempts=attempts, last_error="boom")
    after = on_confirmed(d, LATER)
    assert after.state is S.SENT
    assert after.attempts == attempts + 1
    assert after.sent_at == LATER
    assert after.next_attempt_at is None
    assert after.last_error is None


@pytest.mark.parametrize("state", [s for s in S if s is not S.QUEUED])
def test_confirm_ignored_in_any_other_state(
    delivery: Callable[..., Delivery], state: DeliveryState
) -> None:
    """A confirm on a delivery that is not queued returns it unchanged."""
    d = delivery(state, attempts=2, sent_at=NOW)
    assert on_confirmed(d, LATER) is d


# --------------------------------------------------------------------------------------
# RetryPolicy / on_failed
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "full_seconds"),
    [(0, 2), (1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (7, 60), (40, 60), (10**6, 60)],
)
@pytest.mark.parametrize("jitter", [0.0, 0.999])
def test_retry_delay_is_capped_exponential_times_jitter_factor(
    attempts: int, full_seconds: int, jitter: float
) -> None:
    """delay = min(base*2^(n-1), cap) * (0.5 + jitter/2): within [0.5, 1) of the full step."""
    delay = POLICY.delay(attempts, jitter)
    full = timedelta(seconds=full_seconds)
    assert delay == full * (0.5 + jitter / 2)
    assert full / 2 <= delay < full


def test_retry_delay_jitter_bounds_with_default_policy() -> None:
    """The default policy's first delay spans [0.5 s, 1 s) over the jitter range."""
    policy = RetryPolicy()
    assert policy.delay(1, 0.0) == timedelta(milliseconds=500)
    assert timedelta(milliseconds=999) <= policy.delay(1, 0.999) < timedelta(seconds=1)
    assert policy.delay(100, 0.0) == timedelta(minutes=5) / 2


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
@pytest.mark.parametrize("attempts_before", [0, 1, 3, 8])
def test_failed_publish_schedules_retry_with_backoff(
    delivery: Callable[..., Delivery], attempts_before: int, jitter: float
) -> None:
    """A retryable failure counts the attempt and waits policy.delay(attempts, jitter)."""
    d = delivery(attempts=attempts_before)
    after = on_failed(d, LATER, "timeout", retryable=True, policy=POLICY, jitter=jitter)
    assert after.state is S.QUEUED
    assert after.attempts == attempts_before + 1
    assert after.next_attempt_at == LATER + POLICY.delay(attempts_before + 1, jitter)
    assert after.last_error == "timeout"
    assert after.sent_at is None


@pytest.mark.parametrize("jitter", [0.0, 0.999])
def test_non_retryable_failure_uses_refused_delay(
    delivery: Callable[..., Delivery], jitter: float
) -> None:
    """A non-retryable failure waits refused_delay regardless of attempts and jitter."""
    d = delivery(attempts=1)
    after = on_failed(d, LATER, "access refused", retryable=False, policy=POLICY, jitter=jitter)
    assert after.attempts == 2
    assert after.next_attempt_at == LATER + POLICY.refused_delay
    assert after.last_error == "access refused"


def test_failure_error_text_is_truncated_to_500(delivery: Callable[..., Delivery]) -> None:
    """last_error keeps at most the first 500 characters."""
    after = on_failed(delivery(), NOW, "e" * 900, retryable=True, policy=POLICY, jitter=0.0)
    assert after.last_error == "e" * 500


@pytest.mark.parametrize("state", [s for s in S if s is not S.QUEUED])
def test_failure_ignored_unless_queued(
    delivery: Callable[..., Delivery], state: DeliveryState
) -> None:
    """A late failure report on a sent (or later) delivery changes nothing."""
    d = delivery(state, attempts=1, sent_at=NOW, next_attempt_at=None)
    assert on_failed(d, LATER, "late", retryable=True, policy=POLICY, jitter=0.3) is d


# --------------------------------------------------------------------------------------
# on_receipt
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("start", [S.QUEUED, S.SENT])
def test_delivered_receipt_from_queued_or_sent(
    delivery: Callable[..., Delivery], start: DeliveryState
) -> None:
    """A delivered receipt moves queued or sent to delivered; sent_at is kept or back-filled."""
    d = delivery() if start is S.QUEUED else sent(delivery())
    after = on_receipt(d, S.DELIVERED, LATER)
    assert after.state is S.DELIVERED
    assert after.delivered_at == LATER
    assert after.next_attempt_at is None
    assert after.sent_at == (LATER if start is S.QUEUED else NOW)
    assert after.reason is None


@pytest.mark.parametrize("start", [S.QUEUED, S.SENT])
def test_acknowledged_receipt_from_queued_or_sent(
    delivery: Callable[..., Delivery], start: DeliveryState
) -> None:
    """An acknowledged receipt (overtaking delivered) fills delivered_at and sent_at too."""
    d = delivery() if start is S.QUEUED else sent(delivery())
    after = on_receipt(d, S.ACKNOWLEDGED, LATER)
    assert after.state is S.ACKNOWLEDGED
    assert after.acknowledged_at == LATER
    assert after.delivered_at == LATER
    assert after.sent_at == (LATER if start is S.QUEUED else NOW)
    assert after.next_attempt_at is None


@pytest.mark.parametrize("start", [S.QUEUED, S.SENT, S.DELIVERED])
def test_rejected_receipt_from_any_non_final_state(
    delivery: Callable[..., Delivery], start: DeliveryState
) -> None:
    """A rejected receipt moves queued, sent or delivered to rejected with its reason."""
    d = delivery(start)
    after = on_receipt(d, S.REJECTED, LATER, "expired")
    assert after.state is S.REJECTED
    assert after.rejected_at == LATER
    assert after.reason == "expired"
    assert after.next_attempt_at is None


def test_acknowledged_after_delivered_keeps_delivered_time(
    delivery: Callable[..., Delivery],
) -> None:
    """delivered then acknowledged: acknowledged, with the earlier delivered_at kept."""
    d = on_receipt(sent(delivery()), S.DELIVERED, NOW + timedelta(seconds=1))
    after = on_receipt(d, S.ACKNOWLEDGED, LATER)
    assert after.state is S.ACKNOWLEDGED
    assert after.delivered_at == NOW + timedelta(seconds=1)
    assert after.acknowledged_at == LATER
    assert after.sent_at == NOW


def test_repeated_delivered_receipt_ignored(delivery: Callable[..., Delivery]) -> None:
    """A second delivered receipt changes nothing (delivered_at is not reset)."""
    d = on_receipt(sent(delivery()), S.DELIVERED, NOW)
    assert on_receipt(d, S.DELIVERED, LATER) is d


@pytest.mark.parametrize(
    ("first", "late"),
    [
        (S.ACKNOWLEDGED, S.DELIVERED),
        (S.ACKNOWLEDGED, S.REJECTED),
        (S.REJECTED, S.ACKNOWLEDGED),
        (S.REJECTED, S.DELIVERED),
    ],
)
def test_final_receipt_states_stay_final(
    delivery: Callable[..., Delivery], first: DeliveryState, late: DeliveryState
) -> None:
    """After acknowledged or rejected, any later receipt is ignored."""
    d = on_receipt(sent(delivery()), first, NOW, "policy" if first is S.REJECTED else None)
    assert on_receipt(d, late, LATER, "policy" if late is S.REJECTED else None) is d


@pytest.mark.parametrize("late", RECEIPT_STATES)
def test_expired_stays_final(delivery: Callable[..., Delivery], late: DeliveryState) -> None:
    """An expired delivery ignores every receipt (e.g. a late delivered)."""
    d = on_expiry(delivery(), LATER, NOW)
    assert d.state is S.EXPIRED
    assert on_receipt(d, late, LATER, "expired" if late is S.REJECTED else None) is d


@pytest.mark.parametrize("start", list(S))
@pytest.mark.parametrize("bogus", [S.QUEUED, S.SENT, S.EXPIRED])
def test_non_receipt_state_raises(
    delivery: Callable[..., Delivery], start: DeliveryState, bogus: DeliveryState
) -> None:
    """A state no receipt can carry (queued, sent, expired) raises ValueError from any state."""
    with pytest.raises(ValueError, match="receipt cannot move"):
        on_receipt(delivery(start), bogus, NOW)


# --------------------------------------------------------------------------------------
# on_expiry
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(milliseconds=1), timedelta(days=1)])
def test_queued_expires_at_or_after_expiry(
    delivery: Callable[..., Delivery], offset: timedelta
) -> None:
    """A queued delivery at or past its expiry becomes expired with reason 'expired'."""
    after = on_expiry(delivery(attempts=3), NOW + offset, NOW)
    assert after.state is S.EXPIRED
    assert after.expired_at == NOW + offset
    assert after.reason == "expired"
    assert after.next_attempt_at is None
    assert after.attempts == 3


def test_queued_before_expiry_unchanged(delivery: Callable[..., Delivery]) -> None:
    """A queued delivery one millisecond before expiry is left alone."""
    d = delivery()
    assert on_expiry(d, NOW - timedelta(milliseconds=1), NOW) is d


@pytest.mark.parametrize("state", [s for s in S if s is not S.QUEUED])
def test_expiry_leaves_non_queued_alone(
    delivery: Callable[..., Delivery], state: DeliveryState
) -> None:
    """Sent (awaiting its receipt), delivered and final deliveries never expire."""
    d = delivery(state, next_attempt_at=None)
    assert on_expiry(d, NOW + timedelta(days=30), NOW) is d


# --------------------------------------------------------------------------------------
# Property: rank never goes backwards; finals never change
# --------------------------------------------------------------------------------------

_offsets = st.integers(min_value=-3600, max_value=3600).map(lambda s: NOW + timedelta(seconds=s))
_events = st.one_of(
    st.tuples(st.just("confirm"), _offsets),
    st.tuples(st.just("failed"), _offsets, st.booleans(),
              st.floats(min_value=0, max_value=1, exclude_max=True)),
    st.tuples(st.just("receipt"), st.sampled_from(RECEIPT_STATES), _offsets,
              st.sampled_from(["expired", "policy", "stale"])),
    st.tuples(st.just("expiry"), _offsets, _offsets),
)


def _apply(d: Delivery, event: tuple[object, ...]) -> Delivery:
    kind = event[0]
    if kind == "confirm":
        return on_confirmed(d, event[1])  # type: ignore[arg-type]
    if kind == "failed":
        return on_failed(d, event[1], "err", retryable=event[2],  # type: ignore[arg-type]
                         policy=POLICY, jitter=event[3])  # type: ignore[arg-type]
    if kind == "receipt":
        state = event[1]
        reason = event[3] if state is S.REJECTED else None
        return on_receipt(d, state, event[2], reason)  # type: ignore[arg-type]
    return on_expiry(d, event[1], event[2])  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.lists(_events, max_size=20))
def test_any_event_sequence_is_monotonic(events: list[tuple[object, ...]]) -> None:
    """Over any event sequence the rank never decreases and a final state never changes."""
    d = new_delivery(NOW)
    for event in events:
        after = _apply(d, event)
        assert RANK[after.state] >= RANK[d.state]
        assert after.attempts >= d.attempts
        if d.state in FINAL:
            assert after == d
        d = after


@pytest.mark.parametrize("state", list(S))
def test_a_claim_only_moves_the_next_attempt_of_a_queued_delivery(state: DeliveryState) -> None:
    """on_claimed leases a queued delivery until the given time and leaves others alone."""
    d = make_delivery()(state)
    after = on_claimed(d, LATER)
    if state is S.QUEUED:
        assert after == replace(d, next_attempt_at=LATER)
    else:
        assert after == d


@pytest.mark.parametrize("state", list(S))
def test_a_resend_request_queues_a_queued_or_sent_receipt_again(state: DeliveryState) -> None:
    """on_resend_requested makes a queued or sent delivery due now; final and delivered
    ones do not move."""
    d = make_delivery()(state, next_attempt_at=None, attempts=2)
    after = on_resend_requested(d, LATER)
    if state in (S.QUEUED, S.SENT):
        assert (after.state, after.next_attempt_at, after.attempts) == (S.QUEUED, LATER, 2)
    else:
        assert after == d
