"""The floor under a node's CPU per sitrep: what its unavoidable parts cost on their own,
measured in the same run as :mod:`gateway.bench.instances`.

A node cannot carry a sitrep for less than the sum of:

- for A, one HTTP request of the sitrep's size, answered by a bare aiohttp handler (read
  the body, parse its JSON, answer 202), timed in a process of its own from ``/proc``
  and driven by the same client, body and concurrency as the real run;
- the signatures: A seals the sitrep (JCS of its envelope, Ed25519 signature) and
  verifies the receipt (parse the I-JSON, JCS, Ed25519 verification); B verifies the
  sitrep and seals the receipt. Timed on the signed bytes of that run, in this process;
- the AMQP operations (A 2, B 3), at what each costs the raw client in the ceiling run.

No ledger, no state, no logging: a node doing only this would keep nothing. The figure
says how much of a bound on a node's CPU is left for everything that makes it a node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.protocol import ijson
from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.signing import context_for, signing_input

ROUNDS = 2000
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _serve(port: int) -> None:
    """A bare HTTP endpoint: read the body, parse it, answer 202 with a small JSON."""

    async def accept(request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.json_response({"id": "00000000-0000-4000-8000-000000000000",
                                  "status": "accepted"}, status=202)

    app = web.Application()
    app.router.add_post("/v1/sitreps", accept)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                handle_signals=True)


async def http_ms(port: int, body: dict[str, Any], concurrency: int, requests: int) -> float:
    """Server CPU (ms) per request of ``body`` to a bare handler on ``port``."""
    proc = subprocess.Popen(  # noqa: ASYNC220, S603 - our own module
        [sys.executable, "-m", "gateway.bench.floor", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/v1/sitreps"
        headers = {"Authorization": "Bearer bench"}
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.post(url, json=body, headers=headers) as resp:
                        await resp.read()
                    break
                except aiohttp.ClientConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            left = requests

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    async with http.post(url, json=body, headers=headers) as resp:
                        await resp.read()

            before = cpu_seconds(proc.pid)
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            used = cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, 10)
        if proc.poll() is None:
            proc.kill()
    return 1000 * used / requests


def _per_call_ms(fn: Any, rounds: int = ROUNDS) -> float:
    started = time.process_time()
    for _ in range(rounds):
        fn()
    return 1000 * (time.process_time() - started) / rounds


def signature_ms(wire: bytes) -> dict[str, float]:
    """CPU (ms) to seal and to verify the message whose signed bytes are ``wire``."""
    envelope = ijson.loads(wire)["envelope"]
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    context = context_for(str(envelope["type"]))
    signature = key.sign(signing_input(canonical_bytes(envelope), context))

    def seal() -> None:
        key.sign(signing_input(canonical_bytes(envelope), context))

    def verify() -> None:
        env = ijson.loads(wire)["envelope"]
        public.verify(signature, signing_input(canonical_bytes(env), context))

    return {"seal": _per_call_ms(seal), "verify": _per_call_ms(verify)}


async def run(*, sitrep_wire: bytes, receipt_wire: bytes, body: dict[str, Any],
              concurrency: int, per_op_ms: float, operations: dict[str, int],
              port: int) -> dict[str, Any]:
    """The floor of each node (ms of CPU per sitrep) and its parts."""
    http = await http_ms(port, body, concurrency, ROUNDS)
    sitrep, receipt = signature_ms(sitrep_wire), signature_ms(receipt_wire)
    parts = {
        "a": {"http": http, "seal_sitrep": sitrep["seal"], "verify_receipt": receipt["verify"],
              "amqp": per_op_ms * operations["a"]},
        "b": {"verify_sitrep": sitrep["verify"], "seal_receipt": receipt["seal"],
              "amqp": per_op_ms * operations["b"]},
    }
    return {node: {"ms": round(sum(p.values()), 3),
                   "parts": {k: round(v, 4) for k, v in p.items()}}
            for node, p in parts.items()}


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
