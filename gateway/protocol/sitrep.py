"""Body of a ``sitrep`` message: a structured situation report (pure).

Informed by OASIS EDXL-SitRep 1.0 and EMSI (ISO/TR 22351); severity, urgency and
certainty reuse the CAP 1.2 vocabularies in lower case.  Texts are ``LocalizedText``:
on the wire always a ``{language tag: text}`` object; plain strings are accepted as
input and tagged with the report's ``language`` (or ``und``, BCP 47 "undetermined").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.protocol.types import (
    LANG_PATTERN,
    CentreId,
    FrozenModel,
    IncidentId,
    LangTag,
    Sha256Hex,
    UtcTime,
)

SITREP_TYPE = "sitrep"
UNDETERMINED_LANG = "und"
#: Validation context that lets a submission use plain strings for texts.
PLAIN_TEXT: dict[str, bool] = {"plain_text": True}
MAX_TEXT_CHARS = 20_000
MAX_LANGUAGES = 32
MAX_ITEMS = 100
#: Counts stay within the integers an IEEE double (hence RFC 8785 / JavaScript) holds exactly.
MAX_COUNT = 2**53 - 1
MAX_REPORT_NUMBER = 2**31
#: Positions per ring / line; the 512 KiB wire limit bounds the total anyway.
MAX_POSITIONS = 10_000

REGION_CODE_PATTERN = r"^[A-Z0-9-]{2,16}$"
PHONE_PATTERN = r"^\+?[0-9 ()./-]{3,32}$"
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,188}\.[^@\s]{1,63}$"
# No separators or control characters: receivers may use the name on disk.
FILENAME_PATTERN = r"^[^/\\\x00-\x1f\x7f]{1,255}$"
_MEDIA_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MEDIA_TYPE_PATTERN = rf"^{_MEDIA_NAME}/{_MEDIA_NAME}$"

Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
# Strict so that booleans and numeric strings are not silently read as counts.
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]
ReportNumber = Annotated[int, Field(strict=True, ge=1, le=MAX_REPORT_NUMBER)]
# additionalProperties: false makes the JSON schema refuse keys that are not language tags.
LocalizedText = Annotated[
    dict[LangTag, Text],
    Field(
        min_length=1, max_length=MAX_LANGUAGES, json_schema_extra={"additionalProperties": False}
    ),
]


class Severity(StrEnum):
    """CAP severity of the incident."""

    EXTREME = "extreme"
    SEVERE = "severe"
    MODERATE = "moderate"
    MINOR = "minor"
    UNKNOWN = "unknown"


class Urgency(StrEnum):
    """CAP urgency: how soon responsive action is needed."""

    IMMEDIATE = "immediate"
    EXPECTED = "expected"
    FUTURE = "future"
    PAST = "past"
    UNKNOWN = "unknown"


class Certainty(StrEnum):
    """CAP certainty of the reported situation."""

    OBSERVED = "observed"
    LIKELY = "likely"
    POSSIBLE = "possible"
    UNLIKELY = "unlikely"
    UNKNOWN = "unknown"


class Purpose(StrEnum):
    """Place of the report in its series (EDXL-SitRep report purpose)."""

    INITIAL = "initial"
    UPDATE = "update"
    FINAL = "final"


class Phase(StrEnum):
    """Phase of the incident's management."""

    ALERT = "alert"
    RESPONSE = "response"
    RECOVERY = "recovery"
    CLOSED = "closed"


def _check_position(pos: tuple[float, ...]) -> tuple[float, ...]:
    # GeoJSON order is lon, lat[, altitude]; swapped axes are the classic mistake.
    if not -180.0 <= pos[0] <= 180.0:
        raise ValueError(f"longitude {pos[0]} outside [-180, 180]")
    if not -90.0 <= pos[1] <= 90.0:
        raise ValueError(f"latitude {pos[1]} outside [-90, 90]")
    return pos


def _check_ring(ring: tuple[Position, ...]) -> tuple[Position, ...]:
    if ring[0] != ring[-1]:
        raise ValueError("a polygon ring must end at its first position (closed)")
    return ring


Coordinate = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Position = Annotated[
    tuple[Coordinate, ...], Field(min_length=2, max_length=3), AfterValidator(_check_position)
]
LinearRing = Annotated[
    tuple[Position, ...], Field(min_length=4, max_length=MAX_POSITIONS), AfterValidator(_check_ring)
]
PolygonCoordinates = Annotated[tuple[LinearRing, ...], Field(min_length=1, max_length=64)]


class GeoPoint(FrozenModel):
    """GeoJSON Point (RFC 7946)."""

    type: Literal["Point"]
    coordinates: Position


class GeoLineString(FrozenModel):
    """GeoJSON LineString (RFC 7946)."""

    type: Literal["LineString"]
    coordinates: tuple[Position, ...] = Field(min_length=2, max_length=MAX_POSITIONS)


class GeoPolygon(FrozenModel):
    """GeoJSON Polygon: an outer ring then holes, each closed (RFC 7946)."""

    type: Literal["Polygon"]
    coordinates: PolygonCoordinates


class GeoMultiPolygon(FrozenModel):
    """GeoJSON MultiPolygon (RFC 7946)."""

    type: Literal["MultiPolygon"]
    coordinates: tuple[PolygonCoordinates, ...] = Field(min_length=1, max_length=256)


Geometry = Annotated[
    GeoPoint | GeoLineString | GeoPolygon | GeoMultiPolygon, Field(discriminator="type")
]


class IncidentInfo(FrozenModel):
    """The incident the report is about."""

    id: IncidentId
    title: Name
    type: Label | None = Field(default=None, description='Free-text category, e.g. "flood"')
    phase: Phase | None = None


class Period(FrozenModel):
    """Time span the report covers."""

    start: UtcTime
    end: UtcTime

    @field_validator("end")
    @classmethod
    def _not_before_start(cls, value: Any, info: ValidationInfo) -> Any:
        start = info.data.get("start")
        if start is not None and value < start:
            raise ValueError("end must not be before start")
        return value


class Sections(FrozenModel):
    """Narrative sections of the report."""

    situation: LocalizedText | None = None
    actions_taken: LocalizedText | None = None
    outlook: LocalizedText | None = None


class AffectedArea(FrozenModel):
    """Where the incident has effect."""

    geometry: Geometry | None = None
    place_names: tuple[Name, ...] = Field(default=(), max_length=MAX_ITEMS)
    region_codes: tuple[Annotated[str, StringConstraints(pattern=REGION_CODE_PATTERN)], ...] = (
        Field(default=(), max_length=MAX_ITEMS, description='e.g. NUTS "BE332"')
    )


class Casualties(FrozenModel):
    """Human toll, as far as known; an absent figure means unknown, not zero."""

    dead: Count | None = None
    injured: Count | None = None
    missing: Count | None = None
    evacuated: Count | None = None
    displaced: Count | None = None
    affected_population: Count | None = None


class Need(FrozenModel):
    """Something the reporting centre needs."""

    description: LocalizedText
    category: Label | None = None
    quantity: Name | None = Field(default=None, description='Free text, e.g. "200 tents"')
    urgent: bool = False


class AssistanceRequest(FrozenModel):
    """A request for help, to one centre or (``to`` absent) to all recipients."""

    to: CentreId | None = None
    description: LocalizedText
    resources: tuple[Name, ...] = Field(default=(), max_length=MAX_ITEMS)


class DeployedResource(FrozenModel):
    """A resource committed to the response."""

    type: Name
    quantity: Count | None = None
    organisation: Name | None = None
    description: Note | None = None


class Contact(FrozenModel):
    """Who to call about this report."""

    name: Name | None = None
    role: Name | None = None
    phone: Annotated[str, StringConstraints(pattern=PHONE_PATTERN)] | None = None
    email: Annotated[str, StringConstraints(pattern=EMAIL_PATTERN)] | None = None
    organisation: Name | None = None


class Attachment(FrozenModel):
    """A file sent alongside the message, bound to the signed body by its hash."""

    sha256: Sha256Hex
    filename: Annotated[str, StringConstraints(pattern=FILENAME_PATTERN)]
    media_type: Annotated[str, StringConstraints(pattern=MEDIA_TYPE_PATTERN)]
    size: Count
    description: Note | None = None

    @field_validator("filename")
    @classmethod
    def _not_dot(cls, value: str) -> str:
        if value in {".", ".."}:
            raise ValueError("filename may not be . or ..")
        return value


_LANG_RE = re.compile(LANG_PATTERN)
_SECTION_KEYS = ("situation", "actions_taken", "outlook")


def _tag(obj: Any, keys: Sequence[str], lang: str) -> Any:
    """Return a copy of ``obj`` with its plain-string texts under ``keys`` tagged ``lang``."""
    if not isinstance(obj, dict):
        return obj  # models, or garbage the field validation will report
    return {k: {lang: v} if k in keys and isinstance(v, str) else v for k, v in obj.items()}


class Sitrep(FrozenModel):
    """Body of a ``sitrep`` message."""

    incident: IncidentInfo
    report_number: ReportNumber
    purpose: Purpose | None = None
    supersedes: ReportNumber | None = Field(
        default=None, description="report_number of the report this one replaces"
    )
    period: Period | None = None
    severity: Severity
    urgency: Urgency | None = None
    certainty: Certainty | None = None
    language: LangTag | None = Field(default=None, description="Language of plain-string input")
    summary: LocalizedText
    sections: Sections | None = None
    affected_area: AffectedArea | None = None
    casualties: Casualties | None = None
    needs: tuple[Need, ...] = Field(default=(), max_length=MAX_ITEMS)
    assistance_requests: tuple[AssistanceRequest, ...] = Field(default=(), max_length=MAX_ITEMS)
    resources_deployed: tuple[DeployedResource, ...] = Field(default=(), max_length=MAX_ITEMS)
    contact: Contact | None = None
    attachments: tuple[Attachment, ...] = Field(default=(), max_length=MAX_ITEMS)

    @model_validator(mode="before")
    @classmethod
    def _localize_plain_texts(cls, data: Any, info: ValidationInfo) -> Any:
        # Only submissions (context PLAIN_TEXT) may use plain strings; the wire never does.
        if not isinstance(data, dict) or not (info.context or {}).get("plain_text"):
            return data
        lang = data.get("language")
        # A bad tag is reported on ``language`` alone, not echoed as a key of every text.
        if not (isinstance(lang, str) and _LANG_RE.fullmatch(lang)):
            lang = UNDETERMINED_LANG
        out = _tag(data, ("summary",), lang)
        if "sections" in out:
            out["sections"] = _tag(out["sections"], _SECTION_KEYS, lang)
        for key in ("needs", "assistance_requests"):
            if isinstance(out.get(key), list | tuple):
                out[key] = [_tag(item, ("description",), lang) for item in out[key]]
        return out

    @field_validator("supersedes")
    @classmethod
    def _supersedes_earlier(cls, value: int | None, info: ValidationInfo) -> int | None:
        number = info.data.get("report_number")
        if value is not None and number is not None and value >= number:
            raise ValueError("supersedes must be lower than report_number")
        return value


def _drop_empty_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_empty_lists(v) for k, v in value.items() if v != []}
    if isinstance(value, list):
        return [_drop_empty_lists(v) for v in value]
    return value


def sitrep_json(s: Sitrep) -> dict[str, Any]:
    """JSON form of a sitrep for signing: no nulls, no empty lists (they mean the default)."""
    result: dict[str, Any] = _drop_empty_lists(
        s.model_dump(mode="json", by_alias=True, exclude_none=True)
    )
    return result
