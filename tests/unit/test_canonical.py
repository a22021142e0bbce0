"""RFC 8785 canonical bytes and digests: gateway.protocol.canonical."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.errors import MalformedInput
from gateway.protocol import canonical, ijson, reasons
from gateway.protocol.canonical import canonical_bytes, sha256_hex

VECTORS_PATH = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "jcs-vectors.json"
VECTORS: list[dict[str, str]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
MAX_SAFE = 2**53 - 1

SORTING_EXAMPLE = {
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\U0001f600": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis",
}


def _vector(name: str) -> dict[str, str]:
    return next(v for v in VECTORS if v["name"] == name)


def _reorder(value: Any, order: int) -> Any:
    """Rebuild ``value`` with every object's members inserted in another order."""
    if isinstance(value, dict):
        items = [(k, _reorder(v, order)) for k, v in value.items()]
        items = items[::-1] if order % 2 else sorted(items, key=lambda kv: kv[0].encode("utf-8"))
        return dict(items)
    if isinstance(value, list):
        return [_reorder(v, order) for v in value]
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 1


def _model(value: Any) -> Any:
    """The JSON data-model identity of a value: bool is not a number, 1 equals 1.0."""
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(_model(v) for v in value))
    return ("object", frozenset((k, _model(v)) for k, v in value.items()))


def _refused(value: Any) -> None:
    with pytest.raises(MalformedInput) as info:
        canonical_bytes(value)
    assert info.value.reason == reasons.NOT_IJSON


# --------------------------------------------------------------------------------------
# Known-answer vectors (docs/vectors/jcs-vectors.json, from RFC 8785)
# --------------------------------------------------------------------------------------


def test_vector_file_is_well_formed() -> None:
    """The vector file has unique names, the required fields and the RFC examples."""
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names))
    for vector in VECTORS:
        assert {"name", "input", "canonical"} <= set(vector)
    assert {"rfc8785-3.2.2-primitives", "rfc8785-3.2.3-sorting"} <= set(names)
    assert sum(1 for v in VECTORS if "ieee754" in v) == 24


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_known_answer_vector(vector: dict[str, str]) -> None:
    """Parsing the vector input strictly and canonicalising it yields the RFC output."""
    value = ijson.loads(vector["input"].encode("utf-8"))
    assert canonical_bytes(value) == vector["canonical"].encode("utf-8")


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if "ieee754" in v],
    ids=[v["name"] for v in VECTORS if "ieee754" in v],
)
def test_appendix_b_double_serialisation(vector: dict[str, str]) -> None:
    """Each Appendix B double (from its bit pattern) serialises as the RFC states."""
    (double,) = struct.unpack(">d", bytes.fromhex(vector["ieee754"]))
    parsed = ijson.loads(vector["input"])
    assert parsed == double
    assert math.copysign(1.0, float(parsed)) == math.copysign(1.0, double)
    assert canonical_bytes(double) == vector["canonical"].encode("ascii")


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_appendix_b_non_finite_doubles_refused(bits: str) -> None:
    """NaN and the infinities (Appendix B rows without output) have no canonical form."""
    (double,) = struct.unpack(">d", bytes.fromhex(bits))
    _refused(double)
    _refused({"x": [double]})


def test_sorting_example_orders_by_utf16_code_units() -> None:
    """The emoji sorts before U+FB33 (UTF-16 order), unlike a plain code-point sort."""
    canon = canonical_bytes(SORTING_EXAMPLE).decode("utf-8")
    keys = list(json.loads(canon))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert keys != sorted(SORTING_EXAMPLE)
    assert canon == _vector("rfc8785-3.2.3-sorting")["canonical"]


# --------------------------------------------------------------------------------------
# Key order, whitespace, encoding
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "permutation", list(itertools.islice(itertools.permutations(range(7)), 0, 5040, 173))
)
def test_key_order_of_input_does_not_change_bytes(permutation: tuple[int, ...]) -> None:
    """Any insertion order of the sorting example's members gives identical bytes."""
    items = list(SORTING_EXAMPLE.items())
    shuffled = dict(items[i] for i in permutation)
    assert canonical_bytes(shuffled) == canonical_bytes(SORTING_EXAMPLE)


def test_nested_key_order_does_not_change_bytes() -> None:
    """Members are sorted at every depth, including objects inside arrays."""
    value = {"b": [{"z": 1, "a": 2}], "a": {"d": True, "c": None}}
    expected = b'{"a":{"c":null,"d":true},"b":[{"a":2,"z":1}]}'
    assert canonical_bytes(value) == expected
    assert canonical_bytes(_reorder(value, 1)) == expected
    assert canonical_bytes(_reorder(value, 2)) == expected


def test_array_order_is_preserved() -> None:
    """Array element order is significant and kept as is."""
    assert canonical_bytes([3, 1, 2]) == b"[3,1,2]"
    assert canonical_bytes([3, 1, 2]) != canonical_bytes([1, 2, 3])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"null"),
        (True, b"true"),
        (False, b"false"),
        (0, b"0"),
        (-0.0, b"0"),
        (1.0, b"1"),
        (MAX_SAFE, b"9007199254740991"),
        (-MAX_SAFE, b"-9007199254740991"),
        ("", b'""'),
        ([], b"[]"),
        ({}, b"{}"),
        ({"a": [1, {"b": "c"}]}, b'{"a":[1,{"b":"c"}]}'),
        ("\u00e9\u20ac\U0001f600", '"\u00e9\u20ac\U0001f600"'.encode()),
        ("/", b'"/"'),
        ("\x7f", b'"\x7f"'),
        ("\u2028", '"\u2028"'.encode()),
        ('"\\', b'"\\"\\\\"'),
    ],
)
def test_primitive_serialisation(value: Any, expected: bytes) -> None:
    """Literals, numbers and strings serialise per RFC 8785 section 3.2.2, without spaces."""
    assert canonical_bytes(value) == expected


@pytest.mark.parametrize("code", range(0x20))
def test_control_characters_are_escaped(code: int) -> None:
    """U+0000..U+001F use the short escapes where JSON has them, else lower-case \\u00xx."""
    short = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
    escaped = short.get(code, f"\\u{code:04x}")
    assert canonical_bytes(chr(code)) == f'"{escaped}"'.encode("ascii")


# --------------------------------------------------------------------------------------
# Values without a canonical form
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        2**53,
        -(2**53),
        2**64,
        {"n": 2**53},
        [1, [2**53]],
        math.nan,
        math.inf,
        -math.inf,
        "\ud800",
        "a\udc00b",
        {"\ud800": 1},
        {1: "non-string key"},
        {"x": object()},
        b"bytes",
    ],
    ids=[
        "2^53",
        "-2^53",
        "2^64",
        "nested-2^53",
        "deep-2^53",
        "nan",
        "inf",
        "-inf",
        "lone-high-surrogate",
        "lone-low-surrogate",
        "surrogate-key",
        "int-key",
        "object",
        "bytes",
    ],
)
def test_values_without_canonical_form_refused(value: Any) -> None:
    """Integers beyond 2^53-1, non-finite floats, lone surrogates and non-JSON types refuse."""
    _refused(value)


# --------------------------------------------------------------------------------------
# Consistency with the strict reader
# --------------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_small_floats = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: abs(f) < 2**53 or not f.is_integer()
)
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE, max_value=MAX_SAFE)
    | _small_floats
    | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_canonical_form_is_a_fixed_point(value: Any) -> None:
    """Strictly re-reading canonical bytes and canonicalising again gives the same bytes."""
    assume(_depth(value) <= ijson.MAX_DEPTH)
    canon = canonical_bytes(value)
    assert _model(ijson.loads(canon)) == _model(value)
    assert canonical_bytes(ijson.loads(canon)) == canon


@settings(max_examples=300, deadline=None)
@given(_values)
def test_member_insertion_order_is_irrelevant(value: Any) -> None:
    """Reordering members at every depth never changes the canonical bytes."""
    assert canonical_bytes(_reorder(value, 1)) == canonical_bytes(value)
    assert canonical_bytes(_reorder(value, 2)) == canonical_bytes(value)


@settings(max_examples=300, deadline=None)
@given(_values, _values)
def test_different_values_have_different_bytes(a: Any, b: Any) -> None:
    """Canonical bytes are equal exactly when the values are equal in the JSON model."""
    assert (canonical_bytes(a) == canonical_bytes(b)) == (_model(a) == _model(b))


# --------------------------------------------------------------------------------------
# The fast path (plain values) writes exactly what the reference implementation writes
# --------------------------------------------------------------------------------------

_plain_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-MAX_SAFE, max_value=MAX_SAFE)
    | _plain_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=8), children,
        max_size=6),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(_plain_values)
def test_fast_path_is_byte_identical_to_rfc8785(value: Any) -> None:
    """Plain values (ASCII names, safe integers, any UTF-8 text) take the fast encoder;
    its bytes are the reference implementation's, and so is every other value's."""
    assert canonical._plain(value)
    assert canonical_bytes(value) == rfc8785.dumps(value)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_every_value_matches_rfc8785(value: Any) -> None:
    """Floats and non-ASCII names (the reference path) and the rest agree with rfc8785."""
    assert canonical_bytes(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [
    {"b": 1, "a": {"\u20ac": 1}},  # a non-ASCII name: sorted by UTF-16 code units
    {"\ufb33": 1, "\U0001f600": 2},  # the two orders differ here
    [1.5], {"x": 0.1}, 2**53, (1, 2), {1: "a"},
])
def test_values_off_the_fast_path(value: Any) -> None:
    """What the fast encoder could get wrong is left to the reference path."""
    assert not canonical._plain(value)


def test_deep_values_take_the_reference_path() -> None:
    """Past 64 levels the fast path steps aside (the reference path decides)."""
    value: Any = 1
    for _ in range(70):
        value = [value]
    assert not canonical._plain(value)
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_lone_surrogate_refused_on_the_fast_path() -> None:
    """A lone surrogate inside an otherwise plain value is refused, not written."""
    assert canonical._plain({"a": "x\ud800"})
    _refused({"a": "x\ud800"})


# --------------------------------------------------------------------------------------
# sha256_hex
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ],
)
def test_sha256_hex_known_answers(data: bytes, expected: str) -> None:
    """sha256_hex returns the FIPS 180-2 digests in lower-case hex."""
    assert sha256_hex(data) == expected


def test_sha256_hex_of_canonical_bytes() -> None:
    """The digest of a canonical value is the SHA-256 of its canonical bytes."""
    canon = canonical_bytes(SORTING_EXAMPLE)
    digest = sha256_hex(canon)
    assert digest == hashlib.sha256(canon).hexdigest()
    assert len(digest) == 64
    assert digest == digest.lower()
    assert sha256_hex(canonical_bytes(_reorder(SORTING_EXAMPLE, 1))) == digest
