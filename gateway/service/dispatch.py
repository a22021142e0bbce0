"""The dispatcher: sends due deliveries, records confirms, schedules retries.

One loop claims due deliveries from the ledger, most urgent first (a lease: their next
attempt moves into the future, so a crash before the outcome is recorded resends them
later); each is published by its own task, bounded by a window of unconfirmed
publishes per peer. A peer whose window is full is not claimed for. Retries resend the
identical bytes.

A peer whose link fails is backed off as a whole (:mod:`gateway.protocol.peerhealth`):
nothing is claimed for it but one probe at a time, its deliveries stay due, and the
first confirmed publish releases its whole backlog at once. While it is away the node
does what an idle node does, and logs the change of state once each way.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import structlog

from gateway import failpoints
from gateway.errors import GatewayError, PublishRefused, PublishUnknown, TlsFailure
from gateway.protocol import peerhealth
from gateway.protocol.delivery import (
    Delivery,
    DeliveryState,
    RetryPolicy,
    on_confirmed,
    on_expiry,
    on_failed,
    on_held,
)
from gateway.protocol.peerhealth import REACHABLE, PeerHealth, ProbePolicy
from gateway.service.ports import Clock, DueDelivery, Ledger, Publisher

log = structlog.get_logger("crisisgw.dispatch")
BATCH = 512
EXPIRY_SWEEP = timedelta(seconds=1)
IDLE_POLL = 0.5


class Dispatcher:
    """Drives outbox deliveries to the peers' inboxes."""

    def __init__(self, *, ledger: Ledger, publisher: Publisher, clock: Clock,
                 policy: RetryPolicy, window_per_peer: int, lease: timedelta,
                 suspended: Callable[[], frozenset[str]] = frozenset,
                 jitter: Callable[[], float] = random.random,
                 on_outcome: Callable[[str, str, str], None] | None = None,
                 probes: ProbePolicy | None = None,
                 sweeps: Callable[[], bool] = lambda: True) -> None:
        self._ledger, self._publisher, self._clock = ledger, publisher, clock
        self._policy, self._window, self._lease = policy, window_per_peer, lease
        self._probes = probes or ProbePolicy(refused_delay=policy.refused_delay)
        #: Per peer: reachable, or unreachable until its next probe.
        self.health: dict[str, PeerHealth] = {}
        self._probes_out: dict[str, tuple[str, str]] = {}
        self._jitter, self._suspended = jitter, suspended
        #: Whether this instance runs the expiry sweep (the holder of the jobs' lease).
        self._sweeps = sweeps
        self._on_outcome = on_outcome or (lambda _peer, _type, _outcome: None)
        self._wake = asyncio.Event()
        self._inflight: set[tuple[str, str]] = set()
        self._per_peer: dict[str, int] = {}
        self._windows: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_sweep = clock.now() - EXPIRY_SWEEP

    def inflight(self, peer: str) -> int:
        """How many publishes to ``peer`` are under way."""
        return self._per_peer.get(peer, 0)

    def wake(self) -> None:
        """Something new is due now (a submission, a receipt to send)."""
        self._wake.set()

    def _window_for(self, peer: str) -> asyncio.Semaphore:
        sem = self._windows.get(peer)
        if sem is None:
            sem = self._windows[peer] = asyncio.Semaphore(self._window)
        return sem

    async def run(self) -> None:
        """Loop until cancelled; ledger errors are logged and retried after a pause."""
        while True:
            # Cleared before the tick: a wake() while it runs is for work it may not have
            # seen, so the wait below returns at once.
            self._wake.clear()
            try:
                idle = await self._tick()
            except GatewayError as exc:
                log.error("dispatch_tick_failed", error=str(exc))
                idle = 1.0
            if idle > 0:
                with contextlib.suppress(TimeoutError):
                    # asyncio.timeout, not wait_for: on 3.11, wait_for swallows a
                    # cancel that lands as the event is set (stop() would then hang).
                    async with asyncio.timeout(idle):
                        await self._wake.wait()

    async def _tick(self) -> float:
        now = self._clock.now()
        if now - self._last_sweep >= EXPIRY_SWEEP and self._sweeps():
            self._last_sweep = now
            # Not those in flight: a publish under way may yet be confirmed, and then
            # the message is in the peer's inbox (sent, awaiting its receipt).
            for message_id, peer in await self._ledger.outbox.expire(now,
                                                                      frozenset(self._inflight)):
                log.warning("delivery_expired", message_id=message_id, peer=peer)
                self._on_outcome(peer, "", "expired")
        full = frozenset(p for p, n in self._per_peer.items() if n >= self._window)
        skip = self._suspended() | full
        down = {p: peerhealth.allowance(h, now) for p, h in self.health.items()
                if not h.reachable and p not in skip}
        due = await self._ledger.outbox.claim(now, BATCH, now + self._lease,
                                              skip | frozenset(down))
        for peer in sorted(p for p, n in down.items() if n):
            # One delivery, the most urgent: the first to go when the peer is back.
            for d in await self._ledger.outbox.claim(now, 1, now + self._lease,
                                                     only=frozenset({peer})):
                self.health[peer] = peerhealth.probe_taken(self.health[peer])
                self._probes_out[peer] = (d.message_id, d.recipient)
                due.append(d)
        for d in due:
            key = (d.message_id, d.recipient)
            if key in self._inflight:
                continue  # its lease ran out while it waited for its window: already on its way
            if d.expires <= now:  # expired since the last sweep: never resent (§6)
                await self._expire_one(d, now)
                continue
            self._inflight.add(key)
            self._per_peer[d.recipient] = self._per_peer.get(d.recipient, 0) + 1
            task = asyncio.create_task(self._send(d))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return 0.0 if len(due) >= BATCH else self._idle(now)

    def _idle(self, now: datetime) -> float:
        """How long to sleep: the idle poll, or less if a probe falls due sooner."""
        waits = [(h.probe_at - now).total_seconds() for h in self.health.values()
                 if not h.reachable and not h.probing and h.probe_at is not None]
        return max(0.01, min([IDLE_POLL, *waits]))

    async def _expire_one(self, d: DueDelivery, now: datetime) -> None:
        after = await self._ledger.outbox.transition(
            d.message_id, d.recipient, partial(on_expiry, now=now, expires=d.expires))
        if after is not None and after.state is DeliveryState.EXPIRED:
            log.warning("delivery_expired", message_id=d.message_id, peer=d.recipient)
            self._on_outcome(d.recipient, "", "expired")

    async def _send(self, d: DueDelivery) -> None:
        key = (d.message_id, d.recipient)
        bound = structlog.contextvars.bound_contextvars(message_id=d.message_id, peer=d.recipient)
        try:
            with bound:
                async with self._window_for(d.recipient):
                    step = await self._publish(d)
                await self._ledger.outbox.transition(d.message_id, d.recipient, step)
        except GatewayError as exc:
            log.error("delivery_record_failed", error=str(exc))
        finally:
            self._inflight.discard(key)
            self._per_peer[d.recipient] -= 1
            if self._probes_out.get(d.recipient) == key:
                del self._probes_out[d.recipient]
                health = self.health.get(d.recipient)
                if health is not None and health.probing:  # the probe ended, no outcome
                    self._link_failed(d.recipient, health.last_error or "probe ended",
                                      refused=False)
            self._wake.set()

    def _link_failed(self, peer: str, error: str, *, refused: bool) -> None:
        """The peer's link failed: it is backed off as a whole (logged when it becomes
        unreachable, and when a lost link turns into a refusal or back)."""
        before = self.health.get(peer, REACHABLE)
        self.health[peer] = peerhealth.on_link_failure(
            before, self._clock.now(), error, refused=refused, policy=self._probes,
            jitter=self._jitter())
        if before.reachable or before.refused != refused:
            log.warning("peer_unreachable", peer=peer, error=error[:300], refused=refused)
            if refused:
                log.error("publish_refused_permanently", error=error[:300])

    def _link_works(self, peer: str) -> None:
        before = self.health.pop(peer, REACHABLE)
        if not before.reachable:
            down = None if before.since is None else round(
                (self._clock.now() - before.since).total_seconds(), 1)
            log.info("peer_reachable", peer=peer, down_s=down, failures=before.failures)
            self._wake.set()  # its backlog is due: release it now

    async def _publish(self, d: DueDelivery) -> Callable[[Delivery], Delivery]:
        now = self._clock.now
        try:
            await self._publisher.publish(d.recipient, d.wire, message_id=d.message_id,
                                          msg_type=d.type)
        except PublishUnknown as exc:
            if self.health.get(d.recipient, REACHABLE).reachable:
                log.warning("publish_unknown", error=str(exc), attempts=d.attempts + 1)
            self._on_outcome(d.recipient, d.type, "unknown")
            self._link_failed(d.recipient, str(exc), refused=False)
            return partial(on_held, now=now(), error=str(exc))
        except PublishRefused as exc:
            self._on_outcome(d.recipient, d.type, "refused")
            if not exc.retryable or isinstance(exc, TlsFailure):
                # Access or TLS refused (the peer's operator must act), or no TLS link
                # at all: the link, not this message.
                self._link_failed(d.recipient, str(exc), refused=not exc.retryable)
                return partial(on_held, now=now(), error=str(exc))
            # The broker answered (unroutable, nack): the link works, this message waits.
            log.error("publish_refused", error=str(exc), attempts=d.attempts + 1)
            self._link_works(d.recipient)
            return partial(on_failed, now=now(), error=str(exc), retryable=True,
                           policy=self._policy, jitter=self._jitter())
        failpoints.hit("dispatch.after_publish")  # confirmed by the broker, not yet recorded
        log.debug("published", attempts=d.attempts + 1, type=d.type)
        self._on_outcome(d.recipient, d.type, "confirmed")
        self._link_works(d.recipient)
        return partial(on_confirmed, now=now())

    async def stop(self) -> None:
        """Wait briefly for in-flight publishes, then cancel what is left."""
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
