"""OASIS CAP 1.2 XML to and from the :class:`~gateway.protocol.alert.Alert` model (lxml).

Import is strict and lossless: the document is parsed safely, must be a CAP 1.2
``alert``, must validate against the shipped OASIS schema, and every element is mapped
to a model field; an element or attribute the model cannot carry raises
:class:`~gateway.formats.xml.XmlError` rather than being dropped.  The XML-DSig elements
the schema allows at the end of the alert are kept verbatim in ``signature_xml``.
Comments and processing instructions are not content and are not carried; neither are
``xsi:schemaLocation`` hints.

Export writes the elements in schema order, always writes ``<language>`` (CAP's default
``en-US`` when the source omitted it), indents the CAP elements, leaves the signature
elements untouched, and validates the result before returning it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lxml import etree
from pydantic import ValidationError

from gateway.formats.xml import CAP_NS, XmlError, parse_safely, validate
from gateway.protocol.alert import Alert, Area, Info, NamedValue, Resource
from gateway.protocol.types import FrozenModel

CAP_XSD = "cap-1.2.xsd"
CAP11_NS = "urn:oasis:names:tc:emergency:cap:1.1"
CAP10_NS = "http://www.incident.com/cap/1.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
ALERT_TAG = f"{{{CAP_NS}}}alert"
#: Schema-location hints are instructions to a validator, not alert content.
_XSI_HINTS = frozenset({f"{{{XSI_NS}}}schemaLocation", f"{{{XSI_NS}}}noNamespaceSchemaLocation"})

_XML_SPACE = re.compile(r"[ \t\n\r]+")

TEXT = "text"  # xs:string: kept exactly as written
COLLAPSED = "collapsed"  # a white-space-collapsing XSD type: kept collapsed
INT = "int"  # xs:integer


@dataclass(frozen=True)
class _Spec:
    """A CAP complex element: its model and its children in schema order."""

    model: type[FrozenModel]
    fields: tuple[_Field, ...]


@dataclass(frozen=True)
class _Field:
    """A CAP child element: local name, model field, value kind, whether repeated."""

    tag: str
    name: str
    kind: str | _Spec = TEXT
    many: bool = False


_NAMED = _Spec(NamedValue, (_Field("valueName", "value_name"), _Field("value", "value")))
_RESOURCE = _Spec(Resource, (
    _Field("resourceDesc", "resource_desc"),
    _Field("mimeType", "mime_type"),
    _Field("size", "size", INT),
    _Field("uri", "uri", COLLAPSED),
    _Field("derefUri", "deref_uri"),
    _Field("digest", "digest"),
))
_AREA = _Spec(Area, (
    _Field("areaDesc", "area_desc"),
    _Field("polygon", "polygons", many=True),
    _Field("circle", "circles", many=True),
    _Field("geocode", "geocodes", _NAMED, many=True),
    _Field("altitude", "altitude", COLLAPSED),
    _Field("ceiling", "ceiling", COLLAPSED),
))
_INFO = _Spec(Info, (
    _Field("language", "language", COLLAPSED),
    _Field("category", "categories", many=True),
    _Field("event", "event"),
    _Field("responseType", "response_types", many=True),
    _Field("urgency", "urgency"),
    _Field("severity", "severity"),
    _Field("certainty", "certainty"),
    _Field("audience", "audience"),
    _Field("eventCode", "event_codes", _NAMED, many=True),
    _Field("effective", "effective", COLLAPSED),
    _Field("onset", "onset", COLLAPSED),
    _Field("expires", "expires", COLLAPSED),
    _Field("senderName", "sender_name"),
    _Field("headline", "headline"),
    _Field("description", "description"),
    _Field("instruction", "instruction"),
    _Field("web", "web", COLLAPSED),
    _Field("contact", "contact"),
    _Field("parameter", "parameters", _NAMED, many=True),
    _Field("resource", "resources", _RESOURCE, many=True),
    _Field("area", "areas", _AREA, many=True),
))
_ALERT = _Spec(Alert, (
    _Field("identifier", "identifier"),
    _Field("sender", "sender"),
    _Field("sent", "sent", COLLAPSED),
    _Field("status", "status"),
    _Field("msgType", "msg_type"),
    _Field("source", "source"),
    _Field("scope", "scope"),
    _Field("restriction", "restriction"),
    _Field("addresses", "addresses"),
    _Field("code", "codes", many=True),
    _Field("note", "note"),
    _Field("references", "references"),
    _Field("incidents", "incidents"),
    _Field("info", "infos", _INFO, many=True),
))


def _q(local: str) -> str:
    return f"{{{CAP_NS}}}{local}"


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _line(el: etree._Element) -> int | None:
    line = el.sourceline
    return line if isinstance(line, int) else None


# ---------------------------------------------------------------------------- import


def _check_attributes(el: etree._Element) -> None:
    for name in el.attrib:
        if name not in _XSI_HINTS:
            raise XmlError(f"attribute {etree.QName(name).text} is not carried by the alert model",
                           line=_line(el), element=_local(el))


def _leaf_value(el: etree._Element, kind: str) -> str | int:
    if any(isinstance(child.tag, str) for child in el):
        raise XmlError("unexpected child element", line=_line(el), element=_local(el))
    # Comments or processing instructions may split the text; their tails are text too.
    text = (el.text or "") + "".join(child.tail or "" for child in el)
    if kind == TEXT:
        return text
    token = _XML_SPACE.sub(" ", text).strip(" ")
    if kind != INT:
        return token
    try:
        return int(token)
    except ValueError as exc:  # an xs:integer beyond Python's 4300-digit conversion limit
        raise XmlError(f"integer of {len(token)} characters is out of range",
                       line=_line(el), element=_local(el)) from exc


def _read(el: etree._Element, spec: _Spec, extras: list[str] | None = None) -> Any:
    """Map ``el``'s children to ``spec.model``; foreign elements go to ``extras``."""
    by_tag = {f.tag: f for f in spec.fields}
    data: dict[str, Any] = {}
    lines: dict[str, list[int | None]] = {}
    for child in el:
        if not isinstance(child.tag, str):
            continue  # a comment or processing instruction: not content
        qname = etree.QName(child)
        if qname.namespace != CAP_NS and extras is not None:
            extras.append(etree.tostring(child, encoding="unicode", with_tail=False))
            continue
        field = by_tag.get(qname.localname) if qname.namespace == CAP_NS else None
        if field is None or (extras and qname.namespace == CAP_NS):
            raise XmlError(f"element {qname.text} is not carried by the alert model",
                           line=_line(child), element=qname.localname)
        _check_attributes(child)
        kind = field.kind
        value = _read(child, kind) if isinstance(kind, _Spec) else _leaf_value(child, kind)
        lines.setdefault(field.name, []).append(_line(child))
        if field.many:
            data.setdefault(field.name, []).append(value)
        else:
            data[field.name] = value
    if extras:
        data["signature_xml"] = "".join(extras)
    try:
        return spec.model.model_validate(data)
    except ValidationError as exc:
        raise _refused(el, spec, lines, exc) from exc


def _refused(el: etree._Element, spec: _Spec, lines: dict[str, list[int | None]],
             exc: ValidationError) -> XmlError:
    """An :class:`XmlError` locating the first model error at its element."""
    first = exc.errors()[0]
    loc = first["loc"]
    line, element = _line(el), _local(el)
    if loc and isinstance(loc[0], str):
        tags = {f.name: f.tag for f in spec.fields}
        element = tags.get(loc[0], loc[0])
        found = lines.get(loc[0], [])
        index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
        if index < len(found):
            line = found[index]
    return XmlError(f"CAP content refused by the alert model: {first['msg']}",
                    line=line, element=element)


def _validate(root: etree._Element, what: str) -> None:
    """Validate against the CAP 1.2 XSD, naming the failing element by its local name."""
    try:
        validate(root, CAP_XSD)
    except XmlError as exc:
        detail = exc.detail.replace(f"{{{CAP_NS}}}", "")
        raise XmlError(f"{what}{detail}", line=exc.line, element=exc.element,
                       errors=exc.errors) from exc


def parse_cap(data: bytes) -> Alert:
    """Read a CAP 1.2 alert into the model, losing nothing.

    Raises :class:`XmlError` if the bytes are not safe well-formed XML (DOCTYPE,
    entities, oversize), not a CAP 1.2 ``alert`` (CAP 1.1 and 1.0 are named as such),
    do not validate against the CAP 1.2 XSD, or hold something the model cannot carry;
    the error names the line and the element.
    """
    root = parse_safely(data)
    if root.tag != ALERT_TAG:
        namespace = etree.QName(root).namespace
        if namespace == CAP11_NS:
            detail = "this is CAP 1.1; only CAP 1.2 is accepted"
        elif namespace == CAP10_NS:
            detail = "this is CAP 1.0; only CAP 1.2 is accepted"
        else:
            detail = f"not a CAP 1.2 alert: root element is {etree.QName(root).text}"
        raise XmlError(detail, line=_line(root), element=_local(root))
    _validate(root, "")
    _check_attributes(root)
    alert: Alert = _read(root, _ALERT, extras=[])
    return alert


# ---------------------------------------------------------------------------- export


def _fill(el: etree._Element, model: FrozenModel, spec: _Spec) -> None:
    for field in spec.fields:
        value = getattr(model, field.name)
        items = value if field.many else (() if value is None else (value,))
        for item in items:
            child = etree.SubElement(el, _q(field.tag))
            if isinstance(field.kind, _Spec):
                _fill(child, item, field.kind)
            else:
                child.text = str(item)


def _indent(el: etree._Element, level: int = 0) -> None:
    children = list(el)
    if not children:
        return  # a leaf: its text is content and stays as it is
    el.text = "\n" + "  " * (level + 1)
    for child in children:
        child.tail = el.text
        _indent(child, level + 1)
    children[-1].tail = "\n" + "  " * level


def alert_to_cap(alert: Alert) -> bytes:
    """The alert as a CAP 1.2 document: UTF-8 with an XML declaration, schema order.

    ``signature_xml`` elements are re-attached, unchanged, after the last ``info``.
    Raises :class:`XmlError` if the result does not validate against the CAP 1.2 XSD;
    only a value the model admits but the XSD refuses (e.g. an odd ``xs:anyURI``) can
    cause this.  The output is not size-bounded: escaping can make it larger than the
    JSON body, and larger than :func:`parse_cap` accepts.
    """
    # lxml-stubs type nsmap keys as str, but None is how lxml names the default namespace.
    root = etree.Element(ALERT_TAG, nsmap={None: CAP_NS})  # type: ignore[dict-item]
    _fill(root, alert, _ALERT)
    _indent(root)
    if alert.signature_xml is not None:
        # The model checked these are well-formed XML-DSig elements; no DOCTYPE can occur
        # inside the wrapper, and the parser loads nothing external anyway.
        parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
        wrapper = etree.fromstring(f"<w>{alert.signature_xml}</w>".encode(), parser)
        for signature in list(wrapper):
            root[-1].tail = "\n  "
            signature.tail = "\n"
            root.append(signature)
    _validate(root, "exported alert ")
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"
