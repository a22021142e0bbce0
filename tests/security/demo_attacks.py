"""The findings of the hostile-peer review, tried by hand on a running demo federation.

    .venv/bin/python -m tests.security.demo_attacks --dir crisisgw-demo --base-port 8401

plays a compromised LU-HCPN (its key and its credentials for NL-NCC's inbox) and a
hostile client, and prints what the demo answers to each attack. It changes the demo
(extra accounts, a token, garbage in NL-NCC's ledger): run it on a demo you can throw
away. ``tests/security/`` checks the same things automatically.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aio_pika
import aiohttp

from gateway.adapters.stores.keys import current_signing_key
from gateway.config import load_settings
from gateway.protocol.signing import seal
from gateway.protocol.types import format_time

CA = Path("/etc/rabbitmq/crisisgw-tls/ca.pem")
CAP = Path(__file__).resolve().parents[1] / "assets" / "cap" / "oasis-appendix-a2.xml"


def _envelope(**fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    env: dict[str, Any] = {
        "v": 1, "id": str(uuid.uuid4()), "type": "sitrep", "from": "LU-HCPN",
        "to": ["NL-NCC"], "created": format_time(now),
        "expires": format_time(now + timedelta(hours=1)), "mode": "test", "tlp": "GREEN",
        "priority": "flash", "incident": "ATK-1",
        "body": {"incident": {"id": "ATK-1", "title": "t"}, "report_number": 1,
                 "severity": "minor", "summary": {"en": "x"}}}
    env.update(fields)
    return env


class Demo:
    """The demo federation under attack."""

    def __init__(self, root: Path, base_port: int) -> None:
        self.root, self.base = root, base_port
        self.ports = {c: base_port + i for i, c in enumerate(
            ("BE-NCCN", "NL-NCC", "LU-HCPN", "DE-NW"))}

    def url(self, centre: str) -> str:
        return f"http://127.0.0.1:{self.ports[centre]}"

    def token(self, centre: str) -> str:
        return (self.root / centre / "api-token").read_text().strip()

    def password(self, centre: str) -> str:
        return (self.root / centre / "operator-password").read_text().strip()

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin,
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    async def publish_as_lu(self, bodies: list[bytes]) -> None:
        lu = load_settings(self.root / "LU-HCPN" / "gateway.toml")
        peer = lu.peer("NL-NCC")
        assert peer is not None
        url = peer.inbox_url.get_secret_value()
        ctx = ssl.create_default_context(cadata=CA.read_text()) if url.startswith("amqps") \
            else None
        conn = await aio_pika.connect(url, ssl_context=ctx)
        try:
            channel = await conn.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("crisisgw.inbox", ensure=False)
            user = unquote(url.split("://", 1)[1].split(":", 1)[0])
            for body in bodies:
                await exchange.publish(aio_pika.Message(body, user_id=user,
                                                        message_id=uuid.uuid4().hex),
                                       routing_key="attack")
        finally:
            await conn.close()

    def signed_by_lu(self, env: dict[str, Any]) -> bytes:
        lu = load_settings(self.root / "LU-HCPN" / "gateway.toml")
        return seal(env, current_signing_key(lu)[0]).wire

    async def login(self, http: aiohttp.ClientSession, centre: str, name: str,
                    password: str) -> int:
        async with http.get(self.url(centre) + "/console/login") as resp:
            found = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
        assert found is not None
        async with http.post(self.url(centre) + "/console/login", allow_redirects=False,
                             data={"csrf_token": found.group(1), "name": name,
                                   "password": password}) as resp:
            return resp.status


def _jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)


async def peer_content(demo: Demo) -> None:
    """Findings 1, 2, 13: markup, format-string and malformed messages from a peer."""
    attacks = [_envelope(type='<base href="//elsewhere.example/">'), _envelope(type="%(x)s"),
               _envelope(body={"incident": {"id": "ATK-1", "title": "t"}, "report_number": 1,
                               "severity": "minor", "summary": "<b>a string</b>"}),
               _envelope(body={"incident": {"id": "ATK-1", "title": "t"}, "report_number": 2,
                               "severity": "minor",
                               "summary": {"en": "invoice gnp\u202e.exe"}})]
    await demo.publish_as_lu([demo.signed_by_lu(e) for e in attacks])
    await asyncio.sleep(3)
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        await demo.login(http, "NL-NCC", "operator", demo.password("NL-NCC"))
        for path in ("/console", "/console/inbox", "/console/incidents/ATK-1",
                     *(f"/console/messages/{e['id']}" for e in attacks)):
            async with http.get(demo.url("NL-NCC") + path) as resp:
                text = await resp.text()
            notes = ["<base> INJECTED" if "<base" in text else "no injected element"]
            notes += ["'unreadable' shown"] * ("unreadable" in text)
            notes += ["RLO shown as [U+202E]"] * ("[U+202E]" in text)
            print(f"  {path}: {resp.status}, {', '.join(notes)}")


async def garbage(demo: Demo) -> None:
    """Finding 5: a flood of garbage, and a message larger than the broker allows."""
    await demo.publish_as_lu([b"garbage %d" % i for i in range(1100)] + [b"x" * 300_000] * 5)
    await asyncio.sleep(8)
    async with aiohttp.ClientSession() as http, http.get(
            demo.url("NL-NCC") + "/v1/security-events?limit=1",
            headers={"Authorization": f"Bearer {demo.token('NL-NCC')}"}) as resp:
        events = await resp.json()
    print("  suppressed:", [(s["publisher"], s["reason"], s["count"])
                            for s in events["suppressed"]])
    data = demo.root / "NL-NCC" / "data"
    print(f"  NL-NCC ledger: {sum(f.stat().st_size for f in data.iterdir()) / 1e6:.1f} MB")
    try:
        await demo.publish_as_lu([b"y" * (1024 * 1024)])
        print("  a 1 MiB message was ACCEPTED")
    except Exception as exc:  # noqa: BLE001 - the broker's refusal, printed
        print(f"  a 1 MiB message: {str(exc)[:120]}")


async def accounts(demo: Demo) -> None:
    """Findings 3 and 6: a session after a password change; guesses over 10 addresses."""
    config = str(demo.root / "LU-HCPN" / "gateway.toml")
    for password in ("first password 1",):
        demo.cli("operators", "set-password", "attack-duty", "--role", "admin",
                 "--password-stdin", "-c", config, stdin=password + "\n")
    await asyncio.sleep(2.5)
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        print("  login:", await demo.login(http, "LU-HCPN", "attack-duty", "first password 1"))
        demo.cli("operators", "set-password", "attack-duty", "--role", "admin",
                 "--password-stdin", "-c", config, stdin="second password 2\n")
        await asyncio.sleep(2.5)
        async with http.get(demo.url("LU-HCPN") + "/console", allow_redirects=False) as resp:
            print(f"  the same session after the password change: {resp.status} "
                  f"{resp.headers.get('Location')}")
    statuses = []
    for i in range(40):
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{20 + i % 10}", 0))
        async with aiohttp.ClientSession(connector=connector, cookie_jar=_jar()) as http:
            statuses.append(await demo.login(http, "LU-HCPN", "attack-duty", "guess"))
    print("  40 guesses from 10 addresses:", {s: statuses.count(s) for s in set(statuses)})


async def api(demo: Demo) -> None:
    """Findings 7, 10, 11, 12."""
    token = demo.cli("tokens", "add", "attack-dashboard", "--scope", "read", "-c",
                     str(demo.root / "BE-NCCN" / "gateway.toml"))
    await asyncio.sleep(2.5)
    async with aiohttp.ClientSession() as http:
        async with http.post(demo.url("BE-NCCN") + "/v1/keys/rotate", json={},
                             headers={"Authorization": f"Bearer {token}"}) as resp:
            print(f"  a read token rotating keys: {resp.status} {(await resp.json())['detail']}")
        key = f"attack-{uuid.uuid4().hex[:8]}"
        for to in ("NL-NCC", "LU-HCPN"):
            async with http.post(demo.url("BE-NCCN") + f"/v1/alerts?to={to}",
                                 data=CAP.read_bytes(), headers={
                                     "Authorization": f"Bearer {demo.token('BE-NCCN')}",
                                     "Content-Type": "application/cap+xml",
                                     "Idempotency-Key": key}) as resp:
                print(f"  CAP XML to {to} with Idempotency-Key {key}: {resp.status}")
    data = demo.root / "BE-NCCN" / "data"
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (data, *data.iterdir())}
    print("  file modes:", modes)
    sock = socket.create_connection(("127.0.0.1", demo.ports["BE-NCCN"]))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    sock.settimeout(60)
    got = sock.recv(100)
    print(f"  a half-sent request head: closed after {time.monotonic() - start:.1f} s ({got!r})")
    sock.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="crisisgw-demo")
    parser.add_argument("--base-port", type=int, default=8401)
    args = parser.parse_args()
    demo = Demo(Path(args.dir), args.base_port)
    for name, attack in (("peer content (1, 2, 13)", peer_content),
                         ("garbage and size (5)", garbage), ("accounts (3, 6)", accounts),
                         ("API and files (7, 10, 11, 12)", api)):
        print(name)
        await attack(demo)


if __name__ == "__main__":
    asyncio.run(main())
