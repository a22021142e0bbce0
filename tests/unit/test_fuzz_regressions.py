"""Regressions for crashes the fuzzers (tests/fuzz) found: each input is refused cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from gateway.formats.cap import parse_cap
from gateway.formats.xml import CAP_NS, XmlError

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
