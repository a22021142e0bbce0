"""The protocol v1 test vector: docs/vectors/protocol-vector.json and docs/PROTOCOL.md.

Everything in the vector is recomputed here from the code (sitrep envelope as
``Submitter`` builds it, ``seal``, ``receipt_envelope``) and compared with the file;
the signatures are also recomputed with an independent pure-Python Ed25519 (the
reference code of RFC 8032, section 6), and the digests and signatures must appear
verbatim in docs/PROTOCOL.md so that the document cannot drift from the code.

Regenerate the file (only for an intentional change of the wire format) with
``.venv/bin/python -m tests.unit.test_protocol_vector > docs/vectors/protocol-vector.json``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import VerificationError
from gateway.protocol import reasons
from gateway.protocol.canonical import canonical_bytes, sha256_hex
from gateway.protocol.envelope import (
    CLOCK_SKEW,
    DEDUP_WINDOW,
    MAX_LIFETIME,
    MAX_RECIPIENTS,
    MAX_WIRE_BYTES,
)
from gateway.protocol.ijson import MAX_DEPTH
from gateway.protocol.keys import (
    KeyRing,
    PinnedKey,
    SigningKey,
    b64url_encode,
    fingerprint,
    public_key_text,
)
from gateway.protocol.messages import SitrepEnvelope, admit
from gateway.protocol.receipts import (
    RECEIPT_LIFETIME,
    ReceiptEnvelope,
    ReceiptState,
    receipt_envelope,
)
from gateway.protocol.signing import (
    DOMAIN_PREFIX,
    context_for,
    open_signed,
    seal,
    signing_input,
)
from gateway.protocol.sitrep import Sitrep, sitrep_json
from gateway.protocol.types import Mode, Priority

ROOT = Path(__file__).resolve().parents[2]
VECTOR_PATH = ROOT / "docs" / "vectors" / "protocol-vector.json"
DOC_PATH = ROOT / "docs" / "PROTOCOL.md"

# RFC 8032, section 7.1, TEST 1 and TEST 2: secret keys and the public keys the RFC lists.
RFC8032_TEST1_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_TEST1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_TEST2_SECRET = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
RFC8032_TEST2_PUBLIC = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
# The signatures RFC 8032 lists for TEST 1 (empty message) and TEST 2 (message 0x72).
RFC8032_TEST1_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
RFC8032_TEST2_SIGNATURE = (
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)

SENDER, SENDER_KID = "BE-NCCN", "BE-NCCN.test"
RECEIVER, RECEIVER_KID = "NL-NCC", "NL-NCC.test"
MESSAGE_ID = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
RECEIPT_ID = "0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f6a"
CREATED = "2026-11-27T10:00:00.000Z"
EXPIRES = "2026-11-28T10:00:00.000Z"
RECEIVED = "2026-11-27T10:00:02.500Z"
RECEIPT_SEEN = "2026-11-27T10:00:03.000Z"
SITREP: dict[str, Any] = {
    "incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
    "report_number": 1,
    "severity": "severe",
    "summary": {"und": "Water levels rising at Li\u00e8ge."},
}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _key(secret_hex: str, kid: str) -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret_hex))
    return SigningKey(kid=kid, private=private)


SENDER_KEY = _key(RFC8032_TEST1_SECRET, SENDER_KID)
RECEIVER_KEY = _key(RFC8032_TEST2_SECRET, RECEIVER_KID)


def _sitrep_envelope() -> dict[str, Any]:
    """The envelope exactly as ``Submitter.submit_sitrep`` builds it."""
    sitrep = Sitrep.model_validate(SITREP)
    envelope = SitrepEnvelope.model_validate({
        "v": 1, "id": MESSAGE_ID, "type": "sitrep", "from": SENDER,
        "to": ["NL-NCC", "LU-HCPN", "DE-NW"], "created": _time(CREATED),
        "expires": _time(EXPIRES), "mode": Mode.ACTUAL, "tlp": "GREEN",
        "priority": Priority.ROUTINE, "incident": "BE-2026-0001", "body": sitrep,
    })
    wire = envelope.model_dump(mode="json", by_alias=True, exclude={"body"}, exclude_none=True)
    wire["body"] = sitrep_json(sitrep)
    return wire


def _receipt_envelope(digest: str) -> dict[str, Any]:
    """NL-NCC's ``delivered`` receipt for the sitrep, as ``Receiver`` builds it."""
    return receipt_envelope(
        receipt_id=UUID(RECEIPT_ID), issuer=RECEIVER, sender=SENDER, message_id=MESSAGE_ID,
        digest=digest, state=ReceiptState.DELIVERED, now=_time(RECEIVED), mode=Mode.ACTUAL,
        priority=Priority.ROUTINE,
    )


def _part(envelope: dict[str, Any], key: SigningKey, secret_hex: str) -> dict[str, Any]:
    canon = canonical_bytes(envelope)
    context = context_for(envelope["type"])
    sealed = seal(envelope, key)
    signature = json.loads(sealed.wire)["signature"]
    return {
        "signer": {
            "kid": key.kid,
            "secret_key_hex": secret_hex,
            "public_key_hex": key.public().public_bytes_raw().hex(),
            "public_key_b64url": public_key_text(key.public()),
            "fingerprint": fingerprint(key.public()),
        },
        "envelope": envelope,
        "canonical_envelope": canon.decode("utf-8"),
        "canonical_envelope_length": len(canon),
        "context": context.decode("ascii"),
        "signing_input_prefix_hex": signing_input(b"", context).hex(),
        "signing_input_sha256": sha256_hex(signing_input(canon, context)),
        "digest": sealed.digest,
        "signature": signature,
        "wire": sealed.wire.decode("utf-8"),
        "wire_length": len(sealed.wire),
        "wire_sha256": sha256_hex(sealed.wire),
    }


def build_vector() -> dict[str, Any]:
    """The whole vector, computed from the code."""
    message = _part(_sitrep_envelope(), SENDER_KEY, RFC8032_TEST1_SECRET)
    receipt = _part(_receipt_envelope(message["digest"]), RECEIVER_KEY, RFC8032_TEST2_SECRET)
    return {
        "description": "Crisis Exchange Gateway protocol v1 test vector; see docs/PROTOCOL.md "
                       "section 12 and docs/vectors/README.md",
        "domain_prefix_hex": DOMAIN_PREFIX.hex(),
        "message": {"received_at": RECEIVED, "receiver": RECEIVER, **message},
        "receipt": {"received_at": RECEIPT_SEEN, "receiver": SENDER, **receipt},
    }


# -- independent Ed25519 (RFC 8032, section 6 reference code, signing only) ------------

_P = 2**255 - 19
_Q = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _add(p: tuple[int, ...], q: tuple[int, ...]) -> tuple[int, ...]:
    a, b = (p[1] - p[0]) * (q[1] - q[0]) % _P, (p[1] + p[0]) * (q[1] + q[0]) % _P
    c, d = 2 * p[3] * q[3] * _D % _P, 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f, g * h, f * g, e * h)


def _mul(s: int, p: tuple[int, ...]) -> tuple[int, ...]:
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p, s = _add(p, p), s >> 1
    return q


def _base() -> tuple[int, ...]:
    y = 4 * pow(5, _P - 2, _P) % _P
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if x & 1:
        x = _P - x
    return (x, y, 1, x * y % _P)


def _compress(p: tuple[int, ...]) -> bytes:
    zinv = pow(p[2], _P - 2, _P)
    x, y = p[0] * zinv % _P, p[1] * zinv % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _h(data: bytes) -> int:
    return int.from_bytes(hashlib.sha512(data).digest(), "little") % _Q


def reference_sign(secret: bytes, msg: bytes) -> tuple[bytes, bytes]:
    """(public key, signature) by the RFC 8032 reference algorithm."""
    digest = hashlib.sha512(secret).digest()
    a = (int.from_bytes(digest[:32], "little") & ((1 << 254) - 8)) | (1 << 254)
    public = _compress(_mul(a, _base()))
    r = _h(digest[32:] + msg)
    big_r = _compress(_mul(r, _base()))
    s = (r + _h(big_r + public + msg) * a) % _Q
    return public, big_r + s.to_bytes(32, "little")


# -- tests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored() -> dict[str, Any]:
    """The vector as stored in docs/vectors."""
    data: dict[str, Any] = json.loads(VECTOR_PATH.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def doc() -> str:
    """The text of docs/PROTOCOL.md."""
    return DOC_PATH.read_text(encoding="utf-8")


def _ring() -> KeyRing:
    return KeyRing.build([
        (SENDER, PinnedKey(kid=SENDER_KID, key=SENDER_KEY.public())),
        (RECEIVER, PinnedKey(kid=RECEIVER_KID, key=RECEIVER_KEY.public())),
    ])


def test_reference_ed25519_reproduces_rfc8032() -> None:
    """The independent Ed25519 reproduces RFC 8032 TEST 1 and TEST 2 exactly."""
    public, sig = reference_sign(bytes.fromhex(RFC8032_TEST1_SECRET), b"")
    assert (public.hex(), sig.hex()) == (RFC8032_TEST1_PUBLIC, RFC8032_TEST1_SIGNATURE)
    public, sig = reference_sign(bytes.fromhex(RFC8032_TEST2_SECRET), b"\x72")
    assert (public.hex(), sig.hex()) == (RFC8032_TEST2_PUBLIC, RFC8032_TEST2_SIGNATURE)


def test_keys_are_the_rfc8032_test_keys(stored: dict[str, Any]) -> None:
    """The vector's public keys are the ones RFC 8032 lists for TEST 1 and TEST 2."""
    assert stored["message"]["signer"]["public_key_hex"] == RFC8032_TEST1_PUBLIC
    assert stored["receipt"]["signer"]["public_key_hex"] == RFC8032_TEST2_PUBLIC


def test_file_equals_recomputation(stored: dict[str, Any]) -> None:
    """Every value in the stored vector is what the code computes today."""
    assert build_vector() == stored


@pytest.mark.parametrize("part", ["message", "receipt"])
def test_parts_are_consistent(stored: dict[str, Any], part: str) -> None:
    """Canonical bytes, signing input, digest and wire agree with each other."""
    p = stored[part]
    canon = p["canonical_envelope"].encode("utf-8")
    assert canon == canonical_bytes(p["envelope"])
    # For these envelopes (ASCII keys, small integers) JCS equals sorted compact JSON.
    assert canon == json.dumps(p["envelope"], sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode("utf-8")
    prefix = bytes.fromhex(p["signing_input_prefix_hex"])
    assert prefix == b"crisisgw-sig-v1\x00" + p["context"].encode("ascii") + b"\n"
    assert p["context"] == ("receipt" if p["envelope"]["type"] == "receipt" else "message")
    assert hashlib.sha256(prefix + canon).hexdigest() == p["signing_input_sha256"]
    assert hashlib.sha256(canon).hexdigest() == p["digest"]
    wire = p["wire"].encode("utf-8")
    assert wire == canonical_bytes({"envelope": p["envelope"], "signature": p["signature"]})
    assert hashlib.sha256(wire).hexdigest() == p["wire_sha256"]
    assert (len(canon), len(wire)) == (p["canonical_envelope_length"], p["wire_length"])


@pytest.mark.parametrize("part", ["message", "receipt"])
def test_signature_matches_independent_ed25519(stored: dict[str, Any], part: str) -> None:
    """The RFC 8032 reference signer yields the same key and signature as the vector."""
    p = stored[part]
    signed = bytes.fromhex(p["signing_input_prefix_hex"]) + p["canonical_envelope"].encode()
    public, sig = reference_sign(bytes.fromhex(p["signer"]["secret_key_hex"]), signed)
    assert public.hex() == p["signer"]["public_key_hex"]
    assert b64url_encode(public) == p["signer"]["public_key_b64url"]
    assert p["signature"] == {"alg": "Ed25519", "kid": p["signer"]["kid"],
                              "value": b64url_encode(sig)}


def test_wire_opens_and_is_admitted(stored: dict[str, Any]) -> None:
    """open_signed verifies both wires with a pinned KeyRing; admit accepts them."""
    ring = _ring()
    msg, rcp = stored["message"], stored["receipt"]
    verified = open_signed(msg["wire"].encode(), ring)
    assert (verified.sender, verified.kid, verified.digest) == (SENDER, SENDER_KID, msg["digest"])
    admitted = admit(verified, RECEIVER, _time(msg["received_at"]))
    assert isinstance(admitted.envelope, SitrepEnvelope)
    verified = open_signed(rcp["wire"].encode(), ring)
    assert (verified.sender, verified.kid, verified.digest) == (RECEIVER, RECEIVER_KID,
                                                               rcp["digest"])
    admitted = admit(verified, SENDER, _time(rcp["received_at"]))
    assert isinstance(admitted.envelope, ReceiptEnvelope)
    body = admitted.envelope.body
    assert (body.message_id, body.message_sha256, body.state) == (
        msg["envelope"]["id"], msg["digest"], ReceiptState.DELIVERED)


def test_domain_separation(stored: dict[str, Any]) -> None:
    """The receipt's signature does not verify as a message signature (other context)."""
    forged = json.loads(stored["receipt"]["wire"])
    forged["envelope"]["type"] = "sitrep"  # same signature, now checked in the message context
    with pytest.raises(VerificationError) as err:
        open_signed(canonical_bytes(forged), _ring())
    assert err.value.reason == reasons.BAD_SIGNATURE


def test_doc_quotes_the_vector(stored: dict[str, Any], doc: str) -> None:
    """docs/PROTOCOL.md shows the same keys, canonical bytes, digests, signatures and wire."""
    for part in ("message", "receipt"):
        p = stored[part]
        for text in (p["digest"], p["signature"]["value"], p["signer"]["public_key_b64url"],
                     p["signer"]["public_key_hex"], p["signer"]["fingerprint"],
                     p["canonical_envelope"],
                     p["signing_input_prefix_hex"], p["wire"], p["signing_input_sha256"]):
            assert text in doc, f"{part}: {text[:40]}... missing from docs/PROTOCOL.md"



def _section(doc: str, heading: str) -> str:
    """The text of the markdown section that starts with ``heading``, up to the next one."""
    start = doc.index(f"\n{heading}")
    end = doc.find("\n#", start + 1)
    return doc[start:] if end < 0 else doc[start:end]


def _row(text: str, name: str) -> list[str]:
    """The cells of the markdown table row whose first cell is `name` (in backticks)."""
    rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"expected one table row for {name}, found {len(rows)}"
    return [cell.strip() for cell in rows[0].strip().strip("|").split("|")]


def test_doc_lists_every_reason_code(doc: str) -> None:
    """Each reason code has one row with its outcome and the description from reasons.py."""
    table = _section(doc, "### 7.5 Reason codes")
    for code in sorted(reasons.ALL):
        cells = _row(table, code)
        assert cells[1] == ("answered" if code in reasons.RECEIPTED else "security"), code
        assert cells[2] == reasons.DESCRIPTIONS[code], code


def test_doc_constants_match_code(doc: str) -> None:
    """The constants table of docs/PROTOCOL.md states the values the code uses."""
    expected = {
        "MAX_WIRE_BYTES": f"{MAX_WIRE_BYTES} bytes",
        "MAX_DEPTH": str(MAX_DEPTH),
        "MAX_RECIPIENTS": str(MAX_RECIPIENTS),
        "MAX_LIFETIME": f"({int(MAX_LIFETIME.total_seconds())} s)",
        "CLOCK_SKEW": f"({int(CLOCK_SKEW.total_seconds())} s)",
        "DEDUP_WINDOW": f"({int(DEDUP_WINDOW.total_seconds())} s)",
        "RECEIPT_LIFETIME": f"({int(RECEIPT_LIFETIME.total_seconds())} s)",
        "DOMAIN_PREFIX": "`crisisgw-sig-v1` followed by one NUL byte",
    }
    assert DOMAIN_PREFIX == b"crisisgw-sig-v1\x00"
    table = _section(doc, "### 1.4 Constants")
    for name, text in expected.items():
        assert text in _row(table, name)[1], name


if __name__ == "__main__":
    print(json.dumps(build_vector(), indent=2, ensure_ascii=False))
