"""Broker faults with ``rabbitmqctl`` (FAULTS.md rows 1, 2, 5, 8, 13, 14, 15, 27).

Every test that changes the shared broker restores it in ``finally`` (start_app, the
previous disk free limit, permissions, bindings, triggers, stopped processes), so the
suite can run twice in a row on the same broker.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from gateway.adapters.amqp import INBOX_EXCHANGE, INBOX_QUEUE
from gateway.demo import CENTRES, peer_user
from tests.faults.load import SETTLED, states, submit_load, tally
from tests.faults.report import record
from tests.faults.test_network import log_events, metric, peer_view, wait_states
from tests.integration.harness import Federation, amqp_connect, wait_until

pytestmark = pytest.mark.broker

BE, NL, LU = "BE-NCCN", "NL-NCC", "LU-HCPN"
PREFETCH = 8
REFUSED_DELAY = 6.0
OVERRIDES: dict[str, Any] = {
    "broker": {"heartbeat": 2, "prefetch": PREFETCH},
    "delivery": {"publish_timeout_seconds": 3.0, "retry_base_seconds": 0.2,
                 "retry_cap_seconds": 2.0, "refused_delay_seconds": REFUSED_DELAY},
    "commcheck": {"every_days": 3650.0},
    "directory": [],  # no directory broadcast at start: only the test load travels
}
DEFAULT_DISK_FREE_LIMIT = 50_000_000


def ctl(*args: str, timeout: float = 120) -> str:
    """Run ``rabbitmqctl -q``; returns its output."""
    done = subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=timeout,
                          capture_output=True, text=True)
    return done.stdout


async def actl(*args: str) -> str:
    """:func:`ctl` off the event loop (the nodes' HTTP calls keep running)."""
    return await asyncio.to_thread(ctl, *args)


async def start_broker() -> None:
    """start_app and wait until the broker serves again."""
    await actl("start_app")
    await actl("await_startup")


def vhost(fed: Federation, centre: str) -> str:
    """The broker vhost of ``centre`` in this federation."""
    return next(c.vhost(fed.prefix) for c in CENTRES if c.id == centre)


def queue_counts(fed: Federation, centre: str) -> dict[str, tuple[int, int]]:
    """queue name -> (ready, unacknowledged) in ``centre``'s vhost."""
    out = ctl("list_queues", "-p", vhost(fed, centre), "name", "messages_ready",
              "messages_unacknowledged", "--no-table-headers")
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            counts[parts[0]] = (int(parts[1]), int(parts[2]))
    return counts


def close_connections_of(user: str, host: str) -> int:
    """Close every connection of ``user`` to ``host``; returns how many."""
    out = ctl("list_connections", "pid", "user", "vhost", "--no-table-headers")
    closed = 0
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1] == user and parts[2] == host:
            ctl("close_connection", parts[0], "fault test: permission revoked")
            closed += 1
    return closed


def incident(row: int) -> str:
    """A fresh incident id for one test."""
    return f"BRK-{row}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def brokerfed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """BE-NCCN, NL-NCC and LU-HCPN of a federation of their own."""
    fed = Federation.create(tmp_path_factory.mktemp("broker"), overrides=OVERRIDES)
    try:
        fed.start(BE, NL, LU)
        yield fed
    finally:
        fed.destroy()


async def test_broker_restart_mid_stream(brokerfed: Federation) -> None:
    """Row 1: stop_app/start_app while sitreps flow: the nodes reconnect, resend what was
    not confirmed, and each recipient stores every message once."""
    fed = brokerfed
    await fed.wait_ready()
    inc = incident(1)
    load = asyncio.create_task(submit_load(fed, BE, [NL, LU], 40, inc, pause=0.05))
    await asyncio.sleep(0.5)
    try:
        await actl("stop_app")
        await asyncio.sleep(3)
    finally:
        await start_broker()
    ids, refused = await load
    counts = await tally(fed, 1, "broker stop_app/start_app mid-stream", BE, ids, [NL, LU],
                         inc, refused=refused)
    record(counts)
    assert counts.delivered == 2 * 40
    await fed.wait_ready()


async def test_all_connections_force_closed(brokerfed: Federation) -> None:
    """Row 2: close_all_connections (twice, on every vhost of the federation) while
    sitreps flow: in-flight publishes fail at once (no confirm timeout) and are retried."""
    fed = brokerfed
    await fed.wait_ready()
    inc = incident(2)
    load = asyncio.create_task(submit_load(fed, BE, [NL, LU], 40, inc, pause=0.05))
    for _ in range(2):
        await asyncio.sleep(0.6)
        for centre in (BE, NL, LU):
            await actl("close_all_connections", "--vhost", vhost(fed, centre),
                       "fault test: row 2")
    ids, refused = await load
    counts = await tally(fed, 2, "close_all_connections x2 mid-stream", BE, ids, [NL, LU], inc,
                         refused=refused)
    record(counts)
    assert counts.delivered == 2 * 40
    waited = [e for e in log_events(fed.nodes[BE].log, "publish_unknown")
              if e.get("message_id") in set(ids) and "no confirm" in str(e.get("error"))]
    assert not waited, f"{len(waited)} publishes waited for a confirm timeout"
    await fed.wait_ready()


async def test_node_started_while_broker_is_down(brokerfed: Federation) -> None:
    """Row 5: with the broker stopped, BE-NCCN starts, answers, accepts and queues
    sitreps (not ready: no inbox), and delivers them once the broker is back."""
    fed = brokerfed
    await fed.wait_ready()
    inc = incident(5)
    fed.stop(BE)
    await actl("stop_app")
    try:
        fed.start(BE)

        async def alive() -> bool:
            return (await fed.api(BE, "GET", "/healthz"))[0] == 200
        await wait_until(alive, 30, "BE-NCCN to answer with the broker down")
        ready_status, _ = await fed.api(BE, "GET", "/readyz")
        assert ready_status == 503
        ids, refused = await submit_load(fed, BE, [NL, LU], 10, inc)
        assert len(ids) == 10, refused
        await asyncio.sleep(1.5)
        found = await states(fed, BE, ids)
        assert set(found.values()) == {"queued"}
    finally:
        await start_broker()
    await fed.wait_ready()
    counts = await tally(fed, 5, "node started while the broker is down", BE, ids, [NL, LU],
                         inc, refused=refused)
    record(counts)
    assert counts.delivered == 2 * 10


def disk_free_limit() -> int:
    """The broker's current disk free limit in bytes."""
    out = ctl("eval", "rabbit_disk_monitor:get_disk_free_limit().")
    try:
        return int(out.strip())
    except ValueError:
        return DEFAULT_DISK_FREE_LIMIT


def disk_alarm() -> bool:
    """Whether a disk alarm is raised."""
    return "disk" in ctl("eval", "rabbit_alarm:get_alarms().")


async def test_disk_alarm_keeps_queuing_and_resumes(brokerfed: Federation) -> None:
    """Row 8: under a broker disk alarm the API keeps accepting (202) and queues in its
    ledger, nothing is counted as delivered, and all is delivered once it clears."""
    fed = brokerfed
    await fed.wait_ready()
    inc = incident(8)
    before = await asyncio.to_thread(disk_free_limit)
    await actl("set_disk_free_limit", "100000GB")
    try:
        async def raised() -> bool:
            return await asyncio.to_thread(disk_alarm)
        await wait_until(raised, 30, "the disk alarm")
        started = time.monotonic()
        ids, refused = await submit_load(fed, BE, [NL, LU], 20, inc)
        took = time.monotonic() - started
        assert len(ids) == 20, refused
        assert took < 10, f"the API slowed to {took:.1f}s for 20 submissions"
        await asyncio.sleep(4)  # more than a publish timeout
        found = await states(fed, BE, ids)
        assert not set(found.values()) & {"delivered", "acknowledged"}
        assert (await peer_view(fed, BE, NL))["backlog"] >= 20
    finally:
        await actl("set_disk_free_limit", str(before))

        async def cleared() -> bool:
            return not await asyncio.to_thread(disk_alarm)
        await wait_until(cleared, 60, "the disk alarm to clear")
    counts = await tally(fed, 8, "broker disk alarm (API kept queuing)", BE, ids, [NL, LU], inc,
                         refused=refused)
    record(counts)
    assert counts.delivered == 2 * 20


async def test_unroutable_inbox_is_never_counted_sent_and_is_retried(
        brokerfed: Federation) -> None:
    """Row 13: with NL-NCC's inbox queue unbound, publishes are returned: never counted
    sent, refused outcomes counted and logged, retried, delivered once it is bound again."""
    fed = brokerfed
    await fed.wait_ready()
    inc = incident(13)
    refused_before = await metric(fed, BE, "crisisgw_publish_total", peer=NL, outcome="refused")
    url = fed.nodes[NL].settings.broker.url.get_secret_value()
    conn = await amqp_connect(url)
    try:
        channel = await conn.channel()
        queue = await channel.get_queue(INBOX_QUEUE, ensure=False)
        exchange = await channel.get_exchange(INBOX_EXCHANGE, ensure=False)
        await queue.unbind(exchange, "#")
        try:
            ids, refused = await submit_load(fed, BE, [NL, LU], 10, inc)
            await wait_states(fed, BE, ids, LU, SETTLED, 30, "LU-HCPN delivered meanwhile")

            async def returned() -> bool:
                now = await metric(fed, BE, "crisisgw_publish_total", peer=NL, outcome="refused")
                return now - refused_before >= 2 * len(ids)  # each one tried at least twice
            await wait_until(returned, 30, "the returned publishes to be retried")
            found = await states(fed, BE, ids)
            assert {found[(i, NL)] for i in ids} == {"queued"}, "counted sent while unroutable"
            _, view = await fed.api(BE, "GET", f"/v1/messages/{ids[0]}")
            nl = next(r for r in view["recipients"] if r["centre"] == NL)
            assert "unroutable" in nl["last_error"]
            assert log_events(fed.nodes[BE].log, "publish_refused", message_id=ids[0])
        finally:
            await queue.bind(exchange, "#")
    finally:
        await conn.close()
    counts = await tally(fed, 13, "inbox queue unbound (unroutable), then rebound", BE, ids,
                         [NL, LU], inc, refused=refused)
    record(counts)
    assert counts.delivered == 2 * len(ids)


async def test_revoked_permission_is_surfaced_without_a_retry_loop(
        brokerfed: Federation) -> None:
    """Row 14: BE-NCCN's permissions on NL-NCC's broker cleared: the refusal is logged as
    permanent and shown on the messages it met, the peer is backed off as a whole and
    probed again only after the refused delay (no tight loop, no lock-step retry of the
    backlog), and everything is delivered once the permissions are back."""
    fed = brokerfed
    await fed.wait_ready()
    inc = incident(14)
    user = peer_user(BE, NL, f"{fed.prefix}.")
    host = vhost(fed, NL)
    # Warm the link, so the refusal comes from the channel of a live connection.
    warm, refused = await submit_load(fed, BE, [NL, LU], 1, inc)
    await wait_states(fed, BE, warm, NL, SETTLED, 30, "the warm-up delivered")
    await actl("clear_permissions", "-p", host, user)
    try:
        # RabbitMQ may keep serving a channel that already passed its checks: cut BE-NCCN's
        # connections to NL-NCC, as an operator revoking access would.
        closed = await asyncio.to_thread(close_connections_of, user, host)
        assert closed >= 1
        ids, refused2 = await submit_load(fed, BE, [NL, LU], 6, inc, first=2)
        refused.update(refused2)
        await asyncio.sleep(REFUSED_DELAY * 0.7)
        found = await states(fed, BE, ids)
        assert {found[(i, NL)] for i in ids} == {"queued"}
        attempts, errors = [], []
        for message_id in ids:
            _, view = await fed.api(BE, "GET", f"/v1/messages/{message_id}")
            nl = next(r for r in view["recipients"] if r["centre"] == NL)
            attempts.append(nl["attempts"])
            errors.append(nl["last_error"] or "")
        # The messages tried met the cut connection or the refusal; the refusal then
        # holds the whole peer, so the others were never tried (""): no lock-step retry.
        assert any(re.search("access .*refused", e) for e in errors), errors
        assert all(e == "" or re.search("access .*refused|closed|connection", e)
                   for e in errors), errors
        _, peers = await fed.api(BE, "GET", "/v1/peers")
        link = next(p for p in peers["peers"] if p["id"] == NL)
        assert not link["link_up"]
        assert re.search("refused", link["link_problem"]["detail"]), link
        # a handful of tries, never a tight loop
        assert max(attempts) <= 5, f"attempts {attempts} within {REFUSED_DELAY * 0.7}s"
        assert log_events(fed.nodes[BE].log, "publish_refused_permanently")
    finally:
        await actl("set_permissions", "-p", host, user, "^$", r"^crisisgw\.inbox$", "^$")
    counts = await tally(fed, 14, f"peer permission revoked ({max(attempts)} tries max)", BE,
                         warm + ids, [NL, LU], inc, refused=refused)
    record(counts)
    assert counts.delivered == 2 * (len(ids) + 1)


async def test_poison_message_is_dead_lettered_and_alerted(brokerfed: Federation) -> None:
    """Row 15: a message NL-NCC's handler can never store (a ledger trigger refuses it) is
    dead-lettered after the delivery limit, counted in crisisgw_dead_letters and logged
    as an error; the messages around it are delivered once."""
    fed = brokerfed
    await fed.wait_ready()
    inc, poison_inc = incident(15), f"POISON-{uuid.uuid4().hex[:6]}"
    ledger = fed.nodes[NL].settings.node.data_dir / "ledger.sqlite3"
    with closing(sqlite3.connect(ledger, timeout=10)) as db:
        db.execute(f"CREATE TRIGGER fault_poison BEFORE INSERT ON inbox WHEN NEW.incident = "
                   f"'{poison_inc}' BEGIN SELECT RAISE(ABORT, 'poison (fault test)'); END")
        db.commit()
    try:
        ids, refused = await submit_load(fed, BE, [NL], 5, inc)
        poison, _ = await submit_load(fed, BE, [NL], 1, poison_inc)
        poisoned_at = time.monotonic()
        more, refused2 = await submit_load(fed, BE, [NL], 5, inc, first=6)
        ids += more
        refused.update(refused2)

        async def alerted() -> bool:
            return await metric(fed, NL, "crisisgw_dead_letters") >= 1
        await wait_until(alerted, 40, "the dead letter to be counted")
        alert_after = time.monotonic() - poisoned_at
        assert log_events(fed.nodes[NL].log, "dead_letters_present")
        failures = log_events(fed.nodes[NL].log, "ingest_failed")
        assert len(failures) >= 2, "not retried before dead-lettering"

        async def in_dead_queue() -> bool:  # quorum queue counters lag by seconds
            return (await asyncio.to_thread(queue_counts, fed, NL))["crisisgw.dead"][0] == 1
        await wait_until(in_dead_queue, 30, "the poison message in crisisgw.dead")
    finally:
        with closing(sqlite3.connect(ledger, timeout=10)) as db:
            db.execute("DROP TRIGGER IF EXISTS fault_poison")
            db.commit()
    counts = await tally(fed, 15, f"poison message; dead-lettered, alert {alert_after:.1f}s",
                         BE, ids, [NL], inc, refused=refused)
    counts.accepted += len(poison)
    counts.rejected["dead-lettered+alerted"] += len(poison)
    record(counts)
    assert counts.delivered == len(ids)


async def test_stopped_consumer_bounds_prefetch_and_shows_backlog(
        brokerfed: Federation) -> None:
    """Row 27: NL-NCC frozen (SIGSTOP): its consumer is bounded by ``prefetch``, the
    backlog waits in the broker's queue, BE-NCCN shows it in /v1/peers and /metrics,
    and it drains once NL-NCC runs again."""
    fed = brokerfed
    await fed.wait_ready()
    inc = incident(27)
    proc = fed.nodes[NL].proc
    assert proc is not None
    n = 40
    before = (await peer_view(fed, BE, NL))["backlog"]  # e.g. row 15's dead-lettered message
    # The bound the broker applies: NL-NCC is handed at most ``prefetch`` unacknowledged
    # deliveries (its queue's own counters lag by seconds, so it is read from the consumer).
    consumers = await asyncio.to_thread(
        ctl, "list_consumers", "-p", vhost(fed, NL), "queue_name", "prefetch_count",
        "--no-table-headers")
    assert {tuple(line.split("\t")) for line in consumers.splitlines() if line} == \
        {(INBOX_QUEUE, str(PREFETCH))}
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        ids, refused = await submit_load(fed, BE, [NL], n, inc)
        await wait_states(fed, BE, ids, NL, frozenset({"sent"}), 30,
                          "the load confirmed into NL-NCC's queue")
        seen: list[tuple[int, int]] = []

        async def queued_at_broker() -> bool:  # quorum queue counters lag a few seconds
            seen.append((await asyncio.to_thread(queue_counts, fed, NL))[INBOX_QUEUE])
            return sum(seen[-1]) >= n - PREFETCH
        await wait_until(queued_at_broker, 30, "the backlog in NL-NCC's queue")
        ready, unacked = seen[-1]
        assert ready >= n - 2 * PREFETCH, seen
        assert (await peer_view(fed, BE, NL))["backlog"] == before + n

        async def backlog_metric() -> bool:  # the ledger gauges refresh every few seconds
            return await metric(fed, BE, "crisisgw_backlog", peer=NL) == before + n
        await wait_until(backlog_metric, 20, "the backlog in BE-NCCN's /metrics")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    await fed.wait_ready()
    counts = await tally(fed, 27, f"stopped consumer (prefetch {PREFETCH}, "
                         f"{ready + unacked} queued)", BE, ids, [NL], inc, refused=refused)
    record(counts)
    assert counts.delivered == n
    assert (await peer_view(fed, BE, NL))["backlog"] == before

