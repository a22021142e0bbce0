"""Back off per peer, not per message (pure: time and randomness are arguments).

When a peer's link is down every message to it fails for the same reason, so backing
off each message on its own wastes work while the peer is away (each one retried on its
own clock) and time when it returns (each one waits out its own delay). Instead a peer
is *reachable* or *unreachable*:

* reachable: its due deliveries are sent, within the per-peer window;
* unreachable (a publish failed with an unknown outcome, or was refused in a way only
  the peer's operator can fix): nothing is sent to it except one *probe*, the most
  urgent due delivery, once the probe time has come. Probes follow
  ``delay(n) = min(base * 2**(n-1), probe_cap) * (0.5 + jitter / 2)`` after the n-th
  failure in a row (``refused_delay`` after a refusal), so a returning link is found
  within ``probe_cap``;
* the first confirmed publish makes the peer reachable again, and its whole backlog is
  due at once, most urgent first.

Failures that belong to one message (returned unroutable, negatively confirmed) keep
the per-message backoff of :class:`gateway.protocol.delivery.RetryPolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from gateway.protocol.delivery import backoff


@dataclass(frozen=True, slots=True)
class ProbePolicy:
    """When an unreachable peer is tried again."""

    base: timedelta = timedelta(milliseconds=500)
    cap: timedelta = timedelta(seconds=1)
    #: After a refusal (access, TLS, authentication): the peer's operator must act.
    refused_delay: timedelta = timedelta(minutes=5)

    def delay(self, failures: int, jitter: float) -> timedelta:
        """Wait before the probe that follows ``failures`` failures in a row."""
        return backoff(self.base, self.cap, failures, jitter)


@dataclass(frozen=True, slots=True)
class PeerHealth:
    """Whether a peer can be sent to now."""

    reachable: bool = True
    #: Failures in a row since it was last reachable.
    failures: int = 0
    #: When unreachable: when it may be probed.
    probe_at: datetime | None = None
    #: A probe is on its way (no second one before its outcome).
    probing: bool = False
    #: The last failure was a refusal (access, TLS, authentication), not a lost link.
    refused: bool = False
    #: When it became unreachable.
    since: datetime | None = None
    last_error: str | None = None


REACHABLE = PeerHealth()


def on_link_failure(h: PeerHealth, now: datetime, error: str, *, refused: bool,
                    policy: ProbePolicy, jitter: float) -> PeerHealth:
    """A publish to the peer failed because of its link (unknown outcome) or was refused
    (``refused``): unreachable until the next probe time."""
    failures = h.failures + 1
    delay = policy.refused_delay if refused else policy.delay(failures, jitter)
    return PeerHealth(reachable=False, failures=failures, probe_at=now + delay,
                      refused=refused, since=h.since if not h.reachable else now,
                      last_error=error[:300])


def on_link_works(h: PeerHealth) -> PeerHealth:
    """The peer's broker answered a publish (confirmed it, or refused that one message):
    reachable."""
    return REACHABLE


def allowance(h: PeerHealth, now: datetime) -> int | None:
    """How many deliveries may be taken for the peer now: None for no limit (reachable),
    1 for a probe, 0 while it waits for its probe time or a probe's outcome."""
    if h.reachable:
        return None
    if h.probing or (h.probe_at is not None and now < h.probe_at):
        return 0
    return 1


def probe_taken(h: PeerHealth) -> PeerHealth:
    """A probe was taken for the unreachable peer."""
    return h if h.reachable else replace(h, probing=True)
