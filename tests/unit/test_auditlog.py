"""The audit log's hash chain and signed checkpoints (pure core), and the ledger's log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.adapters.stores import audit as sqlite_audit
from gateway.adapters.stores.offline import connect_sqlite
from gateway.errors import MalformedInput, VerificationError
from gateway.protocol import ijson
from gateway.protocol.auditlog import (
    GENESIS,
    StoredEntry,
    content_bytes,
    head_from_links,
    link,
    open_checkpoint,
    parse_checkpoint,
    sha256_hex,
    sign_checkpoint,
    verify_chain,
)
from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.keys import PinnedKey, SigningKey, b64url_decode
from gateway.protocol.signing import signing_input
from gateway.service.audit import verify_log

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def chain(n: int) -> list[StoredEntry]:
    """A valid chain of ``n`` entries."""
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        content = content_bytes(seq, NOW, "test", "tester", f"s{seq}", {"n": seq})
        digest = sha256_hex(content)
        h = link(prev, digest)
        rows.append(StoredEntry(seq, content, digest, prev, h))
        prev = h
    return rows


def key(kid: str = "BE-NCCN.k1") -> SigningKey:
    """A fresh signing key."""
    return SigningKey(kid=kid, private=Ed25519PrivateKey.generate())


def pinned(k: SigningKey) -> PinnedKey:
    """The public half of ``k`` as a pinned key."""
    return PinnedKey(kid=k.kid, key=k.public())


def test_intact_chain_verifies_and_reports_its_head() -> None:
    """Ten linked entries verify; the head is the last entry's hash."""
    rows = chain(10)
    report = verify_chain(rows)
    assert report.ok
    assert (report.entries, report.head_seq, report.head) == (10, 10, rows[-1].hash)


def test_links_recompute_the_same_head() -> None:
    """head_from_links over the content hashes gives the stored head."""
    rows = chain(5)
    assert head_from_links(GENESIS, [r.content_sha256 for r in rows]) == rows[-1].hash


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda r: StoredEntry(r.seq, r.content.replace(b'"n":4', b'"n":5'), r.content_sha256,
                           r.prev, r.hash), "content does not match"),
    (lambda r: StoredEntry(r.seq, r.content, r.content_sha256, GENESIS, r.hash),
     "prev does not match"),
    (lambda r: StoredEntry(r.seq, r.content, r.content_sha256, r.prev, "0" * 64),
     "hash is not the link"),
])
def test_first_altered_entry_is_named(mutate: object, words: str) -> None:
    """Changing entry 4's content, prev or hash breaks the chain exactly at entry 4."""
    rows = chain(8)
    rows[3] = mutate(rows[3])  # type: ignore[operator]
    report = verify_chain(rows)
    assert report.broken_at == 4
    assert report.problem is not None
    assert words in report.problem
    assert report.entries == 3


def test_removed_or_reordered_entries_are_named() -> None:
    """A missing entry and a swapped pair are both reported at the first gap."""
    rows = chain(6)
    assert verify_chain(rows[:2] + rows[3:]).broken_at == 4
    swapped = [*rows[:2], rows[3], rows[2], *rows[4:]]
    assert verify_chain(swapped).broken_at == 4


def test_recomputed_chain_with_a_changed_entry_is_caught_by_content_seq() -> None:
    """An entry copied under another sequence number is refused by its own content."""
    rows = chain(3)
    moved = StoredEntry(3, rows[1].content, rows[1].content_sha256, rows[1].hash,
                        link(rows[1].hash, rows[1].content_sha256))
    report = verify_chain([rows[0], rows[1], moved])
    assert report.broken_at == 3
    assert "names sequence 2" in (report.problem or "")


def test_checkpoint_round_trip_and_refusals() -> None:
    """A signed checkpoint opens under its key; another key or a changed head is refused."""
    k = key()
    wire = sign_checkpoint("BE-NCCN", 7, "ab" * 32, NOW, k)
    raw = parse_checkpoint(wire)
    cp = open_checkpoint(raw, pinned(k))
    assert (cp.centre, cp.seq, cp.head) == ("BE-NCCN", 7, "ab" * 32)
    with pytest.raises(VerificationError):
        open_checkpoint(raw, pinned(key()))
    raw["checkpoint"]["head"] = "cd" * 32
    with pytest.raises(VerificationError):
        open_checkpoint(raw, pinned(k))
    with pytest.raises(MalformedInput):
        parse_checkpoint(b'{"checkpoint": {}}')


def test_checkpoint_signature_is_domain_separated() -> None:
    """The checkpoint signature does not verify as a message signature over the same body."""
    k = key()
    raw = ijson.loads(sign_checkpoint("BE-NCCN", 1, "ab" * 32, NOW, k))
    sig = b64url_decode(raw["signature"]["value"])
    with pytest.raises(InvalidSignature):
        k.public().verify(sig, signing_input(canonical_bytes(raw["checkpoint"]), b"message"))


def test_verify_log_flags_a_rewritten_history_against_a_checkpoint() -> None:
    """A checkpoint whose head no longer matches the stored chain is reported."""
    k = key()
    rows = chain(4)
    good = sign_checkpoint("BE-NCCN", 4, rows[-1].hash, NOW, k)
    stale = sign_checkpoint("BE-NCCN", 2, "ee" * 32, NOW, k)
    beyond = sign_checkpoint("BE-NCCN", 9, "ff" * 32, NOW, k)
    hashes = {r.seq: r.hash for r in rows}
    report = verify_log(rows, [(2, stale), (4, good), (9, beyond)],
                        lambda kid: pinned(k) if kid == k.kid else None, hashes.get)
    assert report.chain.ok
    assert not report.ok
    assert any("history rewritten" in p for p in report.problems)
    assert any("log ends before entry 9" in p for p in report.problems)
    ok = verify_log(rows, [(4, good)], lambda kid: pinned(k), hashes.get)
    assert ok.ok
    assert ok.latest_checkpoint is not None


async def test_ledger_records_every_effect_in_one_chain(tmp_path: Path) -> None:
    """Operator actions and checkpoints land in the ledger's chain, which verifies."""
    ledger = SqliteLedger(tmp_path / "l.db", clock=lambda: NOW)
    await ledger.open()
    try:
        await ledger.audit.record("duty", "login", "127.0.0.1", "", NOW)
        await ledger.audit.record("config", "peer.added", "FR-COGIC", "keys: FR-COGIC.k1", NOW)
        k = key()
        wire = await ledger.audit.checkpoint(lambda seq, head: sign_checkpoint(
            "BE-NCCN", seq, head, NOW, k))
        assert wire is not None
        assert await ledger.audit.checkpoint(lambda seq, head: b"") is None  # nothing new
        entries = await ledger.audit.entries(10)
        assert [e.kind for e in entries] == ["peer.added", "login"]
        assert entries[0].data == {"detail": "keys: FR-COGIC.k1"}
    finally:
        await ledger.close()
    conn = connect_sqlite(tmp_path / "l.db")
    try:
        assert verify_chain(sqlite_audit.rows(conn)).entries == 2
        seq, wire2 = sqlite_audit.checkpoints(conn)[0]
        assert seq == 2
        assert json.loads(wire2)["checkpoint"]["head"] == sqlite_audit.head(conn)[1]
    finally:
        conn.close()
