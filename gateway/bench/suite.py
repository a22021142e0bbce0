"""``crisisgw bench``: ceiling, gateway throughput and latency, drain after a partition,
fan-out, cost; one run.

The ceiling and the gateway are measured in the same process, on the same broker,
minutes apart, so their ratio is meaningful even on a busy machine. Every sitrep makes
two AMQP messages (the sitrep and its signed receipt), so 0.5 is the practical limit.
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

from gateway.bench import ceiling, federation, instances, throughput


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        rabbit = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True,  # noqa: S607
                                timeout=30, check=False).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        rabbit = "unknown"
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), "unknown")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "rabbitmq": rabbit, "system": f"{platform.system()} {platform.release()}"}


async def run(*, messages: int = 2000, concurrency: int = 64, rate: float = 50.0,
              latency_messages: int = 300, peers: int = 30, repeats: int = 3,
              amqp: str = "amqp://127.0.0.1:5672/", base_port: int = 18500,
              instance_counts: tuple[int, ...] = (1, 2, 3),
              postgres: str | None = None) -> dict[str, Any]:
    """The whole bench; ``peers=0`` skips the fan-out; ``instance_counts=()`` the
    multi-process figures (:mod:`gateway.bench.instances`; PostgreSQL rows only with
    ``postgres``)."""
    result: dict[str, Any] = {"machine": machine()}
    async with throughput.pair(amqp, base_port) as p:
        size = await throughput.sitrep_size(p)
        # warm-up: connections, ledger pages, code paths
        await throughput.throughput(p, min(200, messages), concurrency)
        result["ceiling"] = await ceiling.run(p.b_broker_url, messages=messages,
                                              payload_bytes=size)
        result["gateway"] = await throughput.throughput(p, messages, concurrency)
        result["latency"] = await throughput.latency(p, latency_messages, rate)
        result["drain"] = await throughput.drain(p, messages, concurrency)
    result["ratio"] = round(result["gateway"]["msg_per_s"] / result["ceiling"]["msg_per_s"], 3)
    result["drain_ratio"] = round(result["drain"]["msg_per_s"] / result["gateway"]["msg_per_s"],
                                  2)
    if peers > 0:
        fed = await federation.run(peers + 1, (peers,), repeats, amqp, base_port + 10)
        row = fed["broadcasts"][0]
        result["fanout"] = {"peers": peers, "median_s": row["median_s"], "best_s": row["best_s"],
                            "repeats": repeats}
    if instance_counts:
        result["instances"] = await instances.run(
            counts=instance_counts, messages=messages, concurrency=concurrency, amqp=amqp,
            postgres=postgres, base_port=base_port + 200)
    return result


def table(r: dict[str, Any]) -> str:
    """A readable table of :func:`run`'s result."""
    m, c, g, lat = r["machine"], r["ceiling"], r["gateway"], r["latency"]
    rows = [
        ("ceiling: aio-pika confirm+ack, quorum", f"{c['msg_per_s']:.0f} msg/s",
         f"{c['messages']} x {c['payload_bytes']} B, window {c['window']}"),
        ("gateway: API A -> B -> delivered at A", f"{g['msg_per_s']:.0f} sitreps/s",
         f"{g['messages']} sitreps, {g['concurrency']} requests in flight"),
        ("ratio gateway / ceiling", f"{r['ratio']:.2f}", "0.5 is the limit: receipts"),
        ("API accepted (202, durable)", f"{g['accepted_per_s']:.0f} /s", ""),
        ("latency p50 submit -> delivered", f"{lat['p50_ms']:.1f} ms",
         f"{lat['messages']} sitreps at {lat['rate_per_s']:g}/s"),
        ("latency p99", f"{lat['p99_ms']:.1f} ms", f"max {lat['max_ms']:.1f} ms"),
        ("drain after a partition", f"{r['drain']['msg_per_s']:.0f} sitreps/s",
         f"{r['drain']['messages']} queued while B was cut off"),
        ("ratio drain / steady", f"{r['drain_ratio']:.2f}", "0.8 is the aim"),
        ("first delivered after the link returned", f"{r['drain']['first_delivered_s']:.2f} s",
         f"all flash by {r['drain']['flash_done_by_s']:.2f} s, routine median "
         f"{r['drain']['routine_median_s']:.2f} s"),
        ("CPU per 1,000 sitreps", f"{g['cpu_s_per_1000']:.2f} s", "both nodes + client"),
        ("peak RSS", f"{g['peak_rss_mb']:.0f} MB", "whole process"),
    ]
    if "fanout" in r:
        f = r["fanout"]
        rows.append((f"fan-out to {f['peers']} peers, all delivered", f"{f['median_s']:.3f} s",
                     f"median of {f['repeats']}, best {f['best_s']:.3f} s"))
    width = max(len(a) for a, _, _ in rows)
    lines = [f"crisisgw bench on {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, "
             f"RabbitMQ {m['rabbitmq']}"]
    lines += [f"{a:<{width}}  {b:>16}  {c_}".rstrip() for a, b, c_ in rows]
    if "instances" in r:
        lines += ["", "separate processes (crisisgw bench instances):",
                  instances.table(r["instances"])]
    return "\n".join(lines)
