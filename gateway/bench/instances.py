"""``crisisgw bench instances``: the sender and the receiver as separate node processes.

Two centres, A and B, each run as ``crisisgw run`` processes: once as one process each
on its embedded SQLite ledger, then with 1, 2 and 3 instances each over a PostgreSQL
ledger of its own. A client process (this one) submits sitreps to A's instances in
turn, ``concurrency`` requests in flight; a sitrep is done when B's ``delivered``
receipt is applied in A's ledger (counted there). Reported per configuration:

- sitreps per second, and their ratio to the raw AMQP ceiling measured in the same run
  on the same broker (:mod:`gateway.bench.ceiling`, two AMQP messages per sitrep);
- the CPU time per receipted sitrep of every node (the sum over its instances' processes,
  from ``/proc``), next to the raw AMQP client's CPU for the same AMQP operations: A
  publishes the sitrep and consumes the receipt (2 operations), B consumes the sitrep,
  publishes the receipt and republishes on its local exchange (3), each costing what one
  operation costs the raw client in the ceiling run.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import psycopg

from gateway.adapters.provision import delete_many
from gateway.adapters.stores import offline
from gateway.bench import ceiling, floor
from gateway.bench.federation import centres
from gateway.bench.throughput import SITREP
from gateway.config import Settings, load_settings, update_config
from gateway.demo import peer_user, prepare

#: AMQP operations a node does per sitrep: A publishes it and consumes the receipt; B
#: consumes it, publishes the receipt and republishes it on its local exchange.
OPERATIONS = {"a": 2, "b": 3}


@dataclass
class Centre:
    """One centre's processes."""

    settings: Settings
    config: Path
    token: str
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cpu(self) -> float:
        """CPU seconds of all its processes."""
        return sum(floor.cpu_seconds(p.pid) for p in self.procs)


def _with_schema(admin: str, database: str, schema: str) -> str:
    parts = urlsplit(admin)
    return urlunsplit(parts._replace(path=f"/{database}",
                                     query=f"options={quote(f'-csearch_path={schema}')}"))


@contextlib.contextmanager
def _database(admin: str) -> Iterator[str]:
    """A database of the bench's own (dropped afterwards)."""
    name = f"crisisgw_bench_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = %s AND pid != pg_backend_pid()", (name,))
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextlib.asynccontextmanager
async def _pair(amqp: str, base_port: int, instances: int, ledgers: tuple[str, str] | None,
                folder: Path, *, profile: Path | None = None
                ) -> AsyncIterator[tuple[Centre, Centre]]:
    """A and B provisioned and running (``instances`` processes each); torn down after."""
    prefix = f"benchi{secrets.token_hex(2)}"
    group = centres(2)
    paths = await asyncio.to_thread(
        prepare, folder, base_port, amqp, centres=group, prefix=prefix,
        user_prefix=f"{prefix}.",
        overrides={"delivery": {"retry_cap_seconds": 5.0},
                   "commcheck": {"every_days": 3650.0}, "directory": []})
    pair = []
    for index, c in enumerate(group):
        path = paths[c.id]
        if ledgers is not None:
            update_config(path, _ledger_at(ledgers[index]))
        pair.append(Centre(settings=load_settings(path), config=path,
                           token=(path.parent / "api-token").read_text().strip()))
    port = base_port + 10
    try:
        for centre in pair:
            for i in range(instances):
                centre.ports.append(port)
                log = (centre.config.parent / f"instance-{i + 1}.log").open("ab")
                # With ``profile``: each process under cProfile in CPU time (its event
                # loop's thread), the statistics written when it stops.
                command = ["-m", "gateway"] if profile is None else [
                    "-m", "gateway.bench.profiled",
                    str(profile / f"{centre.settings.node.centre}-{i + 1}-"
                        f"{'pg' if ledgers else 'sqlite'}{instances}.prof")]
                centre.procs.append(subprocess.Popen(  # noqa: ASYNC220, S603 - our own command
                    [sys.executable, *command, "run", "-c", str(centre.config),
                     "--instance", f"bench-{i + 1}", "--api-port", str(port),
                     "--log-level", "warning", "--log-format", "json"],
                    stdout=log, stderr=log))
                log.close()
                port += 1
        for centre in pair:
            for p in centre.ports:
                await _ready(p, centre.token)
        yield pair[0], pair[1]
    finally:
        for centre in pair:
            for proc in centre.procs:
                proc.terminate()
            for proc in centre.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(proc.wait, 30)
                if proc.poll() is None:
                    proc.kill()
        users = [f"{prefix}.{c.id}" for c in group]
        users += [peer_user(x.id, y.id, f"{prefix}.") for x in group for y in group
                  if x.id != y.id]
        await asyncio.to_thread(delete_many, [c.vhost(prefix) for c in group], users)


def _ledger_at(url: str) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        raw["ledger"] = {"url": url}
    return change


async def _ready(port: int, token: str, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"http://127.0.0.1:{port}/readyz",
                                    headers={"Authorization": f"Bearer {token}"}) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the instance on port {port} did not become ready")


def _delivered(settings: Settings) -> int:
    """Sitreps of A that B has receipted ``delivered`` (read from A's ledger)."""
    with offline.connect(settings) as conn:
        row = conn.execute("SELECT COALESCE(SUM(n), 0) FROM delivery_counts WHERE receipt = 0"
                           " AND state IN ('delivered', 'acknowledged')").fetchone()
    return int(row[0])


async def _load(a: Centre, b: Centre, messages: int, concurrency: int) -> float:
    """Submit ``messages`` sitreps to A's instances in turn; seconds until all delivered."""
    before = await asyncio.to_thread(_delivered, a.settings)
    body = _body(b)
    headers = {"Authorization": f"Bearer {a.token}"}
    remaining = messages
    turn = 0
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        async def worker() -> None:
            nonlocal remaining, turn
            while remaining > 0:
                remaining -= 1
                port = a.ports[turn % len(a.ports)]
                turn += 1
                async with http.post(f"http://127.0.0.1:{port}/v1/sitreps", json=body,
                                     headers=headers) as resp:
                    if resp.status != 202:
                        raise RuntimeError(f"submission refused: {resp.status}")
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    deadline = time.monotonic() + 120 + messages / 10
    while await asyncio.to_thread(_delivered, a.settings) < before + messages:
        if time.monotonic() > deadline:
            raise TimeoutError("not every sitrep was delivered")
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def _measure(a: Centre, b: Centre, *, engine: str, instances: int, messages: int,
                   concurrency: int, per_op: float) -> dict[str, Any]:
    """One configuration's row, on a running pair."""
    await _load(a, b, min(200, messages), concurrency)  # warm-up
    cpu_a, cpu_b = a.cpu(), b.cpu()
    elapsed = await _load(a, b, messages, concurrency)
    used = {"a": a.cpu() - cpu_a, "b": b.cpu() - cpu_b}
    row: dict[str, Any] = {"engine": engine, "instances": instances, "messages": messages,
                           "concurrency": concurrency,
                           "sitreps_per_s": round(messages / elapsed, 1)}
    for node, seconds in used.items():
        ms = 1000 * seconds / messages
        raw = 1000 * per_op * OPERATIONS[node]
        row[f"cpu_ms_per_sitrep_{node}"] = round(ms, 3)
        row[f"raw_client_cpu_ms_{node}"] = round(raw, 3)
        row[f"cpu_ratio_{node}"] = round(ms / raw, 2)
    return row


def _signed(b: Centre) -> tuple[bytes, bytes]:
    """A sitrep as B received it and a receipt as B signed it (signed bytes)."""
    with offline.connect(b.settings) as conn:
        sitrep = conn.execute("SELECT wire FROM inbox WHERE type = 'sitrep' LIMIT 1").fetchone()
        receipt = conn.execute("SELECT wire FROM outbox WHERE type = 'receipt' LIMIT 1"
                               ).fetchone()
    if sitrep is None or receipt is None:
        raise RuntimeError("no sitrep went from A to B")
    return bytes(sitrep[0]), bytes(receipt[0])


def _body(b: Centre) -> dict[str, Any]:
    """What the client submits to A: a sitrep to B."""
    return {"to": [b.settings.node.centre], "tlp": "GREEN", "releasable": ["eu"],
            "sitrep": SITREP}


async def run(*, counts: tuple[int, ...] = (1, 2, 3), messages: int = 2000,
              concurrency: int = 64, amqp: str = "amqp://127.0.0.1:5672/",
              postgres: str | None = None, base_port: int = 18700,
              profile: Path | None = None) -> dict[str, Any]:
    """The multi-process figures: SQLite (one process per centre), then ``counts``
    instances per centre on PostgreSQL (``postgres``: a URL of a role that may create
    databases; without it, SQLite only). The raw ceiling runs first, on the SQLite
    pair's broker, with only this process's AMQP client working."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crisisgw-bench-instances-") as tmp:
        async with _pair(amqp, base_port, 1, None, Path(tmp), profile=profile) as (a, b):
            await _load(a, b, 1, 1)
            sitrep, receipt = await asyncio.to_thread(_signed, b)
            cpu0 = time.process_time()
            top = await ceiling.run(b.settings.broker.url.get_secret_value(),
                                    messages=messages, payload_bytes=len(sitrep))
            per_op = (time.process_time() - cpu0) / (2 * messages)
            under = await floor.run(sitrep_wire=sitrep, receipt_wire=receipt, body=_body(b),
                                    concurrency=concurrency, per_op_ms=1000 * per_op,
                                    operations=OPERATIONS, port=base_port + 9)
            rows.append(await _measure(a, b, engine="sqlite", instances=1,
                                       messages=messages, concurrency=concurrency,
                                       per_op=per_op))
    for n in counts if postgres is not None else ():
        assert postgres is not None
        with _database(postgres) as database, \
                tempfile.TemporaryDirectory(prefix="crisisgw-bench-instances-") as tmp:
            with psycopg.connect(_with_schema(postgres, database, "public"),
                                 autocommit=True) as conn:
                conn.execute("CREATE SCHEMA a")
                conn.execute("CREATE SCHEMA b")
            ledgers = (_with_schema(postgres, database, "a"),
                       _with_schema(postgres, database, "b"))
            async with _pair(amqp, base_port, n, ledgers, Path(tmp), profile=profile) as (a, b):
                rows.append(await _measure(a, b, engine="postgresql", instances=n,
                                           messages=messages, concurrency=concurrency,
                                           per_op=per_op))
    for row in rows:
        row["ratio_to_ceiling"] = round(row["sitreps_per_s"] / top["msg_per_s"], 3)
    bound = {node: round(2 * 1000 * per_op * n, 3) for node, n in OPERATIONS.items()}
    return {"ceiling": {**top, "cpu_ms_per_operation": round(1000 * per_op, 4)},
            "operations_per_sitrep": OPERATIONS, "bound_ms": bound, "floor": under,
            "rows": rows}


def table(r: dict[str, Any]) -> str:
    """A readable table of :func:`run`'s result."""
    c = r["ceiling"]
    lines = [f"raw AMQP ceiling: {c['msg_per_s']:.0f} msg/s, "
             f"{c['cpu_ms_per_operation']:.3f} ms CPU per operation (publish or consume)",
             f"{'engine':<11} {'inst':>4} {'sitreps/s':>10} {'ratio':>6} "
             f"{'A ms/sitrep':>12} {'raw A':>6} {'x':>5} {'B ms/sitrep':>12} {'raw B':>6} "
             f"{'x':>5}"]
    under = r.get("floor")
    if under is not None:
        lines.insert(1, "floor (HTTP, signatures and raw AMQP only, no ledger): "
                        f"A {under['a']['ms']:.3f} ms, B {under['b']['ms']:.3f} ms per sitrep; "
                        f"2x the raw client: A {r['bound_ms']['a']:.3f}, "
                        f"B {r['bound_ms']['b']:.3f}")
    for row in r["rows"]:
        lines.append(
            f"{row['engine']:<11} {row['instances']:>4} {row['sitreps_per_s']:>10.1f} "
            f"{row['ratio_to_ceiling']:>6.3f} {row['cpu_ms_per_sitrep_a']:>12.3f} "
            f"{row['raw_client_cpu_ms_a']:>6.3f} {row['cpu_ratio_a']:>5.2f} "
            f"{row['cpu_ms_per_sitrep_b']:>12.3f} {row['raw_client_cpu_ms_b']:>6.3f} "
            f"{row['cpu_ratio_b']:>5.2f}")
    return "\n".join(lines)
