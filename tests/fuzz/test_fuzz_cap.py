"""Fuzzing the CAP importer (gateway.formats.cap.parse_cap with the safe XML parser):
arbitrary bytes, hostile XML, random XML trees and mutations of the valid CAP documents in
tests/assets/cap. Every input gives an Alert or an XmlError with a non-empty detail; an
alert that is accepted also exports and reads back to the same alert."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway.errors import XmlError
from gateway.formats.cap import alert_to_cap, parse_cap
from gateway.formats.xml import CAP_NS
from tests.fuzz.common import ROOT, byte_mutation, fuzz_settings, record

ASSETS = sorted((ROOT / "tests/assets/cap").glob("*.xml"))
DOCUMENTS = [p.read_bytes() for p in ASSETS]
CAP_TAGS = ["alert", "identifier", "sender", "sent", "status", "msgType", "scope", "info",
            "category", "event", "urgency", "severity", "certainty", "area", "areaDesc",
            "polygon", "circle", "geocode", "valueName", "value", "resource", "size", "uri",
            "parameter", "language", "expires", "references", "incidents", "code", "note"]
TYPED_LEAVES = {"size", "sent", "effective", "onset", "expires", "polygon", "circle", "altitude",
                "ceiling", "uri", "digest", "language"}
ODD_TEXTS = ["", " ", "9" * 5000, "-1", "1e3", "2026-02-30T25:61:00+00:00", "&amp;",
             "]]>", "<![CDATA[x]]>", "Actual", "Alert", "Public", "Geo", "Immediate",
             "Extreme", "Observed", "0,0 0,1 1,1 0,0", "91,181 0", "a" * 3000, "\U0001f30a"]

HOSTILE = [
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
    b"<lolz>&lol2;</lolz>",
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
    b'<?xml version="1.0" encoding="bogus"?><alert/>',
    b'<?xml version="1.0" encoding="UTF-16"?><alert/>',
    b'<?xml version="1.1"?><alert xmlns="' + CAP_NS.encode() + b'"/>',
    b"\xef\xbb\xbf<alert/>", b"\xff\xfe<\x00a\x00/\x00>\x00", b"<a>" * 300 + b"</a>" * 300,
    b'<alert xmlns="' + CAP_NS.encode() + b'"><?pi x?><!-- c --></alert>',
    b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>', b"", b"<", b"\x00",
    b"<x:alert xmlns:x='" + CAP_NS.encode() + b"' x:a='1'/>",
    b'<?xml-stylesheet href="http://example.invalid/x.xsl"?><alert/>',
    b"<a>" + b"x" * (1024 * 1024) + b"</a>",
]


def _import(data: bytes) -> str:
    """parse_cap on ``data``: an alert that round-trips, or an XmlError with a detail."""
    refusal: XmlError | None = None
    try:
        alert = parse_cap(data)
    except XmlError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.detail.strip(), "an XmlError without a detail"
        return "refused:" + refusal.detail.split(":")[0][:40]
    exported = alert_to_cap(alert)
    assert parse_cap(exported) == alert, "an accepted alert does not read back the same"
    return "accepted"


@fuzz_settings(ci=800)
@given(data=st.binary(max_size=800) | st.sampled_from(HOSTILE))
def test_arbitrary_bytes_and_hostile_xml_are_refused(data: bytes) -> None:
    """Arbitrary bytes and hostile XML (entities, DOCTYPE, odd encodings, deep nesting,
    oversize) are refused with an XmlError, never another exception."""
    record("cap.bytes", _import(data))


@fuzz_settings(ci=800)
@given(doc=st.sampled_from(DOCUMENTS).flatmap(byte_mutation))
def test_byte_mutations_of_valid_cap(doc: bytes) -> None:
    """Valid CAP documents with bit flips, insertions, deletions and truncations give an
    alert that round-trips or an XmlError."""
    record("cap.byte-mutation", _import(doc))


@st.composite
def tree_mutation(draw: st.DrawFn) -> bytes:
    """A valid CAP document with elements retexted, removed, duplicated, renamed, moved
    into another namespace, or given attributes or children."""
    root = etree.fromstring(draw(st.sampled_from(DOCUMENTS)))
    for _ in range(draw(st.integers(1, 3))):
        elements = [e for e in root.iter() if isinstance(e.tag, str)]
        typed = [e for e in elements if etree.QName(e).localname in TYPED_LEAVES]
        # half the time a typed leaf (integer, time, geometry): where conversions happen
        pick_typed = draw(st.booleans())
        el = draw(st.sampled_from(typed if typed and pick_typed else elements))
        op = draw(st.sampled_from(["text", "text", "remove", "duplicate", "rename",
                                   "namespace", "attribute", "child"]))
        if op == "text":
            el.text = draw(st.sampled_from(ODD_TEXTS) | st.text(
                alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]),
                max_size=40))
        elif op == "remove" and el.getparent() is not None:
            el.getparent().remove(el)  # type: ignore[union-attr]
        elif op == "duplicate" and el.getparent() is not None:
            el.addnext(etree.fromstring(etree.tostring(el)))
        elif op == "rename":
            el.tag = f"{{{CAP_NS}}}{draw(st.sampled_from(CAP_TAGS))}"
        elif op == "namespace":
            local = etree.QName(el).localname
            space = draw(st.sampled_from(["urn:x", CAP_NS + "x", None]))
            el.tag = local if space is None else f"{{{space}}}{local}"
        elif op == "attribute":
            el.set(draw(st.sampled_from(["id", "lang", "{urn:x}a"])), "1")
        else:
            etree.SubElement(el, f"{{{CAP_NS}}}{draw(st.sampled_from(CAP_TAGS))}").text = (
                draw(st.sampled_from(ODD_TEXTS)))
    return etree.tostring(root, encoding="UTF-8", xml_declaration=draw(st.booleans()))


@fuzz_settings(ci=1200)
@given(doc=tree_mutation())
def test_tree_mutations_of_valid_cap(doc: bytes) -> None:
    """Structurally mutated CAP documents give an alert that round-trips or an XmlError
    naming what is wrong."""
    record("cap.tree-mutation", _import(doc))


def _element(tag: str, children: list[etree._Element], text: str) -> etree._Element:
    el = etree.Element(f"{{{CAP_NS}}}{tag}")
    el.text = text
    el.extend(children)
    return el


RANDOM_TREES = st.recursive(
    st.builds(_element, st.sampled_from(CAP_TAGS), st.just([]), st.sampled_from(ODD_TEXTS)),
    lambda inner: st.builds(_element, st.sampled_from(CAP_TAGS),
                            st.lists(inner, max_size=5), st.just("")),
    max_leaves=25)


@fuzz_settings(ci=600)
@given(tree=RANDOM_TREES)
def test_random_cap_shaped_xml(tree: etree._Element) -> None:
    """Random trees of CAP element names are refused with an XmlError or accepted as an
    alert that round-trips."""
    root = tree if etree.QName(tree).localname == "alert" else _element("alert", [tree], "")
    record("cap.random-xml", _import(etree.tostring(root)))


def test_assets_are_valid_cap() -> None:
    """The seeds of the CAP fuzzers are themselves accepted (so mutations start valid)."""
    assert DOCUMENTS
    for path in ASSETS:
        assert _import(path.read_bytes()) == "accepted", Path(path).name
