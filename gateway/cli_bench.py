"""``crisisgw bench``: the benchmarks (:mod:`gateway.bench`).

With no subcommand, the whole bench (ceiling, gateway throughput and latency, fan-out,
cost, and the multi-process figures); ``bench federation``, ``bench scale`` and
``bench instances`` run one part each. Each prints a table, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from gateway.logging import configure_logging


def _cmd_bench_federation(args: argparse.Namespace) -> int:
    from gateway.bench.federation import run, table  # noqa: PLC0415

    configure_logging("console", "warning")
    fanouts = tuple(int(k) for k in args.fanouts.split(","))
    result = asyncio.run(run(args.centres, fanouts, args.repeats, args.amqp_url,
                             args.base_port))
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def _cmd_bench_scale(args: argparse.Namespace) -> int:
    from gateway.bench.scale import run, table  # noqa: PLC0415

    configure_logging("console", "warning")
    sizes = [int(n.replace("_", "")) for n in args.scale_messages.split(",")]
    result = asyncio.run(run(sizes, amqp=args.amqp_url, base_port=args.base_port,
                             idle_seconds=args.idle_seconds, keep=args.keep))
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def _cmd_bench_instances(args: argparse.Namespace) -> int:
    from gateway.bench.instances import run, table  # noqa: PLC0415

    configure_logging("console", "warning")
    counts = tuple(int(n) for n in args.instances.split(","))
    result = asyncio.run(run(counts=counts, messages=args.instance_messages,
                             concurrency=args.instance_concurrency, amqp=args.amqp_url,
                             postgres=args.postgres, base_port=args.base_port,
                             profile=args.profile))
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.bench is not None:
        return int(args.func_bench(args))
    from gateway.bench.suite import run, table  # noqa: PLC0415

    configure_logging("console", "warning")
    result = asyncio.run(run(messages=args.messages, concurrency=args.concurrency,
                             rate=args.rate, latency_messages=args.latency_messages,
                             peers=args.peers, repeats=args.repeats, amqp=args.amqp_url,
                             base_port=args.base_port,
                             instance_counts=tuple(int(n) for n in args.instances.split(",")
                                                   if n.strip() and int(n) > 0),
                             postgres=args.postgres))
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def add_bench(sub: Any) -> None:
    """The ``bench`` command group."""
    top = sub.add_parser("bench", help="benchmarks: with no subcommand, the whole bench "
                         "(ceiling, gateway throughput and latency, fan-out, cost)")
    top.add_argument("--messages", type=int, default=2000, help="sitreps for throughput")
    top.add_argument("--concurrency", type=int, default=64, help="API requests in flight")
    top.add_argument("--rate", type=float, default=50.0, help="sitreps/s for latency")
    top.add_argument("--latency-messages", type=int, default=300)
    top.add_argument("--peers", type=int, default=30, help="fan-out peers (0: skip)")
    top.add_argument("--repeats", type=int, default=3, help="fan-out repeats")
    top.add_argument("--amqp-url", default="amqp://127.0.0.1:5672/")
    top.add_argument("--base-port", type=int, default=18500)
    top.add_argument("--instances", default="1,2,3", help="instance counts per centre on "
                     "PostgreSQL for the multi-process figures (0: skip them)")
    top.add_argument("--postgres", default=os.environ.get("CRISISGW_BENCH_POSTGRES"),
                     help="a PostgreSQL URL of a role that may create databases (default "
                     "$CRISISGW_BENCH_POSTGRES; without it, the multi-process figures are "
                     "SQLite's only)")
    top.add_argument("--json", action="store_true")
    top.set_defaults(func=_cmd_bench)
    bench = top.add_subparsers(dest="bench")
    fed = bench.add_parser("federation", help="N centres in one process, one broadcast")
    fed.add_argument("--centres", type=int, default=30)
    fed.add_argument("--fanouts", default="5,10,20,29")
    fed.add_argument("--repeats", type=int, default=3)
    fed.add_argument("--amqp-url", default="amqp://127.0.0.1:5672/")
    fed.add_argument("--base-port", type=int, default=18400)
    fed.add_argument("--json", action="store_true")
    fed.set_defaults(func_bench=_cmd_bench_federation)
    scale = bench.add_parser("scale", help="one node's ledger grown to each size; every "
                             "endpoint, periodic job, start-up, RSS and idle CPU timed")
    scale.add_argument("--messages", dest="scale_messages", default="1000,10000",
                       help="sizes, messages in each direction, comma-separated")
    scale.add_argument("--idle-seconds", type=float, default=20.0,
                       help="how long idle CPU is sampled at each size")
    scale.add_argument("--keep", type=Path, default=None,
                       help="keep the node's files (config, ledger, log) in this folder")
    scale.add_argument("--amqp-url", default="amqp://127.0.0.1:5672/")
    scale.add_argument("--base-port", type=int, default=18600)
    scale.add_argument("--json", action="store_true")
    scale.set_defaults(func_bench=_cmd_bench_scale)
    inst = bench.add_parser("instances", help="sender and receiver as separate processes: "
                            "one each on SQLite, then 1, 2 and 3 instances each on "
                            "PostgreSQL; throughput, ratio to raw AMQP, CPU per sitrep")
    inst.add_argument("--instances", default="1,2,3", help="instance counts on PostgreSQL")
    inst.add_argument("--messages", dest="instance_messages", type=int, default=2000)
    inst.add_argument("--concurrency", dest="instance_concurrency", type=int, default=64)
    inst.add_argument("--postgres", default=os.environ.get("CRISISGW_BENCH_POSTGRES"),
                      help="a PostgreSQL URL of a role that may create databases (default "
                      "$CRISISGW_BENCH_POSTGRES; without it, SQLite only)")
    inst.add_argument("--amqp-url", default="amqp://127.0.0.1:5672/")
    inst.add_argument("--base-port", type=int, default=18700)
    inst.add_argument("--profile", type=Path, default=None,
                      help="run every node process under cProfile; its statistics go to "
                      "this folder (<centre>-<instance>-<engine><count>.prof)")
    inst.add_argument("--json", action="store_true")
    inst.set_defaults(func_bench=_cmd_bench_instances)
