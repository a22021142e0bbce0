"""Archive files (PROTOCOL.md §18), pure core: built here, verified offline line by line;
and the whole chain verified across archives and the live log."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest

from gateway.protocol.archive import ArchiveBuilder
from gateway.protocol.archive_verify import ArchiveRefused, verify_archive
from gateway.protocol.auditlog import (
    GENESIS,
    StoredEntry,
    content_bytes,
    sha256_hex,
    sign_checkpoint,
)
from gateway.protocol.auditlog import link as chain_link
from gateway.protocol.keys import KeyRing, PinnedKey, SigningKey, public_key_text
from gateway.protocol.receipts import ReceiptState
from gateway.protocol.signing import seal
from gateway.protocol.types import format_time
from gateway.service.audit import verify_history
from tests.unit.test_evidence_bundle import BE, NL, NOW, make_key, message, receipt

KEYS = [{"centre": "BE-NCCN", "kid": BE.kid, "public_key": public_key_text(BE.public())},
        {"centre": "NL-NCC", "kid": NL.kid, "public_key": public_key_text(NL.public())}]


def _theirs() -> bytes:
    env = {"v": 1, "id": str(uuid.uuid4()), "type": "sitrep", "from": "NL-NCC",
           "to": ["BE-NCCN"], "created": format_time(NOW),
           "expires": format_time(NOW + timedelta(hours=1)), "mode": "actual",
           "tlp": "GREEN", "priority": "routine", "incident": "NL-1",
           "body": {"incident": {"id": "NL-1", "title": "Storm"}, "report_number": 1,
                    "severity": "moderate", "summary": {"en": "Gusts"}}}
    return seal(env, NL).wire


def entries(first: int, count: int) -> list[tuple[int, bytes]]:
    return [(seq, content_bytes(seq, NOW, "message.submitted", "local", f"m{seq}", {}))
            for seq in range(first, first + count)]


def head_after(prev: str, contents: Iterable[tuple[int, bytes]]) -> str:
    for _, content in contents:
        prev = chain_link(prev, sha256_hex(content))
    return prev


def build(first: int = 1, prev: str = GENESIS, count: int = 4, *, key: SigningKey = BE,
          sent_wire: bytes | None = None, month: str = "2026-10") -> list[bytes]:
    """An archive: one sent message with a delivery, its two receipts, one received
    message, ``count`` audit entries from ``first``."""
    b = ArchiveBuilder()
    wire, mid, digest = message()
    lines = [b.header("BE-NCCN", month, NOW, KEYS, first, prev),
             b.sent(sent_wire or wire, format_time(NOW),
                    [{"recipient": "NL-NCC", "state": "acknowledged", "attempts": 1}]),
             b.receipt(receipt(mid, digest, ReceiptState.DELIVERED), format_time(NOW)),
             b.receipt(receipt(mid, digest, ReceiptState.ACKNOWLEDGED, by="officer"),
                       format_time(NOW)),
             b.received(_theirs(), {"received_at": format_time(NOW), "state": "delivered"})]
    lines += [b.audit(seq, content) for seq, content in entries(first, count)]
    last, head = b.head
    checkpoint = json.loads(sign_checkpoint("BE-NCCN", last, head, NOW, BE))
    lines.append(b.trailer(checkpoint, key))
    return lines


def test_an_archive_verifies_and_says_what_it_holds() -> None:
    lines = build(count=4)
    verdict = verify_archive(lines, hashes_at=[2], collect_messages=True)
    assert verdict.counts == {"sent": 1, "received": 1, "receipt": 2, "audit": 4}
    assert (verdict.first_seq, verdict.last_seq) == (1, 4)
    assert verdict.head == head_after(GENESIS, entries(1, 4))
    assert verdict.hashes == {2: head_after(GENESIS, entries(1, 2))}
    assert [k for k, _, _ in verdict.messages] == ["sent", "received"]
    text = "\n".join(verdict.lines())
    assert "VERIFIED" in text
    assert "2026-10" in text


def test_every_changed_byte_is_refused() -> None:
    lines = build(count=2)
    data = b"".join(lines)
    offsets = list(range(0, len(data), 3))
    for i in offsets:
        if data[i:i + 1] == b"\n":
            continue
        changed = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
        with pytest.raises(ArchiveRefused):
            verify_archive(changed.splitlines(keepends=True))


@pytest.mark.parametrize("cut", ["trailer", "record", "audit", "swap", "extra", "empty",
                                 "truncated_line"])
def test_missing_moved_or_added_lines_are_refused(cut: str) -> None:
    lines = build(count=3)
    if cut == "trailer":
        lines = lines[:-1]
    elif cut == "record":
        del lines[2]
    elif cut == "audit":
        del lines[6]
    elif cut == "swap":
        lines[5], lines[6] = lines[6], lines[5]
    elif cut == "extra":
        lines.append(lines[1])
    elif cut == "empty":
        lines = []
    else:
        lines[-1] = lines[-1][:-1]
    with pytest.raises(ArchiveRefused):
        verify_archive(lines)


def test_a_sent_message_of_another_centre_or_another_signer_is_refused() -> None:
    with pytest.raises(ArchiveRefused, match="sent message from NL-NCC"):
        verify_archive(build(sent_wire=_theirs()))
    with pytest.raises(ArchiveRefused, match="not a key of BE-NCCN"):
        verify_archive(build(key=NL))


def test_pinned_keys_must_match_the_listed_keys() -> None:
    mine = KeyRing.build([("BE-NCCN", PinnedKey(kid=BE.kid, key=BE.public())),
                          ("NL-NCC", PinnedKey(kid=NL.kid, key=NL.public()))])
    assert verify_archive(build(), mine).keys_pinned
    other = make_key("NL-NCC")
    stranger = KeyRing.build([("BE-NCCN", PinnedKey(kid=BE.kid, key=BE.public())),
                              ("NL-NCC", PinnedKey(kid=NL.kid, key=other.public()))])
    with pytest.raises(ArchiveRefused, match="not a key pinned"):
        verify_archive(build(), stranger)


def test_the_builder_refuses_a_gap_in_the_chain() -> None:
    b = ArchiveBuilder()
    b.header("BE-NCCN", "2026-10", NOW, KEYS, 5, GENESIS)
    with pytest.raises(ValueError, match="does not follow"):
        b.audit(6, entries(6, 1)[0][1])


# -- the whole chain: archives, then the live log --------------------------------------


def _stored(prev: str, contents: list[tuple[int, bytes]]) -> list[StoredEntry]:
    rows = []
    for seq, content in contents:
        h = chain_link(prev, sha256_hex(content))
        rows.append(StoredEntry(seq, content, sha256_hex(content), prev, h))
        prev = h
    return rows


def _history(archives: list[tuple[str, tuple[int, int], list[bytes]]], live_first: int,
             live: list[StoredEntry], checkpoints: list[tuple[int, bytes]] | None = None
             ) -> Any:
    ring = KeyRing.build([("BE-NCCN", PinnedKey(kid=BE.kid, key=BE.public())),
                          ("NL-NCC", PinnedKey(kid=NL.kid, key=NL.public()))])
    refs = [(name, span, lambda ls=ls: verify_archive(ls, ring, hashes_at=[3]))
            for name, span, ls in archives]
    by_seq = {r.seq: r.hash for r in live}
    return verify_history(refs, lambda first: [r for r in live if r.seq >= first],
                          checkpoints or [], lambda kid: ring.lookup("BE-NCCN", kid),
                          by_seq.get)


def _two_archives_and_a_ledger() -> tuple[list[bytes], list[bytes], list[StoredEntry]]:
    """Entries 1-4 and 5-7 in two archives, 8-9 live."""
    h4 = head_after(GENESIS, entries(1, 4))
    h7 = head_after(h4, entries(5, 3))
    return (build(1, GENESIS, 4, month="2026-09"), build(5, h4, 3, month="2026-10"),
            _stored(h7, entries(8, 2)))


def test_the_chain_verifies_across_archives_and_the_ledger() -> None:
    a, b, live = _two_archives_and_a_ledger()
    h3 = head_after(GENESIS, entries(1, 3))
    checkpoint = sign_checkpoint("BE-NCCN", 3, h3, NOW, BE)
    report = _history([("a", (1, 4), a), ("b", (5, 7), b)], 8, live, [(3, checkpoint)])
    assert report.ok, (report.chain, report.problems)
    assert report.archived == 7
    assert report.chain.entries == 2
    assert report.checkpoints == 1
    assert len(report.archive_lines) == 2


def test_a_missing_or_replaced_archive_breaks_the_chain() -> None:
    a, b, live = _two_archives_and_a_ledger()
    missing = _history([("b", (5, 7), b)], 8, live)
    assert not missing.ok
    assert "starts at entry #5" in (missing.chain.problem or "")

    def gone() -> Any:
        raise FileNotFoundError("no such file")
    refs_gone = _history([("a", (1, 4), a)], 5, [])
    assert refs_gone.ok  # a alone, nothing live after it
    report = verify_history([("a", (1, 4), gone)], lambda first: [], [], lambda kid: None,
                            lambda seq: None)
    assert not report.ok
    assert "does not verify" in (report.chain.problem or "")
    forged = build(5, GENESIS, 3, month="2026-10")  # does not continue a's head
    spliced = _history([("a", (1, 4), a), ("b", (5, 7), forged)], 8, live)
    assert not spliced.ok
    # The live log must continue where the last archive ended.
    cut = _history([("a", (1, 4), a)], 5, live)
    assert not cut.ok


def test_verification_memory_does_not_depend_on_the_file() -> None:
    """The verifier takes an iterator: lines are consumed as they come."""
    lines = build(count=50)
    consumed = []

    def stream() -> Iterable[bytes]:
        for line in lines:
            consumed.append(len(line))
            yield line
    assert verify_archive(stream()).counts["audit"] == 50
    assert len(consumed) == len(lines)
