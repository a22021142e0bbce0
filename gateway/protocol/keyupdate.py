"""Body of a ``key-update`` message: a centre announces its next signing key (pure).

The update is signed with the key the peers already pin, which proves it comes from
the same centre. Receivers pin the new key and end the previous key's validity after
the announced overlap; the previous key then only verifies older evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import Field

from gateway.errors import KeyUpdateRefused
from gateway.protocol.envelope import DEDUP_WINDOW
from gateway.protocol.keys import PinnedKey, b64url_decode
from gateway.protocol.types import FrozenModel, KeyId, UtcTime

KEY_UPDATE_TYPE = "key-update"


class NewKey(FrozenModel):
    """The announced key."""

    kid: KeyId
    public_key: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$", description="base64url, 32 bytes")
    not_before: UtcTime | None = None


class KeyUpdate(FrozenModel):
    """A new key, and until when the previous one stays valid for new messages."""

    new_key: NewKey
    previous_kid: KeyId
    previous_not_after: UtcTime


# -- who may announce a key (docs/PROTOCOL.md §3.3c) ----------------------------------

#: At most this many keys are pinned per peer; a rotation beyond it is refused.
MAX_PINNED_KEYS = 8

# Rules a refused key-update names (in the security event and the rejected receipt).
SIGNER_NOT_CURRENT = "signer-not-current"
PREVIOUS_KID = "previous-kid-mismatch"
KID_TAKEN = "kid-taken"
KEY_REUSED = "key-reused"
NOT_BEFORE = "not-before-order"
OVERLAP = "overlap-before-update"
TOO_MANY_KEYS = "too-many-keys"


@dataclass(frozen=True, slots=True)
class KeyUpdatePlan:
    """What an accepted key-update changes: pin ``new`` (with ``not_before``), end
    ``previous_kid`` at ``previous_not_after``, and unpin the long-dead ``dropped`` keys.
    ``applied`` is true when the update was already applied (nothing to change)."""

    new: NewKey
    not_before: datetime
    previous_kid: str
    previous_not_after: datetime
    dropped: tuple[str, ...] = ()
    applied: bool = False


def _order(indexed: tuple[int, PinnedKey]) -> tuple[datetime, int]:
    index, key = indexed
    return (key.not_before or _EARLIEST, index)


_EARLIEST = datetime.min.replace(tzinfo=UTC)


def current_key(keys: Sequence[PinnedKey]) -> PinnedKey | None:
    """A peer's current key: of its pinned keys that are not revoked, the one with the
    latest ``not_before`` (no ``not_before`` counts as earliest); among equals, the one
    pinned last. ``keys`` are in the order they were pinned."""
    live = [(i, k) for i, k in enumerate(keys) if not k.revoked]
    return max(live, key=_order)[1] if live else None


def _raw(key: PinnedKey) -> bytes:
    return key.key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def plan_key_update(keys: Sequence[PinnedKey], *, signed_by: str, update: KeyUpdate,
                    created: datetime, now: datetime,
                    elsewhere: frozenset[bytes] = frozenset()) -> KeyUpdatePlan:
    """Decide a verified, admitted ``key-update`` from a peer whose pinned keys are
    ``keys`` (in pinning order), signed with ``signed_by`` at ``created``.

    Accepted only when it is signed by the peer's current key and ``previous_kid`` names
    that same key, so a key that is being phased out (or any older key) can never
    announce a successor, shorten the newer key or replace it. ``elsewhere`` holds the
    raw public keys pinned for other centres. Raises :class:`KeyUpdateRefused`.
    """
    new_raw = b64url_decode(update.new_key.public_key)
    by_kid = {k.kid: k for k in keys}
    already = by_kid.get(update.new_key.kid)
    signer = by_kid.get(signed_by)
    if already is not None and _raw(already) == new_raw and signer is not None \
            and signer.not_after is not None and signer.not_after <= update.previous_not_after:
        # A redelivery after a crash between pinning and storing the message.
        return KeyUpdatePlan(new=update.new_key, not_before=already.not_before or created,
                             previous_kid=signed_by, previous_not_after=signer.not_after,
                             applied=True)
    current = current_key(keys)
    if current is None or signer is None or current.kid != signed_by:
        raise KeyUpdateRefused(SIGNER_NOT_CURRENT, (
            f"signed with {signed_by}, but the current key is "
            f"{current.kid if current else 'none'}: an older key, or one being phased out, "
            "cannot announce a new key"))
    if update.previous_kid != signed_by:
        raise KeyUpdateRefused(PREVIOUS_KID, (
            f"previous_kid {update.previous_kid} is not the signing key {signed_by}: an "
            "update may only end the key that signs it"))
    if already is not None:
        raise KeyUpdateRefused(KID_TAKEN, f"key id {update.new_key.kid} is already pinned")
    if new_raw in {_raw(k) for k in keys} or new_raw in elsewhere:
        raise KeyUpdateRefused(KEY_REUSED, "the announced key is already pinned")
    not_before = update.new_key.not_before or created
    if current.not_before is not None and not_before < current.not_before:
        raise KeyUpdateRefused(NOT_BEFORE, "the new key would start before the current one")
    if not_before > update.previous_not_after:
        raise KeyUpdateRefused(NOT_BEFORE, "the new key would start after the current one "
                               "ends, leaving no valid key")
    if update.previous_not_after < created:
        raise KeyUpdateRefused(OVERLAP, "the current key would end before this update")
    dead = now - DEDUP_WINDOW
    dropped = tuple(k.kid for k in keys
                    if not k.revoked and k.not_after is not None and k.not_after < dead)
    if len(keys) - len(dropped) + 1 > MAX_PINNED_KEYS:
        raise KeyUpdateRefused(TOO_MANY_KEYS, (
            f"{len(keys) - len(dropped)} keys are pinned and still verify messages; at most "
            f"{MAX_PINNED_KEYS} are kept per centre"))
    until = update.previous_not_after
    if current.not_after is not None:
        until = min(until, current.not_after)
    return KeyUpdatePlan(new=update.new_key, not_before=not_before, previous_kid=signed_by,
                         previous_not_after=until, dropped=dropped)
