"""The fault proxy itself: forward, pause (blackhole), reset (RST), mid-stream reset, drop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.faults.proxy import Direction, ProxyThread, TcpProxy


@dataclass
class Sink:
    """A target server that records what it received and echoes it back."""

    received: bytearray = field(default_factory=bytearray)
    closed: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received.extend(data)
                writer.write(data)
                await writer.drain()
            self.closed.append("eof")
        except ConnectionResetError:
            self.closed.append("reset")
        finally:
            writer.close()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    """An echo server on a free port."""
    s = Sink()
    s.server = await asyncio.start_server(s.serve, "127.0.0.1", 0)
    s.port = s.server.sockets[0].getsockname()[1]
    yield s
    s.server.close()
    await s.server.wait_closed()


@pytest.fixture
async def proxy(sink: Sink) -> AsyncIterator[TcpProxy]:
    """A proxy in front of the sink."""
    p = TcpProxy(sink.port)
    await p.start()
    yield p
    await p.close()


async def connect(p: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection through the proxy."""
    return await asyncio.open_connection("127.0.0.1", p.port)


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a client connection, ignoring a reset."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def test_forwards_both_directions(proxy: TcpProxy, sink: Sink) -> None:
    """Bytes reach the target and its answer comes back unchanged."""
    reader, writer = await connect(proxy)
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
    assert bytes(sink.received) == b"hello"
    assert proxy.stats.bytes_up == 5
    assert proxy.stats.bytes_down == 5
    await close(writer)


async def test_pause_holds_bytes_without_closing_and_resume_delivers_them(
        proxy: TcpProxy, sink: Sink) -> None:
    """Paused, nothing is forwarded and nothing is closed; resumed, the held bytes arrive."""
    reader, writer = await connect(proxy)
    writer.write(b"a")
    assert await asyncio.wait_for(reader.readexactly(1), 5) == b"a"
    proxy.pause()
    writer.write(b"held")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.5)
    assert bytes(sink.received) == b"a"
    assert not writer.transport.is_closing()
    proxy.resume()
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
    await close(writer)


async def test_new_connection_during_pause_reaches_target_only_after_resume(
        proxy: TcpProxy, sink: Sink) -> None:
    """A connection accepted during a blackhole is not passed on until it ends."""
    proxy.pause()
    reader, writer = await connect(proxy)
    writer.write(b"x")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(1), 0.5)
    assert sink.received == b""
    proxy.resume()
    assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
    await close(writer)


async def test_reset_sends_rst_to_both_sides(proxy: TcpProxy, sink: Sink) -> None:
    """reset() aborts with an RST: the client's read fails with a reset, so does the target's."""
    reader, writer = await connect(proxy)
    writer.write(b"ping")
    await asyncio.wait_for(reader.readexactly(4), 5)
    assert proxy.reset() == 1
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(10), 5)
    for _ in range(50):
        if sink.closed:
            break
        await asyncio.sleep(0.02)
    assert sink.closed == ["reset"]
    assert proxy.connections == 0
    writer.close()


async def test_armed_reset_cuts_the_stream_after_exactly_n_bytes(
        proxy: TcpProxy, sink: Sink) -> None:
    """arm_reset(n): the target gets the first n bytes of a chunk, then both sides are reset."""
    reader, writer = await connect(proxy)
    proxy.arm_reset(1000)
    writer.write(b"z" * 5000)
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(5000), 5)
    assert bytes(sink.received) == b"z" * 1000
    assert proxy.stats.resets == 1
    writer.close()


async def test_drop_down_discards_answers_while_requests_flow(
        proxy: TcpProxy, sink: Sink) -> None:
    """drop(DOWN): the target receives, the client hears nothing; forward() restores it."""
    reader, writer = await connect(proxy)
    proxy.drop(Direction.DOWN)
    writer.write(b"lost-answer")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(1), 0.5)
    assert bytes(sink.received) == b"lost-answer"
    assert proxy.stats.dropped_down == len(b"lost-answer")
    proxy.forward()
    writer.write(b"ok")
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"ok"
    await close(writer)


async def test_refused_target_resets_the_client() -> None:
    """When the target refuses the connection, the client is cut off too."""
    probe = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    p = TcpProxy(port)
    await p.start()
    try:
        reader, writer = await connect(p)
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(10), 5) == b""
        writer.close()
    finally:
        await p.close()


def test_proxy_thread_is_driven_from_synchronous_code() -> None:
    """ProxyThread runs its own loop: a blocking client gets through, pause holds it."""
    import socket  # noqa: PLC0415 - only this test is synchronous

    with socket.create_server(("127.0.0.1", 0)) as target:
        p = ProxyThread(target.getsockname()[1])
        try:
            with socket.create_connection(("127.0.0.1", p.port), timeout=5) as client:
                conn, _ = target.accept()
                with conn:
                    client.sendall(b"one")
                    assert conn.recv(10) == b"one"
                    p.pause()
                    client.sendall(b"two")
                    conn.settimeout(0.3)
                    with pytest.raises(TimeoutError):
                        conn.recv(10)
                    p.resume()
                    conn.settimeout(5)
                    assert conn.recv(10) == b"two"
                    assert p.stats.bytes_up == 6
        finally:
            p.close()
