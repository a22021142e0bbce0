"""Sealing and opening signed messages: gateway.protocol.signing."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import MalformedInput, VerificationError
from gateway.protocol import reasons
from gateway.protocol.canonical import canonical_bytes, sha256_hex
from gateway.protocol.envelope import MAX_WIRE_BYTES
from gateway.protocol.keys import (
    KeyRing,
    PinnedKey,
    SigningKey,
    b64url_decode,
    b64url_encode,
    default_key_id,
)
from gateway.protocol.signing import (
    DOMAIN_PREFIX,
    GROUP_ORDER,
    Verified,
    context_for,
    open_signed,
    seal,
    signing_input,
)

CENTRES = ("BE-NCCN", "NL-NCC", "LU-HCPN")


def _private(centre: str) -> Ed25519PrivateKey:
    """A fixed per-centre test key (derived from the centre id, never used elsewhere)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(centre.encode()).digest())


PRIVATE = {c: _private(c) for c in CENTRES}
KID = {c: default_key_id(c, PRIVATE[c].public_key()) for c in CENTRES}
SIGNER = {c: SigningKey(kid=KID[c], private=PRIVATE[c]) for c in CENTRES}
RING = KeyRing.build((c, PinnedKey(kid=KID[c], key=PRIVATE[c].public_key())) for c in CENTRES)
#: A ring where every centre uses the same key-id naming scheme ("2026-1").
SHARED_KID = "2026-1"
SHARED_RING = KeyRing.build(
    (c, PinnedKey(kid=SHARED_KID, key=PRIVATE[c].public_key())) for c in CENTRES
)
BE = SIGNER["BE-NCCN"]
BE_SHARED = SigningKey(kid=SHARED_KID, private=PRIVATE["BE-NCCN"])

ENVELOPE: dict[str, Any] = {
    "v": 1,
    "id": str(uuid.uuid4()),
    "type": "sitrep",
    "from": "BE-NCCN",
    "to": ["NL-NCC", "LU-HCPN"],
    "created": "2026-11-27T10:00:00.000Z",
    "expires": "2026-11-28T10:00:00.000Z",
    "mode": "actual",
    "tlp": "GREEN",
    "priority": "routine",
    "incident": "BE-2026-0001",
    "body": {
        "report_number": 3,
        "purpose": "update",
        "language": "fr",
        "title": {"fr": "Inondations de la Meuse", "nl": "Overstromingen van de Maas"},
        "severity": "severe",
        "situation": {
            "summary": "Crue de la Meuse \u00e0 Li\u00e8ge et Namur ; digues sous surveillance.",
            "casualties": {"dead": 0, "injured": 3, "missing": 1},
            "evacuated": 1200,
            "ongoing": True,
            "water_level_m": 4.75,
            "next_update": None,
        },
        "areas": [
            {"region": "BE-WLG", "position": [5.5797, 50.6326]},
            {"region": "BE-WNA", "position": [4.8719, 50.4674]},
        ],
        "requests": [{"kind": "high-capacity pumps", "quantity": 12, "urgent": False}],
    },
}


def _wire_of(envelope: dict[str, Any], signature: dict[str, Any]) -> bytes:
    return canonical_bytes({"envelope": envelope, "signature": signature})


def _signature_of(wire: bytes) -> dict[str, Any]:
    return dict(json.loads(wire)["signature"])


def _sign_raw(envelope: dict[str, Any], message: bytes, signer: SigningKey = BE) -> bytes:
    """Wire for ``envelope`` carrying a signature over arbitrary ``message`` bytes."""
    value = b64url_encode(signer.private.sign(message))
    return _wire_of(envelope, {"alg": "Ed25519", "kid": signer.kid, "value": value})


def _verification_error(wire: bytes, ring: KeyRing = RING) -> str:
    with pytest.raises(VerificationError) as info:
        open_signed(wire, ring)
    return info.value.reason


def _malformed(wire: bytes, ring: KeyRing = RING) -> str:
    with pytest.raises(MalformedInput) as info:
        open_signed(wire, ring)
    return info.value.reason


@pytest.fixture(scope="module")
def sealed_wire() -> bytes:
    """The canonical wire of ENVELOPE sealed by BE-NCCN."""
    return seal(copy.deepcopy(ENVELOPE), BE).wire


# --------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------


def test_seal_then_open_verifies() -> None:
    """A sealed envelope opens to a Verified with the sender, key and canonical digest."""
    envelope = copy.deepcopy(ENVELOPE)
    sealed = seal(envelope, BE)
    verified = open_signed(sealed.wire, RING)
    assert isinstance(verified, Verified)
    assert verified.envelope == ENVELOPE
    assert verified.sender == "BE-NCCN"
    assert verified.kid == KID["BE-NCCN"]
    assert verified.key is RING.lookup("BE-NCCN", KID["BE-NCCN"])
    expected_digest = hashlib.sha256(canonical_bytes(ENVELOPE)).hexdigest()
    assert verified.digest == expected_digest
    assert sealed.digest == expected_digest
    assert sealed.envelope is envelope


def test_sealed_wire_is_canonical() -> None:
    """The wire is the JCS form of {envelope, signature} with an Ed25519 signature object."""
    sealed = seal(copy.deepcopy(ENVELOPE), BE)
    parsed = json.loads(sealed.wire)
    assert canonical_bytes(parsed) == sealed.wire
    assert set(parsed) == {"envelope", "signature"}
    assert parsed["signature"]["alg"] == "Ed25519"
    assert parsed["signature"]["kid"] == KID["BE-NCCN"]
    assert len(b64url_decode(parsed["signature"]["value"])) == 64


def test_signature_covers_domain_prefixed_canonical_envelope() -> None:
    """The signature verifies over DOMAIN_PREFIX + b'message' + LF + JCS(envelope)."""
    sealed = seal(copy.deepcopy(ENVELOPE), BE)
    sig = b64url_decode(_signature_of(sealed.wire)["value"])
    message = DOMAIN_PREFIX + b"message\n" + canonical_bytes(ENVELOPE)
    assert signing_input(canonical_bytes(ENVELOPE), b"message") == message
    BE.public().verify(sig, message)


@pytest.mark.parametrize(
    ("message_type", "context"),
    [("receipt", b"receipt"), ("sitrep", b"message"), ("alert", b"message"), ("", b"message")],
)
def test_context_for(message_type: str, context: bytes) -> None:
    """Only type 'receipt' gets the receipt context; every other type gets 'message'."""
    assert context_for(message_type) == context


@pytest.mark.parametrize("centre", CENTRES)
def test_every_centre_round_trips(centre: str) -> None:
    """Each pinned centre's sealed messages verify with that centre as sender."""
    envelope = {**copy.deepcopy(ENVELOPE), "from": centre}
    verified = open_signed(seal(envelope, SIGNER[centre]).wire, RING)
    assert verified.sender == centre
    assert verified.envelope == envelope


# --------------------------------------------------------------------------------------
# Every field is covered by the signature
# --------------------------------------------------------------------------------------

Path = tuple[str | int, ...]


def _alternatives(value: Any) -> list[Any]:
    """Values differing from ``value`` in canonical form (type-preserving and not)."""
    if isinstance(value, bool):
        options: list[Any] = [not value, None]
    elif isinstance(value, int):
        options = [value + 1, value - 1, value + 0.5, str(value)]
    elif isinstance(value, float):
        options = [value + 1.0, -value - 1.0, str(value)]
    elif isinstance(value, str):
        options = [value + "x", value[:-1], value.upper(), value.lower(), " " + value, None]
    elif value is None:
        options = ["", 0, False, {}]
    elif isinstance(value, list):
        options = [value[:-1], [*value, value[-1]] if value else [None], value[::-1], None]
    else:
        options = [{**value, "extra": True}, None]
        options += [{k: v for k, v in value.items() if k != drop} for drop in value]
    original = canonical_bytes(value)
    return [o for o in options if canonical_bytes(o) != original]


def _paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _get(value: Any, path: Path) -> Any:
    for step in path:
        value = value[step]
    return value


def _replaced(envelope: dict[str, Any], path: Path, new: Any) -> dict[str, Any]:
    changed = copy.deepcopy(envelope)
    parent = _get(changed, path[:-1])
    parent[path[-1]] = new
    return changed


def _field_mutations() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in _paths(ENVELOPE):
        if not path or path == ("from",):
            continue  # the whole envelope; 'from' selects the key and is tested below
        original = _get(ENVELOPE, path)
        options = _alternatives(original)
        if path == ("type",):  # must stay a string to reach the signature check
            options = [*[o for o in options if isinstance(o, str)], "receipt"]
        for index, new in enumerate(options):
            name = "/".join(map(str, path)) + f"#{index}"
            cases.append((name, _replaced(ENVELOPE, path, new)))
    for key in ENVELOPE:
        if key not in {"from", "type"}:
            cases.append((f"drop:{key}", {k: v for k, v in ENVELOPE.items() if k != key}))
    cases.append(("add:extra", {**ENVELOPE, "extra": "x"}))
    cases.append(("add:sig", {**ENVELOPE, "signature": None}))
    return cases


FIELD_MUTATIONS = _field_mutations()


def test_every_field_is_mutated() -> None:
    """The mutation table reaches every top-level field but 'from' and every body value."""
    names = {name.split("#")[0].split(":")[-1] for name, _ in FIELD_MUTATIONS}
    for path in _paths(ENVELOPE):
        if path and path != ("from",):
            assert "/".join(map(str, path)) in names
    assert len(FIELD_MUTATIONS) > 150


@pytest.mark.parametrize(
    "mutated", [m for _, m in FIELD_MUTATIONS], ids=[n for n, _ in FIELD_MUTATIONS]
)
def test_changed_field_breaks_signature(sealed_wire: bytes, mutated: dict[str, Any]) -> None:
    """Changing, adding or dropping any envelope or body value yields bad_signature."""
    wire = _wire_of(mutated, _signature_of(sealed_wire))
    assert _verification_error(wire) == reasons.BAD_SIGNATURE


def test_changed_kid_is_unknown_key(sealed_wire: bytes) -> None:
    """A key id not pinned for the sender yields unknown_key."""
    signature = _signature_of(sealed_wire)
    for kid in (signature["kid"] + "x", "", KID["NL-NCC"], signature["kid"].upper()):
        wire = _wire_of(ENVELOPE, {**signature, "kid": kid})
        assert _verification_error(wire) == reasons.UNKNOWN_KEY


def test_from_changed_to_known_centre_with_same_kid_is_bad_signature() -> None:
    """With the kid pinned for the new sender too, re-addressing 'from' is bad_signature."""
    sealed = seal(copy.deepcopy(ENVELOPE), BE_SHARED)
    assert open_signed(sealed.wire, SHARED_RING).sender == "BE-NCCN"
    for other in ("NL-NCC", "LU-HCPN"):
        wire = _wire_of({**ENVELOPE, "from": other}, _signature_of(sealed.wire))
        assert _verification_error(wire, SHARED_RING) == reasons.BAD_SIGNATURE


def test_from_changed_to_known_centre_with_centre_bound_kid_is_unknown_key(
    sealed_wire: bytes,
) -> None:
    """With centre-derived kids, re-addressing 'from' finds no such key: unknown_key."""
    for other in ("NL-NCC", "LU-HCPN"):
        wire = _wire_of({**ENVELOPE, "from": other}, _signature_of(sealed_wire))
        assert _verification_error(wire) == reasons.UNKNOWN_KEY


@pytest.mark.parametrize("sender", ["FR-CIC", "", "be-nccn", "BE-NCCN ", "NL-NCC.x"])
def test_from_changed_to_unknown_centre_is_unknown_sender(sealed_wire: bytes, sender: str) -> None:
    """A sender with no pinned keys yields unknown_sender."""
    wire = _wire_of({**ENVELOPE, "from": sender}, _signature_of(sealed_wire))
    assert _verification_error(wire) == reasons.UNKNOWN_SENDER
    assert _verification_error(wire, SHARED_RING) == reasons.UNKNOWN_SENDER


def test_other_centres_key_claiming_be_nccn_fails() -> None:
    """NL-NCC's key cannot sign as BE-NCCN, under BE's kid or under its own."""
    impostor = SigningKey(kid=KID["BE-NCCN"], private=PRIVATE["NL-NCC"])
    assert _verification_error(seal(copy.deepcopy(ENVELOPE), impostor).wire) == (
        reasons.BAD_SIGNATURE
    )
    own_kid = seal(copy.deepcopy(ENVELOPE), SIGNER["NL-NCC"]).wire
    assert _verification_error(own_kid) == reasons.UNKNOWN_KEY
    shared = SigningKey(kid=SHARED_KID, private=PRIVATE["NL-NCC"])
    wire = seal(copy.deepcopy(ENVELOPE), shared).wire
    assert _verification_error(wire, SHARED_RING) == reasons.BAD_SIGNATURE


def test_unpinned_key_fails() -> None:
    """A fresh key that nobody pinned cannot sign under BE-NCCN's kid."""
    rogue = SigningKey(kid=KID["BE-NCCN"], private=Ed25519PrivateKey.generate())
    assert _verification_error(seal(copy.deepcopy(ENVELOPE), rogue).wire) == (reasons.BAD_SIGNATURE)


# --------------------------------------------------------------------------------------
# Wire tampering
# --------------------------------------------------------------------------------------


def _check_tampered(wire: bytes) -> bool:
    """Open tampered wire; return True if it verified (then it must be unchanged)."""
    try:
        verified = open_signed(wire, RING)
    except (MalformedInput, VerificationError):
        return False
    assert verified.envelope == ENVELOPE
    assert verified.digest == sha256_hex(canonical_bytes(ENVELOPE))
    return True


@pytest.mark.parametrize("mask", [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF])
def test_single_bit_patterns_never_verify_other_content(sealed_wire: bytes, mask: int) -> None:
    """XOR-ing any one byte of the wire with ``mask`` never verifies (canonical wire)."""
    accepted = []
    for position in range(len(sealed_wire)):
        flipped = bytearray(sealed_wire)
        flipped[position] ^= mask
        if _check_tampered(bytes(flipped)):
            accepted.append(position)
    # Canonical wire has no insignificant byte, so no single-byte change may verify.
    assert accepted == []


def test_random_byte_substitutions_never_verify_other_content(sealed_wire: bytes) -> None:
    """200 random (position, byte) substitutions never verify a changed message."""
    rng = random.Random(8785)
    accepted = 0
    for _ in range(200):
        position = rng.randrange(len(sealed_wire))
        value = rng.choice([b for b in range(256) if b != sealed_wire[position]])
        tampered = bytearray(sealed_wire)
        tampered[position] = value
        accepted += _check_tampered(bytes(tampered))
    assert accepted == 0


def test_truncations_never_verify(sealed_wire: bytes) -> None:
    """Every proper prefix of the wire is refused."""
    for end in range(len(sealed_wire)):
        with pytest.raises((MalformedInput, VerificationError)):
            open_signed(sealed_wire[:end], RING)


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


@pytest.mark.parametrize(
    "dump",
    [
        lambda v: json.dumps(_reverse_keys(v)),
        lambda v: json.dumps(_reverse_keys(v), indent=2),
        lambda v: json.dumps(_reverse_keys(v), ensure_ascii=False, indent="\t"),
        lambda v: json.dumps(v, sort_keys=True, separators=(" , ", " : ")),
    ],
    ids=["reversed", "reversed-indented", "reversed-tabs-utf8", "sorted-spaced"],
)
def test_reordered_and_reformatted_wire_still_verifies(
    sealed_wire: bytes, dump: Callable[[Any], str]
) -> None:
    """Key order, whitespace and escaping of the wire do not matter (canonical form)."""
    text = dump(json.loads(sealed_wire))
    assert text.encode() != sealed_wire
    verified = open_signed(text.encode("utf-8"), RING)
    assert verified.envelope == ENVELOPE
    assert verified.digest == sha256_hex(canonical_bytes(ENVELOPE))


# --------------------------------------------------------------------------------------
# Signature encoding and malleability
# --------------------------------------------------------------------------------------


def _with_s(sealed_wire: bytes, new_s: Callable[[int], int]) -> bytes:
    signature = _signature_of(sealed_wire)
    raw = b64url_decode(signature["value"])
    s = int.from_bytes(raw[32:], "little")
    forged = raw[:32] + new_s(s).to_bytes(32, "little")
    return _wire_of(ENVELOPE, {**signature, "value": b64url_encode(forged)})


@pytest.mark.parametrize(
    "new_s",
    [
        lambda s: s + GROUP_ORDER,
        lambda s: s + 2 * GROUP_ORDER,
        lambda s: GROUP_ORDER,
        lambda s: 2**256 - 1,
    ],
    ids=["S+L", "S+2L", "L", "2^256-1"],
)
def test_signature_scalar_not_below_group_order_refused(
    sealed_wire: bytes, new_s: Callable[[int], int]
) -> None:
    """A signature with S >= L (the malleable twin S+L included) is bad_signature."""
    assert _verification_error(_with_s(sealed_wire, new_s)) == reasons.BAD_SIGNATURE


def test_group_order_constant() -> None:
    """GROUP_ORDER is the Ed25519 prime subgroup order L = 2^252 + 2774...493."""
    assert GROUP_ORDER == 2**252 + 27742317777372353535851937790883648493
    decimal = "7237005577332262213973186563042994240857116359379907606001950938285454250989"
    assert int(decimal) == GROUP_ORDER


@pytest.mark.parametrize(
    "value",
    [
        "",
        "AA",
        b64url_encode(b"\x00" * 63),
        b64url_encode(b"\x00" * 65),
        b64url_encode(b"\x00" * 64),
        b64url_encode(b"\x01" + b"\x00" * 63),
        "not base64!",
    ],
    ids=["empty", "1-byte", "63-bytes", "65-bytes", "zeros", "identity-R", "garbage"],
)
def test_bad_signature_values_refused(sealed_wire: bytes, value: str) -> None:
    """Signature values of the wrong length, wrong encoding or content are bad_signature."""
    wire = _wire_of(ENVELOPE, {**_signature_of(sealed_wire), "value": value})
    assert _verification_error(wire) == reasons.BAD_SIGNATURE


def test_non_canonical_signature_encodings_refused(sealed_wire: bytes) -> None:
    """Padded, standard-alphabet or spare-bit variants of a valid signature are refused."""
    value = _signature_of(sealed_wire)["value"]
    raw = b64url_decode(value)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(value[-1])
    variants = [
        value + "==",
        value[:-1] + alphabet[last | 1],
        value.replace("-", "+").replace("_", "/") if ("-" in value or "_" in value) else None,
        " " + value,
    ]
    for variant in filter(None, variants):
        assert variant != value
        wire = _wire_of(ENVELOPE, {**_signature_of(sealed_wire), "value": variant})
        assert _verification_error(wire) == reasons.BAD_SIGNATURE
    assert len(raw) == 64


# --------------------------------------------------------------------------------------
# Domain separation
# --------------------------------------------------------------------------------------

RECEIPT: dict[str, Any] = {
    "v": 1,
    "id": str(uuid.uuid4()),
    "type": "receipt",
    "from": "BE-NCCN",
    "to": ["NL-NCC"],
    "created": "2026-11-27T10:00:05.000Z",
    "expires": "2026-12-04T10:00:05.000Z",
    "mode": "actual",
    "tlp": "CLEAR",
    "priority": "routine",
    "incident": None,
    "body": {
        "message_id": str(uuid.uuid4()),
        "message_sha256": "ab" * 32,
        "state": "delivered",
        "at": "2026-11-27T10:00:05.000Z",
    },
}


@pytest.mark.parametrize(
    ("envelope", "context"),
    [(ENVELOPE, b"message"), (RECEIPT, b"receipt")],
    ids=["message", "receipt"],
)
def test_right_context_verifies(envelope: dict[str, Any], context: bytes) -> None:
    """A hand-made signature over the right context verifies (control for the next tests)."""
    canon = canonical_bytes(envelope)
    wire = _sign_raw(envelope, signing_input(canon, context))
    assert open_signed(wire, RING).envelope == envelope
    assert open_signed(seal(copy.deepcopy(envelope), BE).wire, RING).envelope == envelope


@pytest.mark.parametrize(
    ("envelope", "wrong_context"),
    [(ENVELOPE, b"receipt"), (RECEIPT, b"message")],
    ids=["message-signed-as-receipt", "receipt-signed-as-message"],
)
def test_wrong_context_refused(envelope: dict[str, Any], wrong_context: bytes) -> None:
    """A signature made under the other context never verifies (both directions)."""
    wire = _sign_raw(envelope, signing_input(canonical_bytes(envelope), wrong_context))
    assert _verification_error(wire) == reasons.BAD_SIGNATURE


@pytest.mark.parametrize(
    "make_message",
    [
        lambda canon: canon,
        lambda canon: b"message\n" + canon,
        lambda canon: DOMAIN_PREFIX + canon,
        lambda canon: DOMAIN_PREFIX + b"message" + canon,
        lambda canon: b"crisisgw-sig-v2\x00message\n" + canon,
    ],
    ids=["bare", "no-prefix", "no-context", "no-newline", "other-version"],
)
def test_signature_without_exact_domain_separation_refused(
    make_message: Callable[[bytes], bytes],
) -> None:
    """Signatures over the canonical envelope without the exact domain prefix are refused."""
    wire = _sign_raw(ENVELOPE, make_message(canonical_bytes(ENVELOPE)))
    assert _verification_error(wire) == reasons.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("source", "new_type"),
    [(RECEIPT, "sitrep"), (RECEIPT, "receipts"), (ENVELOPE, "receipt")],
)
def test_signature_moved_across_types_refused(source: dict[str, Any], new_type: str) -> None:
    """A receipt signature moved onto the same envelope retyped (or the reverse) fails."""
    signature = _signature_of(seal(copy.deepcopy(source), BE).wire)
    wire = _wire_of({**source, "type": new_type}, signature)
    assert _verification_error(wire) == reasons.BAD_SIGNATURE


# --------------------------------------------------------------------------------------
# Size, shape, I-JSON
# --------------------------------------------------------------------------------------


def test_oversize_wire_refused_before_parsing() -> None:
    """More than MAX_WIRE_BYTES is too_large, whatever the bytes are."""
    assert _malformed(b" " * (MAX_WIRE_BYTES + 1)) == reasons.TOO_LARGE
    assert _malformed(b"\xff" * (MAX_WIRE_BYTES + 1)) == reasons.TOO_LARGE


def test_valid_message_padded_beyond_limit_refused(sealed_wire: bytes) -> None:
    """A valid signed message padded with whitespace past the limit is too_large."""
    padded = sealed_wire + b" " * (MAX_WIRE_BYTES + 1 - len(sealed_wire))
    assert len(padded) == MAX_WIRE_BYTES + 1
    assert _malformed(padded) == reasons.TOO_LARGE
    assert open_signed(padded[:-1], RING).envelope == ENVELOPE


def _with_filler(size: int) -> dict[str, Any]:
    envelope = copy.deepcopy(ENVELOPE)
    envelope["body"]["filler"] = "x" * size
    return envelope


def test_wire_of_exactly_the_limit_verifies() -> None:
    """A sealed message of exactly MAX_WIRE_BYTES bytes is sealed and verifies."""
    base = len(seal(_with_filler(0), BE).wire)
    envelope = _with_filler(MAX_WIRE_BYTES - base)
    sealed = seal(envelope, BE)
    assert len(sealed.wire) == MAX_WIRE_BYTES
    assert open_signed(sealed.wire, RING).envelope == envelope


def test_seal_refuses_oversize() -> None:
    """Sealing an envelope whose wire would exceed the limit raises too_large."""
    base = len(seal(_with_filler(0), BE).wire)
    with pytest.raises(MalformedInput) as info:
        seal(_with_filler(MAX_WIRE_BYTES - base + 1), BE)
    assert info.value.reason == reasons.TOO_LARGE


def _reshaped(sealed_wire: bytes, change: Callable[[dict[str, Any]], Any]) -> bytes:
    obj = json.loads(sealed_wire)
    return json.dumps(change(obj)).encode()


def _set(obj: dict[str, Any], part: str, key: str, value: Any) -> dict[str, Any]:
    obj[part][key] = value
    return obj


def _drop(obj: dict[str, Any], part: str, key: str) -> dict[str, Any]:
    del obj[part][key]
    return obj


SHAPES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "missing-signature": lambda o: {"envelope": o["envelope"]},
    "missing-envelope": lambda o: {"signature": o["signature"]},
    "extra-top-level-key": lambda o: {**o, "meta": {}},
    "empty-object": lambda o: {},
    "top-level-array": lambda o: [o["envelope"], o["signature"]],
    "top-level-string": lambda o: "envelope",
    "top-level-null": lambda o: None,
    "envelope-array": lambda o: {**o, "envelope": [o["envelope"]]},
    "envelope-string": lambda o: {**o, "envelope": json.dumps(o["envelope"])},
    "signature-array": lambda o: {**o, "signature": list(o["signature"].values())},
    "signature-string": lambda o: {**o, "signature": o["signature"]["value"]},
    "alg-RS256": lambda o: _set(o, "signature", "alg", "RS256"),
    "alg-lowercase": lambda o: _set(o, "signature", "alg", "ed25519"),
    "alg-EdDSA": lambda o: _set(o, "signature", "alg", "EdDSA"),
    "alg-none": lambda o: _set(o, "signature", "alg", "none"),
    "alg-null": lambda o: _set(o, "signature", "alg", None),
    "alg-missing": lambda o: _drop(o, "signature", "alg"),
    "kid-missing": lambda o: _drop(o, "signature", "kid"),
    "value-missing": lambda o: _drop(o, "signature", "value"),
    "signature-extra-key": lambda o: _set(o, "signature", "x5u", "https://example.org"),
    "kid-int": lambda o: _set(o, "signature", "kid", 1),
    "kid-null": lambda o: _set(o, "signature", "kid", None),
    "kid-array": lambda o: _set(o, "signature", "kid", [o["signature"]["kid"]]),
    "kid-object": lambda o: _set(o, "signature", "kid", {}),
    "value-int": lambda o: _set(o, "signature", "value", 0),
    "value-null": lambda o: _set(o, "signature", "value", None),
    "from-missing": lambda o: _drop(o, "envelope", "from"),
    "from-null": lambda o: _set(o, "envelope", "from", None),
    "from-array": lambda o: _set(o, "envelope", "from", ["BE-NCCN"]),
    "type-missing": lambda o: _drop(o, "envelope", "type"),
    "type-int": lambda o: _set(o, "envelope", "type", 1),
}


@pytest.mark.parametrize("change", list(SHAPES.values()), ids=list(SHAPES))
def test_wrong_shape_is_malformed(sealed_wire: bytes, change: Callable[[Any], Any]) -> None:
    """Anything but {envelope: {..from, type..}, signature: {alg: Ed25519, kid, value}}."""
    assert _malformed(_reshaped(sealed_wire, change)) == reasons.MALFORMED


@pytest.mark.parametrize(
    ("needle", "replacement"),
    [
        (b'"from":"BE-NCCN"', b'"from":"BE-NCCN","from":"NL-NCC"'),
        (b'"from":"BE-NCCN"', b'"from":"NL-NCC","from":"BE-NCCN"'),
        (b'"type":"sitrep"', b'"type":"sitrep","type":"receipt"'),
        (b'"tlp":"GREEN"', b'"tlp":"RED","tlp":"GREEN"'),
        (b'"evacuated":1200', b'"evacuated":1200,"evacuated":1200'),
        (b'"alg":"Ed25519"', b'"alg":"Ed25519","alg":"Ed25519"'),
        (b'"signature":{', b'"signature":{},"signature":{'),
    ],
    ids=["from-last", "from-first", "type", "tlp", "body-value", "alg", "signature"],
)
def test_duplicate_key_in_wire_is_not_ijson(
    sealed_wire: bytes, needle: bytes, replacement: bytes
) -> None:
    """A duplicate member anywhere in the wire is refused as not_ijson before verification."""
    assert sealed_wire.count(needle) == 1
    assert _malformed(sealed_wire.replace(needle, replacement)) == reasons.NOT_IJSON


@pytest.mark.parametrize(
    "make_wire",
    [
        lambda w: b"\xef\xbb\xbf" + w,
        lambda w: w + b"x",
        lambda w: w.replace(b'"v":1', b'"v":NaN'),
        lambda w: w.replace(b'"v":1', b'"v":9007199254740993'),
        lambda w: w.replace(b'"mode":"actual"', b'"mode":"\\ud800"'),
        lambda w: w.replace("\u00e0".encode(), b"\xe0"),
        lambda w: b"",
    ],
    ids=["bom", "trailing", "nan", "big-int", "lone-surrogate", "latin1", "empty"],
)
def test_non_ijson_wire_refused(sealed_wire: bytes, make_wire: Callable[[bytes], bytes]) -> None:
    """Non-I-JSON wire (BOM, trailing data, NaN, big ints, surrogates, bad UTF-8) is refused."""
    tampered = make_wire(sealed_wire)
    assert tampered != sealed_wire
    assert _malformed(tampered) == reasons.NOT_IJSON


# --------------------------------------------------------------------------------------
# seal never emits wire that open_signed refuses
# --------------------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "body_extra",
    [{"population": 1e20}, {"position": [2.0**53, 50.0]}, {"deep": _nested(31)}],
    ids=["double-1e20", "double-2^53", "nesting-34"],
)
def test_seal_never_emits_wire_open_signed_refuses(body_extra: dict[str, Any]) -> None:
    """Either seal refuses the envelope, or its wire opens: never a silent receiver drop."""
    envelope = copy.deepcopy(ENVELOPE)
    envelope["body"].update(body_extra)
    try:
        sealed = seal(envelope, BE)
    except MalformedInput:
        return
    assert open_signed(sealed.wire, RING).envelope == envelope
