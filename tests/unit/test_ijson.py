"""Strict I-JSON parsing (RFC 7493) of untrusted bytes: gateway.protocol.ijson.loads."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.errors import MalformedInput, ProtocolError
from gateway.protocol import ijson, reasons

MAX_SAFE = 2**53 - 1


def _refused(data: bytes | str) -> MalformedInput:
    """Parse ``data`` and return the MalformedInput it must raise (reason not_ijson)."""
    with pytest.raises(MalformedInput) as info:
        ijson.loads(data)
    assert info.value.reason == reasons.NOT_IJSON
    return info.value


def _outcome(data: bytes | str) -> tuple[Any, str | None]:
    """(value, None) when ``data`` parses, (None, reason) when it raises MalformedInput."""
    try:
        return ijson.loads(data), None
    except MalformedInput as error:
        return None, error.reason


def _nested_arrays(depth: int, leaf: str = "") -> str:
    return "[" * depth + leaf + "]" * depth


def _nested_objects(depth: int, leaf: str = "") -> str:
    return '{"a":' * (depth - 1) + "{" + leaf + "}" * depth


def _depth(value: Any) -> int:
    """Container nesting of a Python JSON value (scalars count as a level, as in ijson)."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 1


# --------------------------------------------------------------------------------------
# Acceptance of ordinary I-JSON
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null", None),
        ("true", True),
        ("false", False),
        ("0", 0),
        ("-0", 0),
        ("1.5", 1.5),
        ("-2.5e-3", -0.0025),
        ("1e-400", 0.0),
        ('"text"', "text"),
        ("[]", []),
        ("{}", {}),
        (' \t\r\n{"a": [1, 2, {"b": null}]} \n', {"a": [1, 2, {"b": None}]}),
        ('{"a":1,"b":2}', {"a": 1, "b": 2}),
        ('"\\u00e9\\u20ac"', "\u00e9\u20ac"),
    ],
)
def test_accepts_plain_ijson(text: str, expected: Any) -> None:
    """Ordinary I-JSON texts (as str and as UTF-8 bytes) parse to the expected value."""
    assert ijson.loads(text) == expected
    assert ijson.loads(text.encode("utf-8")) == expected


def test_malformed_input_is_a_protocol_error() -> None:
    """A refusal is a ProtocolError carrying the not_ijson reason and a detail."""
    error = _refused(b"{")
    assert isinstance(error, ProtocolError)
    assert error.detail


# --------------------------------------------------------------------------------------
# Duplicate member names
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"a":1}',
        '{"a":1,"a":2}',
        '{"a":1,"b":2,"a":3}',
        '{"a":{"b":1,"b":2}}',
        '[{"x":true},{"y":1,"y":1}]',
        '{"outer":[{"deep":{"k":null,"k":null}}]}',
        '{"a":1,"\\u0061":2}',
        '{"\\u00e9":1,"\u00e9":2}',
        '{"a":{"c":1},"a":{"d":2}}',
    ],
)
def test_duplicate_member_names_refused(text: str) -> None:
    """A duplicate member name at any depth, however it is escaped, is refused."""
    _refused(text.encode("utf-8"))


def test_same_name_in_sibling_objects_is_not_a_duplicate() -> None:
    """The same member name in two different objects is fine."""
    assert ijson.loads(b'[{"a":1},{"a":2}]') == [{"a": 1}, {"a": 2}]


# --------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "[NaN]",
        '{"a":Infinity}',
        '{"a":[1,-Infinity]}',
    ],
)
def test_non_finite_constants_refused(text: str) -> None:
    """NaN, Infinity and -Infinity (accepted by Python's json) are refused."""
    _refused(text)


@pytest.mark.parametrize("value", [MAX_SAFE, -MAX_SAFE, 0, 1, -1])
def test_safe_integers_accepted(value: int) -> None:
    """Integers within +-(2^53-1) parse exactly."""
    assert ijson.loads(str(value).encode()) == value
    assert ijson.loads(f'{{"n":[{value}]}}'.encode()) == {"n": [value]}


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**53 + 1, 2**64, -(2**64), 10**30])
def test_unsafe_integers_refused(value: int) -> None:
    """Integers beyond +-(2^53-1) are refused, at the top level and nested."""
    _refused(str(value))
    _refused(f'{{"n":[{value}]}}')


def test_integer_with_too_many_digits_refused() -> None:
    """A 5000-digit integer is refused as not_ijson, not with a bare ValueError."""
    _refused("1" * 5000)


@pytest.mark.parametrize("text", ["1e400", "-1e400", "1E400", "[1.5e309]", '{"x":-9e999}'])
def test_overflowing_floats_refused(text: str) -> None:
    """Numbers that overflow an IEEE 754 double are refused."""
    _refused(text)


def test_largest_finite_double_accepted() -> None:
    """The largest finite double still parses."""
    assert ijson.loads(b"1.7976931348623157e308") == 1.7976931348623157e308


# --------------------------------------------------------------------------------------
# Strings, encodings, surrogates
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '"\\ud800"',
        '"\\udfff"',
        '"\\ude00\\ud83d"',
        '"x\\ud83dy"',
        '["ok","\\ud800"]',
        '{"a":"\\udc00"}',
        '{"\\ud800":1}',
        '{"ok":{"\\udbff":null}}',
    ],
)
def test_lone_surrogate_escapes_refused(text: str) -> None:
    """Escaped lone surrogates in values or member names are refused."""
    _refused(text.encode("ascii"))


@pytest.mark.parametrize("text", ['"\ud800"', '{"\udc00":1}'])
def test_lone_surrogates_in_str_input_refused(text: str) -> None:
    """Raw lone surrogates in a str input are refused as well."""
    _refused(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"\\ud83d\\ude00"', "\U0001f600"),
        ('{"\\ud83d\\ude00":"\\ud83d\\ude00"}', {"\U0001f600": "\U0001f600"}),
        ('"\U0001f600"', "\U0001f600"),
    ],
)
def test_valid_surrogate_pair_accepted(text: str, expected: Any) -> None:
    """A valid surrogate pair (escaped or as raw UTF-8) decodes to its code point."""
    assert ijson.loads(text.encode("utf-8")) == expected


@pytest.mark.parametrize(
    "data",
    [
        b'"\xff"',
        b'"\xc3"',
        b'"\xc3\x28"',
        b'"\xc0\xaf"',
        b'"\xe0\x80\xaf"',
        b'"\xed\xa0\x80"',
        b'"\xf4\x90\x80\x80"',
        b'{"a\x80":1}',
        b"\xfe\xff[]",
    ],
)
def test_invalid_utf8_refused(data: bytes) -> None:
    """Invalid UTF-8 (stray bytes, overlongs, encoded surrogates, > U+10FFFF) is refused."""
    _refused(data)


@pytest.mark.parametrize("data", [b"\xef\xbb\xbf{}", b"\xef\xbb\xbf[1]", "\ufeff{}"])
def test_byte_order_mark_refused(data: bytes | str) -> None:
    """A leading byte order mark is refused, for bytes and str input."""
    _refused(data)


@pytest.mark.parametrize("data", [b'"a\x00b"', b'"tab\there"', b'"line\nbreak"'])
def test_raw_control_characters_in_strings_refused(data: bytes) -> None:
    """Unescaped control characters inside strings are refused."""
    _refused(data)


# --------------------------------------------------------------------------------------
# Nesting depth
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [_nested_arrays, _nested_objects])
def test_depth_32_accepted(build: Any) -> None:
    """32 nested (empty-innermost) arrays or objects are accepted."""
    value = ijson.loads(build(32).encode())
    assert _depth(value) == 32


@pytest.mark.parametrize("build", [_nested_arrays, _nested_objects])
@pytest.mark.parametrize("depth", [33, 34, 100, 500])
def test_depth_beyond_32_refused(build: Any, depth: int) -> None:
    """More than 32 levels of nesting are refused."""
    _refused(build(depth))


def test_depth_31_containers_with_scalar_accepted() -> None:
    """31 nested arrays holding a scalar are accepted."""
    assert _depth(ijson.loads(_nested_arrays(31, "1").encode())) == 32


@pytest.mark.parametrize("leaf", ["1", '"x"', "null"])
def test_depth_32_containers_with_scalar_accepted(leaf: str) -> None:
    """32 nested arrays are accepted whether the innermost one is empty or holds a scalar."""
    text = _nested_arrays(32, leaf)
    assert ijson.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ],
    ids=["open-arrays", "closed-arrays", "open-objects", "closed-objects"],
)
def test_pathological_nesting_does_not_crash(data: bytes) -> None:
    """100000 levels of nesting raise MalformedInput, never RecursionError or a crash."""
    _refused(data)


# --------------------------------------------------------------------------------------
# Framing: empty input, trailing garbage, syntax
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b" ",
        b"\n\t",
        b"{} x",
        b"{}{}",
        b"[1] ]",
        b"1 2",
        b'"a" "b"',
        b"null\x00",
        b"{",
        b"[1,]",
        b'{"a":1,}',
        b"{'a':1}",
        b'{"a" 1}',
        b"01",
        b"+1",
        b".5",
        b"1.",
        b"0x10",
        b"True",
        b"nul",
        b'"\\x41"',
        b'"unterminated',
        "\u00a0[]".encode(),
        "\u2028[]".encode(),
        b"// c\n[]",
    ],
)
def test_syntax_errors_and_trailing_garbage_refused(data: bytes) -> None:
    """Empty input, trailing garbage and non-JSON syntax are refused."""
    _refused(data)


# --------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE, max_value=MAX_SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_text, children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json_values)
def test_round_trip_of_generated_values(value: Any) -> None:
    """Any I-JSON value serialised by json.dumps parses back to an equal value."""
    assume(_depth(value) <= ijson.MAX_DEPTH)
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        parsed = ijson.loads(text.encode("utf-8"))
        assert parsed == value
        if isinstance(value, float) and value == 0.0:
            assert math.copysign(1.0, parsed) == math.copysign(1.0, value)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_malformed_input(data: bytes) -> None:
    """Arbitrary bytes either parse or raise MalformedInput (not_ijson), nothing else."""
    result, reason = _outcome(data)
    assert reason in (None, reasons.NOT_IJSON)
    if reason is None:
        assert _depth(result) <= ijson.MAX_DEPTH


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=100))
def test_arbitrary_text_raises_only_malformed_input(text: str) -> None:
    """Arbitrary str input (lone surrogates included) parses or raises MalformedInput."""
    result, reason = _outcome(text)
    assert reason in (None, reasons.NOT_IJSON)
    if reason is None:
        assert _depth(result) <= ijson.MAX_DEPTH


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list('[]{}",:0123456789.eE+-truefalsn \\u')), max_size=60))
def test_json_like_fragments_raise_only_malformed_input(chars: list[str]) -> None:
    """Near-JSON fragments (brackets, numbers, escapes) parse or raise MalformedInput."""
    result, reason = _outcome("".join(chars).encode())
    assert reason in (None, reasons.NOT_IJSON)
    if reason is None:
        assert _depth(result) <= ijson.MAX_DEPTH


def _always_checked(data: bytes | str) -> Any:
    """loads without the shortcut: every string and depth is walked."""
    value = json.loads(data, object_pairs_hook=dict)
    ijson._check_strings_and_depth(value)
    return value


_nested = st.recursive(
    st.sampled_from(["x", "\ud800", "\udfff", "[{", "\\ud800", 1, None]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["a", "b", "\udc00"]), children, max_size=2),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_nested, st.booleans())
def test_the_shortcut_refuses_exactly_what_the_full_walk_refuses(value: Any, raw: bool
                                                                  ) -> None:
    """Skipping the walk (few brackets, no surrogate escape) never lets through a lone
    surrogate or a too-deep value: deep values and escaped or raw surrogates, in bytes or
    str input, are refused exactly when walking every node refuses them."""
    text = json.dumps(value, ensure_ascii=not raw)
    inputs: list[bytes | str] = [text]
    with contextlib.suppress(UnicodeEncodeError):
        inputs.append(text.encode("utf-8"))
    for data in inputs:
        try:
            _always_checked(data)
            expected = None
        except MalformedInput:
            expected = reasons.NOT_IJSON
        except RecursionError:
            continue
        assert _outcome(data)[1] == expected
