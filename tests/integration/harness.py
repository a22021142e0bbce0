"""A real federation for integration tests: node processes on the real RabbitMQ.

Each test session provisions its own vhosts and users (random prefix) on the local
broker with the demo's provisioning code, starts ``python -m gateway run`` per centre,
and removes the vhosts and users afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.abc
import aiohttp

from gateway.adapters.provision import delete
from gateway.adapters.stores.keys import current_signing_key
from gateway.config import Settings, load_settings, update_config
from gateway.demo import CENTRES, BrokerTls, local_tls, peer_user, prepare
from gateway.errors import ConfigError
from gateway.protocol.keys import SigningKey
from gateway.protocol.signing import seal
from gateway.protocol.types import format_time
from tests.pg import Postgres

AMQP = "amqp://127.0.0.1:5672/"


def _local_tls() -> BrokerTls | None:
    """Every test federation's links are AMQPS to the local broker's TLS listener
    (deploy/broker-tls.sh local, which deploy/setup.sh runs), as between real centres;
    ``CRISISGW_TEST_TLS=0`` runs them in plaintext on loopback instead."""
    if os.environ.get("CRISISGW_TEST_TLS", "1") == "0":
        return None
    try:
        return local_tls()
    except ConfigError:
        return None


TLS = _local_tls()
#: The broker port the nodes' links use (proxies in the fault tests forward to it).
LINK_PORT = TLS.port if TLS else 5672


async def amqp_connect(url: str) -> aio_pika.abc.AbstractConnection:
    """A test's own connection to the local broker (TLS verified against its CA)."""
    if TLS is not None and url.startswith("amqps://"):
        ctx = ssl.create_default_context(cadata=TLS.ca_pem())
        return await aio_pika.connect(url, ssl_context=ctx)
    return await aio_pika.connect(url)


def free_base_port(count: int = 4) -> int:
    """A base port with ``count`` consecutive free ports on 127.0.0.1.

    The ports lie below Linux's ephemeral range (32768-60999): a node stopped by a test
    must find its port free again, which an outgoing connection could otherwise take.
    """
    for _ in range(200):
        base = 20000 + secrets.randbelow(32768 - 20000 - count)
        socks = []
        try:
            for i in range(count):
                s = socket.socket()
                socks.append(s)  # closed below even when bind fails
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


@dataclass
class NodeHandle:
    """One node process of the federation."""

    centre: str
    config: Path
    port: int
    token: str
    settings: Settings
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        """The node's log file."""
        return self.config.parent / "node.log"

    def key(self) -> SigningKey:
        """The node's current signing key (after a rotation, the one its ledger names);
        tests use it to forge or replay on the node's behalf."""
        return current_signing_key(load_settings(self.config))[0]


@dataclass
class Federation:
    """Four nodes on the local broker."""

    root: Path
    prefix: str
    nodes: dict[str, NodeHandle] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, overrides: dict[str, Any] | None = None, *,
               postgres: Postgres | None = None,
               on_postgres: tuple[str, ...] = ()) -> Federation:
        """Provision vhosts, users, keys and configs (does not start the nodes). The
        centres ``on_postgres`` keep their ledgers in schemas of ``postgres``; the others
        in their SQLite files."""
        prefix = f"t{secrets.token_hex(3)}"
        base = free_base_port()
        paths = prepare(root, base, AMQP, prefix=prefix, user_prefix=f"{prefix}.",
                        overrides=overrides, tls=TLS)
        for cid in on_postgres:
            assert postgres is not None
            url = postgres.ledger_url(f"{prefix}_{cid.lower().replace('-', '_')}")
            update_config(paths[cid], lambda raw, url=url: raw.__setitem__(
                "ledger", {"url": url}))
        fed = cls(root=root, prefix=prefix)
        for index, (cid, path) in enumerate(paths.items()):
            fed.nodes[cid] = NodeHandle(
                centre=cid, config=path, port=base + index,
                token=(path.parent / "api-token").read_text().strip(),
                settings=load_settings(path))
        return fed

    def start(self, *centres: str, env: dict[str, str] | None = None) -> None:
        """Start node processes (all by default); ``env`` adds environment variables
        (e.g. ``CRISISGW_FAILPOINTS``)."""
        for cid in centres or tuple(self.nodes):
            node = self.nodes[cid]
            if node.proc is not None and node.proc.poll() is None:
                continue
            with node.log.open("ab") as log:
                node.proc = subprocess.Popen(
                    [sys.executable, "-m", "gateway", "run", "-c", str(node.config),
                     "--log-format", "json", "--log-level", "debug"],
                    stdout=log, stderr=log,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def stop(self, *centres: str, kill: bool = False) -> None:
        """Stop node processes (SIGTERM, or SIGKILL with ``kill``)."""
        for cid in centres or tuple(self.nodes):
            proc = self.nodes[cid].proc
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def destroy(self) -> None:
        """Stop everything and remove the broker vhosts and users."""
        self.stop()
        vhosts = [c.vhost(self.prefix) for c in CENTRES]
        users = [f"{self.prefix}.{c.id}" for c in CENTRES]
        users += [peer_user(a.id, b.id, f"{self.prefix}.") for a in CENTRES for b in CENTRES
                  if a.id != b.id]
        delete(vhosts, users)

    async def wait_ready(self, timeout: float = 60) -> None:
        """Wait until every started node answers /readyz with 200."""
        async def ready() -> bool:
            for node in self.nodes.values():
                if node.proc is None or node.proc.poll() is not None:
                    continue
                status, _ = await self.api(node.centre, "GET", "/readyz")
                if status != 200:
                    return False
            return True
        await wait_until(ready, timeout, "nodes ready")

    async def api(self, centre: str, method: str, path: str, body: Any = None,
                  headers: dict[str, str] | None = None, token: str | None = None,
                  raw: bytes | None = None, port: int | None = None) -> tuple[int, Any]:
        """Call a node's HTTP API (at ``port``: one instance of it); returns (status,
        parsed JSON or text)."""
        node = self.nodes[centre]
        hdrs = {"Authorization": f"Bearer {token if token is not None else node.token}"}
        if body is not None:
            raw = json.dumps(body).encode()
        if raw is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        try:
            async with aiohttp.ClientSession() as s, s.request(
                method, f"http://127.0.0.1:{port or node.port}{path}", data=raw, headers=hdrs,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                text = await resp.text()
                try:
                    return resp.status, json.loads(text)
                except ValueError:
                    return resp.status, text
        except aiohttp.ClientError as exc:
            return 0, str(exc)

    async def inject(self, into: str, as_peer: str, body: bytes,
                     user_override: str | None = None) -> None:
        """Publish raw bytes into ``into``'s inbox with the credentials ``into`` granted
        ``as_peer`` (what a peer, or an attacker holding its password, can do)."""
        peer = self.nodes[as_peer].settings.peer(into)
        assert peer is not None
        url = peer.inbox_url.get_secret_value()
        user = peer_user(as_peer, into, f"{self.prefix}.")
        conn = await amqp_connect(url)
        try:
            ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
            ex = await ch.get_exchange("crisisgw.inbox", ensure=False)
            await ex.publish(aio_pika.Message(body, user_id=user_override or user,
                                              message_id=uuid.uuid4().hex,
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                             routing_key=f"test.{as_peer}", mandatory=True)
        finally:
            await conn.close()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``check`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


EXAMPLE = {"to": ["NL-NCC", "LU-HCPN", "DE-NW"], "tlp": "GREEN",
           "sitrep": {"incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
                      "report_number": 1, "severity": "severe",
                      "summary": "Water levels rising at Liège."}}


def sitrep_body(incident: str, number: int = 1) -> dict[str, Any]:
    """A minimal valid sitrep body on the wire."""
    return {"incident": {"id": incident, "title": "Test incident"}, "report_number": number,
            "severity": "moderate", "summary": {"en": f"report {number}"}}


def envelope(sender: str, to: list[str], *, created: datetime | None = None,
             lifetime: timedelta = timedelta(hours=1), body: dict[str, Any] | None = None,
             **fields: Any) -> dict[str, Any]:
    """A sitrep envelope as a peer would build it (fields may be overridden)."""
    created = created or datetime.now(UTC)
    env: dict[str, Any] = {
        "v": 1, "id": str(uuid.uuid4()), "type": "sitrep", "from": sender, "to": to,
        "created": format_time(created), "expires": format_time(created + lifetime),
        "mode": "test", "tlp": "GREEN", "priority": "routine", "incident": "TEST-INJECT",
        "body": body if body is not None else sitrep_body("TEST-INJECT"),
    }
    env.update(fields)
    return env


def sealed(env: dict[str, Any], key: SigningKey) -> bytes:
    """Signed wire bytes."""
    return seal(env, key).wire


async def console_page(fed: Federation, centre: str, path: str) -> str:
    """A console page as the node's operator sees it (logged in with its password)."""
    import re  # noqa: PLC0415

    node = fed.nodes[centre]
    password = (node.config.parent / "operator-password").read_text().strip()
    base = f"http://127.0.0.1:{node.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/console/login") as resp:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
        assert token is not None
        async with http.post(f"{base}/console/login", allow_redirects=False, data={
                "csrf_token": token.group(1), "name": "operator", "password": password}) as resp:
            assert resp.status == 303, await resp.text()
        async with http.get(f"{base}{path}") as resp:
            assert resp.status == 200, path
            return await resp.text()
