"""Keys the node learns or makes at run time (:class:`gateway.service.ports.KeyStore`):
peers' keys pinned by their key-updates, revocations, and our own rotation history.

Each change is one transaction with its audit entries (and, for a rotation, with the
key-update that announces the new key), so a crash leaves either all of it or none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.adapters.stores import offline
from gateway.adapters.stores.audit import append
from gateway.adapters.stores.deliveries import insert_outgoing, t
from gateway.adapters.stores.sql import Conn, Db, Row, database_errors
from gateway.config import Settings
from gateway.errors import KeyMaterialError, LedgerError
from gateway.keyfiles import load_signing_key, own_public_keys
from gateway.protocol.keys import (
    KeyRing,
    PinnedKey,
    SigningKey,
    public_key_from_text,
    public_key_text,
)
from gateway.protocol.keyupdate import KeyUpdatePlan
from gateway.protocol.types import parse_optional_time
from gateway.service.keyring import effective_ring
from gateway.service.records import LearnedKey, OutgoingMessage, OwnKey

T = TypeVar("T")


def _learned(row: Row) -> LearnedKey:
    return LearnedKey(peer=row["peer"], kid=row["kid"], public_key=row["public_key"],
                      not_before=parse_optional_time(row["not_before"]),
                      not_after=parse_optional_time(row["not_after"]),
                      revoked=bool(row["revoked"]), unpinned=bool(row["unpinned"]),
                      source=row["source"])


def _own(row: Row) -> OwnKey:
    return OwnKey(kid=row["kid"], file=row["file"], public_key=row["public_key"],
                  current=bool(row["current"]),
                  created=parse_optional_time(row["created"]) or datetime.min,
                  announced_in=row["announced_in"])


def _put(conn: Conn, row: LearnedKey, now: datetime) -> None:
    conn.execute(
        "INSERT INTO peer_keys (peer, kid, public_key, not_before, not_after, revoked,"
        " unpinned, source, changed_at) VALUES (?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (peer, kid) DO UPDATE SET not_before=excluded.not_before,"
        " not_after=excluded.not_after, revoked=excluded.revoked, unpinned=excluded.unpinned,"
        " source=excluded.source, changed_at=excluded.changed_at",
        (row.peer, row.kid, row.public_key, t(row.not_before), t(row.not_after),
         int(row.revoked), int(row.unpinned), row.source, t(now)))


def _row_for(pinned: PinnedKey, peer: str, source: str) -> LearnedKey:
    return LearnedKey(peer=peer, kid=pinned.kid, public_key=public_key_text(pinned.key),
                      not_before=pinned.not_before, not_after=pinned.not_after,
                      revoked=pinned.revoked, unpinned=False, source=source)


class KeysStore:
    """The peer_keys and own_keys tables."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def learned(self) -> list[LearnedKey]:
        """See :meth:`gateway.service.ports.KeyStore.learned`."""

        def run(conn: Conn) -> list[LearnedKey]:
            return [_learned(r) for r in conn.execute("SELECT * FROM peer_keys ORDER BY seq")]

        return await self._db.read(run)

    async def apply_update(self, peer: str, plan: KeyUpdatePlan, pinned: Sequence[PinnedKey],
                           source: str, now: datetime) -> None:
        """See :meth:`gateway.service.ports.KeyStore.apply_update`."""
        by_kid = {k.kid: k for k in pinned}

        def run(conn: Conn) -> None:
            previous = by_kid[plan.previous_kid]
            _put(conn, LearnedKey(
                peer=peer, kid=previous.kid, public_key=public_key_text(previous.key),
                not_before=previous.not_before, not_after=plan.previous_not_after,
                revoked=previous.revoked, unpinned=False, source=source), now)
            append(conn, now, "key.validity", peer, f"{peer}/{previous.kid}",
                   {"detail": f"not_after={t(plan.previous_not_after)}", "source": source})
            _put(conn, LearnedKey(
                peer=peer, kid=plan.new.kid, public_key=plan.new.public_key,
                not_before=plan.not_before, not_after=None, revoked=False, unpinned=False,
                source=source), now)
            append(conn, now, "key.pinned", peer, f"{peer}/{plan.new.kid}",
                   {"detail": f"public key {plan.new.public_key}", "source": source})
            for kid in plan.dropped:
                row = _row_for(by_kid[kid], peer, source)
                _put(conn, replace(row, unpinned=True), now)
                append(conn, now, "key.unpinned", peer, f"{peer}/{kid}", {"source": source})

        await self._db.write(run)

    async def revoke(self, peer: str, pinned: PinnedKey, actor: str, now: datetime) -> None:
        """See :meth:`gateway.service.ports.KeyStore.revoke`."""
        row = _row_for(pinned, peer, f"revoked by {actor}")

        def run(conn: Conn) -> None:
            _put(conn, replace(row, revoked=True), now)
            append(conn, now, "key.revoked", actor, f"{peer}/{pinned.kid}", {"detail": ""})

        await self._db.write(run)

    async def own(self) -> list[OwnKey]:
        """See :meth:`gateway.service.ports.KeyStore.own`."""
        return await self._db.read(_own_rows)

    async def rotate(self, centre: str, announcement: OutgoingMessage, new: OwnKey,
                     previous: OwnKey, now: datetime) -> None:
        """See :meth:`gateway.service.ports.KeyStore.rotate`."""

        def run(conn: Conn) -> None:
            conn.execute("UPDATE own_keys SET current = 0, retired_at = ? WHERE current = 1",
                         (t(now),))
            conn.execute(
                "INSERT INTO own_keys VALUES (?,?,?,0,?,NULL,?) ON CONFLICT (kid) DO UPDATE"
                " SET current = 0, retired_at = excluded.retired_at",
                (previous.kid, previous.file, previous.public_key, t(previous.created),
                 t(now)))
            conn.execute("INSERT INTO own_keys VALUES (?,?,?,1,?,?,NULL)",
                         (new.kid, new.file, new.public_key, t(new.created), announcement.id))
            insert_outgoing(conn, announcement, now, "node")
            append(conn, now, "key.rotated", "node", f"{centre}/{new.kid}",
                   {"detail": f"announced in {announcement.id}; previous key {previous.kid}",
                    "previous_kid": previous.kid})

        await self._db.write(run)


def _own_rows(conn: Conn) -> list[OwnKey]:
    return [_own(r) for r in conn.execute("SELECT * FROM own_keys ORDER BY created, kid")]


def read_own_keys(settings: Settings) -> list[OwnKey]:
    """Our rotation history, read without the node (at start-up, before the ledger is
    opened, and by the CLI). Empty when there is no ledger yet or it predates rotation
    history."""
    return _read_offline(settings, _own_rows)


def read_learned_keys(settings: Settings) -> list[LearnedKey]:
    """The learned peer keys of a node's ledger, read without the node (the CLI)."""
    return _read_offline(settings, lambda conn: [
        _learned(r) for r in conn.execute("SELECT * FROM peer_keys ORDER BY seq")])


def _read_offline(settings: Settings, read: Callable[[Conn], list[T]]) -> list[T]:
    if not offline.exists(settings):
        return []
    errors: tuple[type[Exception], ...] = (LedgerError, *database_errors())
    try:
        with offline.connect(settings) as conn:
            return read(conn)
    except errors:  # no ledger, or no such table yet
        return []


def current_signing_key(settings: Settings) -> tuple[SigningKey, Path]:
    """The key the node signs with, and its file: the current one of the ledger's
    rotation history, else the one ``gateway.toml`` names. Raises ConfigError."""
    current = next((k for k in read_own_keys(settings) if k.current), None)
    if current is not None:
        return load_signing_key(Path(current.file), current.kid), Path(current.file)
    return (load_signing_key(settings.node.signing_key_file, settings.node.signing_key_id),
            settings.node.signing_key_file)


def own_public_keys_all(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """Every public key we ever signed with: the key files and ``public-keys/`` beside
    the configured key, and the ledger's rotation history."""
    own = own_public_keys(settings.node.signing_key_file, settings.node.signing_key_id)
    for k in read_own_keys(settings):
        if k.kid not in own:
            with contextlib.suppress(KeyMaterialError):
                own[k.kid] = public_key_from_text(k.public_key)
    return own


def known_keys(settings: Settings) -> KeyRing:
    """Every key a node's files can be checked with, read without the node: our own
    public keys (current and earlier ones on disk or in the ledger) and every peer key
    pinned in the configuration or learned by the ledger."""
    own = [(settings.node.centre, PinnedKey(kid=kid, key=key))
           for kid, key in own_public_keys_all(settings).items()]
    ring = effective_ring(settings, read_learned_keys(settings))
    return KeyRing.build([*own, *((c, k) for c, per in ring.keys.items()
                                  for k in per.values())])
