"""The HTTP client of ``crisisgw bench scale``, run as a fresh process at each size.

The benchmark process has just grown the ledger (a million pairs of objects made and
dropped); timing the node from it would add that process's own state to every figure.
A fresh interpreter per size makes the client the same at every size: what grows is
then the node's. Arguments come as one JSON object on stdin, the result goes to stdout.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

REQUESTS = 25
WARM_UP = 3


def summary(times: list[float]) -> dict[str, float]:
    """Median and 90th percentile of ``times`` (ms)."""
    times = sorted(times)
    return {"median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2)}


async def rounds(calls: dict[str, Callable[[], Awaitable[Any]]], n: int = REQUESTS
                 ) -> dict[str, dict[str, float]]:
    """Time every call ``n`` times, in rounds that call each once in turn (after
    :data:`WARM_UP` rounds): a passing disturbance on the machine costs every figure a
    sample, instead of all of one figure's."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(WARM_UP + n):
        for name, call in calls.items():
            t0 = time.perf_counter()
            await call()
            if round_ >= WARM_UP:
                times[name].append(1000 * (time.perf_counter() - t0))
    return {name: summary(samples) for name, samples in times.items()}


async def _login(http: aiohttp.ClientSession, base: str, password: str) -> None:
    async with http.get(f"{base}/console/login") as resp:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
    if token is None:
        raise RuntimeError("no login form")
    async with http.post(f"{base}/console/login", allow_redirects=False, data={
            "csrf_token": token.group(1), "name": "operator", "password": password}) as resp:
        if resp.status != 303:
            raise RuntimeError(f"console login refused: {resp.status}")


async def endpoints(base: str, token: str, password: str,
                    paths: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Log in to the console, then time each (name, path) with the API token too."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await _login(http, base, password)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {}
        for name, path in paths:

            async def get(url: str = base + path) -> None:
                async with http.get(url, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url}: {resp.status}")

            calls[name] = get
        return await rounds(calls)


def main() -> None:
    """Read {base, token, password, paths} on stdin, print the timings as JSON."""
    args = json.load(sys.stdin)
    result = asyncio.run(endpoints(args["base"], args["token"], args["password"],
                                   [tuple(p) for p in args["paths"]]))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
