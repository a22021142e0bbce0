"""Safe XML parsing and XSD validation (lxml), with errors that name line and element."""

from __future__ import annotations

import functools
import re
from importlib import resources

from lxml import etree

from gateway.errors import XmlError

__all__ = ["CAP_NS", "EDXL_DE_NS", "XmlError", "parse_safely", "schema", "validate"]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
EDXL_DE_NS = "urn:oasis:names:tc:emergency:EDXL:DE:1.0"
#: Incoming documents (CAP imports) are bounded; exports are not read back through here.
MAX_XML_BYTES = 1024 * 1024
_XSD_ELEMENT = re.compile(r"Element '(?:\{[^}]*\})?([^']+)'")


def _parser() -> etree.XMLParser:
    # No DTD, no entity expansion, no network: billion-laughs and XXE cannot work.
    return etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True,
                           dtd_validation=False, huge_tree=False, remove_comments=False)


def parse_safely(data: bytes) -> etree._Element:
    """Parse untrusted XML; refuse a DOCTYPE (entities live there), oversize and bad XML."""
    if len(data) > MAX_XML_BYTES:
        raise XmlError(f"document exceeds {MAX_XML_BYTES} bytes")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if isinstance(exc.lineno, int) else None
        raise XmlError(f"not well-formed XML: {exc.msg}", line=line) from exc
    docinfo = root.getroottree().docinfo
    if getattr(docinfo, "doctype", "") or getattr(docinfo, "internalDTD", None) is not None:
        raise XmlError("a DOCTYPE is not allowed (entity declarations are refused)",
                       line=1)
    return root


@functools.cache
def schema(name: str) -> etree.XMLSchema:
    """The shipped XSD ``name`` (``cap-1.2.xsd`` or ``edxl-de-1.0.xsd``)."""
    text = resources.files("gateway.formats").joinpath("xsd", name).read_bytes()
    return etree.XMLSchema(etree.fromstring(text, parser=_parser()))


def validate(root: etree._Element, name: str) -> None:
    """Validate against the XSD; raise :class:`XmlError` naming each line and element."""
    xsd = schema(name)
    if xsd.validate(root):
        return
    errors: list[dict[str, object]] = []
    for entry in xsd.error_log:  # type: ignore[attr-defined]  # lxml-stubs omit __iter__
        # libxml2's path says "*[3]" for a default-namespace element; its message names it.
        named = _XSD_ELEMENT.match(entry.message)
        element = named.group(1) if named else (
            entry.path.rsplit("/", 1)[-1] if entry.path else None)
        errors.append({"line": entry.line, "element": element, "path": entry.path,
                       "msg": entry.message})
    first = errors[0]
    raise XmlError(f"does not validate against {name}: {first['msg']}",
                   line=int(str(first["line"])), element=str(first["element"]), errors=errors)
