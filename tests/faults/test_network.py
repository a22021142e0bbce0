"""Network faults between a node and a peer's broker (FAULTS.md rows 3, 4, 6, 7).

BE-NCCN reaches NL-NCC's inbox through :class:`~tests.faults.proxy.ProxyThread` (its
``inbox_url`` for NL-NCC is rewritten to the proxy's port); everything else goes to
the broker directly, so LU-HCPN shows what an unaffected peer sees. Heartbeat, publish
timeout and retry clock are short (see ``OVERRIDES``).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config import update_config
from gateway.protocol.types import format_time
from tests.faults.load import SETTLED, sitrep, states, submit_load, tally
from tests.faults.proxy import Direction, ProxyThread
from tests.faults.report import record
from tests.integration.harness import LINK_PORT, Federation, wait_until

pytestmark = pytest.mark.broker

BE, NL, LU = "BE-NCCN", "NL-NCC", "LU-HCPN"
HEARTBEAT = 1
PUBLISH_TIMEOUT = 2.0
#: aiormq closes a connection after (heartbeat + 1) x 3 s without a frame from the broker.
HEARTBEAT_GRACE = (HEARTBEAT + 1) * 3
OVERRIDES: dict[str, Any] = {
    "broker": {"heartbeat": HEARTBEAT},
    "delivery": {"publish_timeout_seconds": PUBLISH_TIMEOUT, "retry_base_seconds": 0.2,
                 "retry_cap_seconds": 2.0, "refused_delay_seconds": 3.0},
    "commcheck": {"every_days": 3650.0},
    "directory": [],  # no directory broadcast at start: only the test load travels
}


def route_via_proxy(fed: Federation, centre: str, peer: str, port: int) -> None:
    """Point ``centre``'s link to ``peer``'s inbox at ``127.0.0.1:port`` (before start)."""
    def change(raw: dict[str, Any]) -> None:
        for entry in raw["peers"]:
            if entry["id"] == peer:
                entry["inbox_url"] = entry["inbox_url"].replace(f":{LINK_PORT}/", f":{port}/")
    fed.nodes[centre].settings = update_config(fed.nodes[centre].config, change)


@pytest.fixture(scope="module")
def netfed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, ProxyThread]]:
    """BE-NCCN, NL-NCC and LU-HCPN; BE-NCCN's link to NL-NCC runs through a proxy."""
    proxy = ProxyThread(LINK_PORT)
    fed = Federation.create(tmp_path_factory.mktemp("net"), overrides=OVERRIDES)
    try:
        route_via_proxy(fed, BE, NL, proxy.port)
        fed.start(BE, NL, LU)
        yield fed, proxy
    finally:
        fed.destroy()
        proxy.close()


# -- helpers shared with test_broker.py -------------------------------------------------

async def metric(fed: Federation, centre: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample of ``centre`` over the series matching ``labels``."""
    status, text = await fed.api(centre, "GET", "/metrics")
    assert status == 200
    total = 0.0
    for line in str(text).splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


async def peer_view(fed: Federation, centre: str, peer: str) -> dict[str, Any]:
    """``centre``'s /v1/peers entry for ``peer``."""
    status, body = await fed.api(centre, "GET", "/v1/peers")
    assert status == 200, body
    entry: dict[str, Any] = next(p for p in body["peers"] if p["id"] == peer)
    return entry


def log_events(log: Path, event: str, **fields: Any) -> list[dict[str, Any]]:
    """The JSON log lines of one event whose fields match."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("event") == event and \
                all(item.get(k) == v for k, v in fields.items()):
            found.append(item)
    return found


def duplicates_taken(log: Path, ids: list[str]) -> int:
    """How often the receiver logged one of ``ids`` as a duplicate (and deduplicated it)."""
    wanted = set(ids)
    return sum(1 for e in log_events(log, "message_ingested", outcome="duplicate")
               if e.get("message_id") in wanted)


async def wait_states(fed: Federation, sender: str, ids: list[str], peer: str,
                      wanted: frozenset[str], timeout: float, what: str) -> None:
    """Wait until every (id, peer) pair at ``sender`` is in one of ``wanted``."""
    async def done() -> bool:
        found = await states(fed, sender, ids)
        return all(found.get((i, peer)) in wanted for i in ids)
    await wait_until(done, timeout, what)


def incident(row: int) -> str:
    """A fresh incident id for one test."""
    return f"NET-{row}-{uuid.uuid4().hex[:6]}"


# -- the tests --------------------------------------------------------------------------

async def test_blackhole_is_noticed_by_heartbeat_and_nothing_hangs(
        netfed: tuple[Federation, ProxyThread]) -> None:
    """Row 3: a silent blackhole (no FIN, no RST) on the link to NL-NCC is noticed by the
    heartbeat within its grace, the API and LU-HCPN's deliveries carry on, the node
    stops promptly even with a stuck link, and all is delivered once it is back."""
    fed, proxy = netfed
    await fed.wait_ready()
    inc = incident(3)
    ids, refused = await submit_load(fed, BE, [NL, LU], 1, inc)
    await wait_states(fed, BE, ids, NL, SETTLED, 30, "the warm-up delivered")
    assert (await peer_view(fed, BE, NL))["link_up"]
    proxy.pause()
    paused_at = time.monotonic()
    try:
        async def link_down() -> bool:
            return not (await peer_view(fed, BE, NL))["link_up"]
        # Idle link: only the heartbeat can notice.
        await wait_until(link_down, HEARTBEAT_GRACE + 8, "the blackhole noticed")
        noticed = time.monotonic() - paused_at
        started = time.monotonic()
        more, refused2 = await submit_load(fed, BE, [NL, LU], 20, inc, first=2)
        assert time.monotonic() - started < 10, "the API slowed down with a blackholed peer"
        ids += more
        refused.update(refused2)
        await wait_states(fed, BE, more, LU, SETTLED, 30, "LU-HCPN delivered meanwhile")
        found = await states(fed, BE, more)
        assert all(found[(i, NL)] == "queued" for i in more), "counted sent through a blackhole"
        stop_started = time.monotonic()
        fed.stop(BE)
        stopped_in = time.monotonic() - stop_started
        assert stopped_in < 15, f"stopping BE-NCCN took {stopped_in:.1f}s with a stuck link"
        fed.start(BE)
        await fed.wait_ready()
    finally:
        proxy.reset()
        proxy.resume()
    counts = await tally(fed, 3, f"blackhole; noticed {noticed:.1f}s, stop {stopped_in:.1f}s",
                         BE, ids, [NL, LU], inc, refused=refused)
    record(counts)
    assert counts.delivered == 2 * len(ids)
    assert noticed <= HEARTBEAT_GRACE + 8


def big_sitrep(inc: str, number: int, to: list[str]) -> dict[str, Any]:
    """A sitrep of about 57 kB (three 19,000-character summaries)."""
    body = sitrep(inc, number, to)
    body["sitrep"]["summary"] = {lang: f"{lang} {number} " + "x" * 19_000
                                 for lang in ("en", "fr", "de")}
    return body


async def test_tcp_reset_mid_frame_reconnects_without_partial_messages(
        netfed: tuple[Federation, ProxyThread]) -> None:
    """Row 4: RSTs in the middle of 57 kB publishes: BE-NCCN reconnects and resends, NL-NCC
    stores every message once and never sees a truncated one."""
    fed, proxy = netfed
    await fed.wait_ready()
    inc = incident(4)
    events_before = len((await fed.api(NL, "GET", "/v1/security-events"))[1]["items"])
    resets_before = proxy.stats.resets
    ids: list[str] = []
    for round_ in range(3):
        proxy.arm_reset(25_000 + 9_000 * round_)
        for i in range(5):
            status, answer = await fed.api(BE, "POST", "/v1/sitreps",
                                           big_sitrep(inc, 10 * round_ + i + 1, [NL, LU]))
            assert status == 202, answer
            ids.append(answer["id"])

        async def fired(target: int = resets_before + round_ + 1) -> bool:
            return proxy.stats.resets >= target
        await wait_until(fired, 30, f"reset {round_ + 1} to fire")
    counts = await tally(fed, 4, f"TCP RST mid-frame ({proxy.stats.resets - resets_before} resets)",
                         BE, ids, [NL, LU], inc)
    record(counts)
    assert counts.delivered == 2 * len(ids)
    events_after = len((await fed.api(NL, "GET", "/v1/security-events"))[1]["items"])
    assert events_after == events_before, "a truncated message reached NL-NCC's handler"


async def test_long_outage_backs_off_delivers_later_and_reports_expiry(
        netfed: tuple[Federation, ProxyThread]) -> None:
    """Row 6: NL-NCC's broker unreachable for 14 s: retries back off (bounded attempts),
    everything is delivered once it is back, and messages whose expiry passed during
    the outage end ``expired`` and are reported."""
    fed, proxy = netfed
    await fed.wait_ready()
    inc = incident(6)
    proxy.pause()
    outage = 14.0
    try:
        ids, refused = await submit_load(fed, BE, [NL], 8, inc)
        short: list[str] = []
        expires = format_time(datetime.now(UTC) + timedelta(seconds=5))
        for n in range(100, 104):
            status, answer = await fed.api(BE, "POST", "/v1/sitreps",
                                           sitrep(inc, n, [NL], expires=expires))
            assert status == 202, answer
            short.append(answer["id"])
        await asyncio.sleep(outage)
        status, view = await fed.api(BE, "GET", f"/v1/messages/{ids[0]}")
        attempts = view["recipients"][0]["attempts"]
        assert view["recipients"][0]["state"] == "queued"
        assert view["recipients"][0]["last_error"]
        # base 0.2 s doubling to the 2 s cap, jitter x[0.5, 1): never more than ~14 in 14 s
        assert 1 <= attempts <= 14, f"{attempts} attempts in {outage}s: no backoff"
        found = await states(fed, BE, short)
        assert set(found.values()) == {"expired"}, found
        expired_metric = await metric(fed, BE, "crisisgw_publish_total", peer=NL,
                                      outcome="expired")
        assert expired_metric >= len(short)
    finally:
        proxy.reset()  # the stalled connections did not survive the outage
        proxy.resume()
    counts = await tally(fed, 6, f"peer unreachable {outage:.0f}s ({attempts} tries/msg)",
                         BE, ids + short, [NL], inc, refused=refused)
    record(counts)
    assert counts.delivered == len(ids)
    assert counts.rejected == Counter({"expired": len(short)})
    held: Counter[str] = Counter()
    status, page = await fed.api(NL, "GET", f"/v1/inbox?incident={inc}&limit=1000")
    held.update(item["id"] for item in page["items"])
    assert not set(short) & set(held), "an expired message was stored at NL-NCC"


async def test_withheld_confirms_lead_to_identical_republish_and_dedup(
        netfed: tuple[Federation, ProxyThread]) -> None:
    """Row 7: the broker takes the messages but its confirms never come back (dropped by
    the proxy): the outcome is unknown, BE-NCCN republishes the identical bytes, and
    NL-NCC stores each message once, dropping the second copies as duplicates."""
    fed, proxy = netfed
    await fed.wait_ready()
    inc = incident(7)
    ids, refused = await submit_load(fed, BE, [NL], 1, inc)
    await wait_states(fed, BE, ids, NL, SETTLED, 30, "the warm-up delivered")
    unknown_before = await metric(fed, BE, "crisisgw_publish_total", peer=NL, outcome="unknown")
    fed.stop(NL)  # no receipts: the outcome can only come from the confirm
    try:
        proxy.drop(Direction.DOWN)
        more, refused2 = await submit_load(fed, BE, [NL], 10, inc, first=2)
        ids += more
        refused.update(refused2)

        async def timed_out() -> bool:
            unknown = await metric(fed, BE, "crisisgw_publish_total", peer=NL,
                                   outcome="unknown")
            return unknown - unknown_before >= len(more)
        await wait_until(timed_out, 30, "the confirms to time out")
        no_confirm = [e for e in log_events(fed.nodes[BE].log, "publish_unknown")
                      if "no confirm" in str(e.get("error")) and e.get("message_id") in more]
        assert no_confirm, "no publish ended in a confirm timeout"
        proxy.forward()
        proxy.reset()
        await wait_states(fed, BE, more, NL, frozenset({"sent"}), 60,
                          "the republished copies confirmed")
    finally:
        proxy.forward()
        fed.start(NL)
    await fed.wait_ready()
    counts = await tally(fed, 7, "publish confirms withheld; republished", BE, ids, [NL], inc,
                         refused=refused)
    record(counts)
    assert counts.delivered == len(ids)
    assert duplicates_taken(fed.nodes[NL].log, more) >= len(more), \
        "NL-NCC did not receive (and drop) the second copies"


async def _delivered_count(fed: Federation, sender: str, inc: str, peer: str) -> int:
    """How many of ``sender``'s messages on ``inc`` ``peer`` has receipted (paged)."""
    count, after = 0, None
    while True:
        path = f"/v1/messages?incident={inc}&peer={peer}&state=delivered&limit=1000"
        status, page = await fed.api(sender, "GET", path + (f"&after={after}" if after else ""))
        assert status == 200, page
        count += len(page["items"])
        after = page["next"]
        if after is None:
            return count


async def _views(fed: Federation, sender: str, inc: str) -> list[dict[str, Any]]:
    views, after = [], None
    while True:
        path = f"/v1/messages?incident={inc}&limit=1000"
        status, page = await fed.api(sender, "GET", path + (f"&after={after}" if after else ""))
        assert status == 200, page
        views += page["items"]
        after = page["next"]
        if after is None:
            return views


async def _submit_many(fed: Federation, inc: str, priorities: list[str], first: int = 1
                       ) -> list[str]:
    """Submit one sitrep per priority, 32 requests in flight; the ids, in order."""
    gate = asyncio.Semaphore(32)

    async def one(n: int, priority: str) -> str:
        async with gate:
            status, answer = await fed.api(BE, "POST", "/v1/sitreps",
                                           sitrep(inc, n, [NL], priority=priority))
            assert status == 202, answer
            return str(answer["id"])

    return list(await asyncio.gather(*(one(first + n, p) for n, p in enumerate(priorities))))


async def _until_delivered(fed: Federation, inc: str, n: int, timeout: float) -> float:
    """Seconds until ``n`` messages on ``inc`` are delivered at NL-NCC."""
    started = time.monotonic()

    async def done() -> bool:
        return await _delivered_count(fed, BE, inc, NL) >= n
    await wait_until(done, timeout, f"{n} messages delivered")
    return time.monotonic() - started


async def test_a_partition_backs_off_the_peer_and_drains_its_backlog_at_full_speed(
        netfed: tuple[Federation, ProxyThread]) -> None:
    """Issue 13, item 4: NL-NCC unreachable (blackholed by the proxy) while BE-NCCN
    accepts 2,000 sitreps. While it is away BE-NCCN only probes (one publish at a time,
    one log line); once the link is back the first message goes out within 2 s, and the
    backlog drains within 2 s plus what steady throughput needs for it (at 0.8 of it),
    flash before urgent before routine."""
    fed, proxy = netfed
    await fed.wait_ready()
    inc = incident(33)
    steady_n = 400
    t = await _submit_and_time(fed, inc, steady_n)
    steady = steady_n / t
    backlog = ["flash"] * 200 + ["urgent"] * 200 + ["routine"] * 1600
    random.Random(33).shuffle(backlog)
    part = incident(34)
    proxy.pause()
    try:
        ids = await _submit_many(fed, part, backlog)
        await asyncio.sleep(PUBLISH_TIMEOUT + 2)  # the batch in flight has timed out
        before = await metric(fed, BE, "crisisgw_publish_total", peer=NL, outcome="unknown")
        await asyncio.sleep(5)
        probes = await metric(fed, BE, "crisisgw_publish_total", peer=NL,
                              outcome="unknown") - before
        # one probe at a time, each at most a second apart or a connect timeout long
        assert probes <= 12, f"{probes} publishes to an unreachable peer in 5 s"
        assert len(log_events(fed.nodes[BE].log, "peer_unreachable", peer=NL)) >= 1
    finally:
        restored = datetime.now(UTC)
        proxy.reset()
        proxy.resume()
    drain = await _until_delivered(fed, part, len(ids), 120)
    views = await _views(fed, BE, part)
    sent = {v["id"]: v["recipients"][0]["sent_at"] for v in views}
    first = min(datetime.fromisoformat(s.replace("Z", "+00:00")) for s in sent.values())
    first_s = (first - restored).total_seconds()
    bound = 2.0 + len(ids) / (0.8 * steady)
    print(f"steady {steady:.0f}/s; partition drain {len(ids)} in {drain:.1f} s "
          f"({len(ids) / drain:.0f}/s), first after {first_s:.2f} s; bound {bound:.1f} s")
    assert first_s <= 2.0, f"first message {first_s:.2f} s after the link came back"
    assert drain <= bound, f"drained in {drain:.1f} s; steady needs {len(ids) / steady:.1f}"
    by_priority: dict[str, list[str]] = {"flash": [], "urgent": [], "routine": []}
    for message_id, priority in zip(ids, backlog, strict=True):
        by_priority[priority].append(sent[message_id])
    routine = sorted(by_priority["routine"])
    assert max(by_priority["flash"]) <= routine[len(routine) // 2], "flash not sent first"
    mean = {p: sum(sorted(sent.values()).index(s) for s in v) / len(v)
            for p, v in by_priority.items()}
    assert mean["flash"] < mean["urgent"] < mean["routine"], mean
    counts = await tally(fed, 33, f"partition, 2,000 queued: drained in {drain:.1f} s",
                         BE, ids, [NL], part)
    record(counts)
    assert counts.delivered == len(ids)


async def _submit_and_time(fed: Federation, inc: str, n: int) -> float:
    """Steady throughput: ``n`` sitreps submitted 32 at a time until all delivered."""
    started = time.monotonic()
    await _submit_many(fed, inc, ["routine"] * n)
    await _until_delivered(fed, inc, n, 120)
    return time.monotonic() - started
