"""Keyset pagination: every list is read in a fixed order, a page at a time, and the
``after`` cursor of the next page names the last row of this one (pure).

A cursor is opaque to clients: the base64url form of a JSON array with the ordering
values of that row. Reading the page after it costs one indexed range scan, however
deep in the history the page is (an ``OFFSET`` would re-read every row before it).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from gateway.errors import InvalidRequest

#: Long enough for any cursor this node makes; anything longer is refused unread.
MAX_CURSOR = 600


def encode_cursor(values: Sequence[str]) -> str:
    """The cursor for a row whose ordering values are ``values``."""
    raw = json.dumps(list(values), separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> tuple[str, ...]:
    """The ordering values ``cursor`` names; :class:`InvalidRequest` if it is not a
    cursor of a list with ``arity`` ordering values."""
    bad = InvalidRequest("Bad cursor", "after= must be the 'next' value of an earlier page",
                         [{"loc": ["query", "after"], "msg": "not a cursor of this list"}])
    if not cursor or len(cursor) > MAX_CURSOR:
        raise bad
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise bad from exc
    if not (isinstance(value, list) and len(value) == arity
            and all(isinstance(v, str) for v in value)):
        raise bad
    return tuple(value)


def next_cursor(rows: Sequence[Sequence[str]], limit: int) -> str | None:
    """The cursor of the page after ``rows`` (their ordering values), None on a last
    page (fewer rows than asked for)."""
    return encode_cursor(rows[-1]) if rows and len(rows) >= limit else None
