"""Console accounts (findings 3 and 6): a session follows its account and survives a
restart; logins are throttled per address, per account and for floods."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from gateway.config import update_config
from tests.integration.harness import Federation, wait_until

pytestmark = pytest.mark.broker
CENTRE = "LU-HCPN"


def _base(fed: Federation) -> str:
    return f"http://127.0.0.1:{fed.nodes[CENTRE].port}"


def _reloads(fed: Federation) -> int:
    """How many times the node has reloaded its config so far (its log)."""
    log = fed.nodes[CENTRE].log
    return log.read_text(encoding="utf-8", errors="replace").count("config_reloaded") \
        if log.exists() else 0


def _set_password(fed: Federation, name: str, password: str, role: str) -> int:
    """Set the account's password; returns the reload count before (see _wait_account)."""
    before = _reloads(fed)
    subprocess.run([sys.executable, "-m", "gateway", "operators", "set-password", name,
                    "--role", role, "--password-stdin", "-c", str(fed.nodes[CENTRE].config)],
                   input=password + "\n", capture_output=True, text=True, timeout=60,
                   check=True)
    return before


async def _login(http: aiohttp.ClientSession, base: str, name: str, password: str) -> int:
    async with http.get(f"{base}/console/login") as resp:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
    assert token is not None
    async with http.post(f"{base}/console/login", allow_redirects=False, data={
            "csrf_token": token.group(1), "name": name, "password": password}) as resp:
        return resp.status


async def _page(http: aiohttp.ClientSession, base: str, path: str = "/console") -> int:
    async with http.get(f"{base}{path}", allow_redirects=False) as resp:
        return resp.status


def _jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)


async def _wait_account(fed: Federation, name: str, password: str, reloads: int) -> None:
    """Wait for the node to reload the config written after ``reloads`` reloads, then
    log in once: guessing before the reload would count as failed logins, and the
    account would back off (as it must)."""
    async def reloaded() -> bool:
        return _reloads(fed) > reloads
    await wait_until(reloaded, 15, f"the node reloading its config for {name}")
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        assert await _login(http, _base(fed), name, password) == 303


async def test_a_session_ends_with_its_account_and_follows_its_role(
        federation: Federation) -> None:
    """Password changed, role lowered, account removed: the open session ends or loses
    the rights at its next request, not at its expiry."""
    await federation.wait_ready()
    base = _base(federation)
    reloads = _set_password(federation, "sec-admin", "first password 1", "admin")
    await _wait_account(federation, "sec-admin", "first password 1", reloads)
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        assert await _login(http, base, "sec-admin", "first password 1") == 303
        assert await _page(http, base, "/console/compose") == 200
        reloads = _set_password(federation, "sec-admin", "second password 2", "admin")
        await _wait_account(federation, "sec-admin", "second password 2", reloads)
        assert await _page(http, base) == 302  # back to the login page

    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        assert await _login(http, base, "sec-admin", "second password 2") == 303

        def lower(raw: dict[str, Any]) -> None:
            for op in raw["console"]["operators"]:
                if op["name"] == "sec-admin":
                    op["role"] = "viewer"
        update_config(federation.nodes[CENTRE].config, lower)

        async def lowered() -> bool:
            return await _page(http, base, "/console/compose") == 403
        await wait_until(lowered, 15, "the lowered role applied to the open session")
        assert await _page(http, base) == 200

        def remove(raw: dict[str, Any]) -> None:
            raw["console"]["operators"] = [o for o in raw["console"]["operators"]
                                           if o["name"] != "sec-admin"]
        update_config(federation.nodes[CENTRE].config, remove)

        async def ended() -> bool:
            return await _page(http, base) == 302
        await wait_until(ended, 15, "the session of the removed account ended")


async def test_sessions_survive_a_restart(federation: Federation) -> None:
    """A node restart does not log the duty officer out."""
    await federation.wait_ready()
    base = _base(federation)
    password = (federation.nodes[CENTRE].config.parent / "operator-password").read_text().strip()
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        assert await _login(http, base, "operator", password) == 303
        assert await _page(http, base) == 200
        federation.stop(CENTRE)
        federation.start(CENTRE)
        await federation.wait_ready()
        assert await _page(http, base) == 200


async def _guess(base: str, address: str, name: str) -> int:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector, cookie_jar=_jar()) as http:
        return await _login(http, base, name, "wrong guess")


async def test_guesses_spread_over_ten_addresses_are_slowed(federation: Federation) -> None:
    """40 guesses at one account from 10 loopback addresses: after the first 5 failures
    the account backs off, so almost all of them are refused (429) unchecked."""
    await federation.wait_ready()
    base = _base(federation)
    reloads = _set_password(federation, "sec-target", "the real password", "viewer")
    await _wait_account(federation, "sec-target", "the real password", reloads)
    statuses = [await _guess(base, f"127.0.0.{10 + i % 10}", "sec-target") for i in range(40)]
    assert statuses.count(401) <= 7, statuses
    assert statuses.count(429) >= 33, statuses


async def test_a_login_flood_is_refused_without_stalling_the_node(
        federation: Federation) -> None:
    """200 concurrent logins for unknown names: most are refused at once (429), only a
    few argon2 checks run, and the API keeps answering meanwhile."""
    await federation.wait_ready()
    base = _base(federation)

    async def flood(i: int) -> int:
        return await _guess(base, f"127.0.1.{i % 250 + 1}", f"nobody{i}")

    async def health() -> list[int]:
        out = []
        async with aiohttp.ClientSession() as http:
            for _ in range(10):
                async with http.get(f"{base}/healthz",
                                    timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    out.append(resp.status)
                await asyncio.sleep(0.1)
        return out

    results, healthy = await asyncio.gather(
        asyncio.gather(*(flood(i) for i in range(200))), health())
    assert healthy == [200] * 10
    assert results.count(429) >= 100, sorted(set(results))
    assert set(results) <= {401, 429}
