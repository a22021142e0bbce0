"""Standard-format renderings of a stored message: CAP 1.2 and EDXL-DE 1.0."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.errors import InvalidRequest, NoSuchForm
from gateway.formats.cap import alert_to_cap
from gateway.formats.edxl import edxl_de
from gateway.formats.sitrep_cap import sitrep_to_cap
from gateway.protocol.alert import Alert

FORMATS = ("json", "cap", "edxl-de")


def cap_xml(envelope: dict[str, Any]) -> bytes:
    """CAP 1.2 XML of a sitrep or alert envelope (validated against the XSD)."""
    if envelope.get("type") == "alert":
        return alert_to_cap(Alert.model_validate(envelope["body"]))
    if envelope.get("type") == "sitrep":
        return sitrep_to_cap(envelope)
    raise NoSuchForm("No CAP form", f"a {envelope.get('type')} has no CAP form")


def render(envelope: dict[str, Any], wire: bytes, fmt: str) -> web.Response:
    """The message in ``fmt`` (``cap`` or ``edxl-de``) as an HTTP response."""
    if fmt == "cap":
        return web.Response(body=cap_xml(envelope), content_type="application/cap+xml",
                            charset="utf-8")
    if fmt == "edxl-de":
        cap = cap_xml(envelope) if envelope.get("type") in ("alert", "sitrep") else None
        return web.Response(body=edxl_de(envelope, wire, cap_xml=cap),
                            content_type="application/xml", charset="utf-8")
    raise InvalidRequest("Unknown format", f"format must be one of {', '.join(FORMATS)}",
                          [{"loc": ["query", "format"], "msg": "unknown format"}])
