"""What the API's handlers share: the node's and the client's keys, and the parsing of
ids, filters and pages from a request (each failure a 400 or 404 problem)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.errors import InvalidRequest, NotFound
from gateway.protocol import ijson
from gateway.protocol.types import UUID_PATTERN
from gateway.service.node import NodeApi
from gateway.service.paging import decode_cursor, next_cursor
from gateway.web.limits import read_deadline
from gateway.web.problems import PayloadTooLarge, RequestTimeout, UnsupportedMediaType

NODE: web.AppKey[NodeApi] = web.AppKey("node")
CLIENT: web.RequestKey[str] = web.RequestKey("client", str)
MAX_LIMIT = 1000


def message_id_of(request: web.Request) -> str:
    """The ``{id}`` of the path, a lower-case UUID (else 404)."""
    value = request.match_info["id"]
    if not re.fullmatch(UUID_PATTERN, value):
        raise NotFound("Not found", "message ids are lower-case UUIDs")
    return value


def filters_of(request: web.Request, allowed: tuple[str, ...], *, paged: bool = False
               ) -> tuple[dict[str, str], int]:
    """The filters ``allowed`` and the clamped ``limit`` (and, for a ``paged`` list,
    ``after``); any other query parameter is a 400."""
    filters = {k: v for k, v in request.query.items() if k in allowed}
    known = {*allowed, "limit", *(("after",) if paged else ())}
    unknown = sorted(set(request.query) - known)
    if unknown:
        raise InvalidRequest("Unknown filter", f"unknown query parameters: {unknown}",
                              [{"loc": ["query", u], "msg": "unknown parameter"} for u in unknown])
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError as exc:
        raise InvalidRequest("Bad limit", "limit must be an integer") from exc
    return filters, max(1, min(limit, MAX_LIMIT))


def after_cursor(request: web.Request, arity: int) -> tuple[str, ...] | None:
    """The ordering values of ``?after=`` (the ``next`` of an earlier page), if given."""
    cursor = request.query.get("after")
    return None if cursor is None else decode_cursor(cursor, arity)


def before_seq(request: web.Request) -> int | None:
    """``?after=`` of a list ordered by sequence number, newest first."""
    after = after_cursor(request, 1)
    if after is None:
        return None
    if not after[0].isdigit() or len(after[0]) > 18:
        raise InvalidRequest("Bad cursor", "after= must be the 'next' value of an earlier page")
    return int(after[0])


def page_of(items: list[dict[str, Any]], cursors: list[tuple[str, ...]],
            limit: int) -> web.Response:
    """A page of a list and the ``next`` cursor (null on the last page)."""
    return web.json_response({"items": items, "next": next_cursor(cursors, limit)})


async def read_json(request: web.Request) -> tuple[Any, bytes]:
    """An I-JSON body (415 for another media type) and its bytes."""
    ctype = request.content_type
    if ctype != "application/json":
        raise UnsupportedMediaType("Unsupported media type",
                              f"send application/json, not {ctype or 'nothing'}")
    raw = await read_body(request)
    return ijson.loads(raw), raw


async def read_body(request: web.Request) -> bytes:
    """The body, within the size limit (413) and the time limit (408)."""
    node = request.app[NODE]
    limit = node.settings.api.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge("Payload too large", f"the limit is {limit} bytes")
    body = bytearray()
    try:
        async with read_deadline(node.settings.api.body_seconds):
            async for chunk in request.content.iter_chunked(64 * 1024):
                body.extend(chunk)
                if len(body) > limit:
                    raise PayloadTooLarge("Payload too large",
                                          f"the limit is {limit} bytes")
    except TimeoutError as exc:
        raise RequestTimeout("Request timeout",
                              f"the body did not arrive within "
                              f"{node.settings.api.body_seconds:g} s") from exc
    return bytes(body)
