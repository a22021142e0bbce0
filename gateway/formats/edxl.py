"""EDXL-DE 1.0 packaging of a signed message (pure).

:func:`edxl_de` wraps the signed wire bytes of one message (and, optionally, its CAP
rendering) in an ``<EDXLDistribution>`` and validates the result against the shipped
OASIS schema before returning it.  The signed message travels unchanged, base64-encoded,
so a receiver can still verify the Ed25519 signature.

Distribution header
===================

===========================  ===============================================================
EDXL-DE element              Source
===========================  ===============================================================
``distributionID``           envelope ``id``
``senderID``                 ``"{from}@{sender_domain}"`` (spec form actor@domain;
                             default domain ``crisisgw``)
``dateTimeSent``             ``created`` as ``YYYY-MM-DDThh:mm:ss-00:00`` (numeric offset,
                             as the EDXL-DE 1.0 text asks, though ``xsd:dateTime`` takes Z)
``distributionStatus``       ``mode``: actual → Actual, exercise → Exercise, test → Test
``distributionType``         ``type``: sitrep → Report, alert → Report, receipt → Ack,
                             any other type → Report
``combinedConfidentiality``  ``tlp``, see :data:`CONFIDENTIALITY`
``keyword``                  ``urn:crisisgw:incident`` = envelope ``incident`` (else the
                             sitrep's ``incident.id``; omitted when neither),
                             ``urn:crisisgw:priority`` = ``priority``,
                             ``urn:crisisgw:message-type`` = ``type``,
                             ``urn:crisisgw:tlp`` = ``TLP:<label>``
``explicitAddress``          scheme ``urn:crisisgw:centre``, one value per ``to`` centre
``targetArea``               sitrep ``affected_area`` with a polygon or point: ``polygon`` per
                             outer ring, ``circle`` for a point (same "lat,lon" strings as
                             CAP); absent otherwise (LineStrings have no EDXL-DE shape)
===========================  ===============================================================

===============  ==================================
TLP              ``combinedConfidentiality``
===============  ==================================
CLEAR            UNCLASSIFIED AND NOT SENSITIVE
GREEN            TLP:GREEN
AMBER            TLP:AMBER
AMBER+STRICT     TLP:AMBER+STRICT
RED              TLP:RED
===============  ==================================

Content objects
===============

1. The signed message: ``contentDescription``, ``incidentID``, ``confidentiality`` (as
   above) and ``nonXMLContent`` with ``mimeType`` ``application/vnd.crisisgw.signed+json``,
   ``size`` (bytes), ``digest`` = SHA-1 of the bytes in lower-case hex (EDXL-DE 1.0
   prescribes SHA-1 and no encoding; hex is the common practice, as in CAP) and
   ``contentData`` = base64 of the bytes.
2. Only when ``cap_xml`` is given: its ``<alert>`` element (parsed safely and validated
   against the CAP 1.2 schema first) inside ``xmlContent/embeddedXMLContent``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from lxml import etree

from gateway.formats.sitrep_cap import cap_circles, cap_polygons, cap_time, xml_text
from gateway.formats.xml import CAP_NS, EDXL_DE_NS, XmlError, parse_safely, validate
from gateway.protocol.envelope import Envelope
from gateway.protocol.sitrep import Sitrep

EDXL_SCHEMA = "edxl-de-1.0.xsd"
EDXL_MEDIA_TYPE = "application/vnd.crisisgw.edxl-de+xml"
SIGNED_MEDIA_TYPE = "application/vnd.crisisgw.signed+json"
DEFAULT_SENDER_DOMAIN = "crisisgw"
CENTRE_SCHEME = "urn:crisisgw:centre"
INCIDENT_URN = "urn:crisisgw:incident"
PRIORITY_URN = "urn:crisisgw:priority"
TYPE_URN = "urn:crisisgw:message-type"
TLP_URN = "urn:crisisgw:tlp"

STATUS = {"actual": "Actual", "exercise": "Exercise", "test": "Test"}
DISTRIBUTION_TYPE = {"sitrep": "Report", "alert": "Report", "receipt": "Ack"}
DEFAULT_DISTRIBUTION_TYPE = "Report"
CONFIDENTIALITY = {
    "CLEAR": "UNCLASSIFIED AND NOT SENSITIVE",
    "GREEN": "TLP:GREEN",
    "AMBER": "TLP:AMBER",
    "AMBER+STRICT": "TLP:AMBER+STRICT",
    "RED": "TLP:RED",
}


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{EDXL_DE_NS}}}{tag}")
    if text is not None:
        element.text = xml_text(text)
    return element


def _cap_alert(cap_xml: bytes) -> etree._Element:
    alert = parse_safely(cap_xml)
    if alert.tag != f"{{{CAP_NS}}}alert":
        raise XmlError(f"embedded content must be a CAP 1.2 alert, not {alert.tag}",
                       element=str(alert.tag))
    validate(alert, "cap-1.2.xsd")
    return alert


def _target_area(root: etree._Element, sitrep: Sitrep | None) -> None:
    area = sitrep.affected_area if sitrep is not None else None
    if area is None:
        return
    polygons, circles = cap_polygons(area), cap_circles(area)
    if not polygons and not circles:
        return
    target = _sub(root, "targetArea")
    for circle in circles:  # schema order: circle before polygon
        _sub(target, "circle", circle)
    for polygon in polygons:
        _sub(target, "polygon", polygon)


def _content_header(content: etree._Element, description: str, incident: str | None,
                    confidentiality: str) -> None:
    _sub(content, "contentDescription", description)
    if incident is not None:
        _sub(content, "incidentID", incident)
    _sub(content, "confidentiality", confidentiality)


def edxl_distribution(envelope: Mapping[str, Any], signed_wire: bytes, *,
                      cap_xml: bytes | None = None,
                      sender_domain: str = DEFAULT_SENDER_DOMAIN) -> etree._Element:
    """The validated ``<EDXLDistribution>`` element; see :func:`edxl_de`."""
    if not signed_wire:
        raise ValueError("the signed message is empty")
    env = Envelope.model_validate(dict(envelope))
    sitrep = Sitrep.model_validate(env.body) if env.type == "sitrep" else None
    incident = env.incident or (sitrep.incident.id if sitrep is not None else None)
    confidentiality = CONFIDENTIALITY[env.tlp.value]
    alert = _cap_alert(cap_xml) if cap_xml is not None else None

    root = etree.Element(
        f"{{{EDXL_DE_NS}}}EDXLDistribution",
        nsmap={None: EDXL_DE_NS},  # type: ignore[dict-item]  # lxml-stubs: None = default ns
    )
    _sub(root, "distributionID", env.id)
    _sub(root, "senderID", f"{env.from_}@{sender_domain}")
    _sub(root, "dateTimeSent", cap_time(env.created))
    _sub(root, "distributionStatus", STATUS[env.mode.value])
    _sub(root, "distributionType", DISTRIBUTION_TYPE.get(env.type, DEFAULT_DISTRIBUTION_TYPE))
    _sub(root, "combinedConfidentiality", confidentiality)
    keywords = [(INCIDENT_URN, incident), (PRIORITY_URN, env.priority.value),
                (TYPE_URN, env.type), (TLP_URN, f"TLP:{env.tlp.value}")]
    for urn, value in keywords:
        if value is not None:
            keyword = _sub(root, "keyword")
            _sub(keyword, "valueListUrn", urn)
            _sub(keyword, "value", value)
    address = _sub(root, "explicitAddress")
    _sub(address, "explicitAddressScheme", CENTRE_SCHEME)
    for centre in env.to:
        _sub(address, "explicitAddressValue", centre)
    _target_area(root, sitrep)

    signed = _sub(root, "contentObject")
    _content_header(signed, f"Signed crisisgw {env.type} message {env.from_}.{env.id} "
                            f"(JSON envelope with Ed25519 signature)", incident,
                    confidentiality)
    data = _sub(signed, "nonXMLContent")
    _sub(data, "mimeType", SIGNED_MEDIA_TYPE)
    _sub(data, "size", str(len(signed_wire)))
    _sub(data, "digest", hashlib.sha1(signed_wire, usedforsecurity=False).hexdigest())
    _sub(data, "contentData", base64.b64encode(signed_wire).decode("ascii"))

    if alert is not None:
        rendered = _sub(root, "contentObject")
        _content_header(rendered, f"CAP 1.2 rendering of {env.type} {env.from_}.{env.id} "
                                  "(informative; the signed message is authoritative)",
                        incident, confidentiality)
        embedded = _sub(_sub(rendered, "xmlContent"), "embeddedXMLContent")
        embedded.append(alert)

    validate(root, EDXL_SCHEMA)
    return root


def edxl_de(envelope: Mapping[str, Any], signed_wire: bytes, *, cap_xml: bytes | None = None,
            sender_domain: str = DEFAULT_SENDER_DOMAIN) -> bytes:
    """EDXL-DE 1.0 XML (UTF-8, with declaration) carrying ``signed_wire`` (and ``cap_xml``).

    ``envelope`` is the verified envelope dict of the message whose signed wire form is
    ``signed_wire``.  Raises :class:`ValueError` for an invalid envelope or empty wire and
    :class:`gateway.formats.xml.XmlError` for a ``cap_xml`` that is not a valid CAP alert.
    """
    root = edxl_distribution(envelope, signed_wire, cap_xml=cap_xml,
                             sender_domain=sender_domain)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
