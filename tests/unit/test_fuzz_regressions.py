"""Regressions for crashes the fuzzers (tests/fuzz) found: each input is refused cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from gateway.formats.cap import parse_cap
from gateway.formats.xml import CAP_NS, XmlError
from gateway.web.openapi import openapi_document

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "cap"


def test_cap_size_beyond_int_conversion_limit_is_an_xml_error() -> None:
    """A CAP <size> of 5,000 digits (a valid xs:integer) is an XmlError naming the
    element, not a ValueError from Python's integer conversion limit (was HTTP 500)."""
    root = etree.fromstring((ASSETS / "feed-resources.xml").read_bytes())
    size = root.find(f".//{{{CAP_NS}}}size")
    assert size is not None
    size.text = "9" * 5000
    with pytest.raises(XmlError) as info:
        parse_cap(etree.tostring(root))
    assert info.value.element == "size"
    assert "out of range" in info.value.detail


def test_openapi_keeps_sitrep_and_cap_enums_apart() -> None:
    """The OpenAPI document gives the sitrep's lower-case severity and CAP's capitalised
    one distinct schemas (one used to overwrite the other, so generated sitreps with
    severity "Minor" were documented as valid and refused with 422)."""
    schemas = openapi_document()["components"]["schemas"]

    def enum(ref: dict[str, str]) -> list[str]:
        return list(schemas[ref["$ref"].rsplit("/", 1)[-1]]["enum"])

    for name in ("severity", "urgency", "certainty"):
        sitrep_prop = schemas["Sitrep"]["properties"][name]
        sitrep_ref = sitrep_prop if "$ref" in sitrep_prop else next(
            s for s in sitrep_prop["anyOf"] if "$ref" in s)
        assert all(v == v.lower() for v in enum(sitrep_ref)), name
        cap_prop = schemas["Info"]["properties"][name]
        assert all(v[0].isupper() for v in enum(cap_prop)), name
