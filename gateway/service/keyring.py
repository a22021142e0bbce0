"""The peers' pinned keys in force: the operator's file, with what the node learned since
(pure).

The operator pins keys in ``gateway.toml``; the node itself never writes that file. What
it learns at run time (a peer's key-update pins a new key and ends the old one's
validity, an API call revokes a key) is kept in the ledger as :class:`LearnedKey` rows.
The ring in force merges the two, per peer, in pinning order (the file's keys first):

* a key only in the ledger is added;
* a key in both keeps the file's public key; its validity ends at the earlier of the two
  ``not_after``; it is revoked if either says so; a key the ledger unpinned is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.config import Settings
from gateway.errors import ConfigError, KeyMaterialError
from gateway.protocol.keys import KeyRing, PinnedKey, public_key_from_text
from gateway.service.records import LearnedKey


def _earlier(a: PinnedKey, b: LearnedKey) -> PinnedKey:
    ends = [t for t in (a.not_after, b.not_after) if t is not None]
    return PinnedKey(kid=a.kid, key=a.key, not_before=a.not_before or b.not_before,
                     not_after=min(ends) if ends else None, revoked=a.revoked or b.revoked)


def _learned_key(row: LearnedKey) -> PinnedKey:
    try:
        key = public_key_from_text(row.public_key)
    except KeyMaterialError as exc:  # checked when learned: a ledger edited by hand
        raise ConfigError(f"ledger key {row.kid} of {row.peer}: {exc}") from exc
    return PinnedKey(kid=row.kid, key=key, not_before=row.not_before,
                     not_after=row.not_after, revoked=row.revoked)


def effective_ring(settings: Settings, learned: Iterable[LearnedKey]) -> KeyRing:
    """The ring in force: ``settings``' pinned keys merged with ``learned`` (see the
    module). Keys of a peer no longer in the configuration are not in the ring."""
    configured = settings.key_ring()
    rows: dict[str, dict[str, LearnedKey]] = {}
    for learned_row in learned:
        rows.setdefault(learned_row.peer, {})[learned_row.kid] = learned_row
    ring: dict[str, dict[str, PinnedKey]] = {}
    for peer in settings.peers:
        mine = rows.get(peer.id, {})
        keys: dict[str, PinnedKey] = {}
        for kid, pinned in configured.keys.get(peer.id, {}).items():
            change = mine.get(kid)
            if change is None:
                keys[kid] = pinned
            elif not change.unpinned:
                keys[kid] = _earlier(pinned, change)
        in_file = configured.keys.get(peer.id, {})
        for kid, row in mine.items():
            if kid not in in_file and not row.unpinned:
                keys[kid] = _learned_key(row)
        if keys:
            ring[peer.id] = keys
    return KeyRing(ring)


def pins_of(ring: KeyRing, peer: str) -> Sequence[PinnedKey]:
    """``peer``'s keys in force, in pinning order."""
    return tuple(ring.keys.get(peer, {}).values())
