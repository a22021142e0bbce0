"""Two instances of one centre's node over one PostgreSQL ledger, behind one API address:
a sitrep submitted to either is delivered once, its receipts are applied once, and both
instances' consoles show it live; the periodic jobs run on one instance at a time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.integration.ha import HaCentre
from tests.integration.harness import EXAMPLE, Federation, wait_until
from tests.pg import Postgres

pytestmark = pytest.mark.broker
BE = "BE-NCCN"
PEERS = ("NL-NCC", "LU-HCPN", "DE-NW")


@pytest_asyncio.fixture
async def ha(tmp_path: Path, postgres: Postgres) -> AsyncIterator[HaCentre]:
    fed = Federation.create(tmp_path / "fed", postgres=postgres, on_postgres=(BE,))
    centre = HaCentre(fed, BE, count=2)
    try:
        fed.start(*PEERS)
        centre.start()
        await fed.wait_ready()
        await _instances_ready(centre)
        yield centre
    finally:
        centre.close()
        fed.destroy()


async def _instances_ready(centre: HaCentre) -> None:
    async def ready() -> bool:
        for inst in centre.instances:
            status, _ = await _get(inst.port, "/readyz", centre)
            if status != 200:
                return False
        return True
    await wait_until(ready, 60, "both instances ready")


async def _get(port: int, path: str, centre: HaCentre) -> tuple[int, object]:
    token = centre.fed.nodes[centre.centre].token
    try:
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}{path}",
                headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.json(content_type=None)
    except (aiohttp.ClientError, ValueError) as exc:
        return 0, str(exc)


async def _post(port: int, path: str, centre: HaCentre, body: object,
                key: str | None = None) -> tuple[int, object]:
    token = centre.fed.nodes[centre.centre].token
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{port}{path}", json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _login(http: aiohttp.ClientSession, port: int, password: str) -> None:
    assert await _try_login(http, port, password) == 303


async def _try_login(http: aiohttp.ClientSession, port: int, password: str) -> int:
    """One login attempt on the instance at ``port``; its HTTP status."""
    base = f"http://127.0.0.1:{port}"
    async with http.get(f"{base}/console/login") as resp:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
    assert token is not None
    async with http.post(f"{base}/console/login", allow_redirects=False, data={
            "csrf_token": token.group(1), "name": "operator", "password": password}) as resp:
        return resp.status


async def _watch(http: aiohttp.ClientSession, port: int, seen: list[str],
                 opened: asyncio.Event) -> None:
    """Keep every event of one instance's live feed."""
    async with http.get(f"http://127.0.0.1:{port}/console/events") as resp:
        assert resp.status == 200
        opened.set()
        async for line in resp.content:
            seen.append(line.decode(errors="replace"))


async def test_two_instances_behind_one_address_deliver_once_and_show_it_live(
        ha: HaCentre) -> None:
    """Sitreps submitted through the balancer and to each instance directly: each peer's
    inbox has each once, each peer's receipt is applied once, and the live feeds of both
    instances (one login, taken by both) carry the one submitted to the other."""
    fed = ha.fed
    lb = fed.nodes[BE].port
    ids = []
    for port in (lb, lb, ha.instances[0].port, ha.instances[1].port):
        status, answer = await _post(port, "/v1/sitreps", ha, EXAMPLE)
        assert status == 202, answer
        ids.append(answer["id"])  # type: ignore[index]
    assert ha.balancer is not None
    assert set(ha.balancer.picks) == {i.port for i in ha.instances}  # both were used

    async def delivered() -> bool:
        for message_id in ids:
            _, view = await fed.api(BE, "GET", f"/v1/messages/{message_id}")
            if {r["state"] for r in view["recipients"]} != {"delivered"}:  # type: ignore[index]
                return False
        return True
    await wait_until(delivered, 30, "every sitrep delivered at every peer")
    for centre in PEERS:
        _, inbox = await fed.api(centre, "GET", "/v1/inbox?from=BE-NCCN&limit=500")
        got = [m["id"] for m in inbox["items"]]
        assert all(got.count(message_id) == 1 for message_id in ids), centre
    for message_id in ids:
        for inst in ha.instances:  # the same view from either instance
            _, view = await _get(inst.port, f"/v1/messages/{message_id}", ha)
            receipts = view["receipts"]  # type: ignore[index]
            assert sorted(r["issuer"] for r in receipts) == sorted(PEERS)

    password = (fed.nodes[BE].config.parent / "operator-password").read_text().strip()
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        await _login(http, ha.instances[0].port, password)  # the session holds on both
        feeds: list[list[str]] = [[], []]
        opened = [asyncio.Event(), asyncio.Event()]
        watchers = [asyncio.ensure_future(_watch(http, inst.port, feeds[i], opened[i]))
                    for i, inst in enumerate(ha.instances)]
        try:
            async with asyncio.timeout(10):
                await asyncio.gather(*(o.wait() for o in opened))
            status, answer = await _post(ha.instances[1].port, "/v1/sitreps", ha,
                                         {**EXAMPLE, "to": ["NL-NCC"]})
            assert status == 202
            new = answer["id"]  # type: ignore[index]

            async def both_live() -> bool:
                return all(any(new in line for line in feed) for feed in feeds)
            await wait_until(both_live, 5, "the new sitrep on both instances' live feeds")
        finally:
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
    await _shared_keys_and_login_limits(ha, password)


async def _shared_keys_and_login_limits(ha: HaCentre, password: str) -> None:
    """An Idempotency-Key used on one instance binds on the other, and failed logins
    spread over both instances count against one limit (both are in the ledger)."""
    one, two = (inst.port for inst in ha.instances)
    body = {**EXAMPLE, "to": ["LU-HCPN"]}
    status, first = await _post(one, "/v1/sitreps", ha, body, key="ha-retry-1")
    assert status == 202, first
    status, again = await _post(two, "/v1/sitreps", ha, body, key="ha-retry-1")
    assert status == 202, again
    assert again["id"] == first["id"]  # type: ignore[index]
    status, other = await _post(two, "/v1/sitreps", ha, {**body, "to": ["DE-NW"]},
                                key="ha-retry-1")
    assert status == 422, other  # the same key for another request, on the other instance
    limit = 5  # [console] login_attempts_per_minute, per (address, name)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        statuses = [await _try_login(http, (one, two)[i % 2], "not-the-password")
                    for i in range(limit)]
        assert 429 not in statuses, statuses
        assert await _try_login(http, two, password) == 429, "the limit holds on both"
        assert await _try_login(http, one, password) == 429


async def test_the_periodic_jobs_run_on_one_instance_and_move_when_it_dies(
        ha: HaCentre) -> None:
    """One instance holds the jobs' lease; killed, the other takes it within the lease."""
    async def one_holder() -> bool:
        return ha.holder() is not None
    await wait_until(one_holder, 20, "an instance holding the jobs' lease")
    first = ha.holder()
    assert first is not None
    held = sum('"lease_acquired"' in inst.log.read_text() for inst in ha.instances)
    assert held == 1
    ha.stop(first, kill=True)
    other = 1 - first

    async def taken_over() -> bool:
        return ha.holder() == other
    await wait_until(taken_over, 30, "the other instance taking the jobs' lease")
