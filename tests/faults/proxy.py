"""A small asyncio TCP proxy that stands in for network faults (FAULTS.md rows 3, 4, 6, 7).

:class:`TcpProxy` forwards every accepted connection to one target and can, at any
moment:

- ``pause()``: stop forwarding in both directions without closing anything, like a
  silent blackhole (no FIN, no RST; bytes already read are held, new connections are
  accepted by the kernel but never reach the target); ``resume()`` lets the held bytes
  through intact, as TCP retransmission would once the network is back;
- ``reset()``: abort every connection with an RST (``SO_LINGER`` 0) on both sides;
- ``arm_reset(n)``: forward ``n`` more client-to-target bytes, then reset in the middle of
  whatever chunk carries byte ``n`` (a TCP reset mid-frame);
- ``drop(direction)``: read and discard one direction (e.g. the broker's publisher
  confirms and heartbeats) while the other still flows; ``forward()`` ends all faults.

:class:`ProxyThread` runs a proxy on an event loop of its own thread, so tests can
drive it from synchronous code and from any event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

CHUNK = 64 * 1024
#: Time given to the bytes before a mid-stream reset to reach the target's socket.
RESET_GRACE = 0.2
T = TypeVar("T")


class Direction(StrEnum):
    """A direction of a proxied connection."""

    UP = "up"  # client -> target
    DOWN = "down"  # target -> client


@dataclass
class ProxyStats:
    """What the proxy did (counts since it started)."""

    accepted: int = 0
    resets: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    dropped_up: int = 0
    dropped_down: int = 0


def _abort(writer: asyncio.StreamWriter | None, *, rst: bool) -> None:
    """Close a connection at once; with ``rst`` the peer gets an RST instead of a FIN."""
    if writer is None:
        return
    if rst:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: the client side, the target side and the task serving it."""

    def __init__(self, client: asyncio.StreamWriter, owner: asyncio.Task[object] | None) -> None:
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.owner = owner

    def abort(self, *, rst: bool) -> None:
        _abort(self.client, rst=rst)
        _abort(self.target, rst=rst)
        if self.owner is not None and self.owner is not asyncio.current_task():
            self.owner.cancel()


class TcpProxy:
    """Forwards connections on ``127.0.0.1:<port>`` to ``target_host:target_port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self._target = (target_host, target_port)
        self._listen = (host, port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._drop: set[Direction] = set()
        self._reset_budget: int | None = None
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self.port = port
        self.stats = ProxyStats()

    async def start(self) -> int:
        """Listen; returns the port."""
        self._server = await asyncio.start_server(self._serve, *self._listen)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    @property
    def connections(self) -> int:
        """How many proxied connections are open."""
        return len(self._links)

    def pause(self) -> None:
        """Blackhole: forward nothing, close nothing."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, held bytes first."""
        self._flowing.set()

    def drop(self, direction: Direction) -> None:
        """Discard everything that flows in ``direction`` from now on."""
        self._drop.add(direction)

    def forward(self) -> None:
        """End every fault: no drop, no pause, no armed reset."""
        self._drop.clear()
        self._reset_budget = None
        self._flowing.set()

    def reset(self) -> int:
        """RST every open connection; returns how many."""
        links = list(self._links)
        for link in links:
            link.abort(rst=True)
        self._links.clear()
        self.stats.resets += len(links)
        return len(links)

    def arm_reset(self, after_bytes: int) -> None:
        """Reset every connection once ``after_bytes`` more client bytes went through,
        cutting the chunk that carries the last of them."""
        self._reset_budget = after_bytes

    async def close(self) -> None:
        """Stop listening and abort every connection."""
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        owners = [link.owner for link in self._links if link.owner is not None]
        for link in list(self._links):
            link.abort(rst=False)
        self._links.clear()
        for owner in owners:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await owner
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer, asyncio.current_task())
        self._links.add(link)
        self.stats.accepted += 1
        try:
            await self._flowing.wait()  # a blackholed network does not complete a connect
            try:
                t_reader, t_writer = await asyncio.open_connection(*self._target)
            except OSError:
                _abort(writer, rst=True)  # target refuses: so does the proxy
                return
            link.target = t_writer
            up = asyncio.create_task(self._pump(reader, t_writer, Direction.UP))
            down = asyncio.create_task(self._pump(t_reader, writer, Direction.DOWN))
            try:
                await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (up, down):
                    task.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        except asyncio.CancelledError:
            pass
        finally:
            self._links.discard(link)
            for w in (writer, link.target):
                if w is not None and not w.transport.is_closing():
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: Direction) -> None:
        """Copy one direction until EOF, honouring pause, drop and an armed reset."""
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    return  # EOF: the caller closes both sides (AMQP never half-closes)
                await self._flowing.wait()  # paused after the read: hold the bytes
                if direction in self._drop:
                    self._count(direction, len(data), dropped=True)
                    continue
                if direction is Direction.UP and self._reset_budget is not None:
                    if len(data) >= self._reset_budget:
                        part, self._reset_budget = data[:self._reset_budget], None
                        writer.write(part)
                        await writer.drain()
                        self._count(direction, len(part), dropped=False)
                        await asyncio.sleep(RESET_GRACE)
                        self.reset()
                        return
                    self._reset_budget -= len(data)
                writer.write(data)
                await writer.drain()
                self._count(direction, len(data), dropped=False)
        except (ConnectionError, OSError):
            return

    def _count(self, direction: Direction, n: int, *, dropped: bool) -> None:
        s = self.stats
        if direction is Direction.UP:
            s.dropped_up += n if dropped else 0
            s.bytes_up += 0 if dropped else n
        else:
            s.dropped_down += n if dropped else 0
            s.bytes_down += 0 if dropped else n


class ProxyThread:
    """A :class:`TcpProxy` on an event loop of its own thread; every method blocks until
    the proxy has done it."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"tcp-proxy-{target_port}")
        self._thread.start()
        self.proxy: TcpProxy = self._call(lambda: TcpProxy(target_port, target_host))
        self.port: int = asyncio.run_coroutine_threadsafe(
            self.proxy.start(), self._loop).result(10)

    def _call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    @property
    def stats(self) -> ProxyStats:
        """The proxy's counters (a copy)."""
        return self._call(lambda: ProxyStats(**vars(self.proxy.stats)))

    @property
    def connections(self) -> int:
        """Open proxied connections."""
        return self._call(lambda: self.proxy.connections)

    def pause(self) -> None:
        """See :meth:`TcpProxy.pause`."""
        self._call(self.proxy.pause)

    def resume(self) -> None:
        """See :meth:`TcpProxy.resume`."""
        self._call(self.proxy.resume)

    def drop(self, direction: Direction) -> None:
        """See :meth:`TcpProxy.drop`."""
        self._call(lambda: self.proxy.drop(direction))

    def forward(self) -> None:
        """See :meth:`TcpProxy.forward`."""
        self._call(self.proxy.forward)

    def reset(self) -> int:
        """See :meth:`TcpProxy.reset`."""
        return self._call(self.proxy.reset)

    def arm_reset(self, after_bytes: int) -> None:
        """See :meth:`TcpProxy.arm_reset`."""
        self._call(lambda: self.proxy.arm_reset(after_bytes))

    def close(self) -> None:
        """Stop the proxy and its thread."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
