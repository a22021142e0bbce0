"""The dispatcher: gateway.service.dispatch.Dispatcher with the real SQLite ledger.

The publisher is an in-memory fake scripted per message (succeed, raise, or wait for the
test to release it) and the clock is a fake the test moves. Most tests drive the
dispatcher one ``_tick`` at a time; the tests of ``run``/``wake`` run it as a task with
``IDLE_POLL`` made long, so that only a wake-up can make it act within the test.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.adapters.stores.outbox import OutboxStore
from gateway.errors import LedgerError, PublishRefused, PublishUnknown, TlsFailure
from gateway.protocol.delivery import Delivery, DeliveryState, RetryPolicy
from gateway.protocol.peerhealth import ProbePolicy
from gateway.service import dispatch
from gateway.service.dispatch import Dispatcher
from gateway.service.records import DueDelivery, OutgoingMessage

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
NL, LU, DE = "NL-NCC", "LU-HCPN", "DE-NW"
LEASE = timedelta(seconds=50)
POLICY = RetryPolicy(base=timedelta(seconds=1), cap=timedelta(seconds=8),
                     refused_delay=timedelta(seconds=60))
MS = timedelta(milliseconds=1)
PROBES = ProbePolicy(refused_delay=POLICY.refused_delay)
S = DeliveryState

#: What the fake publisher does with one publish: succeed (None), raise, or wait for a
#: future the test resolves (its exception, if any, is raised).
Step = BaseException | asyncio.Future[None] | None


class FakeClock:
    """A clock that says whatever time the test sets."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def now(self) -> datetime:
        """The set time."""
        return self.at

    def advance(self, delta: timedelta) -> None:
        """Move the time forward."""
        self.at += delta


@dataclass(frozen=True)
class Call:
    """One publish as the fake publisher saw it."""

    peer: str
    wire: bytes
    message_id: str
    msg_type: str
    at: datetime


@dataclass
class FakePublisher:
    """In-memory Publisher: records calls, follows a per-message script, counts in-flight."""

    clock: FakeClock
    #: How long each publish takes on the fake clock (the outcome is stamped after it).
    takes: timedelta = timedelta(0)
    calls: list[Call] = field(default_factory=list)
    script: dict[str, list[Step]] = field(default_factory=dict)
    inflight: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    cancelled: list[str] = field(default_factory=list)
    #: Peers whose link is down: every publish to them raises this.
    links_down: dict[str, BaseException] = field(default_factory=dict)

    def down(self, peer: str, error: BaseException) -> None:
        """Every publish to ``peer`` fails with ``error`` until :meth:`up`."""
        self.links_down[peer] = error

    def up(self, peer: str) -> None:
        """The peer's link is back."""
        self.links_down.pop(peer, None)

    def then(self, message_id: str, *steps: Step) -> None:
        """Script the next publishes of ``message_id``; unscripted publishes succeed."""
        self.script.setdefault(message_id, []).extend(steps)

    def hold(self, message_id: str) -> asyncio.Future[None]:
        """Make the next publish of ``message_id`` wait until the returned future is done."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.then(message_id, fut)
        return fut

    def ids(self, peer: str | None = None) -> list[str]:
        """Message ids published so far, in order (to ``peer`` only, if given)."""
        return [c.message_id for c in self.calls if peer is None or c.peer == peer]

    async def publish(self, peer: str, wire: bytes, *, message_id: str, msg_type: str) -> None:
        """Publish per the script."""
        self.calls.append(Call(peer, wire, message_id, msg_type, self.clock.now()))
        self.inflight[peer] += 1
        self.peak[peer] = max(self.peak[peer], self.inflight[peer])
        try:
            steps = self.script.get(message_id)
            step = steps.pop(0) if steps else None
            if isinstance(step, asyncio.Future):
                try:
                    await step
                except asyncio.CancelledError:
                    self.cancelled.append(message_id)
                    raise
            self.clock.advance(self.takes)
            if peer in self.links_down:
                raise self.links_down[peer]
            if isinstance(step, BaseException):
                raise step
        finally:
            self.inflight[peer] -= 1


class HookedOutbox(OutboxStore):
    """The real outbox store, with counters and injectable failures around its claim,
    transition and expiry (installed as the ledger's ``outbox``)."""

    def __init__(self, ledger: SqliteLedger, clock: Callable[[], datetime]) -> None:
        super().__init__(ledger.db, clock)
        self.claims = 0
        self.expiries = 0
        self.fail_claims = 0
        self.fail_transitions = 0
        #: Run after a claim's rows are taken, before the dispatcher sees them.
        self.after_claim: Callable[[], Awaitable[None]] | None = None

    async def claim(self, now: datetime, limit: int, lease_until: datetime,
                    skip_peers: frozenset[str] = frozenset(),
                    only: frozenset[str] | None = None) -> list[DueDelivery]:
        """Count, maybe fail, maybe run the hook."""
        self.claims += 1
        if self.fail_claims:
            self.fail_claims -= 1
            raise LedgerError("ledger: disk I/O error (injected)")
        rows = await super().claim(now, limit, lease_until, skip_peers, only)
        hook, self.after_claim = self.after_claim, None
        if hook is not None:
            await hook()
        return rows

    async def transition(self, message_id: str, recipient: str,
                         step: Callable[[Delivery], Delivery]) -> Delivery | None:
        """Maybe fail, else the real transition."""
        if self.fail_transitions:
            self.fail_transitions -= 1
            raise LedgerError("ledger: disk I/O error (injected)")
        return await super().transition(message_id, recipient, step)

    async def expire(self, now: datetime,
                     exclude: frozenset[tuple[str, str]] = frozenset()) -> list[tuple[str, str]]:
        """Count, then the real expiry sweep."""
        self.expiries += 1
        return await super().expire(now, exclude)


@dataclass
class Rig:
    """A ledger, clock and publisher for dispatchers under test, and what they reported."""

    ledger: SqliteLedger
    outbox: HookedOutbox
    clock: FakeClock
    publisher: FakePublisher
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)
    suspended: set[str] = field(default_factory=set)
    dispatchers: list[Dispatcher] = field(default_factory=list)
    running: list[asyncio.Task[None]] = field(default_factory=list)

    def dispatcher(self, *, window: int = 4, lease: timedelta = LEASE,
                   policy: RetryPolicy = POLICY, jitter: float = 0.5) -> Dispatcher:
        """A dispatcher on this rig (suspension read from ``self.suspended`` each tick)."""
        d = Dispatcher(ledger=self.ledger, publisher=self.publisher, clock=self.clock,
                       policy=policy, window_per_peer=window, lease=lease,
                       suspended=lambda: frozenset(self.suspended), jitter=lambda: jitter,
                       on_outcome=lambda peer, t, o: self.outcomes.append((peer, t, o)))
        self.dispatchers.append(d)
        return d

    def run(self, d: Dispatcher) -> asyncio.Task[None]:
        """Start ``d.run()`` as a task, cancelled at teardown."""
        task = asyncio.create_task(d.run())
        self.running.append(task)
        return task

    async def submit(self, message_id: str, *recipients: str, msg_type: str = "sitrep",
                     expires: datetime = T0 + timedelta(hours=24),
                     priority: str = "urgent") -> bytes:
        """Put a message for ``recipients`` in the outbox now; returns its wire bytes."""
        wire = b"\x00signed " + message_id.encode() + b" \xff\xfe"
        message = OutgoingMessage(
            id=message_id, type=msg_type, created=self.clock.now(), expires=expires,
            priority=priority, mode="actual", tlp="GREEN", incident=None, digest="ab" * 32,
            wire=wire, recipients=recipients)
        await self.outbox.submit(message, None, self.clock.now())
        return wire

    async def delivery(self, message_id: str, recipient: str) -> Delivery:
        """The delivery row as stored (read through an identity transition, unhooked)."""
        d = await OutboxStore.transition(self.outbox, message_id, recipient, lambda d: d)
        assert d is not None
        return d


@pytest.fixture(scope="module")
def empty_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty ledger file, created once: copying it is ten times faster than a new one."""
    path = tmp_path_factory.mktemp("template") / "ledger.db"

    async def create() -> None:
        ledger = SqliteLedger(path)
        await ledger.open()
        await ledger.close()

    asyncio.run(create())
    return path


@pytest.fixture
async def rig(tmp_path: Path, empty_ledger: Path) -> AsyncIterator[Rig]:
    """A rig on a fresh ledger; stops every dispatcher task and closes the ledger after."""
    clock = FakeClock()
    shutil.copyfile(empty_ledger, tmp_path / "ledger.db")
    ledger = SqliteLedger(tmp_path / "ledger.db", clock=clock.now)
    ledger.outbox = outbox = HookedOutbox(ledger, clock.now)
    await ledger.open()
    r = Rig(ledger=ledger, outbox=outbox, clock=clock, publisher=FakePublisher(clock))
    yield r
    tasks = [*r.running, *(t for d in r.dispatchers for t in d._tasks)]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await ledger.close()


async def settle(d: Dispatcher) -> None:
    """Wait until every publish the dispatcher started has finished and been recorded."""
    while pending := [t for t in d._tasks if not t.done()]:
        await asyncio.gather(*pending)


async def until(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    """Wait (in real time, polling every millisecond) until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(0.001)


async def step(d: Dispatcher) -> float:
    """One tick, then wait for the publishes it started; returns the tick's idle time."""
    idle = await d._tick()
    await settle(d)
    return idle


# --------------------------------------------------------------------------------------
# Publishing and confirms
# --------------------------------------------------------------------------------------


async def test_due_delivery_is_published_once_and_recorded_sent(rig: Rig) -> None:
    """A due delivery is published once with its bytes, id and type, then stored as sent."""
    d = rig.dispatcher()
    rig.publisher.takes = 200 * MS
    wire = await rig.submit("m1", NL)

    assert await step(d) == dispatch.IDLE_POLL

    assert rig.publisher.calls == [Call(NL, wire, "m1", "sitrep", T0)]
    row = await rig.delivery("m1", NL)
    assert row.state is S.SENT
    assert row.attempts == 1
    assert row.sent_at == T0 + 200 * MS  # stamped when the confirm came
    assert row.next_attempt_at is None
    assert row.last_error is None
    assert rig.outcomes == [(NL, "sitrep", "confirmed")]

    rig.clock.advance(timedelta(hours=1))
    await step(d)
    assert len(rig.publisher.calls) == 1


async def test_each_recipient_gets_its_own_publish_and_row(rig: Rig) -> None:
    """A message to several peers is published to each, with identical bytes and its type."""
    d = rig.dispatcher()
    wire = await rig.submit("r1", NL, LU, DE, msg_type="receipt")

    await step(d)

    assert sorted(c.peer for c in rig.publisher.calls) == sorted([NL, LU, DE])
    assert {(c.wire, c.message_id, c.msg_type) for c in rig.publisher.calls} == {
        (wire, "r1", "receipt")}
    for peer in (NL, LU, DE):
        assert (await rig.delivery("r1", peer)).state is S.SENT
    assert sorted(rig.outcomes) == sorted((p, "receipt", "confirmed") for p in (NL, LU, DE))


async def test_nothing_due_publishes_nothing(rig: Rig) -> None:
    """With an empty outbox a tick publishes nothing and asks to idle for IDLE_POLL."""
    d = rig.dispatcher()
    assert await step(d) == dispatch.IDLE_POLL
    assert rig.publisher.calls == []
    assert rig.outcomes == []


async def test_full_batch_asks_for_an_immediate_next_tick(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim that fills BATCH makes the tick return 0 (more may be due); a short one idles."""
    monkeypatch.setattr(dispatch, "BATCH", 2)
    d = rig.dispatcher()
    await rig.submit("m1", NL, LU, DE)

    assert await step(d) == 0.0
    assert len(rig.publisher.calls) == 2
    assert await step(d) == dispatch.IDLE_POLL
    assert sorted(c.peer for c in rig.publisher.calls) == sorted([NL, LU, DE])


# --------------------------------------------------------------------------------------
# Failures and retries
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("jitter", "delays"), [
    (0.0, [0.25, 0.5, 0.5, 0.5, 0.5]),
    (0.5, [0.375, 0.75, 0.75, 0.75, 0.75]),
])
async def test_unknown_outcome_backs_off_the_peer_and_probes_with_the_same_bytes(
        rig: Rig, jitter: float, delays: list[float]) -> None:
    """PublishUnknown keeps the delivery queued and due (held), and makes the peer
    unreachable: nothing goes to it until its probe time, ProbePolicy.delay after each
    failure in a row; then exactly one probe, the identical bytes."""
    d = rig.dispatcher(jitter=jitter)
    rig.publisher.takes = 100 * MS
    wire = await rig.submit("m1", NL)
    rig.publisher.then("m1", *(PublishUnknown("no confirm within 10 s") for _ in delays))

    for attempt, seconds in enumerate(delays, start=1):
        await step(d)
        assert len(rig.publisher.calls) == attempt
        failed_at = rig.clock.now()
        row = await rig.delivery("m1", NL)
        assert row.state is S.QUEUED
        assert row.attempts == attempt
        assert row.last_error == "no confirm within 10 s"
        assert row.next_attempt_at == failed_at  # due: the peer, not the message, waits
        assert PROBES.delay(attempt, jitter) == timedelta(seconds=seconds)
        health = d.health[NL]
        assert not health.reachable
        assert health.failures == attempt
        assert health.probe_at == failed_at + timedelta(seconds=seconds)

        rig.clock.at = failed_at + timedelta(seconds=seconds) - MS
        assert await step(d) <= seconds  # it sleeps no longer than until the probe
        assert len(rig.publisher.calls) == attempt  # not a millisecond early
        rig.clock.advance(MS)

    await step(d)
    assert len(rig.publisher.calls) == len(delays) + 1
    assert {c.wire for c in rig.publisher.calls} == {wire}
    row = await rig.delivery("m1", NL)
    assert row.state is S.SENT
    assert row.attempts == len(delays) + 1
    assert row.last_error is None
    assert NL not in d.health  # reachable again
    assert rig.outcomes == [(NL, "sitrep", "unknown")] * len(delays) + [
        (NL, "sitrep", "confirmed")]


@pytest.mark.parametrize(("error", "wait", "held"), [
    (PublishRefused("returned: no route to inbox", retryable=True), POLICY.delay(1, 0.5),
     False),
    (TlsFailure("handshake_timeout", "no ServerHello", retryable=True), PROBES.delay(1, 0.5),
     True),
    (PublishRefused("ACCESS_REFUSED", retryable=False), PROBES.refused_delay, True),
    (TlsFailure("expired", "certificate expired"), PROBES.refused_delay, True),
], ids=["retryable", "tls-timeout", "permanent", "tls-expired"])
async def test_refusal_backs_off_the_message_or_the_peer(
        rig: Rig, error: PublishRefused, wait: timedelta, held: bool) -> None:
    """A refusal keeps it queued. One the broker gave about this message (returned,
    nacked) backs the message off and leaves the peer reachable; a TLS failure backs the
    peer off as an unknown outcome does; an access or certificate refusal backs the peer
    off for refused_delay."""
    d = rig.dispatcher(jitter=0.5)
    wire = await rig.submit("m1", NL)
    rig.publisher.then("m1", error)

    await step(d)

    row = await rig.delivery("m1", NL)
    assert row.state is S.QUEUED
    assert row.attempts == 1
    assert row.last_error == str(error)
    assert row.next_attempt_at == (T0 if held else T0 + wait)
    assert (NL in d.health) is held
    assert rig.outcomes == [(NL, "sitrep", "refused")]

    rig.clock.at = T0 + wait - MS
    await step(d)
    assert len(rig.publisher.calls) == 1
    rig.clock.at = T0 + wait
    await step(d)
    assert [c.wire for c in rig.publisher.calls] == [wire, wire]
    row = await rig.delivery("m1", NL)
    assert row.state is S.SENT
    assert row.attempts == 2


async def test_an_unreachable_peer_costs_one_probe_and_gets_its_backlog_at_once(
        rig: Rig) -> None:
    """With 40 deliveries waiting for a peer whose link is down, each probe time sends
    one delivery (the most urgent), and the others are never tried; the first confirmed
    probe releases all of them in the next tick, flash before urgent before routine,
    while another peer is served all along."""
    d = rig.dispatcher(window=64, jitter=0.0)
    priorities = ["routine", "urgent", "flash", "routine"] * 10
    for n, priority in enumerate(priorities):
        await rig.submit(f"m{n:02d}", NL, priority=priority)
    rig.publisher.down(NL, PublishUnknown("cannot connect"))
    await step(d)  # the first batch fails: the peer goes down
    tried = len(rig.publisher.calls)
    assert not d.health[NL].reachable
    for _ in range(3):  # three probe times: one publish each, the flash ones first
        rig.clock.at = d.health[NL].probe_at
        await step(d)
        assert len(rig.publisher.calls) == tried + 1
        assert rig.publisher.calls[-1].message_id in {
            f"m{n:02d}" for n, p in enumerate(priorities) if p == "flash"}
        tried += 1
    await rig.submit("other", LU)
    await step(d)
    assert rig.publisher.calls[-1].peer == LU  # not held back by NL

    rig.publisher.up(NL)
    rig.clock.at = d.health[NL].probe_at
    await step(d)  # the probe goes through: NL is reachable
    assert NL not in d.health
    await step(d)  # and its whole backlog goes at once
    released = [c for c in rig.publisher.calls[tried + 2:] if c.peer == NL]
    assert len(released) == 39
    ranks = [{"flash": 0, "urgent": 1, "routine": 2}[priorities[int(c.message_id[1:])]]
             for c in released]
    assert ranks == sorted(ranks)
    stats = await rig.ledger.stats()
    assert stats.deliveries == {"sent": 41}


async def test_a_peer_going_down_and_coming_back_is_logged_once_each_way(
        rig: Rig) -> None:
    """Failures while the peer is down are not logged one by one: one line when it
    becomes unreachable, one when it is reachable again."""
    d = rig.dispatcher(window=64, jitter=0.0)
    for n in range(20):
        await rig.submit(f"m{n:02d}", NL)
    rig.publisher.down(NL, PublishUnknown("cannot connect"))
    with capture_logs() as logs:
        await step(d)
        for _ in range(5):
            rig.clock.at = d.health[NL].probe_at
            await step(d)
        rig.publisher.up(NL)
        rig.clock.at = d.health[NL].probe_at
        await step(d)
        await step(d)
    events = [e["event"] for e in logs if e["log_level"] in ("warning", "error", "info")]
    assert events.count("peer_unreachable") == 1
    assert events.count("peer_reachable") == 1
    assert events.count("publish_unknown") <= 1
    assert (await rig.ledger.stats()).deliveries == {"sent": 20}


async def test_one_peer_failing_does_not_hold_back_another(rig: Rig) -> None:
    """A failure towards one recipient leaves the other recipient's delivery sent."""
    d = rig.dispatcher()
    await rig.submit("m1", NL, LU)
    rig.publisher.then("m1", PublishUnknown("connection lost"))  # whichever goes first

    await step(d)

    states = {p: (await rig.delivery("m1", p)).state for p in (NL, LU)}
    assert sorted(states.values()) == sorted([S.QUEUED, S.SENT])


# --------------------------------------------------------------------------------------
# Per-peer window
# --------------------------------------------------------------------------------------


async def test_window_bounds_publishes_per_peer_while_other_peers_proceed(rig: Rig) -> None:
    """At most window_per_peer publishes are unconfirmed per peer; other peers go meanwhile."""
    d = rig.dispatcher(window=2)
    holds: dict[str, asyncio.Future[None]] = {}
    for i in range(5):
        await rig.submit(f"nl{i}", NL)
        holds[f"nl{i}"] = rig.publisher.hold(f"nl{i}")
    await rig.submit("lu0", LU)
    await rig.submit("lu1", LU)

    await d._tick()
    await until(lambda: len(rig.publisher.ids(LU)) == 2 and rig.publisher.inflight[LU] == 0)
    await until(lambda: rig.publisher.inflight[NL] == 2)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(rig.publisher.ids(NL)) == 2
    assert (await rig.delivery("lu1", LU)).state is S.SENT

    def reached(started: int, unconfirmed: int) -> Callable[[], bool]:
        return lambda: (len(rig.publisher.ids(NL)) == started
                        and rig.publisher.inflight[NL] == unconfirmed)

    for released in range(1, 6):  # confirm the oldest unconfirmed publish, one at a time
        holds[rig.publisher.ids(NL)[released - 1]].set_result(None)
        await until(reached(min(released + 2, 5), min(5 - released, 2)))
    await settle(d)

    assert rig.publisher.peak[NL] == 2
    assert sorted(rig.publisher.ids(NL)) == [f"nl{i}" for i in range(5)]
    for i in range(5):
        assert (await rig.delivery(f"nl{i}", NL)).state is S.SENT


async def test_full_peer_is_not_claimed_until_its_window_frees(rig: Rig) -> None:
    """A peer with a full window is not claimed for (no lease) until a confirm frees it."""
    d = rig.dispatcher(window=1)
    await rig.submit("m1", NL)
    hold = rig.publisher.hold("m1")
    await d._tick()
    await until(lambda: rig.publisher.inflight[NL] == 1)

    await rig.submit("m2", NL)
    await rig.submit("m3", LU)
    await d._tick()
    await until(lambda: "m3" in rig.publisher.ids())
    assert "m2" not in rig.publisher.ids()
    m2 = await rig.delivery("m2", NL)
    assert m2.state is S.QUEUED
    assert m2.next_attempt_at == T0  # still due: not leased

    hold.set_result(None)
    await settle(d)
    await step(d)
    assert rig.publisher.ids(NL) == ["m1", "m2"]
    assert (await rig.delivery("m2", NL)).state is S.SENT


# --------------------------------------------------------------------------------------
# Leases
# --------------------------------------------------------------------------------------


async def test_claimed_delivery_is_leased_and_not_published_twice_while_in_flight(
        rig: Rig) -> None:
    """A claim leases the row; a lease running out mid-publish does not publish it twice."""
    d = rig.dispatcher()
    await rig.submit("m1", NL)
    hold = rig.publisher.hold("m1")
    await d._tick()
    await until(lambda: rig.publisher.inflight[NL] == 1)

    row = await rig.delivery("m1", NL)
    assert row.state is S.QUEUED
    assert row.attempts == 0
    assert row.next_attempt_at == T0 + LEASE

    rig.clock.at = T0 + LEASE + MS
    await d._tick()
    for _ in range(20):
        await asyncio.sleep(0)
    assert rig.publisher.ids() == ["m1"]
    row = await rig.delivery("m1", NL)
    assert row.next_attempt_at == T0 + LEASE + MS + LEASE  # the ledger did hand it out again

    hold.set_result(None)
    await settle(d)
    row = await rig.delivery("m1", NL)
    assert row.state is S.SENT
    assert row.attempts == 1


async def test_claim_without_recorded_outcome_is_due_again_after_the_lease(rig: Rig) -> None:
    """A claim whose outcome is never recorded is resent (same bytes) once its lease runs out."""
    crashed = rig.dispatcher()
    wire = await rig.submit("m1", NL)
    hold = rig.publisher.hold("m1")
    await crashed._tick()
    await until(lambda: rig.publisher.inflight[NL] == 1)

    restarted = rig.dispatcher()
    rig.clock.at = T0 + LEASE - MS
    await step(restarted)
    assert rig.publisher.ids() == ["m1"]

    rig.clock.at = T0 + LEASE
    await step(restarted)
    assert [c.wire for c in rig.publisher.calls] == [wire, wire]
    row = await rig.delivery("m1", NL)
    assert row.state is S.SENT
    assert row.attempts == 1

    hold.set_result(None)  # the "dead" publish's late confirm changes nothing
    await settle(crashed)
    assert await rig.delivery("m1", NL) == row


async def test_failed_outcome_record_frees_window_and_resends_after_lease(rig: Rig) -> None:
    """A failed outcome write still frees the window; the row is resent after its lease."""
    d = rig.dispatcher(window=1)
    wire = await rig.submit("m1", NL)
    rig.outbox.fail_transitions = 1

    await step(d)
    row = await rig.delivery("m1", NL)
    assert row.state is S.QUEUED
    assert row.next_attempt_at == T0 + LEASE

    await rig.submit("m2", NL)
    await step(d)
    assert rig.publisher.ids() == ["m1", "m2"]

    rig.clock.at = T0 + LEASE
    await step(d)
    assert rig.publisher.ids() == ["m1", "m2", "m1"]
    assert rig.publisher.calls[2].wire == wire
    assert (await rig.delivery("m1", NL)).state is S.SENT


# --------------------------------------------------------------------------------------
# Suspended peers
# --------------------------------------------------------------------------------------


async def test_suspended_peer_is_skipped_and_resumes_when_unsuspended(rig: Rig) -> None:
    """A suspended peer's rows are left unclaimed while others go; lifting it resumes them."""
    d = rig.dispatcher()
    rig.suspended.add(NL)
    await rig.submit("m1", NL, LU)

    await step(d)
    await step(d)

    assert [(c.peer, c.message_id) for c in rig.publisher.calls] == [(LU, "m1")]
    row = await rig.delivery("m1", NL)
    assert row.state is S.QUEUED
    assert row.attempts == 0
    assert row.next_attempt_at == T0

    rig.suspended.clear()
    await step(d)
    assert [(c.peer, c.message_id) for c in rig.publisher.calls] == [(LU, "m1"), (NL, "m1")]
    assert (await rig.delivery("m1", NL)).state is S.SENT


# --------------------------------------------------------------------------------------
# Expiry
# --------------------------------------------------------------------------------------


async def test_expired_message_is_expired_and_not_published(rig: Rig) -> None:
    """A queued delivery of an expired message is marked expired and not published."""
    d = rig.dispatcher()
    await rig.submit("old", NL, expires=T0)
    await rig.submit("new", NL)

    await step(d)

    assert rig.publisher.ids() == ["new"]
    row = await rig.delivery("old", NL)
    assert row.state is S.EXPIRED
    assert row.expired_at == T0
    assert row.reason == "expired"
    assert row.next_attempt_at is None
    assert (NL, "", "expired") in rig.outcomes
    assert (NL, "sitrep", "confirmed") in rig.outcomes


async def test_retry_scheduled_past_expiry_is_expired_not_resent(rig: Rig) -> None:
    """A delivery refused until after its message's expiry is expired, not published again."""
    d = rig.dispatcher()
    await rig.submit("m1", NL, expires=T0 + timedelta(seconds=30))
    rig.publisher.then("m1", PublishRefused("ACCESS_REFUSED", retryable=False))
    await step(d)
    assert d.health[NL].probe_at == T0 + PROBES.refused_delay

    rig.clock.at = T0 + PROBES.refused_delay
    await step(d)

    assert rig.publisher.ids() == ["m1"]
    assert (await rig.delivery("m1", NL)).state is S.EXPIRED
    assert rig.outcomes == [(NL, "sitrep", "refused"), (NL, "", "expired")]


async def test_expiry_sweep_runs_at_most_once_per_sweep_interval(rig: Rig) -> None:
    """The expiry sweep runs on the first tick, then only once EXPIRY_SWEEP has passed."""
    d = rig.dispatcher()
    sweep = dispatch.EXPIRY_SWEEP
    for offset in (timedelta(0), sweep / 2, sweep - MS, sweep, sweep * 1.5, sweep * 2):
        rig.clock.at = T0 + offset
        await step(d)
    assert rig.outbox.expiries == 3  # at 0, at 1 sweep and at 2 sweeps


async def test_retry_falling_due_after_expiry_between_sweeps_is_not_published(
        rig: Rig) -> None:
    """A retry falling due after expiry is not published, even between expiry sweeps."""
    d = rig.dispatcher(policy=RetryPolicy(base=timedelta(milliseconds=800)), jitter=0.5)
    await rig.submit("m1", NL, expires=T0 + timedelta(milliseconds=500))
    rig.publisher.then("m1", PublishRefused("returned: no route", retryable=True))
    await step(d)  # sweeps at T0; the publish is returned; retry at T0 + 600 ms
    assert (await rig.delivery("m1", NL)).next_attempt_at == T0 + timedelta(milliseconds=600)

    rig.clock.at = T0 + timedelta(milliseconds=600)  # expired 100 ms ago; no sweep yet
    await step(d)

    assert rig.publisher.ids() == ["m1"]


async def test_delivery_confirmed_while_sweep_runs_is_recorded_sent(rig: Rig) -> None:
    """A publish in flight at expiry and then confirmed by the broker is recorded as sent."""
    d = rig.dispatcher()
    await rig.submit("m1", NL, expires=T0 + timedelta(seconds=1))
    hold = rig.publisher.hold("m1")
    await d._tick()
    await until(lambda: rig.publisher.inflight[NL] == 1)

    rig.clock.at = T0 + timedelta(seconds=1)
    await d._tick()  # the sweep runs while the publish is still waiting for its confirm
    hold.set_result(None)
    await settle(d)

    assert rig.outcomes[-1] == (NL, "sitrep", "confirmed")
    assert (await rig.delivery("m1", NL)).state is S.SENT


# --------------------------------------------------------------------------------------
# The run loop: wake-ups, ledger errors
# --------------------------------------------------------------------------------------


async def test_wake_makes_a_sleeping_dispatcher_act_at_once(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """wake() makes an idle dispatcher claim and publish at once, not after IDLE_POLL."""
    monkeypatch.setattr(dispatch, "IDLE_POLL", 30.0)
    d = rig.dispatcher()
    rig.run(d)
    await until(lambda: rig.outbox.claims == 1)

    await rig.submit("m1", NL)
    await asyncio.sleep(0.03)
    assert rig.publisher.calls == []

    d.wake()
    await until(lambda: rig.publisher.ids() == ["m1"], timeout=0.5)
    await until(lambda: not d._tasks)
    assert (await rig.delivery("m1", NL)).state is S.SENT


async def test_finished_publish_wakes_the_loop_to_fill_the_freed_window(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A confirm that frees a full window wakes the loop to claim the waiting delivery."""
    monkeypatch.setattr(dispatch, "IDLE_POLL", 30.0)
    d = rig.dispatcher(window=1)
    await rig.submit("m1", NL)
    hold = rig.publisher.hold("m1")
    rig.run(d)
    await until(lambda: rig.publisher.inflight[NL] == 1)

    await rig.submit("m2", NL)
    claims = rig.outbox.claims
    d.wake()
    await until(lambda: rig.outbox.claims > claims)
    await asyncio.sleep(0.01)
    assert rig.publisher.ids() == ["m1"]  # the window is full

    hold.set_result(None)
    await until(lambda: rig.publisher.ids() == ["m1", "m2"], timeout=0.5)
    await until(lambda: not d._tasks)
    assert (await rig.delivery("m2", NL)).state is S.SENT


async def test_wake_during_a_tick_is_not_lost(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wake() that arrives while a tick's claim is under way is not lost."""
    monkeypatch.setattr(dispatch, "IDLE_POLL", 30.0)
    d = rig.dispatcher()

    async def submission_during_claim() -> None:
        await rig.submit("m1", NL)
        d.wake()

    rig.outbox.after_claim = submission_during_claim
    rig.run(d)
    await until(lambda: rig.outbox.claims == 1)

    await until(lambda: rig.publisher.ids() == ["m1"], timeout=0.2)


async def test_run_survives_a_ledger_error_and_carries_on(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A LedgerError in a tick is not fatal: the loop pauses, and wake() resumes it."""
    monkeypatch.setattr(dispatch, "IDLE_POLL", 30.0)
    rig.outbox.fail_claims = 1
    d = rig.dispatcher()
    task = rig.run(d)
    await until(lambda: rig.outbox.claims == 1)
    await asyncio.sleep(0.01)
    assert not task.done()

    await rig.submit("m1", NL)
    d.wake()
    await until(lambda: rig.publisher.ids() == ["m1"], timeout=0.5)
    await until(lambda: not d._tasks)
    assert (await rig.delivery("m1", NL)).state is S.SENT


# --------------------------------------------------------------------------------------
# stop()
# --------------------------------------------------------------------------------------


async def test_stop_lets_in_flight_publishes_finish_and_be_recorded(rig: Rig) -> None:
    """stop() returns only once in-flight publishes have ended and their outcomes are stored."""
    d = rig.dispatcher()
    await rig.submit("m1", NL)
    await rig.submit("m2", LU)
    hold1 = rig.publisher.hold("m1")
    hold2 = rig.publisher.hold("m2")
    await d._tick()
    await until(lambda: rig.publisher.inflight[NL] + rig.publisher.inflight[LU] == 2)

    stopping = asyncio.create_task(d.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()
    hold1.set_result(None)
    await asyncio.sleep(0.01)
    assert not stopping.done()
    hold2.set_exception(PublishUnknown("connection lost"))
    await asyncio.wait_for(stopping, timeout=1)

    assert rig.publisher.cancelled == []
    assert (await rig.delivery("m1", NL)).state is S.SENT
    m2 = await rig.delivery("m2", LU)
    assert m2.state is S.QUEUED
    assert m2.attempts == 1


async def test_stop_with_nothing_in_flight_returns_at_once(rig: Rig) -> None:
    """stop() on an idle dispatcher returns without waiting."""
    d = rig.dispatcher()
    await step(d)
    await asyncio.wait_for(d.stop(), timeout=0.1)


async def test_stop_cancels_publishes_still_running_after_its_grace(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() cancels publishes left after its grace period; their lease gets them resent."""
    d = rig.dispatcher()
    wire = await rig.submit("m1", NL)
    rig.publisher.hold("m1")
    await d._tick()
    await until(lambda: rig.publisher.inflight[NL] == 1)

    real_wait = asyncio.wait

    async def short_wait(tasks: set[asyncio.Task[None]], timeout: float | None = None) -> object:
        assert timeout in (5, None)  # the grace period, then waiting for the cancelled
        return await real_wait(tasks, timeout=0.02 if timeout else None)

    with monkeypatch.context() as m:
        m.setattr(dispatch, "asyncio", SimpleNamespace(wait=short_wait))
        await asyncio.wait_for(d.stop(), timeout=1)
    await until(lambda: not d._tasks)

    assert rig.publisher.cancelled == ["m1"]
    row = await rig.delivery("m1", NL)
    assert row.state is S.QUEUED
    assert row.attempts == 0
    assert row.next_attempt_at == T0 + LEASE
    assert rig.outcomes == []

    after = rig.dispatcher()
    rig.clock.at = T0 + LEASE
    await step(after)
    assert [c.wire for c in rig.publisher.calls] == [wire, wire]
    assert (await rig.delivery("m1", NL)).state is S.SENT


# --------------------------------------------------------------------------------------
# on_outcome
# --------------------------------------------------------------------------------------


async def test_on_outcome_reports_every_outcome_with_peer_and_type(rig: Rig) -> None:
    """on_outcome gets (peer, type, outcome) for confirmed/unknown/refused/expired alike."""
    d = rig.dispatcher()
    rig.suspended.add(DE)
    await rig.submit("ok", NL)
    await rig.submit("lost", LU, msg_type="alert")
    await rig.submit("no", NL, msg_type="receipt")
    await rig.submit("late", LU, expires=T0)
    await rig.submit("held", DE)
    rig.publisher.then("lost", PublishUnknown("timeout"))
    rig.publisher.then("no", PublishRefused("nack", retryable=True))

    await step(d)

    assert sorted(rig.outcomes) == sorted([
        (NL, "sitrep", "confirmed"),
        (LU, "alert", "unknown"),
        (NL, "receipt", "refused"),
        (LU, "", "expired"),
    ])


async def test_dispatcher_works_without_on_outcome_or_suspension(rig: Rig) -> None:
    """The defaults (no on_outcome, no suspended peers, random jitter) dispatch normally."""
    d = Dispatcher(ledger=rig.ledger, publisher=rig.publisher, clock=rig.clock,
                   policy=POLICY, window_per_peer=1, lease=LEASE)
    rig.dispatchers.append(d)
    await rig.submit("m1", NL)
    rig.publisher.then("m1", PublishUnknown("timeout"))

    await step(d)

    row = await rig.delivery("m1", NL)
    assert row.state is S.QUEUED
    probe_at = d.health[NL].probe_at
    assert probe_at is not None
    assert T0 + PROBES.delay(1, 0.0) <= probe_at <= T0 + PROBES.delay(1, 1.0)
    rig.clock.at = probe_at
    await step(d)
    assert (await rig.delivery("m1", NL)).state is S.SENT
