"""Strict I-JSON (RFC 7493) parsing of untrusted bytes.

Python's ``json`` keeps the last of duplicate keys, accepts NaN and Infinity, and
allows lone surrogates and integers of any size. Signed input must be I-JSON, so every
one of those is refused here, before anything is verified or stored.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from gateway.errors import MalformedInput

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 32


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise MalformedInput("not_ijson", f"duplicate member name {key!r}")
        obj[key] = value
    return obj


def _constant(name: str) -> Any:
    raise MalformedInput("not_ijson", f"{name} is not a JSON number")


def _int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise MalformedInput("not_ijson", f"integer {text[:24]} is beyond 2^53-1")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedInput("not_ijson", f"number {text[:24]} overflows a double")
    return value


def _check_strings_and_depth(root: Any) -> None:
    # depth counts containers only: 32 nested arrays holding a scalar are allowed.
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH and isinstance(node, (dict, list)):
            raise MalformedInput("not_ijson", f"nesting deeper than {MAX_DEPTH}")
        if isinstance(node, str):
            _check_str(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                _check_str(key)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


def _check_str(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedInput("not_ijson", "string holds a lone surrogate") from exc


def loads(data: bytes | str) -> Any:
    """Parse I-JSON; raise :class:`MalformedInput` (reason ``not_ijson``) otherwise."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedInput("not_ijson", "bytes are not UTF-8") from exc
    else:
        text = data
    if text.startswith("\ufeff"):
        raise MalformedInput("not_ijson", "byte order mark is not allowed")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_constant=_constant,
            parse_int=_int,
            parse_float=_float,
        )
    except MalformedInput:
        raise
    except RecursionError as exc:
        raise MalformedInput("not_ijson", f"nesting deeper than {MAX_DEPTH}") from exc
    except ValueError as exc:
        raise MalformedInput("not_ijson", f"invalid JSON: {exc}") from exc
    if _may_be_deep_or_surrogate(text):
        _check_strings_and_depth(value)
    return value


#: ``\\u`` followed by D8..DF: the only way a lone surrogate gets into a value parsed
#: from UTF-8 (the decoder refuses encoded surrogates). A pair, or an escaped backslash
#: before "ud8..", also matches: those take the full check, which decides.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _may_be_deep_or_surrogate(text: str) -> bool:
    """False only when the parsed value can hold neither a lone surrogate nor nesting
    deeper than :data:`MAX_DEPTH`: the text has at most that many opening brackets
    (brackets inside strings count too: that errs towards checking) and, in a str
    handed to :func:`loads` rather than bytes, only what UTF-8 can encode."""
    if text.count("[") + text.count("{") > MAX_DEPTH:
        return True
    if _SURROGATE_ESCAPE.search(text) is not None:
        return True
    return not _encodable(text)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
