"""Assemble an evidence bundle for one message from a node's ledger.

In the node (the console's download), the bundle's reads and its one write (the audit
checkpoint its proof ends at) run as one write of the node's single writer. From
another process (``crisisgw evidence export``) they run in one ``BEGIN IMMEDIATE``
transaction on a connection of its own: SQLite's file lock orders it with the node's
writer, whose batches wait for it (``busy_timeout``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.adapters.stores import audit as sqlite_audit
from gateway.adapters.stores import offline
from gateway.adapters.stores.audit import head_of_archives
from gateway.adapters.stores.keys import (
    current_signing_key,
    own_public_keys_all,
    read_learned_keys,
)
from gateway.adapters.stores.sql import Conn, Db, Row, database_errors
from gateway.config import Settings
from gateway.errors import LedgerError, NotFound
from gateway.protocol.auditlog import GENESIS, sign_checkpoint
from gateway.protocol.evidence import key_entry, seal_bundle
from gateway.protocol.keys import KeyRing, SigningKey, b64url_encode, public_key_text
from gateway.protocol.types import format_time
from gateway.service.keyring import effective_ring


class EvidenceNotFound(NotFound):
    """No message with that id in this node's ledger, or no audit entry for it."""


def _signed_by(wire: bytes) -> tuple[str, str]:
    signed = json.loads(wire)
    return str(signed["envelope"]["from"]), str(signed["signature"]["kid"])


def _wires(conn: Conn, message_id: str) -> tuple[bytes, list[bytes]]:
    """The message's signed bytes and every signed receipt about it we hold."""
    row = conn.execute("SELECT wire FROM outbox WHERE id=? AND type != 'receipt'",
                       (message_id,)).fetchone()
    if row is not None:  # we sent it: the receipts came from the recipients
        receipts = [bytes(r[0]) for r in conn.execute(
            "SELECT wire FROM receipts_in WHERE message_id=? ORDER BY at, issuer",
            (message_id,))]
        return bytes(row[0]), receipts
    row = conn.execute("SELECT sender, wire FROM inbox WHERE id=? AND type != 'receipt'",
                       (message_id,)).fetchone()
    if row is None:
        raise EvidenceNotFound("Not found", f"no message {message_id} in this ledger")
    receipts = [bytes(r[0]) for r in conn.execute(  # we received it: the receipts are ours
        "SELECT wire FROM outbox WHERE type='receipt' AND answers_sender=? AND answers_id=?"
        " ORDER BY submitted_at", (row[0], message_id))]
    return bytes(row[1]), receipts


def _entries(conn: Conn, message_id: str) -> list[Row]:
    entries = conn.execute("SELECT seq, content FROM audit_log WHERE subject=? ORDER BY seq",
                           (message_id,)).fetchall()
    if not entries:
        raise EvidenceNotFound("Not found", f"the audit log has no entry for {message_id}")
    return list(entries)


@dataclass(frozen=True, slots=True)
class _Collected:
    """What the ledger holds for one bundle, read in one transaction."""

    message: bytes
    receipts: list[bytes]
    entries: list[bytes]
    first: int
    prev: str
    links: list[str]
    checkpoint: bytes


def _collect(conn: Conn, message_id: str, now: datetime, me: str,
             current: SigningKey) -> _Collected:
    """Read the bundle's parts and keep the checkpoint they end at (caller's transaction)."""
    message, receipts = _wires(conn, message_id)
    entries = _entries(conn, message_id)
    seq, _, checkpoint = sqlite_audit.checkpoint_now(
        conn, now, lambda n, h: sign_checkpoint(me, n, h, now, current))
    first = int(entries[0][0])
    links = [str(r[0]) for r in conn.execute(
        "SELECT content_sha256 FROM audit_log WHERE seq >= ? AND seq <= ? ORDER BY seq",
        (first, seq))]
    before = conn.execute("SELECT hash FROM audit_log WHERE seq=?", (first - 1,)).fetchone()
    archived, archived_head = head_of_archives(conn)
    if archived and not any(b'"kind":"message.submitted"' in bytes(e[1])
                            or b'"kind":"message.received"' in bytes(e[1]) for e in entries):
        raise EvidenceNotFound("Not found", f"the first audit entries of {message_id} are in "
                               "an archive file (crisisgw archive list): the archive, which "
                               "crisisgw verify checks, is its evidence")
    prev = GENESIS if first == 1 else (
        str(before[0]) if before is not None else archived_head)
    return _Collected(message=message, receipts=receipts,
                      entries=[bytes(r[1]) for r in entries], first=first, prev=prev,
                      links=links, checkpoint=checkpoint)


def export_bundle(settings: Settings, message_id: str, now: datetime) -> bytes:
    """The signed bundle for ``message_id``, from another process than the node's;
    raises :class:`EvidenceNotFound` or :class:`LedgerError`."""
    current, _ = current_signing_key(settings)
    own = own_public_keys_all(settings)
    ring = effective_ring(settings, read_learned_keys(settings))
    try:
        with offline.connect(settings, write=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                collected = _collect(conn, message_id, now, settings.node.centre, current)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except database_errors() as exc:
        raise LedgerError(f"{settings.ledger.shown()}: {exc}") from exc
    return _assemble(settings.node.centre, collected, now, current, own, ring)


async def export_in_node(db: Db, settings: Settings, message_id: str,  # noqa: PLR0917 - what a bundle needs
                         now: datetime, current: SigningKey, ring: KeyRing) -> bytes:
    """The signed bundle for ``message_id``, through the running node's one writer,
    signed with its ``current`` key and naming the peers' keys of its ``ring``."""
    own = await asyncio.to_thread(own_public_keys_all, settings)
    own[current.kid] = current.public()
    collected = await db.write(partial(_collect, message_id=message_id, now=now,
                                       me=settings.node.centre, current=current))
    return _assemble(settings.node.centre, collected, now, current, own, ring)


def _assemble(me: str, c: _Collected, now: datetime, current: SigningKey,  # noqa: PLR0917 - what a bundle needs
              own: dict[str, Ed25519PublicKey], ring: KeyRing) -> bytes:
    needed = {_signed_by(w) for w in (c.message, *c.receipts)} | {(me, current.kid)}
    keys: list[dict[str, Any]] = []
    for centre, kid in sorted(needed):
        if centre == me:
            if kid not in own:
                raise LedgerError(f"our key {kid} is no longer on disk; cannot prove its use")
            keys.append({"centre": me, "kid": kid,
                         "public_key": public_key_text(own[kid])})
            continue
        pinned = ring.lookup(centre, kid)
        if pinned is None:
            raise LedgerError(f"key {kid} of {centre} is not pinned here any more")
        keys.append(key_entry(centre, kid, pinned))
    bundle = {
        "v": 1, "type": "evidence-bundle", "exported_by": me, "exported_at": format_time(now),
        "message": b64url_encode(c.message), "receipts": [b64url_encode(r) for r in c.receipts],
        "keys": keys,
        "audit": {"entries": [e.decode("ascii") for e in c.entries],
                  "first_seq": c.first, "prev": c.prev, "links": c.links,
                  "checkpoint": json.loads(c.checkpoint)},
    }
    return seal_bundle(bundle, current)
