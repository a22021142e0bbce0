"""Retention and the dedup window, on a real SQLite ledger with the time passed in.

A month is archived a day after it ended (``keep_days = 1``), so its last days are still
inside the dedup window (PROTOCOL.md §6): the ids of those messages must be remembered
after their rows have left the ledger, recognised as duplicates by the same ingest call
the node makes, and forgotten once the window has ended. (A real node refuses a replay
after the window as ``stale`` before this check; tests/integration/test_retention.py
shows that on the real broker.)
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.adapters.stores.archive import read_lines, run_retention
from gateway.adapters.stores.deliveries import inbox_entry
from gateway.adapters.stores.offline import ledger_path
from gateway.bench.scale_fill import Pair, Side, grow
from gateway.config import Settings, load_settings
from gateway.demo import prepare
from gateway.keyfiles import load_signing_key
from gateway.protocol.archive_verify import verify_archive
from gateway.protocol.envelope import DEDUP_WINDOW
from gateway.protocol.types import format_time
from gateway.service.records import InboxEntry, IngestOutcome

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
STEP = timedelta(hours=1)
PAIRS = 220


def _side(settings: Settings) -> Side:
    return Side(id=settings.node.centre,
                key=load_signing_key(settings.node.signing_key_file,
                                     settings.node.signing_key_id))


@pytest.fixture
def centres(tmp_path: Path) -> tuple[Settings, Settings]:
    paths = prepare(tmp_path / "fed", 18000, "amqp://127.0.0.1:5672", provision=False,
                    overrides={"retention": {"keep_days": 1}})
    return load_settings(paths["BE-NCCN"]), load_settings(paths["NL-NCC"])


def _row(path: Path, sql: str, *args: object) -> InboxEntry:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return inbox_entry(conn.execute(sql, args).fetchone())
    finally:
        conn.close()


def _count(path: Path, sql: str, *args: object) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql, args).fetchone()[0])
    finally:
        conn.close()


async def test_ids_archived_inside_the_window_are_remembered_then_forgotten(
        centres: tuple[Settings, Settings]) -> None:
    be, nl = centres
    path = ledger_path(be)
    ledger = SqliteLedger(path)
    await ledger.open()
    first = NOW - timedelta(days=1) - PAIRS * STEP  # 2026-02-24 ... 2026-03-03
    await grow(ledger, Pair(_side(be), _side(nl)), range(PAIRS), first, now=NOW, step=STEP)
    await ledger.close()
    window_start = format_time(NOW - DEDUP_WINDOW)
    feb = "SELECT * FROM inbox WHERE received_at < '2026-03-01' "
    inside = _row(path, feb + "AND created > ? ORDER BY received_at DESC LIMIT 1",
                  window_start)
    outside = _row(path, feb + "AND created < ? ORDER BY received_at LIMIT 1", window_start)
    expected = _count(path, "SELECT COUNT(*) FROM inbox WHERE received_at < '2026-03-01' "
                            "AND created > ?", window_start)
    assert expected > 0

    report = run_retention(be, NOW)
    assert [f.name for f in report.files] == ["BE-NCCN-2026-02-0001.archive.gz"]
    verdict = verify_archive(read_lines(report.files[0]), collect_messages=True)
    assert ("received", "NL-NCC", inside.id) in verdict.messages
    assert _count(path, "SELECT COUNT(*) FROM inbox WHERE received_at < '2026-03-01'") == 0
    assert _count(path, "SELECT COUNT(*) FROM inbox WHERE received_at >= '2026-03-01'") > 0
    assert _count(path, "SELECT COUNT(*) FROM dedup") == expected
    assert _count(path, "SELECT COUNT(*) FROM dedup WHERE id = ?", outside.id) == 0
    assert report.forgotten == 0

    ledger = SqliteLedger(path)
    await ledger.open()
    try:
        # The same bytes again: a duplicate, as if the row were still there.
        outcome, state = await ledger.inbox.ingest(inside, None, NOW)
        assert (outcome, state) == (IngestOutcome.DUPLICATE, inside.state)
        # The same id with other bytes: an id conflict, nothing stored.
        other = replace(inside, digest="0" * 64)
        assert (await ledger.inbox.ingest(other, None, NOW))[0] is IngestOutcome.CONFLICT
        assert await ledger.inbox.get("NL-NCC", inside.id) is None
        entries = await ledger.audit.entries(kind="message.duplicate", subject=inside.id)
        assert len(entries) == 1
    finally:
        await ledger.close()

    # Once the window has ended, the next pass forgets the ids.
    later = run_retention(be, NOW + DEDUP_WINDOW + timedelta(days=1))
    assert later.forgotten == expected
    assert _count(path, "SELECT COUNT(*) FROM dedup") == 0
