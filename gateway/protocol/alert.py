"""Body of an ``alert`` message: a CAP 1.2 alert carried faithfully as JSON (pure).

Every element of OASIS CAP 1.2 has a field here, under its snake_case name; repeated
elements are tuples with plural names (``<info>`` → ``infos``, ``<code>`` → ``codes``).
Nothing is interpreted on the way in: texts are kept exactly as written (newlines and
surrounding white space included), CAP's capitalised vocabularies are kept as they are,
and dateTimes stay the CAP text (``2003-04-02T14:39:01-05:00``) so that an export
reproduces them byte for byte.  Only the XSD types that collapse white space
(``xs:language``, ``xs:anyURI``, ``xs:dateTime``, ``xs:decimal``, ``xs:integer``) are held
in their collapsed form, which is their value.

Every string must consist of characters XML 1.0 allows, so that any valid model can be
written as CAP (see :mod:`gateway.formats.cap`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from calendar import monthrange
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema

from gateway.protocol.types import FrozenModel, Mode, Priority, Tlp

ALERT_TYPE = "alert"
XMLDSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
DEFAULT_LANGUAGE = "en-US"
SHORT_CHARS = 1024
LONG_CHARS = 65_536
#: Polygons, base64 resources and signatures are bounded by the 1 MiB XML limit only.
HUGE_CHARS = 1024 * 1024
MAX_ITEMS = 10_000
#: Sizes stay within the integers an IEEE double (hence RFC 8785 / JavaScript) holds exactly.
MAX_SIZE = 2**53 - 1

#: CAP 1.2 dateTime: seconds precision, explicit numeric zone ("Z" is not allowed).
CAP_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[-+][0-9]{2}:[0-9]{2}$"
XS_LANGUAGE_PATTERN = r"^[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*$"
XS_DECIMAL_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"

_CAP_TIME_RE = re.compile(CAP_TIME_PATTERN)
# XML 1.0 "Char": everything except C0 controls other than TAB/LF/CR, surrogates, FFFE/FFFF.
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_SPACE = re.compile(r"[ \t\n\r]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _xml_chars(value: str) -> str:
    bad = _NOT_XML_CHAR.search(value)
    if bad:
        raise ValueError(f"character U+{ord(bad.group()):04X} is not allowed in XML")
    return value


def _collapsed(value: str) -> str:
    if _XML_SPACE.sub(" ", value).strip(" ") != value:
        raise ValueError("must be white-space collapsed (no leading, trailing or double spaces)")
    return value


def _uri(value: str) -> str:
    if _BAD_PERCENT.search(value):
        raise ValueError("a % in a URI must start a %XX escape")
    return value


def _cap_time(value: str) -> str:
    if not _CAP_TIME_RE.fullmatch(value):
        raise ValueError("a CAP dateTime is YYYY-MM-DDThh:mm:ss+hh:mm (no Z, no fractions)")
    year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    hour, minute, second = int(value[11:13]), int(value[14:16]), int(value[17:19])
    zone_h, zone_m = int(value[20:22]), int(value[23:25])
    if year == 0 or not 1 <= month <= 12 or not 1 <= day <= monthrange(year, month)[1]:
        raise ValueError(f"{value[:10]} is not a calendar date")
    # XML Schema 1.0 allows 24:00:00 as the end of the day.
    if minute > 59 or second > 59 or hour > 24 or (hour == 24 and minute + second):
        raise ValueError(f"{value[11:19]} is not a time of day")
    if zone_m > 59 or zone_h > 14 or (zone_h == 14 and zone_m):
        raise ValueError(f"zone {value[19:]} is outside -14:00..+14:00")
    return value


#: The XML 1.0 character rule as a JSON Schema pattern (lone surrogates cannot occur:
#: I-JSON refuses them before any schema applies).
XML_CHARS_PATTERN = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]*$"


def _xml_schema(max_length: int, min_length: int = 0) -> WithJsonSchema:
    """The schema of a string of XML 1.0 characters (the model checks it with _xml_chars)."""
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length,
                              "pattern": XML_CHARS_PATTERN}
    if min_length:
        schema["minLength"] = min_length
    return WithJsonSchema(schema)


ShortText = Annotated[str, StringConstraints(max_length=SHORT_CHARS), AfterValidator(_xml_chars),
                      _xml_schema(SHORT_CHARS)]
LongText = Annotated[str, StringConstraints(max_length=LONG_CHARS), AfterValidator(_xml_chars),
                     _xml_schema(LONG_CHARS)]
HugeText = Annotated[str, StringConstraints(max_length=HUGE_CHARS), AfterValidator(_xml_chars),
                     _xml_schema(HUGE_CHARS)]
Ident = Annotated[
    str, StringConstraints(min_length=1, max_length=SHORT_CHARS), AfterValidator(_xml_chars),
    _xml_schema(SHORT_CHARS, min_length=1)
]
CapTime = Annotated[
    str,
    AfterValidator(_cap_time),
    WithJsonSchema({"type": "string", "pattern": CAP_TIME_PATTERN,
                    "description": "CAP 1.2 dateTime, e.g. 2003-04-02T14:39:01-05:00"}),
]
Language = Annotated[str, StringConstraints(max_length=SHORT_CHARS, pattern=XS_LANGUAGE_PATTERN)]
Uri = Annotated[
    str,
    StringConstraints(max_length=LONG_CHARS),
    AfterValidator(_xml_chars),
    AfterValidator(_collapsed),
    AfterValidator(_uri),
    _xml_schema(LONG_CHARS),
]
DecimalText = Annotated[
    str,
    StringConstraints(max_length=64, pattern=XS_DECIMAL_PATTERN),
    WithJsonSchema({"type": "string", "pattern": XS_DECIMAL_PATTERN,
                    "description": "xs:decimal text, kept as written"}),
]
Size = Annotated[int, Field(strict=True, ge=0, le=MAX_SIZE)]


class Status(StrEnum):
    """CAP ``status``: the handling code of the alert."""

    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


class MsgType(StrEnum):
    """CAP ``msgType``: the nature of the alert message."""

    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class Scope(StrEnum):
    """CAP ``scope``: the intended distribution."""

    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"


class Category(StrEnum):
    """CAP ``category`` of the subject event."""

    GEO = "Geo"
    MET = "Met"
    SAFETY = "Safety"
    SECURITY = "Security"
    RESCUE = "Rescue"
    FIRE = "Fire"
    HEALTH = "Health"
    ENV = "Env"
    TRANSPORT = "Transport"
    INFRA = "Infra"
    CBRNE = "CBRNE"
    OTHER = "Other"


class ResponseType(StrEnum):
    """CAP ``responseType``: the action recommended to the audience."""

    SHELTER = "Shelter"
    EVACUATE = "Evacuate"
    PREPARE = "Prepare"
    EXECUTE = "Execute"
    AVOID = "Avoid"
    MONITOR = "Monitor"
    ASSESS = "Assess"
    ALL_CLEAR = "AllClear"
    NONE = "None"


class Urgency(StrEnum):
    """CAP ``urgency``: how soon responsive action should be taken."""

    IMMEDIATE = "Immediate"
    EXPECTED = "Expected"
    FUTURE = "Future"
    PAST = "Past"
    UNKNOWN = "Unknown"


class Severity(StrEnum):
    """CAP ``severity``: the intensity of impact."""

    EXTREME = "Extreme"
    SEVERE = "Severe"
    MODERATE = "Moderate"
    MINOR = "Minor"
    UNKNOWN = "Unknown"


class Certainty(StrEnum):
    """CAP ``certainty``: the confidence in the observation or prediction."""

    OBSERVED = "Observed"
    LIKELY = "Likely"
    POSSIBLE = "Possible"
    UNLIKELY = "Unlikely"
    UNKNOWN = "Unknown"


class NamedValue(FrozenModel):
    """A CAP ``valueName``/``value`` pair (eventCode, parameter, geocode)."""

    value_name: ShortText
    value: LongText


class Resource(FrozenModel):
    """A CAP ``resource``: a file that supplements the info."""

    resource_desc: LongText
    mime_type: ShortText
    size: Size | None = None
    uri: Uri | None = None
    deref_uri: HugeText | None = Field(default=None, description="base64 content, as written")
    digest: ShortText | None = Field(default=None, description="SHA-1 of the content, as written")


class Area(FrozenModel):
    """A CAP ``area``: where the info applies."""

    area_desc: LongText
    polygons: tuple[HugeText, ...] = Field(default=(), max_length=MAX_ITEMS,
                                           description='"lat,lon lat,lon ..." as written')
    circles: tuple[ShortText, ...] = Field(default=(), max_length=MAX_ITEMS,
                                           description='"lat,lon radius-km" as written')
    geocodes: tuple[NamedValue, ...] = Field(default=(), max_length=MAX_ITEMS)
    altitude: DecimalText | None = None
    ceiling: DecimalText | None = None


class Info(FrozenModel):
    """A CAP ``info`` block: the event in one language."""

    language: Language = DEFAULT_LANGUAGE
    categories: tuple[Category, ...] = Field(min_length=1, max_length=MAX_ITEMS)
    event: LongText
    response_types: tuple[ResponseType, ...] = Field(default=(), max_length=MAX_ITEMS)
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    audience: LongText | None = None
    event_codes: tuple[NamedValue, ...] = Field(default=(), max_length=MAX_ITEMS)
    effective: CapTime | None = None
    onset: CapTime | None = None
    expires: CapTime | None = None
    sender_name: LongText | None = None
    headline: LongText | None = None
    description: LongText | None = None
    instruction: LongText | None = None
    web: Uri | None = None
    contact: LongText | None = None
    parameters: tuple[NamedValue, ...] = Field(default=(), max_length=MAX_ITEMS)
    resources: tuple[Resource, ...] = Field(default=(), max_length=MAX_ITEMS)
    areas: tuple[Area, ...] = Field(default=(), max_length=MAX_ITEMS)


def _signature_elements(value: str) -> str:
    """Check ``value`` is one or more XML-DSig elements, nothing between them."""
    _xml_chars(value)
    builder = ET.TreeBuilder(insert_comments=True, insert_pis=True)
    # Safe despite S314: no DOCTYPE can occur inside the wrapper, so no entity is declared.
    parser = ET.XMLParser(target=builder)  # noqa: S314
    try:
        parser.feed(f"<w>{value}</w>")
        wrapper = parser.close()
    except ET.ParseError as exc:
        raise ValueError(f"signature_xml is not well-formed XML elements: {exc}") from exc
    if wrapper.text or not len(wrapper):
        raise ValueError("signature_xml must start with an element")
    for child in wrapper:
        if not isinstance(child.tag, str) or not child.tag.startswith(f"{{{XMLDSIG_NS}}}"):
            raise ValueError(f"signature_xml may only hold elements of {XMLDSIG_NS}")
        if child.tail:
            raise ValueError("signature_xml may not have text between its elements")
    return value


SignatureXml = Annotated[
    str, StringConstraints(max_length=HUGE_CHARS), AfterValidator(_signature_elements),
    _xml_schema(HUGE_CHARS)
]


class Alert(FrozenModel):
    """Body of an ``alert`` message: one CAP 1.2 ``alert``, element for element."""

    identifier: Ident
    sender: Ident
    sent: CapTime
    status: Status
    msg_type: MsgType
    source: LongText | None = None
    scope: Scope
    restriction: LongText | None = None
    addresses: LongText | None = Field(default=None, description="space-separated, as written")
    codes: tuple[ShortText, ...] = Field(default=(), max_length=MAX_ITEMS)
    note: LongText | None = None
    references: LongText | None = Field(default=None, description="as written")
    incidents: LongText | None = Field(default=None, description="as written")
    infos: tuple[Info, ...] = Field(default=(), max_length=MAX_ITEMS)
    signature_xml: SignatureXml | None = Field(
        default=None,
        description="XML-DSig element(s) that ended the alert, serialized with the "
        "namespace declarations in scope where they stood",
    )


def _drop_empty_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_empty_lists(v) for k, v in value.items() if v != []}
    if isinstance(value, list):
        return [_drop_empty_lists(v) for v in value]
    return value


def alert_json(a: Alert) -> dict[str, Any]:
    """JSON form of an alert for signing: no nulls, no empty lists (they mean the default)."""
    result: dict[str, Any] = _drop_empty_lists(a.model_dump(mode="json", exclude_none=True))
    return result


def mode_for_status(status: Status) -> Mode:
    """Gateway mode of a CAP status; System maps to ``test``.

    Raises ``ValueError`` for ``Draft``: a draft is not sent.
    """
    status = Status(status)
    if status is Status.DRAFT:
        raise ValueError("a Draft alert is not sent")
    return {
        Status.ACTUAL: Mode.ACTUAL,
        Status.EXERCISE: Mode.EXERCISE,
        Status.TEST: Mode.TEST,
        Status.SYSTEM: Mode.TEST,
    }[status]


_GRAVE = frozenset({Severity.EXTREME, Severity.SEVERE})


def default_priority(alert: Alert) -> Priority:
    """Priority implied by the infos: ``flash`` if any is Immediate and Extreme or Severe;
    ``urgent`` if any is Immediate, or Expected and Extreme or Severe; else ``routine``."""
    if any(i.urgency is Urgency.IMMEDIATE and i.severity in _GRAVE for i in alert.infos):
        return Priority.FLASH
    if any(
        i.urgency is Urgency.IMMEDIATE or (i.urgency is Urgency.EXPECTED and i.severity in _GRAVE)
        for i in alert.infos
    ):
        return Priority.URGENT
    return Priority.ROUTINE


def default_tlp(alert: Alert) -> Tlp:
    """TLP implied by the scope: Public → CLEAR, Restricted → AMBER, Private → AMBER+STRICT."""
    return {
        Scope.PUBLIC: Tlp.CLEAR,
        Scope.RESTRICTED: Tlp.AMBER,
        Scope.PRIVATE: Tlp.AMBER_STRICT,
    }[alert.scope]
