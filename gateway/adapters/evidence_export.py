"""Assemble an evidence bundle for one message from a node's ledger (``crisisgw evidence
export``). The node may be running: the ledger is read under WAL, and the only write is
the checkpoint that the bundle's audit proof ends at."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from gateway.adapters import sqlite_audit
from gateway.config import Settings
from gateway.errors import GatewayError, LedgerError
from gateway.keyfiles import load_signing_key, own_public_keys
from gateway.protocol.auditlog import GENESIS, sign_checkpoint
from gateway.protocol.evidence import seal_bundle
from gateway.protocol.keys import b64url_encode, public_key_text
from gateway.protocol.types import format_time


class EvidenceNotFound(GatewayError):
    """No message with that id in this node's ledger."""


def _signed_by(wire: bytes) -> tuple[str, str]:
    signed = json.loads(wire)
    return str(signed["envelope"]["from"]), str(signed["signature"]["kid"])


def _wires(conn: sqlite3.Connection, message_id: str) -> tuple[bytes, list[bytes]]:
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
        raise EvidenceNotFound(f"no message {message_id} in this ledger")
    receipts = [bytes(r[0]) for r in conn.execute(  # we received it: the receipts are ours
        "SELECT wire FROM outbox WHERE type='receipt' AND answers_sender=? AND answers_id=?"
        " ORDER BY submitted_at", (row[0], message_id))]
    return bytes(row[1]), receipts


def _entries(conn: sqlite3.Connection, message_id: str) -> list[sqlite3.Row]:
    entries = conn.execute("SELECT seq, content FROM audit_log WHERE subject=? ORDER BY seq",
                           (message_id,)).fetchall()
    if not entries:
        raise EvidenceNotFound(f"the audit log has no entry for {message_id}")
    return list(entries)


def export_bundle(settings: Settings, message_id: str, now: datetime) -> bytes:
    """The signed bundle for ``message_id``; raises :class:`EvidenceNotFound` or
    :class:`LedgerError`."""
    me = settings.node.centre
    own = own_public_keys(settings.node.signing_key_file, settings.node.signing_key_id)
    current = load_signing_key(settings.node.signing_key_file, settings.node.signing_key_id)
    path = settings.node.data_dir / "ledger.sqlite3"
    conn = sqlite_audit.connect_existing(path, write=True)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            message, receipts = _wires(conn, message_id)
            entries = _entries(conn, message_id)
            seq, _, checkpoint = sqlite_audit.checkpoint_now(
                conn, now, lambda n, h: sign_checkpoint(me, n, h, now, current))
            first = int(entries[0][0])
            links = [str(r[0]) for r in conn.execute(
                "SELECT content_sha256 FROM audit_log WHERE seq >= ? AND seq <= ? ORDER BY seq",
                (first, seq))]
            prev = GENESIS if first == 1 else str(conn.execute(
                "SELECT hash FROM audit_log WHERE seq=?", (first - 1,)).fetchone()[0])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: {exc}") from exc
    finally:
        conn.close()

    needed = {_signed_by(w) for w in (message, *receipts)} | {(me, current.kid)}
    keys: list[dict[str, Any]] = []
    for centre, kid in sorted(needed):
        if centre == me:
            if kid not in own:
                raise LedgerError(f"our key {kid} is no longer on disk; cannot prove its use")
            keys.append({"centre": me, "kid": kid,
                         "public_key": public_key_text(own[kid])})
            continue
        peer = settings.peer(centre)
        entry = next((k for k in (peer.keys if peer else ()) if k.kid == kid), None)
        if entry is None:
            raise LedgerError(f"key {kid} of {centre} is not pinned here any more")
        keys.append(entry.model_dump(mode="json", include={"kid", "public_key", "not_before",
                                                           "not_after"}, exclude_none=True)
                    | {"centre": centre})
    bundle = {
        "v": 1, "type": "evidence-bundle", "exported_by": me, "exported_at": format_time(now),
        "message": b64url_encode(message), "receipts": [b64url_encode(r) for r in receipts],
        "keys": keys,
        "audit": {"entries": [bytes(r[1]).decode("ascii") for r in entries],
                  "first_seq": first, "prev": prev, "links": links,
                  "checkpoint": json.loads(checkpoint)},
    }
    return seal_bundle(bundle, current)
