"""Per-peer backoff (gateway.protocol.peerhealth): pure, time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.protocol import peerhealth
from gateway.protocol.peerhealth import REACHABLE, PeerHealth, ProbePolicy

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
POLICY = ProbePolicy(base=timedelta(seconds=1), cap=timedelta(seconds=4),
                     refused_delay=timedelta(minutes=5))


def _fail(h: PeerHealth, at: datetime, *, refused: bool = False,
          jitter: float = 0.0) -> PeerHealth:
    return peerhealth.on_link_failure(h, at, "cannot connect", refused=refused,
                                      policy=POLICY, jitter=jitter)


def test_a_reachable_peer_takes_any_number() -> None:
    """Reachable: no limit."""
    assert peerhealth.allowance(REACHABLE, T0) is None


def test_failures_in_a_row_space_the_probes_out_up_to_the_cap() -> None:
    """Each failure makes the peer unreachable until base x 2^(n-1), capped, x jitter."""
    h = REACHABLE
    waits = []
    for n in range(6):
        at = T0 + timedelta(seconds=10 * n)
        h = _fail(h, at)
        waits.append((h.probe_at - at).total_seconds())
        assert not h.reachable
        assert h.since == T0  # since the first failure of the run
    assert waits == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert POLICY.delay(9, 0.999) < POLICY.cap


def test_one_probe_at_a_time_and_only_when_its_time_has_come() -> None:
    """Unreachable: 0 before the probe time, 1 at it, 0 again once the probe is out."""
    h = _fail(REACHABLE, T0)
    assert peerhealth.allowance(h, T0 + timedelta(milliseconds=499)) == 0
    assert peerhealth.allowance(h, T0 + timedelta(milliseconds=500)) == 1
    out = peerhealth.probe_taken(h)
    assert peerhealth.allowance(out, T0 + timedelta(hours=1)) == 0
    again = _fail(out, T0 + timedelta(seconds=1))  # the probe failed
    assert not again.probing
    assert again.failures == 2
    assert peerhealth.allowance(again, T0 + timedelta(seconds=2)) == 1


def test_a_refusal_waits_the_refused_delay() -> None:
    """Access or certificate refused: the next probe after refused_delay."""
    h = _fail(REACHABLE, T0, refused=True)
    assert h.probe_at == T0 + timedelta(minutes=5)
    assert h.last_error == "cannot connect"


def test_a_working_link_makes_the_peer_reachable_at_once() -> None:
    """Confirmed (or answered) once: reachable, the failure count forgotten."""
    h = peerhealth.probe_taken(_fail(_fail(REACHABLE, T0), T0))
    assert peerhealth.on_link_works(h) == REACHABLE
    assert peerhealth.probe_taken(REACHABLE) == REACHABLE
