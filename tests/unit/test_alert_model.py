"""Tests of the CAP alert body model (gateway.protocol.alert)."""

from __future__ import annotations

import json
from enum import StrEnum
from importlib import resources
from typing import Any

import pytest
from lxml import etree
from pydantic import ValidationError

from gateway.protocol.alert import (
    DEFAULT_LANGUAGE,
    XMLDSIG_NS,
    Alert,
    Area,
    Category,
    Certainty,
    Info,
    MsgType,
    Resource,
    ResponseType,
    Scope,
    Severity,
    Status,
    Urgency,
    alert_json,
    default_priority,
    default_tlp,
    mode_for_status,
)
from gateway.protocol.types import Mode, Priority, Tlp

MINIMAL: dict[str, Any] = {
    "identifier": "43b080713727",
    "sender": "hsas@dhs.gov",
    "sent": "2003-04-02T14:39:01-05:00",
    "status": "Actual",
    "msg_type": "Alert",
    "scope": "Public",
}
INFO: dict[str, Any] = {
    "categories": ["Met"],
    "event": "Storm",
    "urgency": "Immediate",
    "severity": "Severe",
    "certainty": "Likely",
}
SIGNATURE = f'<Signature xmlns="{XMLDSIG_NS}"><SignatureValue>AAAA</SignatureValue></Signature>'


def alert(**changes: Any) -> Alert:
    return Alert.model_validate({**MINIMAL, **changes})


def info(**changes: Any) -> dict[str, Any]:
    return {**INFO, **changes}


def xsd_enumerations(element: str) -> list[str]:
    text = resources.files("gateway.formats").joinpath("xsd", "cap-1.2.xsd").read_bytes()
    xsd = etree.fromstring(text)
    ns = {"xs": "http://www.w3.org/2001/XMLSchema"}
    values = xsd.xpath(f"//xs:element[@name='{element}']//xs:enumeration/@value", namespaces=ns)
    assert isinstance(values, list)
    return [str(v) for v in values]


# --------------------------------------------------------------------------- structure


def test_minimal_alert_is_valid() -> None:
    """An alert with only CAP's required elements is accepted and has empty defaults."""
    a = alert()
    assert a.status is Status.ACTUAL
    assert a.codes == ()
    assert a.infos == ()
    assert a.signature_xml is None


@pytest.mark.parametrize("field", ["identifier", "sender", "sent", "status", "msg_type", "scope"])
def test_alert_required_fields(field: str) -> None:
    """Each element CAP requires in <alert> is required by the model."""
    data = dict(MINIMAL)
    del data[field]
    with pytest.raises(ValidationError, match=field):
        Alert.model_validate(data)


@pytest.mark.parametrize("field", ["categories", "event", "urgency", "severity", "certainty"])
def test_info_required_fields(field: str) -> None:
    """Each element CAP requires in <info> is required by the model."""
    data = info()
    del data[field]
    with pytest.raises(ValidationError, match=field):
        Info.model_validate(data)


def test_info_needs_a_category() -> None:
    """An info with an empty category list is refused (CAP requires at least one)."""
    with pytest.raises(ValidationError, match="categories"):
        Info.model_validate(info(categories=[]))


def test_info_language_defaults_to_en_us() -> None:
    """An info without a language gets CAP's default en-US; a given one is kept."""
    assert Info.model_validate(info()).language == DEFAULT_LANGUAGE == "en-US"
    assert Info.model_validate(info(language="nl-BE")).language == "nl-BE"


@pytest.mark.parametrize("language", ["", "en_US", "englishlanguage-tag", "nl-BE-"])
def test_language_must_be_xs_language(language: str) -> None:
    """A language that is not an xs:language value is refused."""
    with pytest.raises(ValidationError, match="language"):
        Info.model_validate(info(language=language))


def test_unknown_field_refused_and_model_frozen() -> None:
    """Unknown fields are refused and an alert cannot be changed after construction."""
    with pytest.raises(ValidationError, match="extra"):
        alert(msgType="Alert")
    a = alert()
    with pytest.raises(ValidationError, match="frozen"):
        a.identifier = "other"  # type: ignore[misc]


def test_empty_identifier_refused() -> None:
    """An alert must have a non-empty identifier and sender."""
    with pytest.raises(ValidationError, match="identifier"):
        alert(identifier="")
    with pytest.raises(ValidationError, match="sender"):
        alert(sender="")


# --------------------------------------------------------------------------- vocabularies


@pytest.mark.parametrize(
    ("enum", "element"),
    [
        (Status, "status"),
        (MsgType, "msgType"),
        (Scope, "scope"),
        (Category, "category"),
        (ResponseType, "responseType"),
        (Urgency, "urgency"),
        (Severity, "severity"),
        (Certainty, "certainty"),
    ],
)
def test_enums_match_the_xsd(enum: type[StrEnum], element: str) -> None:
    """Every model vocabulary is exactly the enumeration of the CAP 1.2 XSD, in order."""
    assert [member.value for member in enum] == xsd_enumerations(element)


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "actual"), ("status", "Real"), ("msg_type", "ALERT"), ("scope", "public")],
)
def test_alert_enum_values_are_exact(field: str, value: str) -> None:
    """CAP's capitalised values are required exactly; other spellings are refused."""
    with pytest.raises(ValidationError, match=field):
        alert(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("categories", ["Weather"]),
        ("response_types", ["Flee"]),
        ("urgency", "Soon"),
        ("severity", "severe"),
        ("certainty", "Sure"),
    ],
)
def test_info_enum_values_are_exact(field: str, value: Any) -> None:
    """An info value outside CAP's vocabulary is refused."""
    with pytest.raises(ValidationError, match=field):
        Info.model_validate(info(**{field: value}))


# --------------------------------------------------------------------------- dateTime


@pytest.mark.parametrize(
    "value",
    [
        "2003-04-02T14:39:01-05:00",
        "2026-11-27T10:00:00+01:00",
        "2026-03-02T09:30:00-00:00",
        "2004-02-29T23:59:59+14:00",
        "2026-12-31T24:00:00-14:00",
    ],
)
def test_cap_datetime_accepted_verbatim(value: str) -> None:
    """A CAP dateTime is accepted and kept as the exact text given."""
    a = alert(sent=value, infos=[info(effective=value, onset=value, expires=value)])
    assert a.sent == value
    assert (a.infos[0].effective, a.infos[0].onset, a.infos[0].expires) == (value,) * 3


@pytest.mark.parametrize(
    "value",
    [
        "2003-04-02T14:39:01Z",
        "2003-04-02T14:39:01.000-05:00",
        "2003-04-02T14:39:01",
        "2003-04-02 14:39:01-05:00",
        "2003-04-02T14:39-05:00",
        " 2003-04-02T14:39:01-05:00",
        "2003-04-02T14:39:01-05:00\n",
        "2003-02-29T14:39:01-05:00",
        "2003-13-01T14:39:01-05:00",
        "0000-01-01T00:00:00+00:00",
        "2003-04-02T25:00:00-05:00",
        "2003-04-02T24:00:01-05:00",
        "2003-04-02T14:60:00-05:00",
        "2003-04-02T14:39:60-05:00",
        "2003-04-02T14:39:01+14:30",
        "2003-04-02T14:39:01+15:00",
        "2003-04-02T14:39:01+01:60",
        "٢٠٠٣-04-02T14:39:01-05:00",
    ],
)
def test_cap_datetime_refused(value: str) -> None:
    """Z, fractions, missing zones, impossible dates/times and zones beyond ±14:00 are refused."""
    with pytest.raises(ValidationError, match="sent"):
        alert(sent=value)
    with pytest.raises(ValidationError, match="expires"):
        Info.model_validate(info(expires=value))


# --------------------------------------------------------------------------- texts


def test_texts_kept_exactly() -> None:
    """Texts keep surrounding white space, newlines, CR and markup characters as given."""
    text = "  line one\r\n\tline <two> & 'three'\n"
    a = alert(note=text, infos=[info(description=text, headline="")])
    assert a.note == text
    assert a.infos[0].description == text
    assert a.infos[0].headline == ""


@pytest.mark.parametrize("char", ["\x00", "\x0b", "\x1f", "\ufffe", "\uffff", "\ud800"])
def test_non_xml_characters_refused(char: str) -> None:
    """A character XML 1.0 cannot carry is refused, so every model can be exported."""
    # Pydantic itself refuses lone surrogates; the model refuses the rest.
    with pytest.raises(ValidationError, match=r"not allowed in XML|unicode"):
        alert(note=f"a{char}b")


def test_description_bound_is_generous() -> None:
    """A 64 KiB description is accepted; one character more is refused."""
    assert Info.model_validate(info(description="x" * 65_536)).description is not None
    with pytest.raises(ValidationError, match="description"):
        Info.model_validate(info(description="x" * 65_537))


@pytest.mark.parametrize("uri", [" http://a/", "http://a/ ", "http://a/  b", "http://a/\nb"])
def test_uri_must_be_collapsed(uri: str) -> None:
    """A URI that XML would white-space-collapse is refused (it would not round-trip)."""
    with pytest.raises(ValidationError, match="collapsed"):
        Info.model_validate(info(web=uri))


def test_uri_percent_escape_checked() -> None:
    """A % in a URI must start a %XX escape."""
    assert Info.model_validate(info(web="http://a/%C3%A9")).web == "http://a/%C3%A9"
    with pytest.raises(ValidationError, match="escape"):
        Resource(resource_desc="map", mime_type="image/png", uri="http://a/%zz")


@pytest.mark.parametrize("value", ["0", "-12.5", "+3500.", ".5", "0012.50"])
def test_altitude_kept_as_decimal_text(value: str) -> None:
    """Altitude and ceiling accept any xs:decimal and keep its text."""
    area = Area(area_desc="zone", altitude=value, ceiling=value)
    assert (area.altitude, area.ceiling) == (value, value)


@pytest.mark.parametrize("value", ["", "1e3", "1,5", " 1", "-", "NaN"])
def test_altitude_refuses_non_decimal(value: str) -> None:
    """Altitude that is not an xs:decimal is refused."""
    with pytest.raises(ValidationError, match="altitude"):
        Area(area_desc="zone", altitude=value)


@pytest.mark.parametrize("size", [-1, "12", True, 2**53])
def test_resource_size_is_a_strict_count(size: Any) -> None:
    """Resource size is a non-negative JSON-safe integer; strings and booleans are refused."""
    with pytest.raises(ValidationError, match="size"):
        Resource.model_validate({"resource_desc": "map", "mime_type": "image/png", "size": size})


# --------------------------------------------------------------------------- signature


def test_signature_xml_kept_verbatim() -> None:
    """One or several XML-DSig elements are kept as the exact string given."""
    two = SIGNATURE + f'<ds:Object xmlns:ds="{XMLDSIG_NS}">x</ds:Object>'
    assert alert(signature_xml=SIGNATURE).signature_xml == SIGNATURE
    assert alert(signature_xml=two).signature_xml == two


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "start with an element"),
        ("text", "start with an element"),
        ("<Signature/>", "may only hold elements"),
        ('<x:Signature xmlns:x="urn:other"/>', "may only hold elements"),
        (f"{SIGNATURE} ", "text between"),
        (f"{SIGNATURE}<!-- c -->", "may only hold elements"),
        (f'<Signature xmlns="{XMLDSIG_NS}">&xxe;</Signature>', "not well-formed"),
        (f'<Signature xmlns="{XMLDSIG_NS}">', "not well-formed"),
        (f"</w><!DOCTYPE w><w>{SIGNATURE}", "not well-formed"),
    ],
)
def test_signature_xml_refused(value: str, message: str) -> None:
    """signature_xml must be well-formed XML-DSig elements only, with nothing between them."""
    with pytest.raises(ValidationError, match=message):
        alert(signature_xml=value)


# --------------------------------------------------------------------------- JSON


def test_alert_json_drops_nulls_and_empty_lists() -> None:
    """alert_json has no nulls or empty lists and reads back to the same alert."""
    a = alert(codes=["A"], infos=[info(areas=[{"area_desc": "here"}])])
    data = alert_json(a)
    text = json.dumps(data)
    assert "null" not in text
    assert "[]" not in text
    assert data["infos"][0]["language"] == "en-US"
    assert Alert.model_validate(data) == a


def test_alert_json_uses_snake_case_and_cap_values() -> None:
    """alert_json uses the model's snake_case names and CAP's own capitalised values."""
    data = alert_json(alert(infos=[info(response_types=["AllClear", "None"])]))
    assert data["msg_type"] == "Alert"
    assert data["status"] == "Actual"
    assert data["infos"][0]["response_types"] == ["AllClear", "None"]


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("status", "mode"),
    [
        (Status.ACTUAL, Mode.ACTUAL),
        (Status.EXERCISE, Mode.EXERCISE),
        (Status.TEST, Mode.TEST),
        (Status.SYSTEM, Mode.TEST),
        ("Exercise", Mode.EXERCISE),
    ],
)
def test_mode_for_status(status: Status, mode: Mode) -> None:
    """Actual, Exercise and Test map to their modes; System is a test."""
    assert mode_for_status(status) == mode


def test_mode_for_draft_refused() -> None:
    """A Draft alert has no mode: it is not sent."""
    with pytest.raises(ValueError, match="a Draft alert is not sent"):
        mode_for_status(Status.DRAFT)


@pytest.mark.parametrize(
    ("pairs", "priority"),
    [
        ([("Immediate", "Extreme")], Priority.FLASH),
        ([("Immediate", "Severe")], Priority.FLASH),
        ([("Immediate", "Moderate")], Priority.URGENT),
        ([("Immediate", "Unknown")], Priority.URGENT),
        ([("Expected", "Extreme")], Priority.URGENT),
        ([("Expected", "Severe")], Priority.URGENT),
        ([("Expected", "Moderate")], Priority.ROUTINE),
        ([("Future", "Extreme")], Priority.ROUTINE),
        ([("Past", "Severe")], Priority.ROUTINE),
        ([("Unknown", "Extreme")], Priority.ROUTINE),
        ([("Future", "Minor"), ("Immediate", "Severe")], Priority.FLASH),
        ([("Past", "Minor"), ("Expected", "Extreme")], Priority.URGENT),
        ([], Priority.ROUTINE),
    ],
)
def test_default_priority(pairs: list[tuple[str, str]], priority: Priority) -> None:
    """Priority is flash for Immediate+Extreme/Severe, urgent for Immediate or
    Expected+Extreme/Severe in any info, else routine."""
    a = alert(infos=[info(urgency=u, severity=s) for u, s in pairs])
    assert default_priority(a) == priority


@pytest.mark.parametrize(
    ("scope", "tlp"),
    [("Public", Tlp.CLEAR), ("Restricted", Tlp.AMBER), ("Private", Tlp.AMBER_STRICT)],
)
def test_default_tlp(scope: str, tlp: Tlp) -> None:
    """Public alerts are TLP:CLEAR, Restricted AMBER, Private AMBER+STRICT."""
    assert default_tlp(alert(scope=scope)) == tlp
    assert str(default_tlp(alert(scope=scope))) == tlp.value
