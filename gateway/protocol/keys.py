"""Ed25519 key material: encoding, strict public-key checks, pinned key rings (pure).

pyca/cryptography accepts small-order public keys (for which one signature verifies
any message) and does not insist on canonical point encodings; both are refused here
by decoding the point ourselves (RFC 8032, section 5.1.3) and multiplying it by the
cofactor.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import KeyMaterialError

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def b64url_encode(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding; raises ``ValueError`` on any other form."""
    if not isinstance(text, str) or "=" in text or any(c in text for c in "+/ \n"):
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_encode(raw) != text:
        raise ValueError("non-canonical base64url")
    return raw


def _decode_point(raw: bytes) -> tuple[int, int] | None:
    """Decode an Edwards25519 point; None when the encoding is invalid or non-canonical."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    sign = raw[31] >> 7
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _add(p: tuple[int, int], q: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = p, q
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return x3, y3


def check_public_key(raw: bytes) -> None:
    """Raise :class:`KeyMaterialError` unless ``raw`` is a safe Ed25519 public key.

    Refused: wrong length, points not on the curve, non-canonical encodings and every
    point of small order (whose multiple by the cofactor 8 is the identity).
    """
    if len(raw) != 32:
        raise KeyMaterialError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    point = _decode_point(raw)
    if point is None:
        raise KeyMaterialError("public key is not a canonical Ed25519 point")
    for _ in range(3):
        point = _add(point, point)
    if point == (0, 1):
        raise KeyMaterialError("public key has small order and would accept forged signatures")


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """Decode and check a base64url public key; raise :class:`KeyMaterialError` if unsafe."""
    try:
        raw = b64url_decode(text)
    except ValueError as exc:
        raise KeyMaterialError(f"public key is not base64url: {exc}") from exc
    check_public_key(raw)
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    """The base64url form of a public key, as written in configs and identity cards."""
    return b64url_encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def fingerprint(key: Ed25519PublicKey) -> str:
    """Short human-comparable fingerprint: first 10 bytes of SHA-256, grouped hex."""
    digest = hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:20]
    return " ".join(digest[i : i + 4] for i in range(0, 20, 4))


def default_key_id(centre: str, key: Ed25519PublicKey) -> str:
    """Key id derived from the centre and the key, e.g. ``BE-NCCN.3f9a1c0de2b4``."""
    digest = hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()
    return f"{centre}.{digest[:12]}"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """Our private signing key with its key id."""

    kid: str
    private: Ed25519PrivateKey

    def public(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self.private.public_key()


@dataclass(frozen=True, slots=True)
class PinnedKey:
    """A public key pinned for one centre, with its validity window."""

    kid: str
    key: Ed25519PublicKey
    not_before: datetime | None = None
    not_after: datetime | None = None
    revoked: bool = False

    def valid_at(self, when: datetime) -> bool:
        """Whether a signature made at ``when`` may be accepted with this key."""
        if self.revoked:
            return False
        if self.not_before is not None and when < self.not_before:
            return False
        return self.not_after is None or when <= self.not_after


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Pinned keys per centre id. Keys come from configuration, never from a message."""

    keys: Mapping[str, Mapping[str, PinnedKey]] = field(default_factory=dict)

    @classmethod
    def build(cls, entries: Iterable[tuple[str, PinnedKey]]) -> KeyRing:
        """Build a ring from (centre, key) pairs; duplicate (centre, kid) is an error."""
        ring: dict[str, dict[str, PinnedKey]] = {}
        for centre, pinned in entries:
            per_centre = ring.setdefault(centre, {})
            if pinned.kid in per_centre:
                raise KeyMaterialError(f"key id {pinned.kid} pinned twice for {centre}")
            per_centre[pinned.kid] = pinned
        return cls(ring)

    def lookup(self, centre: str, kid: str) -> PinnedKey | None:
        """The pinned key ``kid`` of ``centre``, or None."""
        return self.keys.get(centre, {}).get(kid)

    def knows(self, centre: str) -> bool:
        """Whether any key is pinned for ``centre``."""
        return centre in self.keys
