"""RFC 8785 canonical bytes and digests (pure)."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from gateway.errors import MalformedInput


def canonical_bytes(value: Any) -> bytes:
    """Return the RFC 8785 (JCS) serialisation of ``value``.

    Raises :class:`MalformedInput` when the value has no canonical form (for example an
    integer beyond 2^53-1 or a non-finite float).
    """
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise MalformedInput("not_ijson", f"no canonical form: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
