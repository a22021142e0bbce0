"""Federation at European scale: N centres in one process, one sitrep broadcast.

Each centre is a full node (own vhost on the local broker, own ledger, own signing key,
least-privilege users per peer). Centre 1 broadcasts one sitrep to k of its peers for
several k; the time until every recipient's signed ``delivered`` receipt is back is
measured, and the cost per extra peer is the slope of a least-squares line through
those points.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.adapters.provision import delete_many
from gateway.config import load_settings
from gateway.demo import Centre, peer_user, prepare

COUNTRIES = ("BE", "NL", "LU", "DE", "FR", "EU", "AT", "CZ", "DK", "EE", "ES", "FI", "GR",
             "HR", "HU", "IE", "IT", "LT", "LV", "MT", "PL", "PT", "RO", "SE", "SI", "SK",
             "BG", "CY", "IS", "NO")
EXAMPLE = {"incident": {"id": "EU-BENCH-1", "title": "European-scale broadcast"},
           "report_number": 1, "severity": "moderate",
           "summary": {"en": "Benchmark sitrep broadcast to every centre."}}


def centres(n: int) -> tuple[Centre, ...]:
    """``n`` centres with distinct ids, one country each."""
    return tuple(Centre(f"{COUNTRIES[i % len(COUNTRIES)]}-B{i:02d}", f"Bench centre {i}",
                        COUNTRIES[i % len(COUNTRIES)], ("eu",)) for i in range(n))


def _slope(points: list[tuple[int, float]]) -> float:
    xs, ys = [float(x) for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


async def run(n: int = 30, fanouts: tuple[int, ...] = (5, 10, 20, 29), repeats: int = 3,
              amqp: str = "amqp://127.0.0.1:5672/", base_port: int = 18400) -> dict[str, Any]:
    """Start ``n`` nodes, broadcast to each fan-out ``repeats`` times, tear down."""
    from gateway.app import Node  # noqa: PLC0415 - keeps the CLI start fast

    prefix = f"bench{secrets.token_hex(2)}"
    group = centres(n)
    fanouts = tuple(k for k in fanouts if k < n) or (n - 1,)
    with tempfile.TemporaryDirectory(prefix="crisisgw-bench-") as tmp:
        started = time.perf_counter()
        paths = prepare(Path(tmp), base_port, amqp, centres=group, prefix=prefix,
                        user_prefix=f"{prefix}.",
                        overrides={"delivery": {"retry_cap_seconds": 5.0},
                                   "commcheck": {"every_days": 3650.0},
                                   # nothing sent at start: only the broadcasts are measured
                                   "directory": []})
        provisioned = time.perf_counter() - started
        nodes = [Node(load_settings(p)) for p in paths.values()]
        try:
            for node in nodes:
                await node.start()
            deadline = time.monotonic() + 120
            while not all(node.consumer.connected for node in nodes):
                if time.monotonic() > deadline:
                    raise TimeoutError("nodes did not connect")
                await asyncio.sleep(0.2)
            startup = time.perf_counter() - started - provisioned
            sender = nodes[0]
            points: list[tuple[int, float]] = []
            rows = []
            for k in fanouts:
                times = []
                for _ in range(repeats):
                    times.append(await _broadcast(sender, [c.id for c in group[1:k + 1]]))
                best, median = min(times), statistics.median(times)
                points.append((k, median))
                rows.append({"recipients": k, "median_s": round(median, 3),
                             "best_s": round(best, 3)})
        finally:
            for node in nodes:
                await node.stop()
            users = [f"{prefix}.{c.id}" for c in group]
            users += [peer_user(a.id, b.id, f"{prefix}.") for a in group for b in group
                      if a.id != b.id]
            await asyncio.to_thread(delete_many, [c.vhost(prefix) for c in group], users)
    return {"centres": n, "provisioning_s": round(provisioned, 2),
            "startup_s": round(startup, 2), "broadcasts": rows,
            "cost_per_extra_peer_ms": round(1000 * _slope(points), 2)}


async def _broadcast(sender: Any, to: list[str]) -> float:
    from gateway.service.submit import SitrepSubmission  # noqa: PLC0415

    sub = SitrepSubmission.model_validate({"to": to, "tlp": "GREEN", "releasable": ["eu"],
                                           "sitrep": EXAMPLE})
    begin = time.perf_counter()
    message_id, _ = await sender.submitter.submit_sitrep(sub)
    while True:
        view = await sender.ledger.outbox.get(message_id)
        if view and all(r.state == "delivered" for r in view.recipients):
            return time.perf_counter() - begin
        if time.perf_counter() - begin > 120:
            raise TimeoutError("broadcast not delivered within 120 s")
        await asyncio.sleep(0.005)


def table(result: dict[str, Any]) -> str:
    """A readable table of :func:`run`'s result."""
    lines = [f"federation of {result['centres']} centres in one process "
             f"(provisioning {result['provisioning_s']} s, start {result['startup_s']} s)",
             "recipients  median to all delivered  best"]
    lines += [f"{r['recipients']:>10}  {r['median_s']:>22.3f} s  {r['best_s']:.3f} s"
              for r in result["broadcasts"]]
    lines.append(f"cost per extra peer: {result['cost_per_extra_peer_ms']} ms")
    return "\n".join(lines)
