"""Signing and verification with domain separation (pure).

The signed bytes are ``DOMAIN_PREFIX + context + b"\\n" + JCS(envelope)`` where
``context`` is ``b"receipt"`` for envelopes of type ``receipt`` and ``b"message"`` for
every other type. A receipt signature can therefore never verify as a message
signature, nor the reverse.

Verification fails closed: it returns a :class:`Verified` value only when the
signature holds under a key pinned for the claimed sender; every other path raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature

from gateway.errors import MalformedInput, RejectedMessage, VerificationError
from gateway.protocol import ijson, reasons
from gateway.protocol.canonical import canonical_bytes, sha256_hex
from gateway.protocol.envelope import MAX_WIRE_BYTES
from gateway.protocol.keys import KeyRing, PinnedKey, SigningKey, b64url_decode, b64url_encode
from gateway.protocol.types import parse_time

DOMAIN_PREFIX = b"crisisgw-sig-v1\x00"
#: Ed25519 group order; a signature whose S is not below it is refused (malleability).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493


def context_for(message_type: str) -> bytes:
    """The domain-separation context of a message type."""
    return b"receipt" if message_type == "receipt" else b"message"


def signing_input(envelope_canonical: bytes, context: bytes) -> bytes:
    """The exact bytes an Ed25519 signature covers."""
    return DOMAIN_PREFIX + context + b"\n" + envelope_canonical


@dataclass(frozen=True, slots=True)
class Sealed:
    """A freshly signed message: the wire bytes and the digest receipts will quote."""

    wire: bytes
    digest: str
    envelope: dict[str, Any]


def seal(envelope: dict[str, Any], key: SigningKey) -> Sealed:
    """Sign ``envelope`` (a JSON-ready dict) and return the canonical wire bytes."""
    canon = canonical_bytes(envelope)
    signature = key.private.sign(signing_input(canon, context_for(str(envelope["type"]))))
    # JCS of {"envelope": ..., "signature": ...}, without canonicalising the envelope a
    # second time: members are sorted ("envelope" < "signature") and written without space.
    wire = b"".join((b'{"envelope":', canon, b',"signature":', canonical_bytes(
        {"alg": "Ed25519", "kid": key.kid, "value": b64url_encode(signature)}), b"}"))
    if len(wire) > MAX_WIRE_BYTES:
        raise MalformedInput(reasons.TOO_LARGE, f"signed message exceeds {MAX_WIRE_BYTES} bytes")
    # Never emit what a receiver would refuse (e.g. a float >= 2^53 that JCS writes as an
    # integer, or nesting beyond the limit): re-read our own bytes as a receiver does.
    ijson.loads(wire)
    return Sealed(wire=wire, digest=sha256_hex(canon), envelope=envelope)


@dataclass(frozen=True, slots=True)
class Verified:
    """Output of :func:`open_signed`: an authentic, not yet schema-checked envelope."""

    envelope: dict[str, Any]
    sender: str
    kid: str
    key: PinnedKey
    digest: str


def _shape(raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(raw, dict) or set(raw) != {"envelope", "signature"}:
        raise MalformedInput(reasons.MALFORMED, "expected an object with envelope and signature")
    envelope, signature = raw["envelope"], raw["signature"]
    if not isinstance(envelope, dict) or not isinstance(signature, dict):
        raise MalformedInput(reasons.MALFORMED, "envelope and signature must be objects")
    if set(signature) != {"alg", "kid", "value"} or signature["alg"] != "Ed25519":
        raise MalformedInput(reasons.MALFORMED, "signature must be {alg: Ed25519, kid, value}")
    if not all(isinstance(envelope.get(k), str) for k in ("from", "type")):
        raise MalformedInput(reasons.MALFORMED, "envelope.from and envelope.type must be strings")
    if not isinstance(signature["kid"], str) or not isinstance(signature["value"], str):
        raise MalformedInput(reasons.MALFORMED, "signature.kid and value must be strings")
    return envelope, signature


def open_signed(wire: bytes, ring: KeyRing) -> Verified:
    """Parse and verify wire bytes against the keys pinned for the claimed sender.

    Raises :class:`MalformedInput` (too large, not I-JSON, wrong shape) or
    :class:`VerificationError` (unknown sender or key, bad signature). The key's
    validity period is *not* checked here: it depends on the envelope's creation time,
    which the caller checks once the envelope has been validated.
    """
    if len(wire) > MAX_WIRE_BYTES:
        raise MalformedInput(reasons.TOO_LARGE, f"payload exceeds {MAX_WIRE_BYTES} bytes")
    envelope, signature = _shape(ijson.loads(wire))
    sender, kid = envelope["from"], signature["kid"]
    if not ring.knows(sender):
        raise VerificationError(reasons.UNKNOWN_SENDER, f"no keys pinned for {sender[:40]!r}")
    pinned = ring.lookup(sender, kid)
    if pinned is None:
        raise VerificationError(reasons.UNKNOWN_KEY, f"key {kid[:70]!r} is not pinned for {sender}")
    try:
        sig = b64url_decode(signature["value"])
    except ValueError as exc:
        raise VerificationError(reasons.BAD_SIGNATURE, f"signature encoding: {exc}") from exc
    if len(sig) != 64:
        raise VerificationError(reasons.BAD_SIGNATURE, "an Ed25519 signature is 64 bytes")
    if int.from_bytes(sig[32:], "little") >= GROUP_ORDER:
        raise VerificationError(reasons.BAD_SIGNATURE, "signature scalar S is not below L")
    canon = canonical_bytes(envelope)
    try:
        pinned.key.verify(sig, signing_input(canon, context_for(envelope["type"])))
    except InvalidSignature as exc:
        raise VerificationError(reasons.BAD_SIGNATURE, "signature does not verify") from exc
    return Verified(envelope=envelope, sender=sender, kid=kid, key=pinned, digest=sha256_hex(canon))


def key_problem(verified: Verified) -> tuple[str, str] | None:
    """Whether the key that made a valid signature was valid when the envelope says it
    was signed: not revoked, and ``created`` within its ``not_before``/``not_after``.
    None when it was; else ``(reason, detail)``. This is the one rule behind "verified"
    in admission (§5 step 11.5), on the console and in evidence bundles (§17)."""
    created = verified.envelope.get("created")
    try:
        when = parse_time(created)
    except ValueError:
        return reasons.SCHEMA_INVALID, "the creation time is not a valid time"
    if verified.key.revoked:
        return reasons.KEY_NOT_VALID, f"key {verified.kid} is revoked"
    if not verified.key.valid_at(when):
        return reasons.KEY_NOT_VALID, f"key {verified.kid} was not valid at {created}"
    return None


def verify_signed(wire: bytes, ring: KeyRing) -> Verified:
    """:func:`open_signed`, then :func:`key_problem`: signed by a pinned key that was valid
    at the message's creation. Raises :class:`MalformedInput`, :class:`VerificationError`
    or :class:`RejectedMessage` (``key_not_valid``)."""
    verified = open_signed(wire, ring)
    problem = key_problem(verified)
    if problem is not None:
        raise RejectedMessage(*problem)
    return verified
