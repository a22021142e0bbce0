"""``crisisgw bench scale``: does a node cost the same after years of service?

One node's ledger is grown with real signed traffic (:mod:`.scale_fill`) to each size in
turn, both directions. At each size the periodic jobs are timed on the ledger, then the
node is started as its own process, on the real broker, and every API and console
endpoint is timed over HTTP, with the node's start-up time, peak RSS and idle CPU. The
growth factor of each figure, from the smallest size to the largest, is what the
benchmark is for: flat is 1.0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

from gateway.adapters.amqp import declare_topology
from gateway.adapters.provision import delete_many
from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.adapters.stores.offline import ledger_path
from gateway.bench.federation import centres
from gateway.bench.scale_client import REQUESTS, WARM_UP, summary
from gateway.bench.scale_fill import Pair, Side, grow, origin
from gateway.bench.suite import machine
from gateway.config import Settings, load_settings
from gateway.demo import peer_user, prepare
from gateway.keyfiles import load_signing_key
from gateway.protocol.types import format_time
from gateway.service.paging import encode_cursor

#: The fill's writer page cache (KiB): it only speeds the fill (the rows are the same);
#: the node measured afterwards runs with its own settings.
FILL_CACHE_KIB = 256 * 1024


def _api(peer: str) -> list[tuple[str, str]]:
    return [
        ("GET /v1/incidents", "/v1/incidents"),
        ("GET /v1/incidents?after= (deep page)", "/v1/incidents?after={incident_cursor}"),
        ("GET /v1/incidents/{id}", "/v1/incidents/{incident}"),
        ("GET /v1/incidents/{id}/timeline.csv", "/v1/incidents/{incident}/timeline.csv"),
        ("GET /v1/messages", "/v1/messages"),
        ("GET /v1/messages?after= (deep page)", "/v1/messages?after={message_cursor}"),
        ("GET /v1/messages?state=queued", "/v1/messages?state=queued"),
        ("GET /v1/messages?peer=&state=delivered", f"/v1/messages?peer={peer}&state=delivered"),
        ("GET /v1/messages?type=alert", "/v1/messages?type=alert"),
        ("GET /v1/messages/{id}", "/v1/messages/{message}"),
        ("GET /v1/inbox", "/v1/inbox"),
        ("GET /v1/inbox?state=delivered", "/v1/inbox?state=delivered"),
        ("GET /v1/inbox?from=&incident=", f"/v1/inbox?from={peer}&incident={{incident}}"),
        ("GET /v1/peers", "/v1/peers"),
        ("GET /v1/audit", "/v1/audit"),
        ("GET /v1/audit?subject=", "/v1/audit?subject={message}"),
        ("GET /v1/security-events", "/v1/security-events"),
        ("GET /v1/commchecks", "/v1/commchecks"),
        ("GET /metrics", "/metrics"),
        ("GET /readyz", "/readyz"),
        ("GET /healthz", "/healthz"),
    ]


CONSOLE = [
    ("/console (overview)", "/console"),
    ("/console/outbox", "/console/outbox"),
    ("/console/inbox", "/console/inbox"),
    ("/console/incidents", "/console/incidents"),
    ("/console/incidents/{id}", "/console/incidents/{incident}"),
    ("/console/messages/{id}", "/console/messages/{message}"),
    ("/console/directory", "/console/directory"),
]


async def _median_ms(call: Callable[[], Awaitable[Any]], n: int = REQUESTS
                     ) -> dict[str, float]:
    for _ in range(WARM_UP):
        await call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        times.append(1000 * (time.perf_counter() - t0))
    return summary(times)


async def _samples(ledger: SqliteLedger, me: str) -> dict[str, str]:
    """Ids to request: the latest message and incident, and cursors half-way down."""

    def run(conn: Any) -> dict[str, str]:
        latest = conn.execute("SELECT id FROM outbox WHERE type != 'receipt' ORDER BY"
                              " submitted_at DESC LIMIT 1").fetchone()
        count = conn.execute("SELECT COUNT(*) FROM outbox WHERE type != 'receipt'"
                             ).fetchone()[0]
        middle = conn.execute("SELECT submitted_at, id FROM outbox WHERE type != 'receipt'"
                              " ORDER BY submitted_at DESC, id DESC LIMIT 1 OFFSET ?",
                              (count // 2,)).fetchone()
        incidents = conn.execute("SELECT COUNT(*) FROM incident_index").fetchone()[0]
        inc = conn.execute("SELECT last_activity, incident FROM incident_index ORDER BY"
                           " last_activity DESC, incident LIMIT 1 OFFSET ?",
                           (incidents // 2,)).fetchone()
        recent = conn.execute("SELECT incident FROM incident_index ORDER BY last_activity"
                              " DESC LIMIT 1 OFFSET 1").fetchone()
        return {"message": latest[0], "message_cursor": encode_cursor([middle[0], middle[1]]),
                "incident": recent[0], "incident_cursor": encode_cursor([inc[0], inc[1]])}

    found: dict[str, str] = await ledger.db.read(run)
    assert me
    return found


async def _jobs(ledger: SqliteLedger, peer: str) -> dict[str, dict[str, float]]:
    """The periodic and per-wake ledger work, timed on the ledger itself."""
    now = datetime.now(UTC)
    cutoffs = {p: format_time(now - timedelta(hours=4)) for p in ("flash", "urgent", "routine")}
    dead = frozenset({peer})
    return {
        "job: stats() (readiness, metrics, peers)": await _median_ms(ledger.stats),
        "job: expire() (every second)": await _median_ms(lambda: ledger.outbox.expire(now)),
        "job: due() (dispatcher wake)": await _median_ms(
            lambda: ledger.outbox.due(now, 64, set())),
        "job: claim() with the peer down": await _median_ms(
            lambda: ledger.outbox.claim(now, 64, now, skip_peers=dead)),
        "job: overdue counts (metrics)": await _median_ms(
            lambda: asyncio.gather(ledger.outbox.overdue(cutoffs),
                                   ledger.inbox.overdue(cutoffs))),
        "job: incident index page": await _median_ms(
            lambda: ledger.incidents.index(None, 100)),
    }


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _peak_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return round(int(found.group(1)) / 1024, 1) if found else 0.0


@contextlib.asynccontextmanager
async def _node(config: Path, port: int, log: Path) -> AsyncIterator[tuple[int, float]]:
    """The node as its own process: (pid, seconds until /readyz answered 200)."""
    started = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603, ASYNC220 - our own interpreter and CLI; returns at once
            [sys.executable, "-m", "gateway", "run", "-c", str(config)],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the node exited ({proc.returncode}); see {log}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                if time.perf_counter() - started > 300:
                    raise TimeoutError("the node did not become ready in 300 s")
                await asyncio.sleep(0.05)
        yield proc.pid, time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 60)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _endpoints(base: str, token: str, password: str, peer: str,
                     ids: dict[str, str]) -> dict[str, dict[str, float]]:
    """Every endpoint timed by a fresh client process (:mod:`.scale_client`)."""
    paths = [(name, path.format(**ids)) for name, path in [*_api(peer), *CONSOLE]]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.bench.scale_client", stdin=subprocess.PIPE,
        stdout=subprocess.PIPE)
    out, _ = await proc.communicate(json.dumps(
        {"base": base, "token": token, "password": password, "paths": paths}).encode())
    if proc.returncode != 0:
        raise RuntimeError(f"the benchmark's HTTP client failed ({proc.returncode})")
    found: dict[str, dict[str, float]] = json.loads(out)
    return found


async def _peer_inbox(peer: Settings) -> None:
    """The peer's inbox on its broker, as its node declares it when it first starts: the
    node's backlog to the peer (whose node stays down) is then published once and waits
    there, instead of being refused and retried, link dropped and re-opened, all through
    the measurement."""
    conn = await aio_pika.connect(peer.broker.url.get_secret_value())
    async with conn:
        await declare_topology(await conn.channel(),
                               delivery_limit=peer.broker.delivery_limit)


async def _idle_cpu(pid: int, seconds: float) -> float:
    """Percent of one core the node uses while nothing happens."""
    hz = os.sysconf("SC_CLK_TCK")
    before, t0 = _cpu_ticks(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    used = (_cpu_ticks(pid) - before) / hz
    return round(100 * used / (time.perf_counter() - t0), 2)


def _side(settings: Settings) -> Side:
    key = load_signing_key(settings.node.signing_key_file, settings.node.signing_key_id)
    return Side(id=settings.node.centre, key=key)


async def _measure_size(a: Settings, b: Settings, config: Path, pairs: range, first: datetime,
                        *, idle_seconds: float) -> dict[str, Any]:
    """Grow the ledger by ``pairs`` (up to ``pairs.stop`` in each direction), measure."""
    size, filled = pairs.stop, pairs.start
    ledger = SqliteLedger(ledger_path(a), writer_cache_kib=FILL_CACHE_KIB)
    await ledger.open()
    try:
        t0 = time.perf_counter()
        await grow(ledger, Pair(_side(a), _side(b)), pairs, first, now=datetime.now(UTC))
        fill_s = time.perf_counter() - t0
        jobs = await _jobs(ledger, b.node.centre)
        ids = await _samples(ledger, a.node.centre)
    finally:
        await ledger.close()
    size_bytes = sum(p.stat().st_size for p in ledger_path(a).parent.glob("ledger.sqlite3*"))
    token = (config.parent / "api-token").read_text(encoding="utf-8").strip()
    password = (config.parent / "operator-password").read_text(encoding="utf-8").strip()
    async with _node(config, a.api.port, config.parent / "node.log") as (pid, startup):
        base = f"http://127.0.0.1:{a.api.port}"
        endpoints = await _endpoints(base, token, password, b.node.centre, ids)
        rss = _peak_rss_mb(pid)
        await asyncio.sleep(5)  # the requests' sessions and any resends settle
        idle = await _idle_cpu(pid, idle_seconds)
    return {"messages_each_direction": size, "fill_s": round(fill_s, 1),
            "fill_pairs_per_s": round((size - filled) / fill_s, 1) if fill_s else None,
            "ledger_bytes": size_bytes,
            "ledger_bytes_per_message": round(size_bytes / (2 * size)),
            "startup_s": round(startup, 2), "idle_cpu_percent": idle, "peak_rss_mb": rss,
            "endpoints": endpoints, "jobs": jobs}


async def run(sizes: list[int], *, amqp: str = "amqp://127.0.0.1:5672/",
              base_port: int = 18600, idle_seconds: float = 20.0,
              keep: Path | None = None) -> dict[str, Any]:
    """Grow one node's ledger through ``sizes`` (messages in each direction) and measure
    at each; ``keep`` keeps the node's files there instead of a temporary folder."""
    sizes = sorted(set(sizes))
    prefix = f"scale{secrets.token_hex(2)}"
    group = centres(2)
    result: dict[str, Any] = {"machine": machine(), "sizes": sizes, "rows_written": (
        "every row through the node's own store calls (outbox.submit, receipts.apply, "
        "inbox.ingest, inbox.acknowledge, outbox.transition) with real signed envelopes "
        "and receipts; no row through AMQP or HTTP (the transport is not what grows)"),
        "results": []}
    with tempfile.TemporaryDirectory(prefix="crisisgw-scale-") as tmp:
        root = keep or Path(tmp)
        paths = await asyncio.to_thread(
            prepare, root, base_port, amqp, centres=group, prefix=prefix,
            user_prefix=f"{prefix}.",
            overrides={"commcheck": {"every_days": 3650.0}, "directory": []})
        a, b = (load_settings(paths[c.id]) for c in group)
        await _peer_inbox(b)
        first = origin(sizes[-1], datetime.now(UTC))
        try:
            filled = 0
            for size in sizes:
                result["results"].append(await _measure_size(
                    a, b, paths[a.node.centre], range(filled, size), first,
                    idle_seconds=idle_seconds))
                filled = size
        finally:
            users = [f"{prefix}.{c.id}" for c in group]
            users += [peer_user(x.id, y.id, f"{prefix}.") for x in group for y in group
                      if x.id != y.id]
            await asyncio.to_thread(delete_many, [c.vhost(prefix) for c in group], users)
    result["growth"] = growth(result["results"])
    return result


def _figures(r: dict[str, Any]) -> dict[str, float]:
    figures = {name: v["median_ms"] for name, v in {**r["endpoints"], **r["jobs"]}.items()}
    figures["start-up (s)"] = r["startup_s"]
    figures["peak RSS (MB)"] = r["peak_rss_mb"]
    figures["idle CPU (%)"] = r["idle_cpu_percent"]
    return figures


def growth(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per figure: its value at the largest size over its value at the smallest."""
    if len(results) < 2:
        return {}
    low, high = _figures(results[0]), _figures(results[-1])
    # Idle CPU near zero makes a ratio meaningless: compare with a floor of 0.5 %.
    return {k: round(max(high[k], 0.5 if k == "idle CPU (%)" else 0.0)
                     / max(low[k], 0.5 if k == "idle CPU (%)" else 1e-9), 2)
            for k in low}


def table(r: dict[str, Any]) -> str:
    """A readable table of :func:`run`'s result."""
    m = r["machine"]
    rows = [_figures(x) for x in r["results"]]
    names = list(rows[0])
    width = max(len(n) for n in names)
    head = "".join(f"{x['messages_each_direction']:>12,}" for x in r["results"])
    lines = [f"crisisgw bench scale on {m['cpus']} CPUs ({m['cpu']}), Python {m['python']},"
             f" RabbitMQ {m['rabbitmq']}", "figures: median ms unless stated; sizes are"
             " messages in each direction", f"{'':<{width}}{head}{'growth':>9}"]
    for name in names:
        cells = "".join(f"{row[name]:>12.2f}" for row in rows)
        g = r["growth"].get(name)
        lines.append(f"{name:<{width}}{cells}{'' if g is None else f'{g:>8.2f}x'}")
    for key, label in (("ledger_bytes_per_message", "ledger bytes per message"),
                       ("fill_pairs_per_s", "fill: pairs written per s")):
        lines.append(f"{label:<{width}}" + "".join(
            f"{x[key]:>12}" for x in r["results"]))
    lines.append(f"rows: {r['rows_written']}")
    return "\n".join(lines)
