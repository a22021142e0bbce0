"""HTTPS for the API and the console: Secure cookies, HSTS, renewal without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.harness import Federation, wait_until
from tests.pki import Authority

pytestmark = pytest.mark.broker
CA = Authority.make("api-tests")


@pytest.fixture(scope="module")
def https_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """BE-NCCN serving its API over HTTPS with a certificate from a test CA."""
    root = tmp_path_factory.mktemp("https")
    CA.issue("api", ("localhost", "127.0.0.1")).write(root / "api.pem", root / "api.key")
    fed = Federation.create(root / "fed", overrides={
        "api": {"tls_cert": str(root / "api.pem"), "tls_key": str(root / "api.key")}})
    fed.start("BE-NCCN")
    try:
        yield fed
    finally:
        fed.destroy()


def _client() -> ssl.SSLContext:
    return ssl.create_default_context(cadata=CA.pem)


async def _serial(port: int) -> int:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client(),
                                              server_hostname="localhost")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    from cryptography import x509  # noqa: PLC0415

    return x509.load_der_x509_certificate(der).serial_number


async def _hammer(port: int) -> int:
    """Handshake with the node until cancelled; returns how many handshakes failed."""
    failures = 0
    try:
        while True:
            try:
                await _serial(port)
            except (OSError, ssl.SSLError):
                failures += 1
            await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        return failures


async def _stop(task: asyncio.Task[int]) -> int:
    task.cancel()
    return await task


async def test_the_api_is_https_with_hsts_and_secure_cookies(https_node: Federation) -> None:
    """The node answers HTTPS verified against its certificate, sends HSTS on every
    answer (errors too), marks its console cookies Secure, and speaks no plain HTTP."""
    node = https_node.nodes["BE-NCCN"]
    base = f"https://localhost:{node.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async def ready() -> bool:
            try:
                async with http.get(f"{base}/healthz", ssl=_client()) as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False
        await wait_until(ready, 60, "the HTTPS API")
        async with http.get(f"{base}/v1/peers", ssl=_client()) as resp:
            assert resp.status == 401
            assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
        async with http.get(f"{base}/v1/peers", ssl=_client(),
                            headers={"Authorization": f"Bearer {node.token}"}) as resp:
            assert resp.status == 200
            assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
        async with http.get(f"{base}/console/login", ssl=_client()) as resp:
            html = await resp.text()
            cookie = resp.headers.getall("Set-Cookie")
        assert any("crisisgw_csrf=" in c and "Secure" in c for c in cookie), cookie
        token = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert token is not None
        password = (node.config.parent / "operator-password").read_text().strip()
        async with http.post(f"{base}/console/login", ssl=_client(), allow_redirects=False,
                             data={"csrf_token": token.group(1), "name": "operator",
                                   "password": password}) as resp:
            assert resp.status == 303
            session = [c for c in resp.headers.getall("Set-Cookie") if "session" in c]
        assert session
        assert all("Secure" in c and "HttpOnly" in c for c in session), session
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{node.port}/healthz") as resp:
                await resp.read()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(f"{base}/healthz", ssl=ssl.create_default_context()) as resp:
                await resp.read()


async def test_the_cli_talks_https_to_its_node(https_node: Federation) -> None:
    """crisisgw commands that call the API trust the node's own certificate."""
    node = https_node.nodes["BE-NCCN"]
    done = subprocess.run([sys.executable, "-m", "gateway", "peers", "list", "-c",
                           str(node.config)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "gateway", "status",
                           "00000000-0000-4000-8000-000000000000", "-c", str(node.config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "404" in done.stdout or "Not found" in done.stdout, done.stdout + done.stderr


async def test_a_renewed_api_certificate_is_used_without_a_restart(
        https_node: Federation) -> None:
    """New certificate files are picked up for new connections; the process stays."""
    node = https_node.nodes["BE-NCCN"]
    assert node.proc is not None
    pid = node.proc.pid

    async def serving() -> bool:
        try:
            await _serial(node.port)
        except OSError:
            return False
        return True
    await wait_until(serving, 60, "the HTTPS API")
    before = await _serial(node.port)
    root = Path(str(node.settings.api.tls_cert)).parent
    renewed = CA.issue("api", ("localhost", "127.0.0.1"))
    hammer = asyncio.create_task(_hammer(node.port))  # handshakes all along the renewal
    await asyncio.sleep(0.2)
    renewed.write(root / "api.pem", root / "api.key")

    async def renewed_in_use() -> bool:
        return await _serial(node.port) == renewed.cert.serial_number
    await wait_until(renewed_in_use, 15, "the renewed API certificate")
    failures = await _stop(hammer)
    assert failures == 0, "a handshake failed while the certificate was being renewed"
    assert before != renewed.cert.serial_number
    assert node.proc.pid == pid
    assert node.proc.poll() is None
