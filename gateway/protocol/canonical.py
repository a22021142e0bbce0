"""RFC 8785 canonical bytes and digests (pure).

Most values the node signs are "plain": objects with ASCII member names, strings,
integers within ±(2^53-1), booleans and null, nested in lists and objects. For those the
JCS bytes are exactly what the standard library's encoder writes with sorted keys and
no spaces, at a fraction of the cost:

* ASCII names sort the same by UTF-16 code units (JCS) as by code points (Python);
* JCS escapes strings as ECMAScript does: ``"``, ``\\``, the short forms ``\\b \\t \\n
  \\f \\r`` and ``\\u00xx`` (lower-case) for the other controls, nothing else, which is
  what ``json.dumps(..., ensure_ascii=False)`` writes;
* a safe integer is written in decimal by both.

Every other value (a float, a non-ASCII name, a large integer, a type that is not JSON)
goes through the reference implementation, which also gives every refusal its wording.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from gateway.errors import MalformedInput

_MAX_SAFE = 2**53 - 1
#: Deeper values take the reference path (which refuses what has no canonical form).
_PLAIN_DEPTH = 64
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True,
                           separators=(",", ":")).encode


def _plain(value: Any) -> bool:
    """True when ``value`` is made only of what the fast encoder writes as JCS does."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is str or kind is bool or node is None:
            continue
        if kind is int:
            if -_MAX_SAFE <= node <= _MAX_SAFE:
                continue
            return False
        if depth >= _PLAIN_DEPTH:
            return False
        if kind is dict:
            for key, item in node.items():
                if type(key) is not str or not key.isascii():
                    return False
                stack.append((item, depth + 1))
        elif kind is list:
            stack.extend((item, depth + 1) for item in node)
        else:
            return False
    return True


def canonical_bytes(value: Any) -> bytes:
    """Return the RFC 8785 (JCS) serialisation of ``value``.

    Raises :class:`MalformedInput` when the value has no canonical form (for example an
    integer beyond 2^53-1, a non-finite float or a lone surrogate).
    """
    if _plain(value):
        try:
            return _ENCODE(value).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedInput("not_ijson", "no canonical form: a string holds a lone "
                                 "surrogate") from exc
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise MalformedInput("not_ijson", f"no canonical form: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
