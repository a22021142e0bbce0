"""Slow and idle HTTP clients (finding 7): a half-sent request head or body is cut off,
and open connections are capped, so idle half-requests cannot pile up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.adapters.stores.keys import current_signing_key
from gateway.app import Node
from gateway.config import BrokerSection, load_settings
from tests.integration.harness import Federation

pytestmark = pytest.mark.broker
HEADER, BODY, CAP = 2.0, 2.0, 16


@contextlib.asynccontextmanager
async def _node(fed: Federation, tmp_path: Path) -> AsyncIterator[tuple[int, str]]:
    """A clone of DE-NW that talks to nobody, with short limits."""
    source = fed.nodes["DE-NW"]
    settings = load_settings(source.config)
    settings = settings.model_copy(update={
        "api": settings.api.model_copy(update={
            "port": source.port + 1100, "header_seconds": HEADER, "body_seconds": BODY,
            "max_connections": CAP}),
        "node": settings.node.model_copy(update={  # its key in use (it may have rotated)
            "data_dir": tmp_path / "data", "signing_key_file": current_signing_key(settings)[1],
            "signing_key_id": current_signing_key(settings)[0].kid}),
        "broker": BrokerSection(url=SecretStr("amqp://x:y@127.0.0.1:1/none")), "peers": ()})
    node = Node(settings)
    await node.start()
    try:
        yield settings.api.port, source.token
    finally:
        await node.stop()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(4096), seconds):
            pass
    except TimeoutError:
        return False
    return True


async def test_a_half_sent_request_head_is_cut_off(federation: Federation,
                                                   tmp_path: Path) -> None:
    """A client that starts a request head and stops is disconnected after the limit."""
    async with _node(federation, tmp_path) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        start = time.monotonic()
        assert await _closed_within(reader, HEADER + 5)
        assert time.monotonic() - start < HEADER + 5
        writer.close()


async def test_a_stalled_body_gets_408(federation: Federation, tmp_path: Path) -> None:
    """A body announced but not sent is answered 408 (problem+json) after the limit."""
    async with _node(federation, tmp_path) as (port, token):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/sitreps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + token.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"to\":")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BODY + 5)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert b"application/problem+json" in head
        writer.close()


async def test_open_connections_are_capped(federation: Federation, tmp_path: Path) -> None:
    """Beyond the cap, a new connection is closed at once; the idle ones are reaped after
    the header limit and the node answers again."""
    async with _node(federation, tmp_path) as (port, _):
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CAP * 2)]
        closed = await asyncio.gather(*(_closed_within(r, 0.5) for r, _ in conns))
        assert sum(closed) >= CAP - 2, closed
        for _, w in conns:
            w.close()
        await asyncio.sleep(HEADER + 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(12), 5)).startswith(b"HTTP/1.1 200")
        writer.close()


async def _raw(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send raw bytes and read the answer to the end (the node closes the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("request_bytes", [
    b"GET /v1/commchecks?limit=" + b"9" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS to a plain port\r\n\r\n",
], ids=["request-line-over-8190", "header-over-8190", "bad-framing", "not-http"])
async def test_a_request_aiohttp_cannot_parse_gets_a_problem(
        federation: Federation, tmp_path: Path, request_bytes: bytes) -> None:
    """What the HTTP parser refuses before any route runs is a problem+json 4xx like
    every other refusal (not aiohttp's text/plain), the connection is closed, and the
    node goes on answering."""
    async with _node(federation, tmp_path) as (port, _):
        head, body = await _raw(port, request_bytes)
        assert head.split(b" ", 2)[1] == b"400", head
        assert b"content-type: application/problem+json" in head.lower(), head
        problem = json.loads(body)
        assert problem["status"] == 400
        assert problem["title"] == "Malformed Request"
        assert "8190" in problem["detail"]
        head, _ = await _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
