"""The load-time check of a message template's body (pure): its defaults are valid
fields of its kind of body, and filling in its required fields makes a complete body.

Required fields are named by paths (``incident.id``, ``assistance_requests.0.description``)
checked against the body model's fields; a model field that every body needs must be in
the defaults, or be reachable by filling in the required fields.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from gateway.protocol.alert import Alert
from gateway.protocol.sitrep import PLAIN_TEXT, Sitrep
from gateway.protocol.types import LANG_PATTERN

BODIES: dict[str, type[BaseModel]] = {"sitrep": Sitrep, "alert": Alert}
_LANG_RE = re.compile(LANG_PATTERN)
#: What :func:`lookup` returns for a path the data does not hold.
ABSENT: Any = object()


def split_path(path: str) -> tuple[str, ...]:
    """A field path's parts."""
    return tuple(path.split("."))


def lookup(value: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` in plain JSON data, or :data:`ABSENT`."""
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return ABSENT
    return value


def _unwrap(tp: Any) -> Any:
    """The type under ``Annotated`` and ``X | None``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def field_type(model: type[BaseModel], path: Sequence[str]) -> Any:
    """The type of the body field at ``path``; ``LookupError`` naming the part that is
    not a field."""
    tp: Any = model
    for index, part in enumerate(path):
        tp = _unwrap(tp)
        where = ".".join(path[:index + 1])
        if _is_model(tp) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        elif typing.get_origin(tp) in (tuple, list) and part.isdigit():
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict and _LANG_RE.fullmatch(part):
            tp = typing.get_args(tp)[1]
        else:
            raise LookupError(f"{where} is not a field")
    return _unwrap(tp)


def _first_absent(value: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The shortest part of ``path`` that ``value`` does not hold (None: it holds it all)."""
    for length in range(1, len(path) + 1):
        if lookup(value, path[:length]) is ABSENT:
            return path[:length]
    return None


def _uncovered(model: type[BaseModel], loc: tuple[str, ...],
               required: frozenset[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The fields a body must have at ``loc`` (absent from the defaults) that filling
    the ``required`` fields would still leave out."""
    if loc in required:
        return []
    below = {r[len(loc)] for r in required if len(r) > len(loc) and r[:len(loc)] == loc}
    if not below:
        return [loc]
    try:
        tp = field_type(model, loc)
    except LookupError:
        return []  # reported for the required path itself
    if _is_model(tp):
        return [p for name, info in tp.model_fields.items() if info.is_required()
                for p in _uncovered(model, (*loc, name), required)]
    if typing.get_origin(tp) in (tuple, list):
        return [p for index in sorted(below) for p in _uncovered(model, (*loc, index), required)]
    return []


def body_problems(kind: str, defaults: Mapping[str, Any], required: Sequence[str]) -> list[str]:
    """What is wrong with a template's body: each problem names the field. Empty when
    the defaults are valid fields of a ``kind`` body and filling the ``required`` fields
    makes a complete one."""
    model = BODIES[kind]
    paths = frozenset(split_path(p) for p in required)
    problems: list[str] = []
    left_out: list[tuple[str, ...]] = []
    for path in sorted(paths):
        name = ".".join(path)
        try:
            field_type(model, path)
        except LookupError as exc:
            problems.append(f"required: {exc} of a {kind}")
            continue
        absent = _first_absent(defaults, path)
        if absent is None:
            problems.append(f"required: {name} has a default too; it is the submitter's")
            continue
        left_out += _uncovered(model, absent, paths)
    try:
        model.model_validate(defaults, context=PLAIN_TEXT)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            loc = tuple(str(p) for p in err["loc"])
            if err["type"] == "missing":
                left_out += _uncovered(model, loc, paths)
            else:
                problems.append(f"defaults.{'.'.join(loc)}: {err['msg']}")
    problems += [f"{'.'.join(p)}: every {kind} needs it: give it a default or list it in "
                 f"required" for p in dict.fromkeys(left_out)]
    return problems
