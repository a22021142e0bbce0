"""Shared constrained types of the wire format (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, StringConstraints, WithJsonSchema
from pydantic.functional_validators import BeforeValidator

CENTRE_ID_PATTERN = r"^[A-Z]{2}-[A-Z0-9]{1,16}$"
GROUP_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
KEY_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
INCIDENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"
LANG_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"

_TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
)


class FrozenModel(BaseModel):
    """Base of every wire model: immutable, unknown fields refused, no coercion surprises."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("time must carry a zone")
        return value.astimezone(UTC)
    if not isinstance(value, str) or not _TIME_RE.match(value):
        raise ValueError("time must be an RFC 3339 string such as 2026-11-27T10:00:00.000Z")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def parse_time(value: Any) -> datetime:
    """A wire time (§2.6) as an aware UTC datetime; ``ValueError`` when it is not one.

    The inverse of :func:`format_time`, and the one way stored and wire times are read.
    """
    return _parse_time(value)


def parse_optional_time(value: str | None) -> datetime | None:
    """:func:`parse_time`, passing ``None`` through (a column that may be empty)."""
    return None if value is None else _parse_time(value)


def format_time(value: datetime) -> str:
    """Render a time as the wire form: UTC, millisecond precision, ``Z`` suffix."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.year >= 1000:  # isoformat (C, 3x faster) pads the year; strftime's %Y does not
        return value.isoformat(timespec="milliseconds")[:23] + "Z"
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


UtcTime = Annotated[
    datetime,
    BeforeValidator(_parse_time),
    PlainSerializer(format_time, return_type=str),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "pattern": _TIME_RE.pattern,
         "description": "RFC 3339 time; senders emit UTC with milliseconds and Z"}
    ),
]

CentreId = Annotated[str, StringConstraints(pattern=CENTRE_ID_PATTERN)]
GroupName = Annotated[str, StringConstraints(pattern=GROUP_PATTERN)]
KeyId = Annotated[str, StringConstraints(pattern=KEY_ID_PATTERN)]
MessageId = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
IncidentId = Annotated[str, StringConstraints(pattern=INCIDENT_ID_PATTERN)]
Sha256Hex = Annotated[str, StringConstraints(pattern=SHA256_HEX_PATTERN)]
LangTag = Annotated[str, StringConstraints(pattern=LANG_PATTERN)]


class Mode(StrEnum):
    """Whether a message is real, part of an exercise, or a technical test."""

    ACTUAL = "actual"
    EXERCISE = "exercise"
    TEST = "test"


class Tlp(StrEnum):
    """Traffic Light Protocol 2.0 marking."""

    CLEAR = "CLEAR"
    GREEN = "GREEN"
    AMBER = "AMBER"
    AMBER_STRICT = "AMBER+STRICT"
    RED = "RED"


class Priority(StrEnum):
    """Handling priority; each has an acknowledgement deadline at the receiving centre."""

    ROUTINE = "routine"
    URGENT = "urgent"
    FLASH = "flash"
