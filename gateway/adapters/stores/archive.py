"""Retention: settled months move out of the hot ledger into signed archive files.

:func:`run_retention` is one pass, run by the node every ``retention.check_seconds``
and by ``crisisgw archive run``. It works on its own connection, in short transactions,
so the node's one writer waits at most one batch. For each calendar month that ended
more than ``retention.keep_days`` ago, oldest first:

1. In one read snapshot, the month's settled messages (ours, with their deliveries and
   the receipts we received; theirs, with their outcome) and the audit entries up to
   the month's end are streamed into a new archive (:mod:`gateway.protocol.archive`),
   written beside the ledger, synced, then renamed into place.
2. The file is registered (table ``archives``, state ``deleting``) with a checkpoint of
   its last entry and a ``ledger.archived`` audit entry, in one transaction.
3. The file is read back and verified; only then are the rows it holds deleted, in
   batches, with the counters kept in step. A row that changed since the snapshot (a
   late acknowledgement) stays in the ledger and goes into a later archive. An
   interrupted pass resumes here.
4. The freed pages are handed back to the file system (incremental vacuum).

A message is settled when nothing more is waited for from the transport: it has expired
and none of its deliveries is queued or, for a message that expects receipts, sent.
A received message is archived with its month whatever its state. If it was created
less than the dedup window ago (PROTOCOL.md §6), its ``(sender, id)``, digest and state
stay in ``dedup`` until the window ends, so a replay is still recognised as a duplicate;
each pass forgets the ids whose window has ended. After the window a replay is refused
as ``stale`` and is never admitted twice.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from gateway import failpoints
from gateway.adapters.postgres.schema import version_of as pg_version_of
from gateway.adapters.sqlite.schema import LATEST, version_of
from gateway.adapters.stores import offline
from gateway.adapters.stores.audit import (
    append,
    head_of_archives,
    store_checkpoint,
)
from gateway.adapters.stores.deliveries import (
    bump,
    counted,
    remove_archived,
    unacknowledged_in,
)
from gateway.adapters.stores.keys import (
    current_signing_key,
    known_keys,
)
from gateway.adapters.stores.sql import Conn, Row, database_errors
from gateway.config import Settings
from gateway.errors import LedgerError
from gateway.protocol.archive import ArchiveBuilder
from gateway.protocol.archive_verify import ArchiveRefused, verify_archive
from gateway.protocol.auditlog import sign_checkpoint
from gateway.protocol.delivery import DeliveryState
from gateway.protocol.envelope import DEDUP_WINDOW
from gateway.protocol.evidence import key_entry
from gateway.protocol.keys import KeyRing, SigningKey, b64url_decode
from gateway.protocol.types import format_time, parse_time

log = structlog.get_logger("gateway.archive")

#: Messages deleted per transaction (the node's writer waits at most for one batch).
BATCH = 200
#: Audit entries deleted per transaction.
AUDIT_BATCH = 2000
#: Pages handed back per incremental-vacuum step.
VACUUM_PAGES = 2048
_DELIVERY_COLS = ("recipient", "state", "attempts", "sent_at", "delivered_at",
                  "acknowledged_at", "rejected_at", "expired_at", "reason")
_INBOX_OUTCOME = ("received_at", "state", "reason", "detail", "acknowledged_at",
                  "acknowledged_by")


@dataclass
class RetentionReport:
    """What one pass did."""

    files: list[Path] = field(default_factory=list)
    sent: int = 0
    received: int = 0
    audit: int = 0
    kept: int = 0
    #: Ids of archived messages forgotten: their dedup window has ended.
    forgotten: int = 0
    freed_bytes: int = 0

    def as_json(self) -> dict[str, Any]:
        """The report as ``crisisgw archive run --json`` prints it."""
        return {"files": [f.name for f in self.files], "sent": self.sent,
                "received": self.received, "audit": self.audit, "kept": self.kept,
                "forgotten": self.forgotten, "freed_bytes": self.freed_bytes}


def archive_dir(settings: Settings) -> Path:
    """Where a node's archive files are."""
    return settings.retention.directory or settings.node.data_dir / "archive"


def registered(conn: Conn) -> list[Row]:
    """Every archive the ledger knows of, in chain order."""
    return conn.execute("SELECT * FROM archives ORDER BY n").fetchall()


def read_lines(path: Path) -> Iterator[bytes]:
    """The decompressed lines of an archive file, each with its line feed."""
    with gzip.open(path, "rb") as f:
        while True:
            line = f.readline(4 * 1024 * 1024 + 1)
            if not line:
                return
            yield line


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    start = datetime.strptime(month + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _months(first: str | None, cutoff: str) -> Iterator[str]:
    """Every month from ``first`` that ended by ``cutoff``, in order (a month with a
    message still in transit is visited again by every pass, until it is settled)."""
    month = first
    while month is not None:
        end = _month_bounds(month)[1]
        if format_time(end) > cutoff:
            return
        yield month
        month = end.strftime("%Y-%m")


def _oldest_month(conn: Conn) -> str | None:
    times = [conn.execute(q).fetchone()[0] for q in (
        "SELECT MIN(submitted_at) FROM outbox WHERE type != 'receipt'",
        "SELECT MIN(submitted_at) FROM outbox WHERE type = 'receipt'",
        "SELECT MIN(received_at) FROM inbox",
        "SELECT at FROM audit_log ORDER BY seq LIMIT 1")]
    known = [t for t in times if t]
    return min(known)[:7] if known else None


def _last_seq_before(conn: Conn, lo: int, end: str) -> int:
    """The last audit entry written before ``end``, found by bisection on the sequence
    number (entries are appended in time order): ``lo - 1`` when there is none."""
    hi = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM audit_log").fetchone()[0])
    found = lo - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        row = conn.execute("SELECT seq, at FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT 1",
                           (mid,)).fetchone()
        if row is None or row[1] >= end:
            hi = mid - 1
        else:
            found, lo = int(row[0]), int(row[0]) + 1
    return found


def _keys(ring: KeyRing) -> list[dict[str, Any]]:
    """The keys an archive lists: every one the node knows (its own and its peers')."""
    return [key_entry(centre, kid, pinned) for centre, per in sorted(ring.keys.items())
            for kid, pinned in sorted(per.items())]


def _settled(deliveries: list[Row]) -> bool:
    return not any(d["state"] == DeliveryState.QUEUED.value
                   or (d["state"] == DeliveryState.SENT.value and not d["receipt"])
                   for d in deliveries)


class _Writer:
    """Streams one month into an archive file (inside the caller's read snapshot)."""

    def __init__(self, conn: Conn, tmp: Path) -> None:
        self.conn, self.builder = conn, ArchiveBuilder()
        self.file = gzip.open(tmp, "wb", compresslevel=6)  # noqa: SIM115 - closed in close()
        self.messages = 0
        self.audit = 0

    def write(self, line: bytes) -> None:
        self.file.write(line)

    def sent(self, start: str, end: str, now: str) -> None:
        for kind in ("type != 'receipt'", "type = 'receipt'"):
            rows = self.conn.execute(
                f"SELECT id, wire, submitted_at FROM outbox WHERE {kind} "  # noqa: S608 - fixed
                "AND submitted_at >= ? AND submitted_at < ? AND expires < ? "
                "ORDER BY submitted_at, id", (start, end, now))
            for row in rows:
                deliveries = self.conn.execute(
                    "SELECT * FROM deliveries WHERE message_id = ? ORDER BY recipient",
                    (row["id"],)).fetchall()
                if not _settled(deliveries):
                    continue
                self.write(self.builder.sent(
                    bytes(row["wire"]), row["submitted_at"],
                    [{c: d[c] for c in _DELIVERY_COLS if d[c] is not None}
                     for d in deliveries]))
                self.messages += 1
                for r in self.conn.execute(
                        "SELECT wire, received_at FROM receipts_in WHERE message_id = ? "
                        "ORDER BY received_at, issuer, id", (row["id"],)):
                    self.write(self.builder.receipt(bytes(r["wire"]), r["received_at"]))

    def received(self, start: str, end: str) -> None:
        rows = self.conn.execute(
            "SELECT * FROM inbox WHERE received_at >= ? AND received_at < ? "
            "ORDER BY received_at, sender, id", (start, end))
        for row in rows:
            self.write(self.builder.received(
                bytes(row["wire"]), {c: row[c] for c in _INBOX_OUTCOME if row[c] is not None}))
            self.messages += 1

    def entries(self, first: int, last: int) -> None:
        for row in self.conn.execute(
                "SELECT seq, content FROM audit_log WHERE seq >= ? AND seq <= ? ORDER BY seq",
                (first, last)):
            content = row[1] if isinstance(row[1], bytes) else str(row[1]).encode()
            self.write(self.builder.audit(int(row[0]), content))
            self.audit += 1

    def close(self) -> None:
        self.file.close()


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_month(conn: Conn, ctx: _Context, month: str) -> Path | None:
    """Steps 1 and 2 for one month; None when the month holds nothing to archive."""
    start, end = (format_time(t) for t in _month_bounds(month))
    n = int(conn.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM archives").fetchone()[0])
    target = ctx.directory / f"{ctx.centre}-{month}-{n:04d}.archive.gz"
    tmp = target.with_name(target.name + ".tmp")
    conn.execute("BEGIN")
    try:
        base_seq, base_hash = head_of_archives(conn)
        last = _last_seq_before(conn, base_seq + 1, end)
        w = _Writer(conn, tmp)
        try:
            w.write(w.builder.header(ctx.centre, month, ctx.now, ctx.keys, base_seq + 1,
                                     base_hash))
            w.sent(start, end, format_time(ctx.now))
            w.received(start, end)
            w.entries(base_seq + 1, last)
            last_seq, head = w.builder.head
            stored = conn.execute("SELECT hash FROM audit_log WHERE seq = ?",
                                  (last_seq,)).fetchone()
            if w.audit and (stored is None or stored[0] != head):
                raise LedgerError(f"the audit chain does not hold at entry {last_seq}: run "
                                  "crisisgw audit verify; nothing was archived")
            checkpoint = sign_checkpoint(ctx.centre, last_seq, head, ctx.now, ctx.key)
            if w.messages == 0 and w.audit == 0:
                w.close()
                tmp.unlink()
                return None
            w.write(w.builder.trailer(json.loads(checkpoint), ctx.key))
        finally:
            w.close()
    finally:
        conn.execute("COMMIT")
    _sync(tmp)
    tmp.rename(target)
    _sync(target.parent)
    size = target.stat().st_size
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO archives VALUES (?,?,?,?,?,?,?,?,?,?)",
                     (n, target.name, month, base_seq + 1, last_seq, base_hash, head,
                      size, format_time(ctx.now), "deleting"))
        if w.audit:
            store_checkpoint(conn, last_seq, ctx.now, head, checkpoint)
        append(conn, ctx.now, "ledger.archived", "retention", target.name,
               {"month": month, "first_seq": base_seq + 1, "last_seq": last_seq,
                "messages": w.messages, "bytes": size})
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return target


@dataclass
class _Context:
    centre: str
    directory: Path
    key: SigningKey
    keys: list[dict[str, Any]]
    ring: KeyRing
    now: datetime


def _delete_sent(conn: Conn, record: dict[str, Any]) -> bool:
    env = json.loads(b64url_decode(record["wire"]))["envelope"]
    return remove_archived(conn, env["id"], {(d["recipient"], d["state"])
                                              for d in record["deliveries"]})


def _forget_after(created: str | None, received_at: str) -> str:
    """Until when a receiver must remember a message's id (PROTOCOL.md §6): the dedup
    window after its ``created``, or after its reception when it has none we trust."""
    try:
        start = parse_time(created) if created else parse_time(received_at)
    except ValueError:
        start = parse_time(received_at)
    return format_time(start + DEDUP_WINDOW)


def _delete_received(conn: Conn, record: dict[str, Any], now: str) -> bool:
    env = json.loads(b64url_decode(record["wire"]))["envelope"]
    row = conn.execute("SELECT state, priority, mode, acknowledged_at, created, received_at,"
                       " digest "
                       "FROM inbox WHERE sender = ? AND id = ?",
                       (env["from"], env["id"])).fetchone()
    if row is None or (row["state"], row["acknowledged_at"]) != (
            record.get("state"), record.get("acknowledged_at")):
        return False
    forget_after = _forget_after(row["created"], row["received_at"])
    if forget_after > now:  # a replay must still be recognised: keep the id until then
        conn.execute("INSERT INTO dedup VALUES (?, ?, ?, ?, ?) ON CONFLICT (sender, id) DO UPDATE"
                     " SET digest = excluded.digest, state = excluded.state,"
                     " forget_after = excluded.forget_after",
                     (env["from"], env["id"], row["digest"], row["state"], forget_after))
    bump(conn, "inbox", -1)
    if row["state"] == "delivered" and counted(row["mode"]):
        bump(conn, unacknowledged_in(row["priority"]), -1)
    conn.execute("DELETE FROM inbox WHERE sender = ? AND id = ?", (env["from"], env["id"]))
    return True


def _delete(conn: Conn, ctx: _Context, archive: Row,
            report: RetentionReport) -> None:
    """Step 3: verify the file, then delete what it holds from the ledger."""
    path = ctx.directory / archive["file"]
    try:
        verify_archive(read_lines(path), ctx.ring)
    except (ArchiveRefused, OSError, EOFError) as exc:
        raise LedgerError(f"archive {path} does not verify ({exc}); nothing more is "
                          "deleted until it is restored") from exc
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for record in batch:
                gone = (_delete_sent(conn, record) if record["record"] == "sent"
                        else _delete_received(conn, record, format_time(ctx.now)))
                if not gone:
                    report.kept += 1
                elif record["record"] == "sent":
                    report.sent += 1
                else:
                    report.received += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        batch.clear()

    for line in read_lines(path):
        record = json.loads(line)
        if record.get("record") in ("sent", "received"):
            batch.append(record)
            if len(batch) >= BATCH:
                flush()
    if batch:
        flush()
    first, last = int(archive["first_seq"]), int(archive["last_seq"])
    for lo in range(first, last + 1, AUDIT_BATCH):
        conn.execute("DELETE FROM audit_log WHERE seq >= ? AND seq <= ?",
                     (lo, min(lo + AUDIT_BATCH - 1, last)))
    report.audit += max(0, last - first + 1)
    conn.execute("UPDATE archives SET state = 'done' WHERE n = ?", (archive["n"],))
    log.info("ledger_archived", file=archive["file"], month=archive["month"],
             audit_first=first, audit_last=last)


def _vacuum(conn: Conn) -> int:
    """Step 4: hand free pages back (a ledger made before auto-vacuum keeps its size
    until ``crisisgw archive compact``, but reuses the pages)."""
    if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:  # incremental
        return 0
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    freed = 0
    while (free := int(conn.execute("PRAGMA freelist_count").fetchone()[0])) > 0:
        conn.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})").fetchall()
        freed += min(free, VACUUM_PAGES) * page
    return freed


def run_retention(settings: Settings, now: datetime) -> RetentionReport:
    """One retention pass (see the module docstring); the node and the CLI call it."""
    report = RetentionReport()
    keep = settings.retention.keep_days
    if keep is None:
        return report
    ring = known_keys(settings)
    ctx = _Context(centre=settings.node.centre, directory=archive_dir(settings),
                   key=current_signing_key(settings)[0], keys=_keys(ring), ring=ring,
                   now=now)
    ctx.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cutoff = format_time(now - timedelta(days=keep))
    try:
        with offline.connect(settings, write=True) as conn:
            _archive(conn, settings, ctx, cutoff, report)
    except database_errors() as exc:
        raise LedgerError(f"{settings.ledger.shown()}: {exc}") from exc
    return report


def _archive(conn: Conn, settings: Settings, ctx: _Context, cutoff: str,
             report: RetentionReport) -> None:
    postgres = offline.is_postgres(settings)
    found = pg_version_of(conn) if postgres else version_of(conn)  # type: ignore[arg-type]
    if found != LATEST:
        raise LedgerError(f"{settings.ledger.shown()} has schema version {found}, this "
                          f"release {LATEST}: start the node once (it migrates the "
                          "ledger), then archive")
    if not postgres:
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    for archive in registered(conn):
        if archive["state"] == "deleting":  # an interrupted pass
            _delete(conn, ctx, archive, report)
    for month in _months(_oldest_month(conn), cutoff):
        target = _write_month(conn, ctx, month)
        if target is None:
            continue
        report.files.append(target)
        failpoints.hit("archive.before_delete")
        _delete(conn, ctx, conn.execute("SELECT * FROM archives WHERE file = ?",
                                        (target.name,)).fetchone(), report)
    report.forgotten = conn.execute("DELETE FROM dedup WHERE forget_after < ?",
                                    (format_time(ctx.now),)).rowcount
    # PostgreSQL's autovacuum hands the space of deleted rows back to new ones.
    report.freed_bytes = 0 if postgres else _vacuum(conn)
