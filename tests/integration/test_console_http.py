"""Console access control over plain HTTP: no session, no data; no CSRF token, no action."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.integration.harness import Federation

pytestmark = pytest.mark.broker


def _password(fed: Federation, centre: str) -> str:
    return (fed.nodes[centre].config.parent / "operator-password").read_text().strip()


async def _login(http: aiohttp.ClientSession, base: str, password: str) -> str:
    async with http.get(f"{base}/console/login") as resp:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
    assert token is not None
    async with http.post(f"{base}/console/login", allow_redirects=False, data={
            "csrf_token": token.group(1), "name": "operator", "password": password}) as resp:
        assert resp.status == 303, await resp.text()
    async with http.get(f"{base}/console/inbox") as resp:
        page = await resp.text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("path", ["/console", "/console/outbox", "/console/inbox"])
async def test_console_without_session_redirects_and_serves_no_data(
        federation: Federation, path: str) -> None:
    """Every console page redirects to the login page and shows no peer or message."""
    await federation.wait_ready()
    base = f"http://127.0.0.1:{federation.nodes['BE-NCCN'].port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(base + path, allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"].endswith("/console/login")
        async with http.get(base + path) as resp:
            text = await resp.text()
        assert "NL-NCC" not in text
        assert 'id="password"' in text
        async with http.get(base + "/console/events") as resp:
            assert resp.status == 401


async def test_wrong_password_is_refused_and_logins_are_rate_limited(
        federation: Federation) -> None:
    """A wrong password gets 401; the sixth attempt within a minute gets 429."""
    await federation.wait_ready()
    base = f"http://127.0.0.1:{federation.nodes['LU-HCPN'].port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/console/login") as resp:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
        assert token is not None
        statuses = []
        for _ in range(6):
            async with http.post(f"{base}/console/login", allow_redirects=False, data={
                    "csrf_token": token.group(1), "name": "intruder",
                    "password": "guess"}) as resp:
                statuses.append(resp.status)
        assert statuses[:5] == [401] * 5
        assert statuses[5] == 429


async def test_post_without_or_with_wrong_csrf_token_is_refused(federation: Federation) -> None:
    """An acknowledge or logout POST without the session's CSRF token is 403; nothing done."""
    await federation.wait_ready()
    base = f"http://127.0.0.1:{federation.nodes['DE-NW'].port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        csrf = await _login(http, base, _password(federation, "DE-NW"))
        url = f"{base}/console/inbox/BE-NCCN/00000000-0000-4000-8000-000000000000/ack"
        async with http.post(url, data={}, allow_redirects=False) as resp:
            assert resp.status == 403
        async with http.post(url, data={"csrf_token": "forged"}, allow_redirects=False) as resp:
            assert resp.status == 403
        async with http.post(f"{base}/console/logout", data={},
                             allow_redirects=False) as resp:
            assert resp.status == 403
        async with http.get(f"{base}/console") as resp:
            assert "operator" in await resp.text()  # still logged in: logout was refused
        async with http.post(f"{base}/console/logout", data={"csrf_token": csrf},
                             allow_redirects=False) as resp:
            assert resp.status == 303
    status, audit = await federation.api("DE-NW", "GET", "/v1/audit")
    assert status == 200
    actions = [(e["actor"], e["action"]) for e in audit["items"]]
    assert ("operator", "session.login") in actions
    assert ("operator", "session.logout") in actions
