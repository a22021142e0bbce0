"""Ed25519 key material: gateway.protocol.keys."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import KeyMaterialError
from gateway.protocol.keys import (
    KeyRing,
    PinnedKey,
    SigningKey,
    b64url_decode,
    b64url_encode,
    check_public_key,
    default_key_id,
    fingerprint,
    public_key_from_text,
    public_key_text,
)

# Independent curve arithmetic, only to classify test inputs (RFC 8032, section 5.1.3).
P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P

FF30 = "ff" * 30

#: libsodium's small-order blocklist (ed25519_ref10.c), with both sign bits where the
#: x coordinate is not zero. All of these are canonical encodings of points on the curve.
SMALL_ORDER = {
    "identity (order 1)": "01" + "00" * 31,
    "y=-1 (order 2)": "ec" + FF30 + "7f",
    "y=0, x>0 (order 4)": "00" * 32,
    "y=0, x<0 (order 4)": "00" * 31 + "80",
    "order 8, c717..7a": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "order 8, c717..fa": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "order 8, 26e8..05": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "order 8, 26e8..85": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
}

#: Non-canonical encodings: y >= p, or x = 0 with the sign bit set.
NON_CANONICAL = {
    "y=p (=0)": "ed" + FF30 + "7f",
    "y=p+1 (=1)": "ee" + FF30 + "7f",
    "y=p, sign": "ed" + FF30 + "ff",
    "y=p+1, sign": "ee" + FF30 + "ff",
    "y=2^255-1": "ff" + FF30 + "7f",
    "y=2^255-1, sign": "ff" * 32,
    "identity, sign (x=0 negative)": "01" + "00" * 30 + "80",
    "y=-1, sign (x=0 negative)": "ec" + FF30 + "ff",
}


def _y(raw: bytes) -> int:
    return int.from_bytes(raw, "little") & ((1 << 255) - 1)


def _x_squared(y: int) -> int:
    return (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P


def _is_square(n: int) -> bool:
    return n == 0 or pow(n, (P - 1) // 2, P) == 1


def _encode_y(y: int, sign: int) -> bytes:
    return (y | (sign << 255)).to_bytes(32, "little")


def _decodable_y_values(limit: int) -> tuple[list[int], list[int]]:
    """Split 2..limit into y values that are on the curve and those that are not."""
    on, off = [], []
    for y in range(2, limit):
        (on if _is_square(_x_squared(y)) else off).append(y)
    return on, off


ON_CURVE_Y, OFF_CURVE_Y = _decodable_y_values(60)


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --------------------------------------------------------------------------------------
# check_public_key
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hex_key", list(SMALL_ORDER.values()), ids=list(SMALL_ORDER))
def test_small_order_points_refused(hex_key: str) -> None:
    """Every small-order point of libsodium's blocklist is refused, though on the curve."""
    raw = bytes.fromhex(hex_key)
    assert _y(raw) < P
    assert _is_square(_x_squared(_y(raw)))
    with pytest.raises(KeyMaterialError):
        check_public_key(raw)


@pytest.mark.parametrize("hex_key", list(SMALL_ORDER.values()), ids=list(SMALL_ORDER))
def test_small_order_points_refused_as_text(hex_key: str) -> None:
    """public_key_from_text refuses small-order points too."""
    with pytest.raises(KeyMaterialError):
        public_key_from_text(b64url_encode(bytes.fromhex(hex_key)))


@pytest.mark.parametrize("hex_key", list(NON_CANONICAL.values()), ids=list(NON_CANONICAL))
def test_non_canonical_encodings_refused(hex_key: str) -> None:
    """Encodings with y >= p, or x = 0 with the sign bit set, are refused."""
    raw = bytes.fromhex(hex_key)
    assert _y(raw) >= P or _x_squared(_y(raw)) == 0
    with pytest.raises(KeyMaterialError):
        check_public_key(raw)


def test_there_are_off_curve_test_points() -> None:
    """The search below 60 finds off-curve (y=2 first) and on-curve y values."""
    assert OFF_CURVE_Y[0] == 2
    assert len(OFF_CURVE_Y) >= 5
    assert len(ON_CURVE_Y) >= 5
    assert not set(OFF_CURVE_Y) & set(ON_CURVE_Y)


@pytest.mark.parametrize("sign", [0, 1])
@pytest.mark.parametrize("y", OFF_CURVE_Y)
def test_points_not_on_the_curve_refused(y: int, sign: int) -> None:
    """A y for which (y^2-1)/(d*y^2+1) is not a square mod p is refused."""
    with pytest.raises(KeyMaterialError):
        check_public_key(_encode_y(y, sign))


@pytest.mark.parametrize("sign", [0, 1])
@pytest.mark.parametrize("y", ON_CURVE_Y)
def test_on_curve_points_of_large_order_accepted(y: int, sign: int) -> None:
    """On-curve points other than the eight small-order ones are accepted (not over-strict)."""
    check_public_key(_encode_y(y, sign))


@pytest.mark.parametrize("length", [0, 1, 16, 31, 33, 64])
def test_wrong_lengths_refused(length: int) -> None:
    """A public key that is not exactly 32 bytes is refused."""
    with pytest.raises(KeyMaterialError):
        check_public_key(b"\x09" * length)


def test_fresh_keys_accepted() -> None:
    """100 freshly generated Ed25519 public keys all pass the check."""
    for _ in range(100):
        raw = _raw(Ed25519PrivateKey.generate())
        check_public_key(raw)
        assert (
            public_key_from_text(b64url_encode(raw)).public_bytes(Encoding.Raw, PublicFormat.Raw)
            == raw
        )


# --------------------------------------------------------------------------------------
# base64url helpers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"\x00", "AA"),
        (b"\x00\x00", "AAA"),
        (b"\x00\x00\x00", "AAAA"),
        (b"\xfb\xff", "-_8"),
        (b"\xfb\xef\xbe", "----"),
        (b"\xff\xff\xff", "____"),
    ],
)
def test_b64url_known_answers(data: bytes, text: str) -> None:
    """Encoding uses the URL-safe alphabet without padding; decoding inverts it."""
    assert b64url_encode(data) == text
    assert b64url_decode(text) == data


@pytest.mark.parametrize(
    "text",
    [
        "AA==",
        "AAA=",
        "AAAA=",
        "=",
        "+/8",
        "-_+8",
        "-_/8",
        "AB",
        "AAB",
        "_x",
        "__9",
        "A",
        "AAAAA",
        " AAAA",
        "AAAA\n",
        "AA\tAA",
        "AA.A",
        "AA!A",
        "\u00e9\u00e9\u00e9\u00e9",
        "AA\u0000A",
    ],
)
def test_b64url_decode_refuses_other_forms(text: str) -> None:
    """Padding, '+', '/', whitespace, stray characters and non-zero trailing bits refuse."""
    with pytest.raises(ValueError, match=r"."):
        b64url_decode(text)


@pytest.mark.parametrize("value", [b"AAAA", None, 1234])
def test_b64url_decode_refuses_non_str(value: object) -> None:
    """Only str input is decoded."""
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(value)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_b64url_round_trip(data: bytes) -> None:
    """decode(encode(b)) == b, and the encoding uses only the unpadded URL-safe alphabet."""
    text = b64url_encode(data)
    assert re.fullmatch(r"[A-Za-z0-9_-]*", text)
    assert b64url_decode(text) == data


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
def test_b64url_decode_is_canonical(text: str) -> None:
    """Any text that decodes is exactly the encoding of what it decodes to."""
    try:
        data = b64url_decode(text)
    except ValueError:
        return
    assert b64url_encode(data) == text


# --------------------------------------------------------------------------------------
# public_key_from_text / public_key_text / fingerprint / default_key_id
# --------------------------------------------------------------------------------------


def test_public_key_text_round_trip() -> None:
    """public_key_from_text(public_key_text(k)) is the same 32-byte key."""
    key = Ed25519PrivateKey.generate().public_key()
    text = public_key_text(key)
    assert len(text) == 43
    assert "=" not in text
    again = public_key_from_text(text)
    assert again.public_bytes(Encoding.Raw, PublicFormat.Raw) == _raw_pub(key)
    assert public_key_text(again) == text


def _raw_pub(key: object) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)  # type: ignore[attr-defined]


def _std_b64_with_plus_or_slash() -> str:
    while True:
        raw = _raw(Ed25519PrivateKey.generate())
        text = base64.b64encode(raw).decode()
        if "+" in text or "/" in text:
            return text


@pytest.mark.parametrize(
    "make_text",
    [
        lambda raw: b64url_encode(raw) + "=",
        lambda raw: base64.urlsafe_b64encode(raw).decode(),
        lambda raw: b64url_encode(raw)[:-1],
        lambda raw: b64url_encode(raw) + "AA",
        lambda raw: b64url_encode(raw[:31]),
        lambda raw: b64url_encode(raw + b"\x00"),
        lambda raw: " " + b64url_encode(raw),
        lambda raw: "",
    ],
    ids=["extra-pad", "padded", "truncated", "too-long", "31-bytes", "33-bytes", "space", "empty"],
)
def test_public_key_from_text_refuses_bad_text(make_text: object) -> None:
    """Padded, truncated, over-long or otherwise malformed key text is KeyMaterialError."""
    raw = _raw(Ed25519PrivateKey.generate())
    with pytest.raises(KeyMaterialError):
        public_key_from_text(make_text(raw))  # type: ignore[operator]


def test_public_key_from_text_refuses_standard_base64() -> None:
    """Standard base64 with '+' or '/' is not accepted for a key."""
    with pytest.raises(KeyMaterialError):
        public_key_from_text(_std_b64_with_plus_or_slash().rstrip("="))


def test_public_key_from_text_refuses_non_canonical_trailing_bits() -> None:
    """43-char key text whose last character carries non-zero spare bits is refused."""
    raw = _raw(Ed25519PrivateKey.generate())
    text = b64url_encode(raw)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(text[-1])
    assert last & 3 == 0
    tweaked = text[:-1] + alphabet[last | 1]
    assert base64.urlsafe_b64decode(tweaked + "=") == raw
    with pytest.raises(KeyMaterialError):
        public_key_from_text(tweaked)


def test_fingerprint_format_and_value() -> None:
    """The fingerprint is the first 10 bytes of SHA-256 of the raw key, in 5 hex groups."""
    key = Ed25519PrivateKey.generate().public_key()
    digest = hashlib.sha256(_raw_pub(key)).hexdigest()
    value = fingerprint(key)
    assert re.fullmatch(r"[0-9a-f]{4}( [0-9a-f]{4}){4}", value)
    assert value.replace(" ", "") == digest[:20]


def test_default_key_id_format_and_value() -> None:
    """default_key_id is '<centre>.<first 12 hex of SHA-256 of the raw key>'."""
    key = Ed25519PrivateKey.generate().public_key()
    digest = hashlib.sha256(_raw_pub(key)).hexdigest()
    assert default_key_id("BE-NCCN", key) == f"BE-NCCN.{digest[:12]}"
    other = Ed25519PrivateKey.generate().public_key()
    assert default_key_id("BE-NCCN", other) != default_key_id("BE-NCCN", key)
    assert default_key_id("NL-NCC", key) != default_key_id("BE-NCCN", key)


def test_signing_key_public_matches_private() -> None:
    """SigningKey.public() is the public half of its private key."""
    private = Ed25519PrivateKey.generate()
    signing = SigningKey(kid="BE-NCCN.k1", private=private)
    assert _raw_pub(signing.public()) == _raw(private)


# --------------------------------------------------------------------------------------
# KeyRing
# --------------------------------------------------------------------------------------


def _pinned(kid: str) -> PinnedKey:
    return PinnedKey(kid=kid, key=Ed25519PrivateKey.generate().public_key())


def test_keyring_lookup_and_knows() -> None:
    """A built ring finds each (centre, kid) and nothing else."""
    be1, be2, nl1 = _pinned("k1"), _pinned("k2"), _pinned("k1")
    ring = KeyRing.build([("BE-NCCN", be1), ("BE-NCCN", be2), ("NL-NCC", nl1)])
    assert ring.lookup("BE-NCCN", "k1") is be1
    assert ring.lookup("BE-NCCN", "k2") is be2
    assert ring.lookup("NL-NCC", "k1") is nl1
    assert ring.lookup("NL-NCC", "k2") is None
    assert ring.lookup("LU-HCPN", "k1") is None
    assert ring.knows("BE-NCCN")
    assert ring.knows("NL-NCC")
    assert not ring.knows("LU-HCPN")
    assert not ring.knows("")


def test_keyring_refuses_duplicate_kid_for_a_centre() -> None:
    """Pinning the same key id twice for one centre is a KeyMaterialError."""
    with pytest.raises(KeyMaterialError):
        KeyRing.build([("BE-NCCN", _pinned("k1")), ("BE-NCCN", _pinned("k1"))])


def test_keyring_refuses_duplicate_even_for_identical_key() -> None:
    """The very same PinnedKey listed twice is refused too."""
    pinned = _pinned("k1")
    with pytest.raises(KeyMaterialError):
        KeyRing.build([("BE-NCCN", pinned), ("NL-NCC", _pinned("k9")), ("BE-NCCN", pinned)])


def test_empty_keyring_knows_nothing() -> None:
    """An empty ring knows no centre."""
    ring = KeyRing.build([])
    assert not ring.knows("BE-NCCN")
    assert ring.lookup("BE-NCCN", "k1") is None
    assert not KeyRing().knows("BE-NCCN")


# --------------------------------------------------------------------------------------
# PinnedKey.valid_at
# --------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("not_before", "not_after", "revoked", "when", "expected"),
    [
        (None, None, False, T0, True),
        (None, None, False, datetime(1970, 1, 1, tzinfo=UTC), True),
        (None, None, True, T0, False),
        (T0, None, False, T0, True),
        (T0, None, False, T0 - US, False),
        (T0, None, False, T1, True),
        (None, T1, False, T1, True),
        (None, T1, False, T1 + US, False),
        (None, T1, False, T0, True),
        (T0, T1, False, T0, True),
        (T0, T1, False, T1, True),
        (T0, T1, False, T0 + timedelta(days=100), True),
        (T0, T1, False, T0 - US, False),
        (T0, T1, False, T1 + US, False),
        (T0, T1, True, T0 + timedelta(days=100), False),
        (T0, T1, True, T0, False),
        (T0, T0, False, T0, True),
        (T1, T0, False, T0 + timedelta(days=1), False),
    ],
)
def test_pinned_key_validity_window(
    not_before: datetime | None,
    not_after: datetime | None,
    revoked: bool,
    when: datetime,
    expected: bool,
) -> None:
    """valid_at holds inside [not_before, not_after] (inclusive) and never when revoked."""
    pinned = PinnedKey(
        kid="k1",
        key=Ed25519PrivateKey.generate().public_key(),
        not_before=not_before,
        not_after=not_after,
        revoked=revoked,
    )
    assert pinned.valid_at(when) is expected
