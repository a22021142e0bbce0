"""Tests of the CAP 1.2 export of sitreps (gateway.formats.sitrep_cap)."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from pydantic import ValidationError

from gateway.formats.sitrep_cap import (
    CATEGORY_KEYWORDS,
    HEADLINE_MAX,
    cap_languages,
    categories,
    sitrep_to_cap,
)
from gateway.formats.xml import CAP_NS, validate
from gateway.protocol.sitrep import Sitrep
from gateway.protocol.types import format_time

C = f"{{{CAP_NS}}}"
MESSAGE_ID = "0b7c2c1e-1111-4222-8333-444455556666"
SQUARE = [[5.5, 50.6], [5.6, 50.6], [5.6, 50.7], [5.5, 50.7], [5.5, 50.6]]
CAP_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}-00:00$")

MINIMAL: dict[str, Any] = {
    "incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
    "report_number": 1,
    "severity": "severe",
    "summary": {"und": "Water levels rising at Liège."},
}

BILINGUAL: dict[str, Any] = {
    **MINIMAL,
    "incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse", "type": "flood"},
    "summary": {"nl": "Het water van de Maas stijgt.", "fr": "La Meuse monte."},
    "sections": {
        "situation": {"nl": "Dijken onder druk.", "fr": "Digues sous pression."},
        "outlook": {"nl": "Piek vannacht.", "fr": "Pic cette nuit."},
    },
}


def _envelope(body: dict[str, Any], **header: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "v": 1, "id": MESSAGE_ID, "type": "sitrep", "from": "BE-NCCN",
        "to": ["NL-NCC", "LU-HCPN"], "created": "2026-11-27T10:00:00.123Z",
        "expires": "2026-11-28T10:00:00.000Z", "mode": "actual", "tlp": "GREEN",
        "priority": "routine", "incident": body["incident"]["id"], "body": body,
    }
    env.update(header)
    return env


def _alert(env: dict[str, Any]) -> etree._Element:
    data = sitrep_to_cap(env)
    assert data.startswith(b"<?xml")
    root = etree.fromstring(data)
    validate(root, "cap-1.2.xsd")
    return root


def _infos(root: etree._Element) -> dict[str, etree._Element]:
    return {str(i.findtext(f"{C}language")): i for i in root.findall(f"{C}info")}


def _params(info: etree._Element) -> dict[str, str]:
    return {str(p.findtext(f"{C}valueName")): str(p.findtext(f"{C}value"))
            for p in info.findall(f"{C}parameter")}


def _with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(MINIMAL)
    body.update(changes)
    return body


# --------------------------------------------------------------------------- alert block

def test_minimal_sitrep_exports_valid_cap_with_one_und_info() -> None:
    """A sitrep with only an "und" summary gives a valid CAP alert with one info, no area."""
    root = _alert(_envelope(copy.deepcopy(MINIMAL)))
    assert root.tag == f"{C}alert"
    assert root.nsmap == {None: CAP_NS}
    infos = root.findall(f"{C}info")
    assert [i.findtext(f"{C}language") for i in infos] == ["und"]
    info = infos[0]
    assert info.findtext(f"{C}headline") == "Water levels rising at Liège."
    assert info.findtext(f"{C}event") == "Flooding of the Meuse"
    assert info.findtext(f"{C}category") == "Other"
    assert info.find(f"{C}area") is None
    assert info.find(f"{C}instruction") is None
    assert info.find(f"{C}contact") is None


def test_header_identifier_sender_times_and_incident() -> None:
    """identifier is from.id, sent/expires are whole-second UTC (-00:00), incidents the id."""
    root = _alert(_envelope(copy.deepcopy(MINIMAL)))
    assert root.findtext(f"{C}identifier") == f"BE-NCCN.{MESSAGE_ID}"
    assert root.findtext(f"{C}sender") == "BE-NCCN"
    assert root.findtext(f"{C}sent") == "2026-11-27T10:00:00-00:00"
    assert root.findtext(f"{C}incidents") == "BE-2026-0001"
    info = root.find(f"{C}info")
    assert info is not None
    assert info.findtext(f"{C}expires") == "2026-11-28T10:00:00-00:00"
    assert info.findtext(f"{C}senderName") == "BE-NCCN"
    note = root.findtext(f"{C}note") or ""
    assert "crisisgw" in note
    assert "report 1" in note
    assert "TLP:GREEN" in note


def test_sent_is_converted_to_utc_from_an_offset_time() -> None:
    """A created time with a non-zero offset is rendered as the same instant in UTC."""
    root = _alert(_envelope(copy.deepcopy(MINIMAL), created="2026-11-27T11:30:05.999+01:00"))
    assert root.findtext(f"{C}sent") == "2026-11-27T10:30:05-00:00"


@pytest.mark.parametrize(("mode", "status"),
                         [("actual", "Actual"), ("exercise", "Exercise"), ("test", "Test")])
def test_status_follows_mode(mode: str, status: str) -> None:
    """The CAP status is the envelope mode, capitalised."""
    assert _alert(_envelope(copy.deepcopy(MINIMAL), mode=mode)).findtext(f"{C}status") == status


@pytest.mark.parametrize(("purpose", "msg_type"),
                         [(None, "Alert"), ("initial", "Alert"), ("update", "Update"),
                          ("final", "Update")])
def test_msg_type_follows_purpose(purpose: str | None, msg_type: str) -> None:
    """No purpose or initial gives Alert; update and final give Update."""
    body = _with(purpose=purpose, report_number=2) if purpose else _with()
    assert _alert(_envelope(body)).findtext(f"{C}msgType") == msg_type


@pytest.mark.parametrize(("tlp", "scope", "restriction", "addresses"), [
    ("CLEAR", "Public", None, None),
    ("GREEN", "Restricted", "TLP:GREEN", None),
    ("AMBER", "Restricted", "TLP:AMBER", None),
    ("AMBER+STRICT", "Private", None, "NL-NCC LU-HCPN"),
    ("RED", "Private", None, "NL-NCC LU-HCPN"),
])
def test_scope_restriction_and_addresses_follow_tlp(
        tlp: str, scope: str, restriction: str | None, addresses: str | None) -> None:
    """Each TLP maps to its scope; GREEN/AMBER add a restriction, the strict ones addresses."""
    root = _alert(_envelope(copy.deepcopy(MINIMAL), tlp=tlp))
    assert root.findtext(f"{C}scope") == scope
    found = root.findtext(f"{C}restriction")
    if restriction is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(restriction + " ")
    assert root.findtext(f"{C}addresses") == addresses
    info = root.find(f"{C}info")
    assert info is not None
    assert _params(info)["tlp"] == f"TLP:{tlp}"


# --------------------------------------------------------------------------- info blocks

def test_bilingual_sitrep_gives_one_info_per_language_in_that_language() -> None:
    """Summary and sections in nl and fr give exactly two infos, each in its own language."""
    root = _alert(_envelope(copy.deepcopy(BILINGUAL)))
    infos = root.findall(f"{C}info")
    assert [i.findtext(f"{C}language") for i in infos] == ["nl", "fr"]
    nl, fr = infos
    assert nl.findtext(f"{C}headline") == "Het water van de Maas stijgt."
    assert fr.findtext(f"{C}headline") == "La Meuse monte."
    fr_text = fr.findtext(f"{C}description") or ""
    nl_text = nl.findtext(f"{C}description") or ""
    assert fr_text == ("La Meuse monte.\n\nSituation:\nDigues sous pression.\n\n"
                       "Outlook:\nPic cette nuit.")
    assert "Dijken onder druk." in nl_text
    assert "Piek vannacht." in nl_text
    assert "Digues" not in nl_text
    assert "Dijken" not in fr_text
    assert cap_languages(_envelope(copy.deepcopy(BILINGUAL))) == ["nl", "fr"]


def test_language_only_in_a_section_or_need_gets_its_own_info_without_headline() -> None:
    """A language used only in a section or need gets an info, with no borrowed headline."""
    body = _with(sections={"outlook": {"de": "Pegel steigt."}},
                 needs=[{"description": {"lb": "Sandsäck"}, "quantity": "5000"}])
    root = _alert(_envelope(body))
    infos = _infos(root)
    assert list(infos) == ["und", "de", "lb"]
    assert infos["de"].find(f"{C}headline") is None
    assert infos["de"].findtext(f"{C}description") == "Outlook:\nPegel steigt."
    assert infos["lb"].find(f"{C}description") is None
    assert infos["lb"].findtext(f"{C}instruction") == "Needs:\n- Sandsäck (5000)"


@pytest.mark.parametrize(("field", "value", "element", "expected"), [
    ("severity", "extreme", "severity", "Extreme"),
    ("severity", "minor", "severity", "Minor"),
    ("severity", "unknown", "severity", "Unknown"),
    ("urgency", "immediate", "urgency", "Immediate"),
    ("urgency", "past", "urgency", "Past"),
    ("urgency", None, "urgency", "Unknown"),
    ("certainty", "observed", "certainty", "Observed"),
    ("certainty", "unlikely", "certainty", "Unlikely"),
    ("certainty", None, "certainty", "Unknown"),
])
def test_severity_urgency_certainty_are_capitalised_with_unknown_default(
        field: str, value: str | None, element: str, expected: str) -> None:
    """The CAP vocabularies are the sitrep's, capitalised; absent urgency/certainty → Unknown."""
    body = _with(**{field: value}) if value is not None else _with()
    info = _alert(_envelope(body)).find(f"{C}info")
    assert info is not None
    assert info.findtext(f"{C}{element}") == expected


@pytest.mark.parametrize(("incident_type", "expected"), [
    ("flood", ["Met"]), ("Winter storm", ["Met"]), ("severe weather", ["Met"]),
    ("earthquake", ["Geo"]), ("landslide", ["Geo"]),
    ("wildfire", ["Fire"]), ("forest fire", ["Fire"]),
    ("chemical spill", ["CBRNE"]), ("CBRN", ["CBRNE"]), ("nuclear", ["CBRNE"]),
    ("radiological", ["CBRNE"]),
    ("pandemic", ["Health"]), ("public health", ["Health"]), ("epidemic", ["Health"]),
    ("power outage", ["Infra"]), ("telecom failure", ["Infra"]),
    ("critical infrastructure", ["Infra"]),
    ("rail accident", ["Transport"]), ("aviation", ["Transport"]),
    ("traffic", ["Transport"]),
    ("terror attack", ["Security"]), ("public order", ["Security"]),
    ("mountain rescue", ["Rescue"]), ("marine pollution", ["Env"]),
    ("chemical fire", ["Fire", "CBRNE"]),
    ("heatwave", ["Other"]), (None, ["Other"]),
])
def test_category_keywords(incident_type: str | None, expected: list[str]) -> None:
    """incident.type keywords map to CAP categories (all that match, else Other)."""
    assert categories(incident_type) == expected
    incident = {"id": "X-1", "title": "T"} | ({"type": incident_type} if incident_type else {})
    info = _alert(_envelope(_with(incident=incident))).find(f"{C}info")
    assert info is not None
    assert [c.text for c in info.findall(f"{C}category")] == expected


def test_every_category_keyword_table_entry_is_a_cap_category() -> None:
    """The keyword table only names categories of the CAP 1.2 enumeration."""
    allowed = {"Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env",
               "Transport", "Infra", "CBRNE", "Other"}
    assert {cat for cat, _ in CATEGORY_KEYWORDS} <= allowed


def test_headline_collapses_whitespace_and_is_cut_at_160_characters() -> None:
    """A long multi-line summary gives a one-line headline of at most 160 characters."""
    long = "Word\n" * 100
    info = _alert(_envelope(_with(summary={"en": long}))).find(f"{C}info")
    assert info is not None
    headline = info.findtext(f"{C}headline") or ""
    assert len(headline) <= HEADLINE_MAX
    assert "\n" not in headline
    assert headline.endswith("…")
    assert info.findtext(f"{C}description") == long


def test_instruction_lists_needs_and_assistance_requests_in_the_language() -> None:
    """Needs and assistance requests in the info's language become the instruction."""
    body = _with(summary={"en": "Rising.", "fr": "Monte."},
                 needs=[{"description": {"en": "Pumps", "fr": "Pompes"},
                         "category": "equipment", "quantity": "10 units", "urgent": True}],
                 assistance_requests=[{"to": "NL-NCC", "description": {"en": "Boats"},
                                       "resources": ["HCP module", "boat team"]}])
    infos = _infos(_alert(_envelope(body)))
    assert infos["en"].findtext(f"{C}instruction") == (
        "Needs:\n- Pumps (10 units, equipment, urgent)\n\n"
        "Assistance requested:\n- Boats (to NL-NCC, resources: HCP module; boat team)")
    assert infos["fr"].findtext(f"{C}instruction") == (
        "Needs:\n- Pompes (10 units, equipment, urgent)")


def test_contact_is_one_string() -> None:
    """The sitrep contact becomes "name (role), organisation, phone, email"."""
    body = _with(contact={"name": "Duty officer", "role": "NCCN duty", "organisation": "NCCN",
                          "phone": "+32 2 506 47 11", "email": "duty@example.be"})
    info = _alert(_envelope(body)).find(f"{C}info")
    assert info is not None
    assert info.findtext(f"{C}contact") == (
        "Duty officer (NCCN duty), NCCN, +32 2 506 47 11, duty@example.be")
    info = _alert(_envelope(_with(contact={"email": "duty@example.be"}))).find(f"{C}info")
    assert info is not None
    assert info.findtext(f"{C}contact") == "duty@example.be"


def test_parameters_carry_report_incident_casualties_and_tlp() -> None:
    """Parameters hold report number, incident, purpose, casualties, TLP and priority."""
    body = _with(report_number=4, purpose="update", supersedes=3,
                 incident={"id": "BE-2026-0001", "title": "Flood", "type": "flood",
                           "phase": "response"},
                 period={"start": "2026-11-27T06:00:00.000Z", "end": "2026-11-27T12:00:00.000Z"},
                 casualties={"dead": 0, "injured": 12, "evacuated": 1200})
    info = _alert(_envelope(body, tlp="AMBER", priority="flash")).find(f"{C}info")
    assert info is not None
    assert _params(info) == {
        "report_number": "4", "incident_id": "BE-2026-0001", "incident_type": "flood",
        "incident_phase": "response", "purpose": "update", "supersedes": "3",
        "period_start": "2026-11-27T06:00:00-00:00", "period_end": "2026-11-27T12:00:00-00:00",
        "casualties.dead": "0", "casualties.injured": "12", "casualties.evacuated": "1200",
        "tlp": "TLP:AMBER", "priority": "flash",
    }


def test_attachments_become_resources_and_sha256_parameters_not_digests() -> None:
    """An attachment is a resource without a (SHA-1) digest; its SHA-256 is a parameter."""
    digest = "ab" * 32
    body = _with(attachments=[
        {"sha256": digest, "filename": "map.pdf", "media_type": "application/pdf",
         "size": 123456, "description": "Flood extent map"},
        {"sha256": "cd" * 32, "filename": "photo 1.jpg", "media_type": "image/jpeg",
         "size": 10},
    ])
    info = _alert(_envelope(body)).find(f"{C}info")
    assert info is not None
    resources = info.findall(f"{C}resource")
    assert [(r.findtext(f"{C}resourceDesc"), r.findtext(f"{C}mimeType"),
             r.findtext(f"{C}size")) for r in resources] == [
        ("Flood extent map", "application/pdf", "123456"), ("photo 1.jpg", "image/jpeg", "10")]
    assert all(r.find(f"{C}digest") is None for r in resources)
    params = _params(info)
    assert params["attachment.map.pdf.sha256"] == digest
    assert params["attachment.photo 1.jpg.sha256"] == "cd" * 32


# --------------------------------------------------------------------------- area

def _area(area: dict[str, Any]) -> etree._Element:
    info = _alert(_envelope(_with(affected_area=area))).find(f"{C}info")
    assert info is not None
    found = info.find(f"{C}area")
    assert found is not None
    return found


def test_polygon_is_written_lat_lon_and_closed() -> None:
    """A GeoJSON (lon, lat) polygon becomes a closed CAP "lat,lon ..." polygon."""
    area = _area({"geometry": {"type": "Polygon", "coordinates": [SQUARE]},
                  "place_names": ["Liège", "Visé"]})
    assert area.findtext(f"{C}areaDesc") == "Liège; Visé"
    polygons = [p.text for p in area.findall(f"{C}polygon")]
    assert polygons == ["50.6,5.5 50.6,5.6 50.7,5.6 50.7,5.5 50.6,5.5"]
    assert area.find(f"{C}circle") is None


def test_multipolygon_gives_one_polygon_per_member_and_drops_holes() -> None:
    """Each MultiPolygon member's outer ring is a polygon; holes are not expressible."""
    hole = [[5.52, 50.62], [5.58, 50.62], [5.58, 50.68], [5.52, 50.62]]
    west = [[-3.25, 40.5], [-3.0, 40.5], [-3.0, 40.75], [-3.25, 40.5]]
    area = _area({"geometry": {"type": "MultiPolygon",
                               "coordinates": [[SQUARE, hole], [west]]}})
    assert area.findtext(f"{C}areaDesc") == "Affected area"
    assert [p.text for p in area.findall(f"{C}polygon")] == [
        "50.6,5.5 50.6,5.6 50.7,5.6 50.7,5.5 50.6,5.5",
        "40.5,-3.25 40.5,-3 40.75,-3 40.5,-3.25",
    ]


def test_point_becomes_circle_of_radius_zero() -> None:
    """A GeoJSON Point (lon, lat[, alt]) becomes the CAP circle "lat,lon 0"."""
    area = _area({"geometry": {"type": "Point", "coordinates": [5.5706, 50.6326, 70.0]}})
    assert [c.text for c in area.findall(f"{C}circle")] == ["50.6326,5.5706 0"]
    assert area.find(f"{C}polygon") is None


def test_coordinates_are_decimal_without_exponent_or_negative_zero() -> None:
    """Tiny and negative-zero coordinates are written as plain decimals."""
    area = _area({"geometry": {"type": "Point", "coordinates": [-0.0, 1e-9]}})
    assert area.findtext(f"{C}circle") == "0,0 0"
    area = _area({"geometry": {"type": "Point", "coordinates": [-179.123456789, -89.5]}})
    assert area.findtext(f"{C}circle") == "-89.5,-179.1234568 0"


def test_linestring_keeps_area_description_without_shape() -> None:
    """A LineString has no CAP shape: the area keeps its description and geocodes only."""
    area = _area({"geometry": {"type": "LineString", "coordinates": [[5.5, 50.6], [5.6, 50.7]]},
                  "place_names": ["E40 Liège-Aachen"]})
    assert area.findtext(f"{C}areaDesc") == "E40 Liège-Aachen"
    assert area.find(f"{C}polygon") is None
    assert area.find(f"{C}circle") is None


def test_region_codes_become_nuts_or_region_geocodes() -> None:
    """NUTS-looking region codes get valueName NUTS, others REGION."""
    area = _area({"region_codes": ["BE332", "NL", "BE-WLG", "LU0000001"]})
    geocodes = [(g.findtext(f"{C}valueName"), g.findtext(f"{C}value"))
                for g in area.findall(f"{C}geocode")]
    assert geocodes == [("NUTS", "BE332"), ("NUTS", "NL"), ("REGION", "BE-WLG"),
                        ("REGION", "LU0000001")]


def test_no_or_empty_affected_area_gives_no_area() -> None:
    """Without affected_area, or with an empty one, no <area> is written."""
    for body in (_with(), _with(affected_area={})):
        info = _alert(_envelope(body)).find(f"{C}info")
        assert info is not None
        assert info.find(f"{C}area") is None


# --------------------------------------------------------------------------- robustness

def test_characters_xml_cannot_carry_are_replaced() -> None:
    """Control characters and non-characters in texts are replaced; the CAP validates."""
    body = _with(summary={"en": "bad\x00byte\x1b and \x0c form feed\ufffe"},
                 incident={"id": "X-1", "title": "Title\x07"})
    info = _alert(_envelope(body)).find(f"{C}info")
    assert info is not None
    assert info.findtext(f"{C}description") == "bad\ufffdbyte\ufffd and \ufffd form feed\ufffd"
    assert info.findtext(f"{C}event") == "Title\ufffd"


def test_markup_characters_in_texts_are_escaped() -> None:
    """Texts with <, & and ]]> round-trip through the XML unchanged."""
    text = "<b>Dykes</b> & levees ]]> \"quoted\" 'single'"
    info = _alert(_envelope(_with(summary={"en": text}))).find(f"{C}info")
    assert info is not None
    assert info.findtext(f"{C}description") == text


def test_non_sitrep_envelope_is_refused() -> None:
    """Only sitrep envelopes can be exported by this module."""
    with pytest.raises(ValueError, match="not a sitrep"):
        sitrep_to_cap(_envelope(_with(), type="receipt"))


def test_invalid_sitrep_body_is_refused() -> None:
    """A body the Sitrep model refuses raises a validation error, not bad XML."""
    with pytest.raises(ValidationError):
        sitrep_to_cap(_envelope(_with(summary="plain string")))
    with pytest.raises(ValidationError):
        sitrep_to_cap(_envelope(_with(), created="2026-11-27T10:00:00"))


# --------------------------------------------------------------------------- property

LANGS = ["en", "nl", "fr", "de", "lb", "und", "en-GB", "de-LU"]
CENTRES = ["BE-NCCN", "NL-NCC", "LU-HCPN", "FR-COGIC", "DE-GMLZ"]
_text_chars = st.characters(exclude_categories=("Cs", "Cc", "Cn"), include_characters="\n\t")


def _text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(_text_chars, min_size=1, max_size=max_size)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def _fields(draw: st.DrawFn, required: dict[str, st.SearchStrategy[Any]],
            optional: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    out = {k: draw(v) for k, v in required.items()}
    for key, strategy in optional.items():
        value = draw(_optional(strategy))
        if value is not None:
            out[key] = value
    return out


_localized = st.dictionaries(st.sampled_from(LANGS), _text(), min_size=1, max_size=3)
_lon = st.floats(-180, 180, allow_nan=False)
_lat = st.floats(-90, 90, allow_nan=False)
_position = st.tuples(_lon, _lat).map(list)


@st.composite
def _ring(draw: st.DrawFn) -> list[list[float]]:
    points = draw(st.lists(_position, min_size=3, max_size=8))
    return [*points, points[0]]


_polygon = st.lists(_ring(), min_size=1, max_size=2)
_geometry = st.one_of(
    st.builds(lambda c: {"type": "Point", "coordinates": c}, _position),
    st.builds(lambda c: {"type": "LineString", "coordinates": c},
              st.lists(_position, min_size=2, max_size=5)),
    st.builds(lambda c: {"type": "Polygon", "coordinates": c}, _polygon),
    st.builds(lambda c: {"type": "MultiPolygon", "coordinates": c},
              st.lists(_polygon, min_size=1, max_size=3)),
)
_area_strategy = _fields({}, {
    "geometry": _geometry,
    "place_names": st.lists(_text(), max_size=3),
    "region_codes": st.lists(st.from_regex(r"[A-Z0-9-]{2,16}", fullmatch=True), max_size=3),
})
_count = st.integers(0, 2**53 - 1)
_casualties = _fields({}, dict.fromkeys(("dead", "injured", "missing", "evacuated",
                                         "displaced", "affected_population"), _count))
_need = _fields({"description": _localized},
                {"category": _text(20), "quantity": _text(20), "urgent": st.booleans()})
_request = _fields({"description": _localized},
                   {"to": st.sampled_from(CENTRES), "resources": st.lists(_text(), max_size=2)})
_contact = _fields({}, {
    "name": _text(), "role": _text(), "organisation": _text(),
    "phone": st.from_regex(r"\+?[0-9 ()./-]{3,20}", fullmatch=True),
    "email": st.from_regex(r"[a-z0-9.]{1,10}@[a-z]{1,10}\.[a-z]{2,5}", fullmatch=True),
})
_attachment = _fields({
    "sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    "filename": st.text(st.characters(exclude_categories=("Cs", "Cc", "Cn"),
                                      exclude_characters="/\\"), min_size=1, max_size=30)
                  .filter(lambda name: name not in {".", ".."}),
    "media_type": st.sampled_from(["application/pdf", "image/png", "text/csv"]),
    "size": _count,
}, {"description": _text()})
_sections = _fields({}, {"situation": _localized, "actions_taken": _localized,
                         "outlook": _localized})
_incident = _fields({
    "id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,20}", fullmatch=True),
    "title": _text(),
}, {
    "type": st.sampled_from(["flood", "wildfire", "chemical fire", "pandemic", "power cut",
                             "rail crash", "terror", "rescue", "oil pollution", "heatwave"])
            | _text(20),
    "phase": st.sampled_from(["alert", "response", "recovery", "closed"]),
})


@st.composite
def sitrep_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Sitrep bodies in wire form that ``Sitrep.model_validate`` accepts."""
    body = draw(_fields({
        "incident": _incident,
        "report_number": st.integers(1, 2**31),
        "severity": st.sampled_from(["extreme", "severe", "moderate", "minor", "unknown"]),
        "summary": _localized,
    }, {
        "purpose": st.sampled_from(["initial", "update", "final"]),
        "urgency": st.sampled_from(["immediate", "expected", "future", "past", "unknown"]),
        "certainty": st.sampled_from(["observed", "likely", "possible", "unlikely", "unknown"]),
        "sections": _sections,
        "affected_area": _area_strategy,
        "casualties": _casualties,
        "needs": st.lists(_need, max_size=2),
        "assistance_requests": st.lists(_request, max_size=2),
        "contact": _contact,
        "attachments": st.lists(_attachment, max_size=2),
    }))
    if body["report_number"] > 1 and draw(st.booleans()):
        body["supersedes"] = draw(st.integers(1, body["report_number"] - 1))
    return body


@st.composite
def sitrep_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """Verified-looking sitrep envelopes: every mode, TLP and priority, valid lifetimes."""
    body = draw(sitrep_bodies())
    sender = draw(st.sampled_from(CENTRES))
    others = [c for c in CENTRES if c != sender]
    created = draw(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1),
                                timezones=st.just(UTC)))
    lifetime = draw(st.integers(1, 7 * 24 * 3600))
    return {
        "v": 1, "id": str(draw(st.uuids())), "type": "sitrep", "from": sender,
        "to": draw(st.lists(st.sampled_from(others), min_size=1, max_size=4, unique=True)),
        "created": format_time(created),
        "expires": format_time(created + timedelta(seconds=lifetime)),
        "mode": draw(st.sampled_from(["actual", "exercise", "test"])),
        "tlp": draw(st.sampled_from(["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"])),
        "priority": draw(st.sampled_from(["routine", "urgent", "flash"])),
        "incident": draw(st.none() | st.just(body["incident"]["id"])),
        "body": body,
    }


def _expected_languages(body: dict[str, Any]) -> list[str]:
    texts = [body["summary"], *body.get("sections", {}).values(),
             *(n["description"] for n in body.get("needs", [])),
             *(r["description"] for r in body.get("assistance_requests", []))]
    return list(dict.fromkeys(lang for text in texts for lang in text))


@settings(max_examples=200, deadline=None)
@given(sitrep_envelopes())
def test_generated_sitreps_always_export_valid_cap_with_one_info_per_language(
        env: dict[str, Any]) -> None:
    """Any valid sitrep envelope exports to schema-valid CAP with one info per language."""
    Sitrep.model_validate(env["body"])  # the strategy only produces valid bodies
    root = _alert(env)
    languages = [i.findtext(f"{C}language") for i in root.findall(f"{C}info")]
    assert languages == _expected_languages(env["body"]) == cap_languages(env)
    assert CAP_TIME.match(root.findtext(f"{C}sent") or "")
    for info in root.findall(f"{C}info"):
        assert len(info.findtext(f"{C}headline") or "") <= HEADLINE_MAX
        assert _params(info)["report_number"] == str(env["body"]["report_number"])
        for polygon in info.iterfind(f"{C}area/{C}polygon"):
            pairs = (polygon.text or "").split(" ")
            assert len(pairs) >= 4
            assert pairs[0] == pairs[-1]
