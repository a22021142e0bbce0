"""The incident index (gateway.adapters.stores.incident_index) against the computation
it replaces: ``summarise_incidents`` over every stored message, on a real SQLite ledger.

The index is kept message by message, in the transaction that stores it; these tests
give it messages in random orders (report numbers repeated, skipped and superseded,
finals followed by updates, rejected ones, alerts, ties in time) and require exactly the
rows the full recomputation gives, page by page.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.adapters.stores.incident_index import rebuild_incident_index
from gateway.protocol.receipts import ReceiptState
from gateway.service.incidents import summarise_incidents
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
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "ledgers"
INCIDENTS = ("EU-2026-0042", "BE-2026-0001", "NL-2026-0007", "LU-2026-0003")
PURPOSES = (None, None, "initial", "update", "final")
SEVERITIES = ("minor", "moderate", "severe", "extreme", "unknown")


def _body(rng: random.Random, incident: str) -> tuple[str, dict[str, Any]]:
    """A random sitrep (most often) or alert body on ``incident``."""
    if rng.random() < 0.2:
        infos = [{"headline": rng.choice(["Evacuate", "", "Shelter in place"]),
                  "severity": rng.choice(["Extreme", "Minor", "Severe"])}]
        return "alert", {"identifier": f"CAP-{rng.randrange(99)}", "infos": infos}
    body = sitrep(rng.randint(1, 7), purpose=rng.choice(PURPOSES),
                  supersedes=rng.choice([None, None, rng.randint(1, 8)]),
                  severity=rng.choice(SEVERITIES),
                  title=rng.choice(["Storm surge", "Flooding", "Dyke breach"]))
    body["incident"]["id"] = incident
    if rng.random() < 0.1:
        del body["incident"]["title"]
    return "sitrep", body


async def _fill(ledger: SqliteLedger, rng: random.Random, count: int) -> None:
    """``count`` messages, ours and received, on a few incidents, in random order."""
    for _ in range(count):
        incident = rng.choice(INCIDENTS)
        msg_type, body = _body(rng, incident)
        created = T0 + rng.randrange(0, 40) * MIN  # ties in time are common
        who = rng.choice([ME, BE, DE])
        mode = rng.choice(["actual", "actual", "actual", "exercise", "test"])
        if who == ME:
            m = ours(created, body, msg_type=msg_type, incident=incident, mode=mode)
            await ledger.outbox.submit(m, None, created + rng.randrange(0, 3) * MIN)
            continue
        state = rng.choice(["delivered", "delivered", "delivered", "rejected"])
        entry = received(who, created, body, state=state, msg_type=msg_type,
                         incident=incident, mode=mode)
        receipt = None if state == "rejected" else receipt_for(
            entry, ReceiptState.DELIVERED, entry.received_at)
        await ledger.inbox.ingest(entry, receipt, entry.received_at)
        if state == "delivered" and rng.random() < 0.3:
            ack = receipt_for(entry, ReceiptState.ACKNOWLEDGED, entry.received_at + MIN)
            await ledger.inbox.acknowledge(who, entry.id, "Officer", ack,
                                           entry.received_at + MIN)


async def _expected(ledger: SqliteLedger) -> list[dict[str, Any]]:
    return summarise_incidents(await ledger.incidents.thread_items(None), ME)


async def _paged(ledger: SqliteLedger, size: int) -> list[dict[str, Any]]:
    rows, after = [], None
    while True:
        page = await ledger.incidents.index(after, size)
        rows += [r.as_json() for r in page]
        if len(page) < size:
            return rows
        after = page[-1].cursor


@pytest.mark.parametrize("seed", range(12))
async def test_the_index_gives_the_rows_of_the_full_recomputation(
        ledger: SqliteLedger, seed: int) -> None:
    """After every batch of random messages the index equals summarise_incidents over
    all of them, in one page and in pages of one and two rows."""
    rng = random.Random(seed)
    for _ in range(3):
        await _fill(ledger, rng, 25)
        expected = await _expected(ledger)
        assert [r.as_json() for r in await ledger.incidents.index(None, 100)] == expected
        assert await _paged(ledger, 1) == expected
        assert await _paged(ledger, 2) == expected
    assert any(r["warnings"] for r in expected)  # the random data does make gaps
    assert any(0 < r["actual_messages"] < r["messages"] for r in expected)


async def test_a_rebuild_gives_the_rows_the_live_updates_gave(ledger: SqliteLedger) -> None:
    """rebuild_incident_index (schema step 4 on an old ledger) over the same messages, in
    table order rather than arrival order, gives the same rows."""
    await _fill(ledger, random.Random(99), 80)
    live = await _paged(ledger, 3)

    def rebuild(conn: sqlite3.Connection) -> int:
        return rebuild_incident_index(conn)

    assert await ledger.db.write(rebuild) == sum(r["messages"] + r["rejected"] for r in live)
    assert await _paged(ledger, 3) == live == await _expected(ledger)


async def test_a_centre_series_keeps_its_warnings_in_step(ledger: SqliteLedger) -> None:
    """A series written in the order that moves each warning in and out: a gap filled,
    a supersede resolved, a duplicate number, a final then an update."""
    steps = [(3, None, None, 1), (1, None, None, 1), (2, None, 9, 1), (9, None, None, 1),
             (9, None, None, 2), (4, "final", None, 3), (5, None, None, 3)]
    # columns: report number, purpose, supersedes, warnings expected after it
    for n, (number, purpose, supersedes, warnings) in enumerate(steps):
        created = T0 + n * MIN
        entry = received(BE, created, sitrep(number, purpose=purpose, supersedes=supersedes))
        await ledger.inbox.ingest(entry, None, entry.received_at)
        rows = await ledger.incidents.index(None, 10)
        assert rows[0].warnings == warnings, (n, rows[0])
        assert [r.as_json() for r in rows] == await _expected(ledger)


async def test_the_demo_ledger_of_an_earlier_release_is_indexed_as_before(
        tmp_path: Path) -> None:
    """The fixed ledger of tests/assets (written before the index existed): migrated, its
    incident list is what the earlier full recomputation gives for it."""
    path = tmp_path / "ledger.sqlite3"
    shutil.copy(ASSETS / "v1-nl-ncc.sqlite3", path)
    led = SqliteLedger(path)
    await led.open()
    try:
        expected = await _expected(led)
        assert expected  # the demo wrote on an incident
        assert [r.as_json() for r in await led.incidents.index(None, 100)] == expected
    finally:
        await led.close()


async def test_rows_past_a_cursor_are_read_on_the_activity_index(
        sqlite_ledger: SqliteLedger) -> None:
    """A page past a cursor is a range of incident_index_activity, not a sort of the
    table."""
    ledger = sqlite_ledger
    await _fill(ledger, random.Random(5), 10)

    def plan(conn: sqlite3.Connection) -> str:
        rows = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM incident_index WHERE last_activity <= ? AND"
            " (last_activity < ? OR incident > ?) ORDER BY last_activity DESC, incident"
            " LIMIT 5", ("z", "z", "a"))
        return " ".join(str(r[3]) for r in rows)

    text = await ledger.db.read(plan)
    assert "incident_index_activity" in text
    assert "TEMP B-TREE" not in text
