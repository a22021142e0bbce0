"""Tests of the EDXL-DE 1.0 packaging (gateway.formats.edxl)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.formats.edxl import CONFIDENTIALITY, SIGNED_MEDIA_TYPE, edxl_de
from gateway.formats.sitrep_cap import sitrep_to_cap
from gateway.formats.xml import CAP_NS, EDXL_DE_NS, XmlError, validate
from gateway.protocol.types import Tlp
from tests.unit.test_sitrep_cap import MINIMAL, SQUARE, sitrep_envelopes

E = f"{{{EDXL_DE_NS}}}"
C = f"{{{CAP_NS}}}"
MESSAGE_ID = "5f0c8a52-7d1e-4c1b-9a43-0e5d6b2f9c11"


def _envelope(body: dict[str, Any] | None = None, **header: Any) -> dict[str, Any]:
    body = copy.deepcopy(MINIMAL) if body is None else body
    env: dict[str, Any] = {
        "v": 1, "id": MESSAGE_ID, "type": "sitrep", "from": "BE-NCCN",
        "to": ["NL-NCC", "LU-HCPN"], "created": "2026-11-27T10:00:00.123Z",
        "expires": "2026-11-28T10:00:00.000Z", "mode": "actual", "tlp": "GREEN",
        "priority": "urgent", "incident": "BE-2026-0001", "body": body,
    }
    env.update(header)
    return env


def _wire(env: dict[str, Any]) -> bytes:
    return json.dumps({"envelope": env, "signature": {"alg": "Ed25519", "kid": "k1",
                                                      "value": "A" * 86}},
                      ensure_ascii=False, separators=(",", ":")).encode()


def _distribution(env: dict[str, Any], wire: bytes | None = None, **kwargs: Any) -> etree._Element:
    data = edxl_de(env, _wire(env) if wire is None else wire, **kwargs)
    assert data.startswith(b"<?xml")
    root = etree.fromstring(data)
    validate(root, "edxl-de-1.0.xsd")
    return root


def _keywords(root: etree._Element) -> dict[str, list[str]]:
    return {str(k.findtext(f"{E}valueListUrn")): [str(v.text) for v in k.findall(f"{E}value")]
            for k in root.findall(f"{E}keyword")}


def test_header_fields_map_from_the_envelope() -> None:
    """distributionID, senderID, dateTimeSent, keywords and addresses come from the envelope."""
    root = _distribution(_envelope())
    assert root.tag == f"{E}EDXLDistribution"
    assert root.findtext(f"{E}distributionID") == MESSAGE_ID
    assert root.findtext(f"{E}senderID") == "BE-NCCN@crisisgw"
    assert root.findtext(f"{E}dateTimeSent") == "2026-11-27T10:00:00-00:00"
    assert root.findtext(f"{E}distributionType") == "Report"
    keywords = _keywords(root)
    assert keywords["urn:crisisgw:incident"] == ["BE-2026-0001"]
    assert keywords["urn:crisisgw:priority"] == ["urgent"]
    assert keywords["urn:crisisgw:message-type"] == ["sitrep"]
    addresses = root.findall(f"{E}explicitAddress")
    assert len(addresses) == 1
    assert addresses[0].findtext(f"{E}explicitAddressScheme") == "urn:crisisgw:centre"
    assert [v.text for v in addresses[0].findall(f"{E}explicitAddressValue")] == [
        "NL-NCC", "LU-HCPN"]


def test_sender_domain_can_be_chosen() -> None:
    """A deployment can put its own domain in senderID."""
    root = _distribution(_envelope(), sender_domain="nccn.example.be")
    assert root.findtext(f"{E}senderID") == "BE-NCCN@nccn.example.be"


def test_incident_keyword_falls_back_to_the_sitrep_incident() -> None:
    """Without an envelope incident, the sitrep's incident id is the keyword and incidentID."""
    root = _distribution(_envelope(incident=None))
    assert _keywords(root)["urn:crisisgw:incident"] == ["BE-2026-0001"]
    assert root.findtext(f"{E}contentObject/{E}incidentID") == "BE-2026-0001"


@pytest.mark.parametrize(("mode", "status"),
                         [("actual", "Actual"), ("exercise", "Exercise"), ("test", "Test")])
def test_distribution_status_follows_mode_and_validates(mode: str, status: str) -> None:
    """Each mode gives its distributionStatus and a schema-valid document."""
    assert _distribution(_envelope(mode=mode)).findtext(f"{E}distributionStatus") == status


@pytest.mark.parametrize(("tlp", "confidentiality"), [
    ("CLEAR", "UNCLASSIFIED AND NOT SENSITIVE"),
    ("GREEN", "TLP:GREEN"),
    ("AMBER", "TLP:AMBER"),
    ("AMBER+STRICT", "TLP:AMBER+STRICT"),
    ("RED", "TLP:RED"),
])
def test_confidentiality_follows_tlp_and_validates(tlp: str, confidentiality: str) -> None:
    """Each TLP gives the documented combined and per-content confidentiality."""
    assert CONFIDENTIALITY[tlp] == confidentiality
    root = _distribution(_envelope(tlp=tlp), cap_xml=sitrep_to_cap(_envelope(tlp=tlp)))
    assert root.findtext(f"{E}combinedConfidentiality") == confidentiality
    contents = root.findall(f"{E}contentObject")
    assert [c.findtext(f"{E}confidentiality") for c in contents] == [confidentiality] * 2
    assert _keywords(root)["urn:crisisgw:tlp"] == [f"TLP:{tlp}"]


def test_confidentiality_table_covers_every_tlp() -> None:
    """The confidentiality table has an entry for each TLP of the protocol."""
    assert set(CONFIDENTIALITY) == {t.value for t in Tlp}


@pytest.mark.parametrize(("message_type", "distribution_type"),
                         [("sitrep", "Report"), ("alert", "Report"), ("receipt", "Ack"),
                          ("something-new", "Report")])
def test_distribution_type_follows_message_type(message_type: str,
                                                distribution_type: str) -> None:
    """sitrep and alert are Reports, receipts are Acks, unknown types default to Report."""
    body = copy.deepcopy(MINIMAL) if message_type == "sitrep" else {"anything": 1}
    root = _distribution(_envelope(body, type=message_type))
    assert root.findtext(f"{E}distributionType") == distribution_type
    if message_type != "sitrep":
        assert root.find(f"{E}targetArea") is None


def test_content_data_decodes_to_the_signed_wire_and_digest_checks() -> None:
    """contentData is base64 of the signed wire; size and SHA-1 digest match those bytes."""
    env = _envelope(copy.deepcopy(MINIMAL) | {"summary": {"fr": "Liège: l'eau monte"}})
    wire = _wire(env)
    root = _distribution(env, wire)
    contents = root.findall(f"{E}contentObject")
    assert len(contents) == 1
    data = contents[0].find(f"{E}nonXMLContent")
    assert data is not None
    assert data.findtext(f"{E}mimeType") == SIGNED_MEDIA_TYPE
    decoded = base64.b64decode(data.findtext(f"{E}contentData") or "", validate=True)
    assert decoded == wire
    assert data.findtext(f"{E}size") == str(len(wire))
    assert data.findtext(f"{E}digest") == hashlib.sha1(decoded).hexdigest()
    assert json.loads(decoded)["envelope"]["id"] == MESSAGE_ID


def test_embedded_cap_alert_is_present_and_the_whole_validates() -> None:
    """With cap_xml, a second content object embeds the CAP alert element, still valid."""
    env = _envelope()
    cap = sitrep_to_cap(env)
    root = _distribution(env, cap_xml=cap)
    contents = root.findall(f"{E}contentObject")
    assert len(contents) == 2
    embedded = contents[1].find(f"{E}xmlContent/{E}embeddedXMLContent")
    assert embedded is not None
    (alert,) = list(embedded)
    assert alert.tag == f"{C}alert"
    validate(alert, "cap-1.2.xsd")
    assert alert.findtext(f"{C}identifier") == f"BE-NCCN.{MESSAGE_ID}"
    assert etree.tostring(alert, method="c14n", exclusive=True) == etree.tostring(
        etree.fromstring(cap), method="c14n", exclusive=True)


@pytest.mark.parametrize("bad", [
    b"<notcap xmlns='urn:example'/>",
    b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>x</identifier></alert>",
    b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY x 'y'>]>"
    b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>&x;</alert>",
    b"not xml",
])
def test_invalid_cap_xml_is_refused(bad: bytes) -> None:
    """Embedded content must be a well-formed, DOCTYPE-free, schema-valid CAP alert."""
    with pytest.raises(XmlError):
        edxl_de(_envelope(), b"{}", cap_xml=bad)


def test_empty_signed_wire_is_refused() -> None:
    """There is nothing to package without the signed message."""
    with pytest.raises(ValueError, match="empty"):
        edxl_de(_envelope(), b"")


def test_invalid_envelope_is_refused() -> None:
    """An envelope that does not validate is refused before any XML is built."""
    with pytest.raises(ValueError, match="tlp"):
        edxl_de(_envelope(tlp="PURPLE"), b"{}")


def test_target_area_from_a_polygon_is_lat_lon() -> None:
    """A sitrep GeoJSON polygon becomes an EDXL-DE targetArea polygon in "lat,lon" order."""
    body = copy.deepcopy(MINIMAL) | {"affected_area": {
        "geometry": {"type": "Polygon", "coordinates": [SQUARE]}, "place_names": ["Liège"]}}
    areas = _distribution(_envelope(body)).findall(f"{E}targetArea")
    assert len(areas) == 1
    assert [p.text for p in areas[0].findall(f"{E}polygon")] == [
        "50.6,5.5 50.6,5.6 50.7,5.6 50.7,5.5 50.6,5.5"]
    assert areas[0].find(f"{E}circle") is None


def test_target_area_from_a_point_is_a_circle() -> None:
    """A sitrep GeoJSON point becomes an EDXL-DE targetArea circle of radius 0."""
    body = copy.deepcopy(MINIMAL) | {"affected_area": {
        "geometry": {"type": "Point", "coordinates": [4.35, 50.85]}}}
    area = _distribution(_envelope(body)).find(f"{E}targetArea")
    assert area is not None
    assert area.findtext(f"{E}circle") == "50.85,4.35 0"


@pytest.mark.parametrize("area", [
    None,
    {"place_names": ["Liège"], "region_codes": ["BE332"]},
    {"geometry": {"type": "LineString", "coordinates": [[5.5, 50.6], [5.6, 50.7]]}},
])
def test_no_target_area_without_a_shape(area: dict[str, Any] | None) -> None:
    """Without a polygon or point there is no targetArea (names and lines have no shape)."""
    body = copy.deepcopy(MINIMAL) | ({"affected_area": area} if area else {})
    assert _distribution(_envelope(body)).find(f"{E}targetArea") is None


@settings(max_examples=100, deadline=None)
@given(sitrep_envelopes(), st.binary(min_size=1, max_size=300), st.booleans())
def test_generated_sitrep_envelopes_always_package_to_valid_edxl(
        env: dict[str, Any], wire: bytes, with_cap: bool) -> None:
    """Any valid sitrep envelope, with any wire bytes and optional CAP, gives valid EDXL-DE."""
    cap = sitrep_to_cap(env) if with_cap else None
    root = _distribution(env, wire, cap_xml=cap)
    assert root.findtext(f"{E}distributionID") == env["id"]
    data = root.findtext(f"{E}contentObject/{E}nonXMLContent/{E}contentData") or ""
    assert base64.b64decode(data) == wire
    assert len(root.findall(f"{E}contentObject")) == (2 if with_cap else 1)
