"""Keys the node learns or makes at run time (:class:`gateway.service.ports.KeyStore`):
peers' keys pinned by their key-updates, revocations, and our own rotation history.

Each change is one transaction with its audit entries (and, for a rotation, with the
key-update that announces the new key), so a crash leaves either all of it or none.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.adapters.sqlite.audit import append
from gateway.adapters.sqlite.db import Database
from gateway.adapters.sqlite.deliveries import insert_outgoing, t
from gateway.config import Settings
from gateway.errors import KeyMaterialError
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


def _learned(row: sqlite3.Row) -> LearnedKey:
    return LearnedKey(peer=row["peer"], kid=row["kid"], public_key=row["public_key"],
                      not_before=parse_optional_time(row["not_before"]),
                      not_after=parse_optional_time(row["not_after"]),
                      revoked=bool(row["revoked"]), unpinned=bool(row["unpinned"]),
                      source=row["source"])


def _own(row: sqlite3.Row) -> OwnKey:
    return OwnKey(kid=row["kid"], file=row["file"], public_key=row["public_key"],
                  current=bool(row["current"]),
                  created=parse_optional_time(row["created"]) or datetime.min,
                  announced_in=row["announced_in"])


def _put(conn: sqlite3.Connection, row: LearnedKey, now: datetime) -> None:
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


class SqliteKeys:
    """The peer_keys and own_keys tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def learned(self) -> list[LearnedKey]:
        """See :meth:`gateway.service.ports.KeyStore.learned`."""

        def run(conn: sqlite3.Connection) -> list[LearnedKey]:
            return [_learned(r) for r in conn.execute("SELECT * FROM peer_keys ORDER BY seq")]

        return await self._db.read(run)

    async def apply_update(self, peer: str, plan: KeyUpdatePlan, pinned: Sequence[PinnedKey],
                           source: str, now: datetime) -> None:
        """See :meth:`gateway.service.ports.KeyStore.apply_update`."""
        by_kid = {k.kid: k for k in pinned}

        def run(conn: sqlite3.Connection) -> None:
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

        def run(conn: sqlite3.Connection) -> None:
            _put(conn, replace(row, revoked=True), now)
            append(conn, now, "key.revoked", actor, f"{peer}/{pinned.kid}", {"detail": ""})

        await self._db.write(run)

    async def own(self) -> list[OwnKey]:
        """See :meth:`gateway.service.ports.KeyStore.own`."""
        return await self._db.read(_own_rows)

    async def rotate(self, centre: str, announcement: OutgoingMessage, new: OwnKey,
                     previous: OwnKey, now: datetime) -> None:
        """See :meth:`gateway.service.ports.KeyStore.rotate`."""

        def run(conn: sqlite3.Connection) -> None:
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


def _own_rows(conn: sqlite3.Connection) -> list[OwnKey]:
    return [_own(r) for r in conn.execute("SELECT * FROM own_keys ORDER BY created, kid")]


def read_own_keys(path: Path) -> list[OwnKey]:
    """Our rotation history from a ledger file, read without the node (at start-up,
    before the ledger is opened, and by the CLI). Empty when there is no such file or it
    predates rotation history."""
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return []
    conn.row_factory = sqlite3.Row
    try:
        return _own_rows(conn)
    except sqlite3.OperationalError:  # no own_keys table: a ledger of an earlier release
        return []
    finally:
        conn.close()


def read_learned_keys(path: Path) -> list[LearnedKey]:
    """The learned peer keys of a ledger file, read without the node (the CLI)."""
    if not path.is_file():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [_learned(r) for r in conn.execute("SELECT * FROM peer_keys ORDER BY seq")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def ledger_path(settings: Settings) -> Path:
    """Where a node's ledger file is."""
    return settings.node.data_dir / "ledger.sqlite3"


def current_signing_key(settings: Settings) -> tuple[SigningKey, Path]:
    """The key the node signs with, and its file: the current one of the ledger's
    rotation history, else the one ``gateway.toml`` names. Raises ConfigError."""
    current = next((k for k in read_own_keys(ledger_path(settings)) if k.current), None)
    if current is not None:
        return load_signing_key(Path(current.file), current.kid), Path(current.file)
    return (load_signing_key(settings.node.signing_key_file, settings.node.signing_key_id),
            settings.node.signing_key_file)


def own_public_keys_all(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """Every public key we ever signed with: the key files and ``public-keys/`` beside
    the configured key, and the ledger's rotation history."""
    own = own_public_keys(settings.node.signing_key_file, settings.node.signing_key_id)
    for k in read_own_keys(ledger_path(settings)):
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
    ring = effective_ring(settings, read_learned_keys(ledger_path(settings)))
    return KeyRing.build([*own, *((c, k) for c, per in ring.keys.items()
                                  for k in per.values())])
