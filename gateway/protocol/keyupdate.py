"""Body of a ``key-update`` message: a centre announces its next signing key (pure).

The update is signed with the key the peers already pin, which proves it comes from
the same centre. Receivers pin the new key and end the previous key's validity after
the announced overlap; the previous key then only verifies older evidence.
"""

from __future__ import annotations

from pydantic import Field

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
