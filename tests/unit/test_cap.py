"""Tests of CAP 1.2 import and export (gateway.formats.cap)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.formats.cap import alert_to_cap, parse_cap
from gateway.formats.xml import CAP_NS, MAX_XML_BYTES, XmlError, parse_safely, validate
from gateway.protocol.alert import (
    XMLDSIG_NS,
    Alert,
    Area,
    Category,
    Certainty,
    Info,
    MsgType,
    NamedValue,
    Resource,
    ResponseType,
    Scope,
    Severity,
    Status,
    Urgency,
    alert_json,
)

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "cap"
OASIS = [f"oasis-appendix-a{n}.xml" for n in range(1, 5)]
FEEDS = ["feed-multilingual.xml", "feed-areas.xml", "feed-resources.xml", "feed-signed.xml"]
ALL = OASIS + FEEDS
NS = {"cap": CAP_NS}
XSD_NS = "http://www.w3.org/2001/XMLSchema"

# Model field -> CAP element, written out here independently of gateway.formats.cap.
TAGS = {
    "identifier": "identifier", "sender": "sender", "sent": "sent", "status": "status",
    "msg_type": "msgType", "source": "source", "scope": "scope", "restriction": "restriction",
    "addresses": "addresses", "codes": "code", "note": "note", "references": "references",
    "incidents": "incidents", "infos": "info", "language": "language",
    "categories": "category", "event": "event", "response_types": "responseType",
    "urgency": "urgency", "severity": "severity", "certainty": "certainty",
    "audience": "audience", "event_codes": "eventCode", "effective": "effective",
    "onset": "onset", "expires": "expires", "sender_name": "senderName",
    "headline": "headline", "description": "description", "instruction": "instruction",
    "web": "web", "contact": "contact", "parameters": "parameter", "resources": "resource",
    "areas": "area", "value_name": "valueName", "value": "value",
    "resource_desc": "resourceDesc", "mime_type": "mimeType", "size": "size", "uri": "uri",
    "deref_uri": "derefUri", "digest": "digest", "area_desc": "areaDesc",
    "polygons": "polygon", "circles": "circle", "geocodes": "geocode",
    "altitude": "altitude", "ceiling": "ceiling",
}


def load(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def cap(local: str) -> str:
    return f"{{{CAP_NS}}}{local}"


def content(el: etree._Element) -> str:
    """The text of an element, including text after any comment inside it."""
    return "".join(str(t) for t in el.itertext())


def xml_leaves(data: bytes) -> Counter[tuple[str, str]]:
    """(element, text) of every CAP leaf element, plus the en-US default of a bare info."""
    root = parse_safely(data)
    found: Counter[tuple[str, str]] = Counter()
    for el in root.iter(cap("*")):
        if not len(el):
            found[etree.QName(el).localname, content(el)] += 1
        if el.tag == cap("info") and el.find(cap("language")) is None:
            found["language", "en-US"] += 1
    return found


def model_leaves(value: Any, key: str = "") -> Counter[tuple[str, str]]:
    """(element, text) of every scalar in an alert's JSON form."""
    found: Counter[tuple[str, str]] = Counter()
    if isinstance(value, dict):
        for k, v in value.items():
            if k != "signature_xml":
                found += model_leaves(v, k)
    elif isinstance(value, list):
        for item in value:
            found += model_leaves(item, key)
    else:
        found[TAGS[key], str(value)] += 1
    return found


def canonical(data: bytes) -> bytes:
    """C14N of a CAP document without comments, indentation, and with explicit languages."""
    root = parse_safely(data)
    for comment in list(root.iter(etree.Comment)):
        parent = comment.getparent()
        assert parent is not None
        parent.remove(comment)
    for el in root.iter():
        if len(el) and el.text is not None and not el.text.strip():
            el.text = None
        if el.tail is not None and not el.tail.strip():
            el.tail = None
    for info in root.iterfind("cap:info", NS):
        if info.find("cap:language", NS) is None:
            language = etree.Element(cap("language"))
            language.text = "en-US"
            info.insert(0, language)
    # The whole tree: lxml 6.1 / libxml2 2.14 give a wrong inclusive C14N of an element
    # below a default namespace (its grandchildren get xmlns=""), see signature_c14n.
    return etree.tostring(root.getroottree(), method="c14n", with_comments=False)


def text(el: etree._Element, path: str) -> str | None:
    found = el.find(path, NS)
    return None if found is None else content(found)


def pairs(el: etree._Element, path: str) -> list[tuple[str | None, str | None]]:
    return [(text(p, "cap:valueName"), text(p, "cap:value")) for p in el.iterfind(path, NS)]


def texts(el: etree._Element, path: str) -> list[str]:
    return [content(e) for e in el.iterfind(path, NS)]


def named(values: tuple[NamedValue, ...]) -> list[tuple[str | None, str | None]]:
    return [(v.value_name, v.value) for v in values]


# --------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("name", ALL)
def test_fixture_validates_against_xsd(name: str) -> None:
    """Every CAP fixture is a valid CAP 1.2 document."""
    validate(parse_safely(load(name)), "cap-1.2.xsd")


def test_fixtures_cover_every_cap_element() -> None:
    """Between them the fixtures use every element the CAP 1.2 XSD declares."""
    xsd = etree.fromstring(
        resources.files("gateway.formats").joinpath("xsd", "cap-1.2.xsd").read_bytes()
    )
    declared = {str(e.get("name")) for e in xsd.iter(f"{{{XSD_NS}}}element") if e.get("name")}
    used = {etree.QName(el).localname for n in ALL for el in parse_safely(load(n)).iter(cap("*"))}
    assert declared - used == set()


# --------------------------------------------------------------------------- import


@pytest.mark.parametrize("name", OASIS)
def test_oasis_example_field_by_field(name: str) -> None:
    """Each OASIS example maps field by field to the values read from its XML."""
    root = parse_safely(load(name))
    a = parse_cap(load(name))
    for field in ("identifier", "sender", "sent", "status", "source", "scope", "references"):
        assert getattr(a, field) == text(root, f"cap:{TAGS[field]}"), field
    assert a.msg_type == text(root, "cap:msgType")
    assert len(a.infos) == len(root.findall("cap:info", NS))
    for info, el in zip(a.infos, root.iterfind("cap:info", NS), strict=True):
        assert info.language == (text(el, "cap:language") or "en-US")
        assert list(info.categories) == texts(el, "cap:category")
        assert list(info.response_types) == texts(el, "cap:responseType")
        for field in ("event", "urgency", "severity", "certainty", "expires", "sender_name",
                      "headline", "description", "instruction", "web", "contact"):
            assert getattr(info, field) == text(el, f"cap:{TAGS[field]}"), field
        assert named(info.event_codes) == pairs(el, "cap:eventCode")
        assert named(info.parameters) == pairs(el, "cap:parameter")
        resources_xml = el.findall("cap:resource", NS)
        assert len(info.resources) == len(resources_xml)
        for res, res_el in zip(info.resources, resources_xml, strict=True):
            assert res.resource_desc == text(res_el, "cap:resourceDesc")
            assert res.mime_type == text(res_el, "cap:mimeType")
            assert res.uri == text(res_el, "cap:uri")
        areas_xml = el.findall("cap:area", NS)
        assert len(info.areas) == len(areas_xml)
        for area, area_el in zip(info.areas, areas_xml, strict=True):
            assert area.area_desc == text(area_el, "cap:areaDesc")
            assert list(area.polygons) == texts(area_el, "cap:polygon")
            assert list(area.circles) == texts(area_el, "cap:circle")
            assert named(area.geocodes) == pairs(area_el, "cap:geocode")


def test_oasis_examples_literal_values() -> None:
    """Spot checks against values typed in from the OASIS CAP 1.2 appendix A."""
    a1, a2, a3, a4 = (parse_cap(load(n)) for n in OASIS)
    assert (a1.identifier, a1.sent, a1.status, a1.msg_type) == (
        "43b080713727", "2003-04-02T14:39:01-05:00", Status.ACTUAL, MsgType.ALERT)
    assert a1.infos[0].categories == (Category.SECURITY,)
    assert a1.infos[0].instruction is not None
    assert a1.infos[0].instruction.startswith(" A High Condition is declared")
    assert a1.infos[0].parameters == (NamedValue(value_name="HSAS", value="ORANGE"),)
    assert a1.infos[0].resources[0].mime_type == "image/gif"
    assert a2.infos[0].response_types == (ResponseType.SHELTER,)
    assert a2.infos[0].areas[0].polygons == (
        "38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89 38.47,-120.14",)
    assert [g.value for g in a2.infos[0].areas[0].geocodes] == ["006109", "006009", "006003"]
    assert a3.msg_type is MsgType.UPDATE
    assert a3.references == "trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00"
    assert a3.infos[0].areas[0].circles == ("32.9525,-115.5527 0",)
    assert a3.infos[0].parameters[2] == NamedValue(value_name="Magnitude", value="3.4 Ml")
    assert (a3.infos[0].urgency, a3.infos[0].severity) == (Urgency.PAST, Severity.MINOR)
    assert a4.source == "SW"
    assert [i.language for i in a4.infos] == ["en-US", "es-US"]
    assert a4.infos[1].event == "Abducción de Niño"
    assert a4.infos[1].certainty is Certainty.LIKELY


@pytest.mark.parametrize("name", ALL)
def test_import_loses_nothing(name: str) -> None:
    """Every CAP leaf element's text appears in the model, and nothing else does."""
    a = parse_cap(load(name))
    assert model_leaves(alert_json(a)) == xml_leaves(load(name))


def test_multilingual_feed() -> None:
    """Four languages, several categories, response types, event codes and parameters."""
    a = parse_cap(load("feed-multilingual.xml"))
    assert [i.language for i in a.infos] == ["nl-BE", "fr-BE", "de-DE", "en-GB"]
    assert a.codes == ("profile:CAP-BE:1.0", "BE-Alert")
    assert (a.msg_type, a.incidents) == (MsgType.UPDATE, "BE-2026-0001")
    de = a.infos[2]
    assert de.categories == (Category.MET, Category.SAFETY, Category.INFRA)
    assert de.response_types == (ResponseType.SHELTER, ResponseType.AVOID)
    assert named(a.infos[0].event_codes) == [("TIC", "storm"), ("EMSI", "NAT/STORM")]
    assert named(a.infos[0].parameters) == [
        ("awareness_level", "3; orange; Severe"), ("awareness_type", "1; Wind")]
    assert a.infos[1].headline == "Tempête violente : restez à l'intérieur"
    assert a.infos[3].description == (
        "Gusts of up to 120 km/h expected from 14:00 local time.\n"
        "Falling trees & flying debris are likely <in exposed areas>.")
    assert (a.infos[0].onset, a.infos[0].expires) == (
        "2026-11-27T14:00:00+01:00", "2026-11-28T06:00:00+01:00")


def test_areas_feed() -> None:
    """Several areas with polygons, circles, NUTS and EMMA_ID geocodes, altitude, ceiling."""
    a = parse_cap(load("feed-areas.xml"))
    assert (a.status, a.scope) == (Status.EXERCISE, Scope.RESTRICTED)
    assert a.restriction == "Crisis centres and fire services of NL, BE and DE only"
    first, second, third = a.infos[0].areas
    assert len(first.polygons) == 2
    assert first.polygons[1].startswith("51.6500,4.6400 ")
    assert first.circles == ("51.6912,4.5987 2.5", "51.6400,4.6700 1.0")
    assert named(first.geocodes) == [("NUTS3", "NL412"), ("EMMA_ID", "NL009")]
    assert (first.altitude, first.ceiling) == ("0", "3500.5")
    assert (second.altitude, second.ceiling) == ("-12.5", None)
    assert third == Area(area_desc="Shipping on the Hollands Diep",
                         circles=("51.7050,4.5500 0",))
    for area in (first, second):
        for polygon in area.polygons:
            points = polygon.split(" ")
            assert len(points) >= 4
            assert points[0] == points[-1]


def test_resources_feed() -> None:
    """Resources keep mimeType, size, uri, base64 derefUri and a SHA-1 digest that matches."""
    a = parse_cap(load("feed-resources.xml"))
    assert a.scope is Scope.PRIVATE
    assert a.addresses == 'BE-NCCN NL-NCC "LU HCPN" DE-GMLZ'
    text_res, gif, pdf = a.infos[0].resources
    for res in (text_res, gif):
        assert res.deref_uri is not None
        content = base64.b64decode(res.deref_uri)
        assert len(content) == res.size
        assert hashlib.sha1(content).hexdigest() == res.digest
    assert text_res.deref_uri is not None
    assert text_res.deref_uri.count("\n") == 2
    assert base64.b64decode(text_res.deref_uri).decode().startswith("Evacuation routes Liège")
    assert gif.uri == "https://www.provincedeliege.be/alertes/pictogramme.gif"
    assert pdf == Resource(resource_desc="Carte de la zone (PDF)", mime_type="application/pdf",
                           uri="https://www.provincedeliege.be/alertes/carte-zone.pdf?v=3&lang=fr")


def signature_c14n(data: bytes) -> list[bytes]:
    """Exclusive C14N of each XML-DSig element at the end of the alert.

    Not inclusive C14N 1.0: lxml 6.1 / libxml2 2.14 emit a spurious xmlns="" on the
    grandchildren of an element whose parent has another default namespace.
    """
    root = parse_safely(data)
    return [etree.tostring(el, method="c14n", exclusive=True)
            for el in root if etree.QName(el).namespace == XMLDSIG_NS]


def test_signed_feed_keeps_signature() -> None:
    """The XML-DSig Signature is kept and re-exported with identical canonical bytes."""
    data = load("feed-signed.xml")
    a = parse_cap(data)
    assert a.signature_xml is not None
    assert a.signature_xml.startswith(f'<Signature xmlns="{XMLDSIG_NS}">')
    assert "dummy" not in a.signature_xml  # the base64 stays as written
    assert "ZHVtbXkgc2lnbmF0dXJlIHZhbHVlIGZvciB0ZXN0cyBvbmx5&#13;\n" in a.signature_xml
    original = signature_c14n(data)
    assert len(original) == 1
    assert b"<SignedInfo><CanonicalizationMethod" not in original[0]  # white space kept
    assert signature_c14n(alert_to_cap(a)) == original


def test_prefixed_signatures_keep_their_namespace_context() -> None:
    """Several prefixed XML-DSig elements bound on the root survive export unchanged."""
    data = load("oasis-appendix-a3.xml").replace(
        b'<alert xmlns = "urn:oasis:names:tc:emergency:cap:1.2">',
        f'<alert xmlns="{CAP_NS}" xmlns:ds="{XMLDSIG_NS}">'.encode(),
    ).replace(b"</info>", b"</info><ds:Signature><ds:SignatureValue>AA==</ds:SignatureValue>"
                          b"</ds:Signature>\n<ds:Object Id='o'>x</ds:Object>")
    a = parse_cap(data)
    assert a.signature_xml is not None
    assert a.signature_xml.count(f'xmlns:ds="{XMLDSIG_NS}"') == 2
    exported = alert_to_cap(a)
    assert parse_cap(exported) == a
    assert len(signature_c14n(data)) == 2
    assert signature_c14n(exported) == signature_c14n(data)


def test_collapsing_types_are_read_collapsed() -> None:
    """dateTime, language, URI, integer and decimal values lose surrounding spaces;
    xs:string texts keep theirs."""
    data = load("feed-resources.xml").replace(
        b"<sent>2026-11-27T12:00:00+01:00</sent>", b"<sent>\n 2026-11-27T12:00:00+01:00 </sent>"
    ).replace(b"<language>fr-BE</language>", b"<language> fr-BE\t</language>").replace(
        b"<size>43</size>", b"<size> +0043 </size>"
    ).replace(b"<headline>", b"<headline>  ").replace(
        b"<areaDesc>Li\xc3\xa8ge et Vis\xc3\xa9, rive droite de la Meuse</areaDesc>",
        b"<areaDesc>x</areaDesc><altitude> 12.0 </altitude>",
    )
    a = parse_cap(data)
    assert a.sent == "2026-11-27T12:00:00+01:00"
    assert a.infos[0].language == "fr-BE"
    assert a.infos[0].resources[1].size == 43
    assert a.infos[0].areas[0].altitude == "12.0"
    assert a.infos[0].headline == "  Itinéraires d'évacuation Liège-Visé"


def test_comments_and_empty_elements() -> None:
    """Comments are not content but text around them is kept; an empty element reads as ""."""
    data = load("oasis-appendix-a1.xml").replace(
        b"<headline>Homeland Security Sets Code ORANGE</headline>",
        b"<headline>Homeland <!-- colour -->Security<?pi x?> Sets</headline><!-- c -->",
    ).replace(b"</web>", b"</web><contact/>")
    a = parse_cap(data)
    assert a.infos[0].headline == "Homeland Security Sets"
    assert a.infos[0].contact == ""
    assert parse_cap(alert_to_cap(a)) == a


def test_schema_location_hint_ignored_other_attributes_refused() -> None:
    """xsi:schemaLocation is accepted as a hint; any other attribute is refused, not dropped."""
    xsi = "http://www.w3.org/2001/XMLSchema-instance"
    plain = load("oasis-appendix-a3.xml")
    hinted = plain.replace(
        b'<alert xmlns = "urn:oasis:names:tc:emergency:cap:1.2">',
        f'<alert xmlns="{CAP_NS}" xmlns:xsi="{xsi}" xmlns:xs="{XSD_NS}" '
        f'xsi:schemaLocation="{CAP_NS} cap.xsd">'.encode(),
    )
    assert parse_cap(hinted) == parse_cap(plain)
    typed = hinted.replace(b"<event>", b'<event xsi:type="xs:string">')
    with pytest.raises(XmlError, match=r"attribute .*type is not carried") as info:
        parse_cap(typed)
    assert (info.value.line, info.value.element) == (12, "event")


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("name", ALL)
def test_round_trip(name: str) -> None:
    """Export validates and reads back to the same model."""
    a = parse_cap(load(name))
    exported = alert_to_cap(a)
    validate(parse_safely(exported), "cap-1.2.xsd")
    assert parse_cap(exported) == a


@pytest.mark.parametrize("name", ALL)
def test_export_is_canonically_equal(name: str) -> None:
    """Export equals the original in C14N, apart from indentation, comments and the
    en-US language CAP implies when an info omits it."""
    a = parse_cap(load(name))
    assert canonical(alert_to_cap(a)) == canonical(load(name))


def test_export_form() -> None:
    """Export is UTF-8 with an XML declaration and CAP 1.2 as the default namespace."""
    exported = alert_to_cap(parse_cap(load("oasis-appendix-a4.xml")))
    assert exported.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<alert xmlns=\"")
    assert "Abducción de Niño".encode() in exported
    assert parse_safely(exported).nsmap == {None: CAP_NS}


def test_export_refuses_what_the_xsd_refuses() -> None:
    """A model value the XSD refuses makes export raise, naming the element."""
    a = parse_cap(load("oasis-appendix-a3.xml"))
    bad = a.model_copy(update={"infos": (a.infos[0].model_copy(update={"web": "http://a:b:c"}),)})
    with pytest.raises(XmlError, match="exported alert") as info:
        alert_to_cap(bad)
    assert info.value.element == "web"


# --------------------------------------------------------------------------- refusals

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE alert [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol4;</identifier></alert>
"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>
"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE alert SYSTEM "http://attacker.example/cap.dtd">
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</identifier></alert>
"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, XXE, EXTERNAL_DTD],
                         ids=["billion-laughs", "xxe", "external-dtd"])
def test_doctype_attacks_refused(data: bytes) -> None:
    """Entity expansion, external entities and external DTDs are refused as DOCTYPEs."""
    with pytest.raises(XmlError, match="DOCTYPE"):
        parse_cap(data)


def test_oversize_refused() -> None:
    """A document over the XML size limit is refused before parsing."""
    data = load("oasis-appendix-a1.xml").replace(b"</alert>", b" " * MAX_XML_BYTES + b"</alert>")
    with pytest.raises(XmlError, match="exceeds"):
        parse_cap(data)


@pytest.mark.parametrize("data", [b"", b"not xml", b'{"identifier": "x"}', b"<alert>",
                                  b"\xff\xfe<\x00a\x00"])
def test_not_xml_refused(data: bytes) -> None:
    """Bytes that are not well-formed XML are refused."""
    with pytest.raises(XmlError, match="not well-formed"):
        parse_cap(data)


def test_cap_11_refused() -> None:
    """A CAP 1.1 alert is refused as such."""
    data = load("oasis-appendix-a1.xml").replace(b"cap:1.2", b"cap:1.1")
    message = re.escape("this is CAP 1.1; only CAP 1.2 is accepted")
    with pytest.raises(XmlError, match=message) as info:
        parse_cap(data)
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("data", "root"),
    [
        (b'<feed xmlns="http://www.w3.org/2005/Atom"/>', "{http://www.w3.org/2005/Atom}feed"),
        (b"<alert><identifier>x</identifier></alert>", "alert"),
        (f'<info xmlns="{CAP_NS}"/>'.encode(), f"{{{CAP_NS}}}info"),
    ],
)
def test_other_roots_refused(data: bytes, root: str) -> None:
    """A root that is not the CAP 1.2 alert element is refused, naming it."""
    with pytest.raises(XmlError, match=re.escape("not a CAP 1.2 alert: root element is")) as info:
        parse_cap(data)
    assert root in str(info.value)


def test_missing_status_names_line_and_element() -> None:
    """A missing <status> is reported at the element found in its place, naming status."""
    data = load("oasis-appendix-a1.xml").replace(b"<status>Actual</status>", b"")
    with pytest.raises(XmlError, match="Expected is \\( status \\)") as info:
        parse_cap(data)
    assert (info.value.line, info.value.element) == (7, "msgType")
    assert "line 7, element msgType" in str(info.value)


def test_bad_urgency_names_line_and_element() -> None:
    """A value outside the urgency vocabulary is reported with its line and element."""
    data = load("oasis-appendix-a1.xml").replace(b"<urgency>Immediate", b"<urgency>Soon")
    with pytest.raises(XmlError, match="'Soon' is not an element of the set") as info:
        parse_cap(data)
    assert (info.value.line, info.value.element) == (12, "urgency")


def test_prefixed_cap_read_like_default_namespace() -> None:
    """A CAP document using a cap: prefix reads like the default-namespace one, and its
    validation errors name the element too."""
    plain = load("oasis-appendix-a1.xml")
    prefixed = re.sub(rb"<(/?)([a-zA-Z]+)>", rb"<\1cap:\2>", plain).replace(
        b"<alert xmlns = ", b"<cap:alert xmlns:cap=").replace(b"</alert>", b"</cap:alert>")
    assert b"<cap:urgency>" in prefixed
    assert parse_cap(prefixed) == parse_cap(plain)
    with pytest.raises(XmlError, match="'Soon'") as info:
        parse_cap(prefixed.replace(b"<cap:urgency>Immediate", b"<cap:urgency>Soon"))
    assert (info.value.line, info.value.element) == (12, "urgency")


def test_model_refusal_names_line_and_element() -> None:
    """XSD-valid content the model refuses (a negative size) is reported at its element."""
    data = load("feed-resources.xml").replace(b"<size>43</size>", b"<size>-43</size>")
    with pytest.raises(XmlError, match="refused by the alert model") as info:
        parse_cap(data)
    assert (info.value.line, info.value.element) == (33, "size")


def test_model_refusal_in_repeated_element_names_its_line() -> None:
    """A too-long value in the second of several parameters is reported at its own line."""
    data = load("oasis-appendix-a3.xml").replace(
        b"<value>1</value>", b"<value>" + b"9" * 65_537 + b"</value>")
    with pytest.raises(XmlError, match="at most 65536") as info:
        parse_cap(data)
    assert (info.value.line, info.value.element) == (29, "value")


# --------------------------------------------------------------------------- property

_TEXT = st.text(
    alphabet=st.sampled_from(
        "abcXYZ019 .,;:!?-_/'\"<>&()[]{}#%\t\n\r" + "éèçßøñÅΩжЖ中文€😀\u00a0\u2003"),
    max_size=30,
)
_IDENT = st.text(alphabet="abcdefXYZ0123456789.-_@", min_size=1, max_size=20)
_LANG = st.from_regex(r"\A[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8}){0,2}\Z")
_URI = st.from_regex(r"\Ahttps?://[a-z0-9.-]{1,12}(/[A-Za-z0-9._~-]{0,8}){0,3}(\?a=b&c=d)?\Z")
_DECIMAL = st.builds(
    lambda sign, whole, frac: f"{sign}{whole}{frac}",
    st.sampled_from(["", "+", "-"]), st.integers(0, 10**6).map(str),
    st.sampled_from(["", ".", ".5", ".25", ".000"]))


@st.composite
def cap_times(draw: st.DrawFn) -> str:
    day = draw(st.dates())
    hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(
        st.integers(0, 59))
    zone_h = draw(st.integers(0, 14))
    zone_m = 0 if zone_h == 14 else draw(st.sampled_from([0, 30, 45, 59]))
    sign = draw(st.sampled_from("+-"))
    return f"{day.isoformat()}T{hour:02}:{minute:02}:{second:02}{sign}{zone_h:02}:{zone_m:02}"


_LAT = st.floats(-90, 90, allow_nan=False).map(lambda v: f"{v:.4f}")
_LON = st.floats(-180, 180, allow_nan=False).map(lambda v: f"{v:.4f}")
_POINT = st.builds(lambda lat, lon: f"{lat},{lon}", _LAT, _LON)
_POLYGON = st.lists(_POINT, min_size=3, max_size=6).map(lambda ps: " ".join([*ps, ps[0]]))
_CIRCLE = st.builds(lambda p, r: f"{p} {r}", _POINT, st.sampled_from(["0", "2.5", "10"]))
_NAMED = st.builds(NamedValue, value_name=_TEXT, value=_TEXT)
_SIGNATURE = st.builds(
    lambda value, key: (
        f'<Signature xmlns="{XMLDSIG_NS}"><SignatureValue>{value}</SignatureValue>'
        f"<KeyInfo><KeyName>{key}</KeyName></KeyInfo></Signature>"),
        # Non-empty: an empty element reads back in lxml's own form, <SignatureValue/>.
    st.from_regex(r"\A[A-Za-z0-9+/]{1,40}={0,2}\Z"), _IDENT)


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def few(strategy: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[Any]:
    return st.lists(strategy, max_size=max_size).map(tuple)


_RESOURCE = st.builds(
    Resource, resource_desc=_TEXT, mime_type=_TEXT, size=opt(st.integers(0, 2**53 - 1)),
    uri=opt(_URI), deref_uri=opt(_TEXT), digest=opt(_TEXT))
_AREA = st.builds(
    Area, area_desc=_TEXT, polygons=few(_POLYGON), circles=few(_CIRCLE), geocodes=few(_NAMED),
    altitude=opt(_DECIMAL), ceiling=opt(_DECIMAL))
_INFO = st.builds(
    Info, language=_LANG, categories=st.lists(st.sampled_from(Category), min_size=1,
                                              max_size=3).map(tuple),
    event=_TEXT, response_types=few(st.sampled_from(ResponseType)),
    urgency=st.sampled_from(Urgency), severity=st.sampled_from(Severity),
    certainty=st.sampled_from(Certainty), audience=opt(_TEXT), event_codes=few(_NAMED),
    effective=opt(cap_times()), onset=opt(cap_times()), expires=opt(cap_times()),
    sender_name=opt(_TEXT), headline=opt(_TEXT), description=opt(_TEXT),
    instruction=opt(_TEXT), web=opt(_URI), contact=opt(_TEXT), parameters=few(_NAMED),
    resources=few(_RESOURCE, 2), areas=few(_AREA, 2))
_ALERT = st.builds(
    Alert, identifier=_IDENT, sender=_IDENT, sent=cap_times(), status=st.sampled_from(Status),
    msg_type=st.sampled_from(MsgType), source=opt(_TEXT), scope=st.sampled_from(Scope),
    restriction=opt(_TEXT), addresses=opt(_TEXT), codes=few(_TEXT), note=opt(_TEXT),
    references=opt(_TEXT), incidents=opt(_TEXT), infos=few(_INFO, 2),
    signature_xml=opt(st.lists(_SIGNATURE, min_size=1, max_size=2).map("".join)))


@settings(max_examples=200, deadline=None)
@given(_ALERT)
def test_any_alert_exports_valid_cap_and_round_trips(a: Alert) -> None:
    """Every generated alert exports to valid CAP 1.2 (and JSON) that reads back to it."""
    exported = alert_to_cap(a)
    validate(parse_safely(exported), "cap-1.2.xsd")
    assert parse_cap(exported) == a
    assert Alert.model_validate(alert_json(a)) == a
