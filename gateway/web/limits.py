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
from aiohttp.web_request import BaseRequest

from gateway.web.problems import problem

log = structlog.get_logger("crisisgw.http")

#: A client must send a complete request head within this many seconds of connecting,
#: or of our last answer on a kept-alive connection.
HEADER_SECONDS = 15.0
#: A request body must arrive within this many seconds.
BODY_SECONDS = 30.0
#: Open connections at most (the console keeps one per open page for live events).
MAX_CONNECTIONS = 512
#: A request line, and each header line, at most this many bytes (else a 400).
MAX_LINE_BYTES = 8190


def read_deadline(seconds: float = BODY_SECONDS) -> asyncio.Timeout:
    """The deadline for reading a request body (raises ``TimeoutError`` when it passes)."""
    return asyncio.timeout(seconds)


class CappedRunner(web.AppRunner):
    """An app runner whose clients must be quick to send their request head, and whose
    open connections are capped (the connection over the cap is closed at once)."""

    def __init__(self, app: web.Application, *, max_connections: int = MAX_CONNECTIONS,
                 header_seconds: float = HEADER_SECONDS, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", header_seconds)
        kwargs.setdefault("max_line_size", MAX_LINE_BYTES)
        kwargs.setdefault("max_field_size", MAX_LINE_BYTES)
        super().__init__(app, **kwargs)
        self._max_connections = max_connections
        self.refused = 0

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer  # only __call__ differs: no state to add
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


class _ProblemHandler(RequestHandler):
    """aiohttp's per-connection protocol, whose answer to a request it could not parse
    (a request line or header over its limits, bad framing, a method that is not HTTP)
    is problem+json like every other refusal, with the connection closed. What the
    client sent is not logged: a request line can hold what should never be in a log."""

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("an answer is already under way on this connection")
        if status >= 500:
            log.error("http_request_failed", exc_info=exc)
            response = problem(500, "Internal Server Error",
                               "the request could not be handled; it was not acted on")
        else:
            log.info("http_request_malformed", status=status,
                     error=type(exc).__name__ if exc else None)
            response = problem(status, "Malformed Request",
                               "the request is not well-formed HTTP or is over a limit "
                               f"(request line and each header at most {MAX_LINE_BYTES} bytes)")
        response.force_close()
        return response


class _ProblemServer(web.Server):
    """aiohttp's server, making :class:`_ProblemHandler` protocols."""

    def __call__(self) -> RequestHandler:
        return _ProblemHandler(self, loop=self._loop, **self._kwargs)
