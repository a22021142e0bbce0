"""Our signing key and the peers' pinned keys at run time: rotation, a peer's
key-update, revocation. Nothing here writes the operator's ``gateway.toml``: what
changes is kept in the ledger (:class:`gateway.service.ports.KeyStore`), and the ring in
force is the file's keys merged with it (:mod:`gateway.service.keyring`).

A rotation persists before it switches: the new private key file is written and
fsynced, then one ledger transaction makes it current and queues the key-update that
announces it, and only then does the node sign with it. Killed at any point, the node
restarts on a consistent key (the old one, with nothing announced, or the new one, with
the announcement on its way).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import failpoints
from gateway.config import Settings
from gateway.errors import ConfigError, GatewayError
from gateway.keyfiles import (
    keep_public_key,
    load_signing_key,
    retire_private_key,
    write_private_key,
)
from gateway.protocol.keys import (
    KeyRing,
    SigningKey,
    default_key_id,
    fingerprint,
    public_key_text,
)
from gateway.protocol.keyupdate import KEY_UPDATE_TYPE, KeyUpdate, NewKey, plan_key_update
from gateway.protocol.messages import KeyUpdateEnvelope
from gateway.protocol.types import Mode, Priority, Tlp
from gateway.service.keyring import effective_ring, pins_of
from gateway.service.ports import Clock, Ledger
from gateway.service.records import LearnedKey, OwnKey
from gateway.service.submit import Submitter

log = structlog.get_logger("crisisgw.keys")


def _raw(key: SigningKey) -> bytes:
    return key.public().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation did, for the caller (``POST /v1/keys/rotate``)."""

    kid: str
    fingerprint: str
    message_id: str
    previous_kid: str
    previous_private_key: str

    def as_dict(self) -> dict[str, str]:
        """The API's answer."""
        return {"kid": self.kid, "fingerprint": self.fingerprint,
                "message_id": self.message_id, "previous_kid": self.previous_kid,
                "previous_private_key": self.previous_private_key}


class Keys:
    """Holds the current signing key and the ring in force, and changes them."""

    def __init__(self, *, me: str, settings: Settings, key: SigningKey, key_file: Path,
                 ledger: Ledger, clock: Clock, submitter: Callable[[], Submitter],
                 on_key: Callable[[SigningKey], None],
                 on_announced: Callable[[], None]) -> None:
        self._me, self._settings, self._ledger, self._clock = me, settings, ledger, clock
        self._submitter, self._on_key, self._on_announced = submitter, on_key, on_announced
        self.key, self.key_file = key, key_file
        self._learned: list[LearnedKey] = []
        self.ring: KeyRing = settings.key_ring()
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Read what the ledger learned (after it is opened) and build the ring; retire
        the private key files of keys replaced before a crash."""
        self._learned = await self._ledger.keys.learned()
        self.ring = effective_ring(self._settings, self._learned)
        for own in await self._ledger.keys.own():
            if own.current or own.kid == self.key.kid:
                continue
            retired = await asyncio.to_thread(self._retire, Path(own.file), own.kid)
            if retired != "already gone":
                log.warning("signing_key_retired_at_start", kid=own.kid, previous_key=retired)

    async def follow(self, pause: float = 1.0) -> None:
        """Keep the ring and our signing key as the shared ledger has them: another
        instance of this node may have learned a peer's key-update, revoked a key or
        rotated ours. Checked after committed changes, at most every ``pause`` seconds."""
        seen = -1
        while True:
            seen = await self._ledger.changes.wait(seen)
            try:
                await self.sync()
            except GatewayError as exc:
                log.error("keys_sync_failed", error=str(exc))
            await asyncio.sleep(pause)

    async def sync(self) -> None:
        """Take what the ledger holds: learned keys, and the current one of ours."""
        async with self._lock:
            learned = await self._ledger.keys.learned()
            if learned != self._learned:
                self._learned = learned
                self.ring = effective_ring(self._settings, learned)
                log.info("peer_keys_reloaded", changes=len(learned))
            current = next((k for k in await self._ledger.keys.own() if k.current), None)
            if current is None or current.kid == self.key.kid:
                return
            try:
                key = await asyncio.to_thread(load_signing_key, Path(current.file), current.kid)
            except ConfigError as exc:
                # The rotating instance wrote the key where this one cannot read it: keep
                # signing with the previous key (valid at the peers for the overlap).
                log.error("rotated_key_not_here", kid=current.kid, error=str(exc))
                return
            self.key, self.key_file = key, Path(current.file)
            self._on_key(key)
            log.warning("signing_key_taken_from_ledger", kid=key.kid)

    def reconfigure(self, settings: Settings) -> None:
        """The operator's file changed: rebuild the ring from it and what was learned."""
        self._settings = settings
        self.ring = effective_ring(settings, self._learned)

    async def _relearn(self) -> None:
        self._learned = await self._ledger.keys.learned()
        self.ring = effective_ring(self._settings, self._learned)

    async def pin_peer_key(self, peer: str, update: KeyUpdate, signed_by: str,
                           created: datetime) -> None:
        """Apply a peer's verified key-update under the rotation rule (see
        :func:`plan_key_update`): pin the new key, end the signing key after the overlap,
        unpin long-dead keys. Raises :class:`KeyUpdateRefused`, changing nothing."""
        async with self._lock:
            now = self._clock.now()
            pinned = pins_of(self.ring, peer)
            elsewhere = frozenset(
                k.key.public_bytes(Encoding.Raw, PublicFormat.Raw)
                for centre, keys in self.ring.keys.items() if centre != peer
                for k in keys.values()) | {_raw(self.key)}
            plan = plan_key_update(pinned, signed_by=signed_by, update=update,
                                   created=created, now=now, elsewhere=elsewhere)
            if plan.applied:
                log.info("key_update_already_applied", peer=peer, kid=update.new_key.kid)
                return
            await self._ledger.keys.apply_update(
                peer, plan, pinned, f"key-update of {peer} ({update.new_key.kid})", now)
            await self._relearn()

    async def revoke_peer_key(self, peer: str, kid: str, actor: str = "node") -> None:
        """Stop accepting ``kid`` from ``peer`` at once (compromised key). Raises
        :class:`ConfigError` when no such key is pinned."""
        async with self._lock:
            pinned = self.ring.lookup(peer, kid)
            if pinned is None:
                raise ConfigError(f"{peer} has no key {kid}")
            await self._ledger.keys.revoke(peer, pinned, actor, self._clock.now())
            await self._relearn()
        log.warning("peer_key_revoked", peer=peer, kid=kid)

    async def rotate(self, overlap: timedelta) -> Rotation:
        """Make a new signing key, announce it to every peer in a ``key-update`` signed
        with the current key, then sign with the new one. The previous key stays valid
        at the peers for ``overlap``."""
        async with self._lock:
            private = Ed25519PrivateKey.generate()
            kid = default_key_id(self._me, private.public_key())
            path = self.key_file.with_name(f"signing-{kid}.key")
            await asyncio.to_thread(write_private_key, path, private)
            failpoints.hit("rotate.after_key_file")  # a key on disk that nothing names
            now = self._clock.now()
            old, old_file = self.key, self.key_file
            update = KeyUpdate(
                new_key=NewKey(kid=kid, public_key=public_key_text(private.public_key()),
                               not_before=now),
                previous_kid=old.kid, previous_not_after=now + overlap)
            announcement, made = self._submitter().seal_body(
                msg_type=KEY_UPDATE_TYPE, model=KeyUpdateEnvelope, body=update,
                body_json=update.model_dump(mode="json", exclude_none=True),
                to=tuple(p.id for p in self._settings.peers if not p.suspended),
                tlp=Tlp.CLEAR, priority=Priority.URGENT, mode=Mode.ACTUAL, incident=None,
                expires=None)
            await self._ledger.keys.rotate(
                self._me, announcement,
                OwnKey(kid=kid, file=str(path), public_key=update.new_key.public_key,
                       current=True, created=made, announced_in=announcement.id),
                OwnKey(kid=old.kid, file=str(old_file), public_key=public_key_text(old.public()),
                       current=False, created=made), made)
            self._on_announced()
            failpoints.hit("rotate.after_commit")  # current in the ledger, not yet in use
            self.key, self.key_file = SigningKey(kid=kid, private=private), path
            self._on_key(self.key)
            retired = await asyncio.to_thread(self._retire, old_file, old.kid, old)
        log.warning("signing_key_rotated", kid=kid, announced_in=announcement.id,
                    previous_kid=old.kid, previous_key=retired)
        return Rotation(kid=kid, fingerprint=fingerprint(private.public_key()),
                        message_id=announcement.id, previous_kid=old.kid,
                        previous_private_key=retired)

    def _retire(self, path: Path, kid: str, key: SigningKey | None = None) -> str:
        """Keep the public key, then archive or delete the private key file."""
        if key is not None:
            keep_public_key(path.parent, kid, key.public())
        if not path.exists():
            return "already gone"
        return retire_private_key(path, kid, self._settings.node.retired_keys)
