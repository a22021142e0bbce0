"""Audit-log orchestration: what a configuration change means, and verifying the log.

:func:`config_changes` turns two settings into the peer and key events the audit log
records; :func:`verify_log` checks a stored chain and its checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.protocol.archive_verify import ArchiveRefused, ArchiveVerdict
from gateway.protocol.auditlog import (
    GENESIS,
    ChainReport,
    StoredEntry,
    checkpoint_kid,
    open_checkpoint,
    verify_chain,
)
from gateway.protocol.ijson import loads
from gateway.protocol.keys import PinnedKey
from gateway.protocol.types import format_time


def config_changes(old: Settings, new: Settings) -> list[tuple[str, str, str]]:
    """(action, target, detail) for every peer and pinned-key change from old to new."""
    changes: list[tuple[str, str, str]] = []
    before = {p.id: p for p in old.peers}
    after = {p.id: p for p in new.peers}
    for pid in sorted(after.keys() - before.keys()):
        kids = ", ".join(k.kid for k in after[pid].keys)
        changes.append(("peer.added", pid, f"keys: {kids}"))
    for pid in sorted(before.keys() - after.keys()):
        changes.append(("peer.removed", pid, ""))
    for pid in sorted(before.keys() & after.keys()):
        a, b = before[pid], after[pid]
        if a.suspended != b.suspended:
            changes.append(("peer.suspended" if b.suspended else "peer.resumed", pid, ""))
        if a.groups != b.groups:
            changes.append(("peer.groups", pid, ", ".join(b.groups)))
        if a.inbox_url.get_secret_value() != b.inbox_url.get_secret_value() or \
                a.granted_user != b.granted_user:
            changes.append(("peer.credentials", pid, "inbox credentials changed"))
        old_keys = {k.kid: k for k in a.keys}
        for k in b.keys:
            prev = old_keys.get(k.kid)
            if prev is None:
                changes.append(("key.pinned", f"{pid}/{k.kid}", f"public key {k.public_key}"))
            elif k.revoked and not prev.revoked:
                changes.append(("key.revoked", f"{pid}/{k.kid}", ""))
            elif (k.not_before, k.not_after) != (prev.not_before, prev.not_after):
                changes.append(("key.validity", f"{pid}/{k.kid}",
                                f"not_before={k.not_before}, not_after={k.not_after}"))
        for kid in sorted(old_keys.keys() - {k.kid for k in b.keys}):
            changes.append(("key.unpinned", f"{pid}/{kid}", ""))
    return changes


@dataclass
class LogReport:
    """What ``crisisgw audit verify`` found."""

    chain: ChainReport
    checkpoints: int = 0
    latest_checkpoint: tuple[int, str] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the chain and every checkpoint hold."""
        return self.chain.ok and not self.problems


def verify_log(rows: Iterable[StoredEntry], checkpoints: Iterable[tuple[int, bytes]],
               own_key: Callable[[str], PinnedKey | None],
               hash_at: Callable[[int], str | None]) -> LogReport:
    """Verify the chain, then every checkpoint's signature (under one of our own keys,
    looked up by ``own_key(kid)``) and that its head is the chain's hash at its
    sequence number (``hash_at(seq)``; None when that entry does not exist).
    """
    report = LogReport(chain=verify_chain(rows))
    _check_checkpoints(report, checkpoints, own_key, hash_at)
    return report


def _check_checkpoints(report: LogReport, checkpoints: Iterable[tuple[int, bytes]],
                       own_key: Callable[[str], PinnedKey | None],
                       hash_at: Callable[[int], str | None]) -> None:
    for seq, wire in checkpoints:
        try:
            raw = loads(wire)
            kid = checkpoint_kid(raw)
            key = own_key(kid)
            if key is None:
                report.problems.append(f"checkpoint {seq}: signed with unknown key {kid!r}")
                continue
            cp = open_checkpoint(raw, key)
        except GatewayError as exc:
            report.problems.append(f"checkpoint {seq}: {exc}")
            continue
        actual = hash_at(cp.seq)
        if cp.seq == 0:
            actual = actual or "0" * 64
        if actual is None:
            report.problems.append(
                f"checkpoint {cp.seq}: the log ends before entry {cp.seq} "
                "(entries after the last intact one were removed)")
        elif actual != cp.head:
            report.problems.append(
                f"checkpoint {cp.seq}: signed head {cp.head[:16]}... differs from the "
                f"stored hash {actual[:16]}... (history rewritten)")
        report.checkpoints += 1
        report.latest_checkpoint = (cp.seq, format_time(cp.at))


@dataclass
class HistoryReport(LogReport):
    """What ``crisisgw audit verify`` found across the archive files and the ledger."""

    archived: int = 0
    archive_lines: list[str] = field(default_factory=list)


#: One archive as the ledger registered it: its file name, its (first, last) audit
#: sequence numbers, and a call that verifies the file (raising when it cannot).
ArchiveRef = tuple[str, tuple[int, int], Callable[[], ArchiveVerdict]]


def verify_history(archives: Iterable[ArchiveRef],
                   live_rows: Callable[[int], Iterable[StoredEntry]],
                   checkpoints: Iterable[tuple[int, bytes]],
                   own_key: Callable[[str], PinnedKey | None],
                   hash_at: Callable[[int], str | None]) -> HistoryReport:
    """Verify the whole chain: each archive file (signatures, links, and that it
    continues where the previous one ended), then the ledger's entries from where the
    last archive ended, then every checkpoint against whichever holds its entry."""
    seq, prev = 1, GENESIS
    archived: dict[int, str] = {}
    lines: list[str] = []
    for name, (first, last), verify in archives:
        try:
            verdict = verify()
        except (ArchiveRefused, OSError, EOFError) as exc:
            return _broken(seq, prev, lines, f"archive {name} (entries #{first} to #{last}) "
                                             f"does not verify: {exc}")
        if (verdict.first_seq, verdict.prev) != (seq, prev):
            return _broken(seq, prev, lines, f"archive {name} starts at entry "
                           f"#{verdict.first_seq}; the chain continues at #{seq} "
                           "(an archive is missing or was replaced)")
        if (verdict.first_seq, verdict.last_seq) != (first, last):
            return _broken(seq, prev, lines, f"archive {name} holds entries "
                           f"#{verdict.first_seq} to #{verdict.last_seq}, not the #{first} "
                           f"to #{last} the ledger registered")
        archived.update(verdict.hashes)
        seq, prev = verdict.last_seq + 1, verdict.head
        lines.append(f"archive {name}: intact, entries #{first} to #{last}, "
                     f"{verdict.counts.get('sent', 0)} sent, "
                     f"{verdict.counts.get('received', 0)} received")
    report = HistoryReport(chain=verify_chain(live_rows(seq), start_seq=seq, start_prev=prev),
                           archived=seq - 1, archive_lines=lines)
    _check_checkpoints(report, checkpoints, own_key,
                       lambda n: archived.get(n) if n < seq else hash_at(n))
    return report


def _broken(seq: int, prev: str, lines: list[str], problem: str) -> HistoryReport:
    return HistoryReport(chain=ChainReport(seq - 1, seq - 1, prev, broken_at=seq,
                                           problem=problem),
                         archived=seq - 1, archive_lines=lines)
