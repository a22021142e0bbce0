"""What keeps the ledger's cost flat as its history grows, on a real SQLite ledger:
counters kept with every change, keyset pages, indexed due-time, expiry and overdue
queries (schema step 4).

Each counter and each page is checked against the plain query over every row that it
replaces, after random traffic; each hot query is checked to run on its index.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.protocol.delivery import (
    DeliveryState,
    RetryPolicy,
    on_confirmed,
    on_failed,
    on_receipt,
)
from gateway.protocol.receipts import ReceiptState
from gateway.protocol.types import format_time
from gateway.service.records import Backlog, LedgerStats
from tests.unit.test_sqlite_incidents import (
    BE,
    DE,
    ME,
    MIN,
    T0,
    ledger,
    ours,
    receipt_for,
    received,
    sitrep,
    sqlite_ledger,
)

__all__ = ["ledger", "sqlite_ledger"]  # the fixtures
LU = "LU-HCPN"
PEERS = (BE, DE, LU)


def _old_stats(conn: sqlite3.Connection) -> LedgerStats:
    """The full-scan statistics of the releases before the counters."""
    backlog = {
        r["recipient"]: Backlog(count=r["n"], oldest=r["oldest"])
        for r in conn.execute(
            "SELECT d.recipient, COUNT(*) n, MIN(o.submitted_at) oldest"
            " FROM deliveries d JOIN outbox o ON o.id = d.message_id"
            " WHERE d.state = 'queued' OR (d.state = 'sent' AND o.type != 'receipt')"
            " GROUP BY d.recipient")}
    states = {str(r[0]): int(r[1]) for r in conn.execute(
        "SELECT state, COUNT(*) FROM deliveries GROUP BY state")}
    events = conn.execute("SELECT COUNT(*) FROM security_events").fetchone()[0]
    inbox = conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
    return LedgerStats(deliveries=states, backlog=dict(sorted(backlog.items())),
                       security_events=int(events), inbox=int(inbox))


async def _traffic(ledger: SqliteLedger, rng: random.Random, count: int) -> list[str]:
    """Our messages to random peers moved along random paths, and received ones; one in
    four is exercise or test traffic."""
    ids = []
    for n in range(count):
        created = T0 + n * MIN
        to = tuple(sorted(rng.sample(PEERS, rng.randint(1, 3))))
        mode = rng.choice(["actual", "actual", "actual", "exercise", "test"][:4 + n % 2])
        m = ours(created, sitrep(n + 1), to=to, msg_type=rng.choice(["sitrep", "alert"]),
                 mode=mode)
        await ledger.outbox.submit(m, None, created)
        ids.append(m.id)
        for peer in to:
            path = rng.randrange(5)
            if path >= 1:
                await ledger.outbox.transition(m.id, peer, partial(on_confirmed, now=created))
            if path >= 2:
                await ledger.outbox.transition(m.id, peer, partial(
                    on_receipt, state=DeliveryState.DELIVERED, at=created + MIN))
            if path >= 3:
                await ledger.outbox.transition(m.id, peer, partial(
                    on_receipt, state=DeliveryState.ACKNOWLEDGED, at=created + 2 * MIN))
            if path == 0 and rng.random() < 0.5:
                await ledger.outbox.transition(m.id, peer, partial(
                    on_failed, now=created, error="down", retryable=True,
                    policy=RetryPolicy(), jitter=0.5))
        if rng.random() < 0.5:
            entry = received(rng.choice([BE, DE]), created, sitrep(n + 1), mode=mode)
            await ledger.inbox.ingest(entry, receipt_for(
                entry, ReceiptState.DELIVERED, entry.received_at), entry.received_at)
            if rng.random() < 0.5:
                at = entry.received_at + MIN
                await ledger.inbox.acknowledge(entry.sender, entry.id, "Officer", receipt_for(
                    entry, ReceiptState.ACKNOWLEDGED, at), at)
    return ids


@pytest.mark.parametrize("seed", range(4))
async def test_the_counters_give_what_a_full_scan_gives(ledger: SqliteLedger,
                                                        seed: int) -> None:
    """stats() from delivery_counts and counters equals the old GROUP BY over every
    delivery, inbox row and security event."""
    await _traffic(ledger, random.Random(seed), 40)
    old = await ledger.db.read(_old_stats)
    new = await ledger.stats()
    assert {k: v for k, v in new.deliveries.items() if v} == old.deliveries
    assert new.backlog == old.backlog
    assert (new.inbox, new.security_events) == (old.inbox, old.security_events)
    assert new.backlog  # the random paths leave a backlog


async def test_overdue_counts_are_those_of_the_deadline_rule(ledger: SqliteLedger) -> None:
    """outbox.overdue / inbox.overdue count what the console's per-message rule marks
    overdue: unacknowledged actual messages, created (received) at or before the
    priority's cutoff; exercise and test traffic has no deadline."""
    await _traffic(ledger, random.Random(7), 30)
    cutoff = format_time(T0 + 12 * MIN)
    cutoffs = {"urgent": cutoff, "flash": cutoff, "routine": cutoff}
    every = await ledger.outbox.list({}, 1000)
    assert {v.mode for v in every} == {"actual", "exercise", "test"}
    views = [v for v in every if v.mode == "actual"]
    expected_out = sum(1 for v in views if v.created <= cutoff
                       for r in v.recipients if r.state in ("queued", "sent", "delivered"))
    assert await ledger.outbox.overdue(cutoffs) == expected_out > 0
    received_ = await ledger.inbox.list({}, 1000)
    assert any(e.mode != "actual" and e.state == "delivered" for e in received_)
    entries = [e for e in received_ if e.mode == "actual"]
    expected_in = sum(1 for e in entries if e.state == "delivered"
                      and format_time(e.received_at) <= cutoff)
    assert await ledger.inbox.overdue(cutoffs) == expected_in > 0
    assert await ledger.outbox.overdue({"urgent": format_time(T0 - MIN)}) == 0
    # A cutoff after everything: every unacknowledged one, as the counters hold them.
    late = {"urgent": format_time(T0 + timedelta(days=9))}
    assert await ledger.outbox.overdue(late) == sum(
        1 for v in views for r in v.recipients if r.state in ("queued", "sent", "delivered"))
    assert await ledger.inbox.overdue(late) == sum(1 for e in entries
                                                   if e.state == "delivered")
    assert await ledger.inbox.waiting() == await ledger.inbox.overdue(late)
    assert any(e.state == "acknowledged" for e in entries)


@pytest.mark.parametrize("filters", [
    {}, {"state": "queued"}, {"state": "delivered"}, {"peer": DE},
    {"peer": BE, "state": "sent"}, {"type": "alert"}, {"type": "sitrep", "state": "queued"},
    {"incident": "EU-2026-0042", "peer": LU}, {"since": format_time(T0 + 10 * MIN)},
])
async def test_outbox_pages_list_every_match_once_newest_first(
        ledger: SqliteLedger, filters: dict[str, str]) -> None:
    """Pages of 4 through ``after`` give exactly the matching messages, newest first,
    each once, whichever index finds them."""
    ids = await _traffic(ledger, random.Random(11), 30)
    views = {v.id: v for v in await ledger.outbox.list({}, 1000)}
    assert set(views) == set(ids)

    def matches(v: Any) -> bool:
        states = {r.state for r in v.recipients if filters.get("peer") in (None, r.centre)}
        return (filters.get("type") in (None, v.type)
                and filters.get("incident") in (None, v.incident)
                and v.submitted_at >= filters.get("since", "")
                and bool(states) and (filters.get("state") is None
                                      or filters["state"] in states))

    expected = sorted((v.cursor for v in views.values() if matches(v)), reverse=True)
    seen: list[tuple[str, str]] = []
    after = None
    while True:
        page = await ledger.outbox.list(filters, 4, after)
        seen += [v.cursor for v in page]
        if len(page) < 4:
            break
        after = page[-1].cursor
    assert seen == expected


async def test_inbox_pages_follow_reception_order(ledger: SqliteLedger) -> None:
    """Inbox pages through ``after`` give every entry once, newest first, with ties in
    reception time broken by sender and id."""
    for n in range(9):
        entry = received([BE, DE][n % 2], T0 + (n // 3) * MIN, sitrep(n + 1))
        await ledger.inbox.ingest(entry, None, entry.received_at)
    full = [e.cursor for e in await ledger.inbox.list({}, 100)]
    assert full == sorted(full, reverse=True)
    assert len(full) == 9
    seen, after = [], None
    while True:
        page = await ledger.inbox.list({}, 2, after)
        seen += [e.cursor for e in page]
        if len(page) < 2:
            break
        after = page[-1].cursor
    assert seen == full
    assert [e.cursor for e in await ledger.inbox.list({"sender": BE}, 100)] == [
        c for c in full if c[1] == BE]


async def test_claim_reads_no_row_of_a_skipped_peer(ledger: SqliteLedger) -> None:
    """claim() with a peer skipped takes the other peers' due deliveries, oldest first;
    the skipped peer's rows stay queued and untouched."""
    for n in range(6):
        m = ours(T0 + n * MIN, sitrep(n + 1), to=(BE, DE))
        await ledger.outbox.submit(m, None, T0 + n * MIN)
    now = T0 + timedelta(hours=1)
    taken = await ledger.outbox.claim(now, 4, now + MIN, skip_peers=frozenset({BE}))
    assert [d.recipient for d in taken] == [DE] * 4
    assert [d.message_id for d in taken] == [
        v.id for v in sorted(await ledger.outbox.list({}, 100), key=lambda v: v.cursor)][:4]
    stats = await ledger.stats()
    assert stats.deliveries == {"queued": 12}
    rest = await ledger.outbox.claim(now, 100, now + MIN)
    assert sorted(d.recipient for d in rest) == [BE] * 6 + [DE] * 2


async def test_expiry_finds_only_expired_deliveries_on_its_index(
        sqlite_ledger: SqliteLedger) -> None:
    """expire() takes the queued deliveries whose message has expired, through the
    deliveries_expiry index (not a scan of every queued delivery)."""
    ledger = sqlite_ledger
    old = ours(T0 - timedelta(days=2), sitrep(1), to=(BE,))
    new = ours(T0, sitrep(2), to=(BE, DE))
    for m in (old, new):
        await ledger.outbox.submit(m, None, m.created)
    assert await ledger.outbox.expire(T0) == [(old.id, BE)]
    stats = await ledger.stats()
    assert stats.deliveries.get("expired") == 1
    assert stats.deliveries.get("queued") == 2

    def plans(conn: sqlite3.Connection) -> dict[str, str]:
        queries = {
            "expiry": ("SELECT * FROM deliveries WHERE state = 'queued' AND expires <= ?",
                       ("x",)),
            "due": ("SELECT d.* FROM deliveries d WHERE d.recipient = ? AND d.state ="
                    " 'queued' AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at"
                    " LIMIT 5", (BE, "x")),
            "overdue": ("SELECT COUNT(*) FROM deliveries WHERE receipt = 0 AND actual = 1 AND"
                        " state IN ('queued', 'sent', 'delivered') AND priority = ? AND"
                        " created <= ?",
                        ("urgent", "x")),
            "inbox_overdue": ("SELECT COUNT(*) FROM inbox WHERE state = 'delivered' AND mode"
                              " = 'actual' AND priority = ? AND received_at <= ?",
                              ("urgent", "x")),
        }
        return {name: " ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {q}", a))
                for name, (q, a) in queries.items()}

    found = await ledger.db.read(plans)
    assert "deliveries_expiry" in found["expiry"]
    assert "deliveries_peer_due" in found["due"]
    assert "deliveries_unacked" in found["overdue"]
    assert "inbox_unacked_actual" in found["inbox_overdue"]
    assert all("SCAN" not in plan for plan in found.values()), found


def test_times_sort_as_stored() -> None:
    """The cursor and cutoff comparisons rely on stored times sorting as the times do."""
    times = [T0 + timedelta(milliseconds=n * 997) for n in range(50)]
    assert sorted(format_time(t) for t in times) == [format_time(t) for t in sorted(times)]
    assert isinstance(T0, datetime)
    assert ME not in PEERS


async def test_a_migrated_ledger_starts_with_counters_that_match_its_rows(
        tmp_path: Path) -> None:
    """Schema steps 4 and 6 on the fixed ledger of an earlier release fill the counters
    and the copied delivery columns from the rows already there; exercise and test
    messages (the file has some) stay out of the overdue counts."""
    path = tmp_path / "ledger.sqlite3"
    shutil.copy(Path(__file__).resolve().parents[1] / "assets" / "ledgers"
                / "v1-nl-ncc.sqlite3", path)
    led = SqliteLedger(path)
    await led.open()
    try:
        old = await led.db.read(_old_stats)
        new = await led.stats()
        assert {k: v for k, v in new.deliveries.items() if v} == old.deliveries
        assert (new.backlog, new.inbox) == (old.backlog, old.inbox)
        late = dict.fromkeys(("flash", "urgent", "routine"), "9999")
        views = await led.outbox.list({}, 1000)
        pending = [(v.mode, r.state) for v in views for r in v.recipients
                   if r.state in ("queued", "sent", "delivered")]
        assert {mode for mode, _ in pending} > {"actual"}
        assert await led.outbox.overdue(late) == sum(1 for mode, _ in pending
                                                     if mode == "actual")
        entries = await led.inbox.list({}, 1000)
        assert await led.inbox.overdue(late) == sum(
            1 for e in entries if e.state == "delivered" and e.mode == "actual")
        assert sum(old.deliveries.values()) == 14  # the file's README

        def unfilled(conn: sqlite3.Connection) -> int:
            return int(conn.execute(
                "SELECT COUNT(*) FROM deliveries d JOIN outbox o ON o.id = d.message_id"
                " WHERE d.submitted_at IS NOT o.submitted_at OR d.expires IS NOT o.expires"
                " OR d.created IS NOT o.created OR d.priority IS NOT o.priority"
                " OR d.receipt != (o.type = 'receipt')"
                " OR d.actual != (o.mode = 'actual')").fetchone()[0])

        assert await led.db.read(unfilled) == 0
    finally:
        await led.close()
