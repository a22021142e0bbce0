"""Limits on HTTP clients: slow or idle clients are cut off, and open connections capped.

aiohttp closes a connection that has not completed a request within its keep-alive
timeout, counted from the connection's start (or the last answer); the default of an
hour would let idle half-requests pile up, so the node sets its own. Bodies are read
under a deadline (:data:`BODY_SECONDS`, see :func:`read_deadline`), and
:class:`CappedRunner` closes connections beyond :data:`MAX_CONNECTIONS` at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger("crisisgw.http")

#: A client must send a complete request head within this many seconds of connecting,
#: or of our last answer on a kept-alive connection.
HEADER_SECONDS = 15.0
#: A request body must arrive within this many seconds.
BODY_SECONDS = 30.0
#: Open connections at most (the console keeps one per open page for live events).
MAX_CONNECTIONS = 512


def read_deadline(seconds: float = BODY_SECONDS) -> asyncio.Timeout:
    """The deadline for reading a request body (raises ``TimeoutError`` when it passes)."""
    return asyncio.timeout(seconds)


class CappedRunner(web.AppRunner):
    """An app runner whose clients must be quick to send their request head, and whose
    open connections are capped (the connection over the cap is closed at once)."""

    def __init__(self, app: web.Application, *, max_connections: int = MAX_CONNECTIONS,
                 header_seconds: float = HEADER_SECONDS, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", header_seconds)
        super().__init__(app, **kwargs)
        self._max_connections = max_connections
        self.refused = 0

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        admit = server.connection_made

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            admit(handler, transport)
            if len(server.connections) > self._max_connections:
                self.refused += 1
                if self.refused == 1 or self.refused % 100 == 0:
                    log.warning("http_connections_capped", limit=self._max_connections,
                                refused=self.refused)
                transport.close()

        server.connection_made = connection_made  # type: ignore[method-assign]
        return server
