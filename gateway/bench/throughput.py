"""Two real nodes in one process: sitreps submitted through A's HTTP API to B.

A sitrep counts as done when B's signed ``delivered`` receipt has been applied at A
(the sender's ledger records the delivery as delivered). Throughput is sitreps per
second from the first submission to the last receipt, with a bounded number of HTTP
requests in flight; latency is submit-to-``delivered`` at a fixed, moderate rate.
CPU seconds and peak RSS are the whole process's: both nodes and the HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from gateway.adapters.provision import delete_many
from gateway.bench.federation import centres
from gateway.bench.proxy import Relay
from gateway.config import load_settings, update_config
from gateway.demo import peer_user, prepare

if TYPE_CHECKING:
    from gateway.app import Node
    from gateway.service.ports import IncomingReceipt, ReceiptOutcome

SITREP = {"incident": {"id": "EU-BENCH-2", "title": "Gateway throughput"},
          "report_number": 1, "severity": "moderate",
          "summary": {"en": "Benchmark sitrep from node A to node B through the API."}}


@dataclass
class Tracker:
    """Times at which ``delivered`` receipts were applied at the sender, by message id."""

    delivered: dict[str, float] = field(default_factory=dict)
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def watch(self, node: Node) -> None:
        """Hook the sender's ledger: every applied ``delivered`` receipt is timed."""
        apply: Callable[[IncomingReceipt, datetime], Awaitable[ReceiptOutcome]] = \
            node.ledger.receipts.apply

        async def timed(receipt: IncomingReceipt, now: datetime) -> ReceiptOutcome:
            outcome = await apply(receipt, now)
            if outcome.value == "applied" and receipt.state == "delivered":
                self.delivered.setdefault(receipt.message_id, time.perf_counter())
                for want, fut in self.waiters:
                    if len(self.delivered) >= want and not fut.done():
                        fut.set_result(None)
            return outcome

        node.ledger.receipts.apply = timed  # type: ignore[method-assign]

    async def wait_for(self, count: int, within: float) -> None:
        """Until ``count`` messages in all have been delivered."""
        if len(self.delivered) >= count:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((count, fut))
        await asyncio.wait_for(fut, within)


@dataclass
class Pair:
    """Nodes A and B, A's API address and token, and B's own broker URL."""

    a: Node
    b: Node
    api: str
    token: str
    b_broker_url: str
    tracker: Tracker
    #: A's link to B's broker runs through it (to cut it).
    relay: Relay


@contextlib.asynccontextmanager
async def pair(amqp: str, base_port: int) -> AsyncIterator[Pair]:
    """Provision two centres in their own vhosts, start them, tear everything down."""
    from gateway.app import Node  # noqa: PLC0415 - keeps the CLI start fast

    prefix = f"bench{secrets.token_hex(2)}"
    group = centres(2)
    with tempfile.TemporaryDirectory(prefix="crisisgw-bench-") as tmp:
        paths = await asyncio.to_thread(
            prepare, Path(tmp), base_port, amqp, centres=group, prefix=prefix,
            user_prefix=f"{prefix}.",
            overrides={"delivery": {"retry_cap_seconds": 5.0},
                       "commcheck": {"every_days": 3650.0}, "directory": []})
        relay = Relay(urlsplit(amqp).port or 5672)
        await relay.start()

        def via_relay(raw: dict[str, Any]) -> None:
            for peer in raw["peers"]:
                if peer["id"] == group[1].id:
                    parts = urlsplit(peer["inbox_url"])
                    peer["inbox_url"] = parts._replace(
                        netloc=parts.netloc.rsplit(":", 1)[0] + f":{relay.port}").geturl()

        update_config(paths[group[0].id], via_relay)
        a_settings, b_settings = (load_settings(paths[c.id]) for c in group)
        nodes = [Node(a_settings), Node(b_settings)]
        try:
            for node in nodes:
                await node.start()
            deadline = time.monotonic() + 60
            while not all(node.consumer.connected for node in nodes):
                if time.monotonic() > deadline:
                    raise TimeoutError("nodes did not connect")
                await asyncio.sleep(0.1)
            tracker = Tracker()
            tracker.watch(nodes[0])
            token = (paths[group[0].id].parent / "api-token").read_text().strip()
            yield Pair(a=nodes[0], b=nodes[1], api=f"http://127.0.0.1:{base_port}",
                       token=token, b_broker_url=b_settings.broker.url.get_secret_value(),
                       tracker=tracker, relay=relay)
        finally:
            for node in nodes:
                await node.stop()
            await relay.close()
            users = [f"{prefix}.{c.id}" for c in group]
            users += [peer_user(x.id, y.id, f"{prefix}.") for x in group for y in group
                      if x.id != y.id]
            await asyncio.to_thread(delete_many, [c.vhost(prefix) for c in group], users)


class Client:
    """Submits sitreps to A's API."""

    def __init__(self, p: Pair, session: aiohttp.ClientSession) -> None:
        self._url = f"{p.api}/v1/sitreps"
        self._headers = {"Authorization": f"Bearer {p.token}"}
        self._session = session
        self._body = {"to": [p.b.me], "tlp": "GREEN", "releasable": ["eu"], "sitrep": SITREP}

    async def submit(self, priority: str = "routine") -> str:
        """POST one sitrep; its message id once A has made it durable (202)."""
        body = {**self._body, "priority": priority}
        async with self._session.post(self._url, json=body,
                                      headers=self._headers) as resp:
            data = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"submission refused: {resp.status} {data}")
            return str(data["id"])


def _session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit),
                                 timeout=aiohttp.ClientTimeout(total=60))


async def sitrep_size(p: Pair) -> int:
    """Submit one sitrep, wait for it, and return the size of its signed wire bytes."""
    async with _session(1) as session:
        message_id = await Client(p, session).submit()
    await p.tracker.wait_for(len(p.tracker.delivered) + 1, 30)
    entry = await p.b.ledger.inbox.get(p.a.me, message_id)
    assert entry is not None
    return len(entry.wire)


async def throughput(p: Pair, messages: int, concurrency: int) -> dict[str, Any]:
    """``messages`` sitreps, ``concurrency`` requests in flight; until all delivered."""
    before = len(p.tracker.delivered)
    cpu0, rusage0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    async with _session(concurrency) as session:
        client = Client(p, session)
        remaining = messages

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await client.submit()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    accepted = time.perf_counter() - started
    await p.tracker.wait_for(before + messages, 120 + messages / 10)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    return {"messages": messages, "concurrency": concurrency,
            "accepted_per_s": round(messages / accepted, 1),
            "elapsed_s": round(elapsed, 3), "msg_per_s": round(messages / elapsed, 1),
            "cpu_s": round(cpu, 2), "cpu_s_per_1000": round(1000 * cpu / messages, 2),
            "ledger_batches_a": p.a.ledger.db.batches, "ledger_writes_a": p.a.ledger.db.writes,
            "voluntary_switches": rusage.ru_nvcsw - rusage0.ru_nvcsw,
            "peak_rss_mb": round(rusage.ru_maxrss / 1024, 1)}


async def latency(p: Pair, messages: int, rate: float) -> dict[str, Any]:
    """Submit at ``rate`` per second; percentiles of submit-to-``delivered``."""
    starts: dict[str, float] = {}
    begin = time.perf_counter()

    async def one(client: Client, at: float) -> None:
        await asyncio.sleep(max(0.0, at - (time.perf_counter() - begin)))
        t0 = time.perf_counter()
        starts[await client.submit()] = t0

    async with _session(64) as session:
        client = Client(p, session)
        await asyncio.gather(*(one(client, i / rate) for i in range(messages)))
    await p.tracker.wait_for(len(p.tracker.delivered) + sum(
        1 for m in starts if m not in p.tracker.delivered), 60)
    ms = sorted(1000 * (p.tracker.delivered[m] - t0) for m, t0 in starts.items())
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"messages": messages, "rate_per_s": rate, "p50_ms": round(cuts[49], 1),
            "p99_ms": round(cuts[98], 1), "max_ms": round(ms[-1], 1)}


async def drain(p: Pair, messages: int, concurrency: int) -> dict[str, Any]:
    """A cut off from B's broker while ``messages`` sitreps (one in ten flash, one in ten
    urgent) are accepted; then the link is restored. Until every one is delivered:
    how long after the restore the first went out, and the drain rate."""
    before = len(p.tracker.delivered)
    p.relay.cut()
    priorities = ["flash" if n % 10 == 0 else "urgent" if n % 10 == 5 else "routine"
                  for n in range(messages)]
    async with _session(concurrency) as session:
        client = Client(p, session)
        ids = list(await asyncio.gather(*(client.submit(pr) for pr in priorities)))
    deadline = time.monotonic() + 60
    while p.a.dispatcher.health.get(p.b.me) is None or p.a.dispatcher.inflight(p.b.me):
        if time.monotonic() > deadline:
            raise TimeoutError("A did not notice that B was cut off")
        await asyncio.sleep(0.05)
    restored = time.perf_counter()
    p.relay.restore()
    await p.tracker.wait_for(before + messages, 120 + messages / 10)
    done = [p.tracker.delivered[i] for i in ids]
    flash = sorted(p.tracker.delivered[i] for i, pr in zip(ids, priorities, strict=True)
                   if pr == "flash")
    routine = sorted(p.tracker.delivered[i] for i, pr in zip(ids, priorities, strict=True)
                     if pr == "routine")
    return {"messages": messages, "first_delivered_s": round(min(done) - restored, 3),
            "drain_s": round(max(done) - restored, 3),
            "msg_per_s": round(messages / (max(done) - restored), 1),
            "flash_done_by_s": round(flash[-1] - restored, 3),
            "routine_median_s": round(routine[len(routine) // 2] - restored, 3)}
