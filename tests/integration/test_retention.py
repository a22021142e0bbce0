"""Retention on real node processes and the real broker: five months of signed history
move into monthly archive files; each verifies offline, the audit chain verifies across
the archives and the ledger, replays stay harmless and the ledger shrinks.

The history is written into BE-NCCN's ledger by the benchmark's filler (real envelopes
sealed with the centres' own keys, through the stores' own calls), one pair of messages
every 6 hours, the last two days ago; ``[retention] keep_days = 30``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.adapters.ledgers import open_ledger
from gateway.adapters.stores import offline
from gateway.adapters.stores.offline import ledger_path
from gateway.adapters.stores.sql import Conn
from gateway.bench.scale_fill import Pair, Side, grow
from gateway.config import Settings
from gateway.protocol.keys import b64url_decode
from gateway.protocol.types import format_time
from tests.integration.harness import (
    EXAMPLE,
    Federation,
    console_page,
    envelope,
    sealed,
    wait_until,
)

pytestmark = pytest.mark.broker

BE, NL = "BE-NCCN", "NL-NCC"
PAIRS = 600
STEP = timedelta(hours=6)
KEEP_DAYS = 30


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def _db(settings: Settings) -> contextlib.AbstractContextManager[Conn]:
    """A connection to the node's ledger, whichever engine holds it."""
    return offline.connect(settings)


def _records(path: Path) -> list[dict[str, object]]:
    with gzip.open(path, "rb") as f:
        return [json.loads(line) for line in f]


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def fed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Federation]:
    postgres = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    federation = Federation.create(tmp_path / "fed", overrides={
        "retention": {"keep_days": KEEP_DAYS, "check_seconds": 3600}}, postgres=postgres,
        on_postgres=(BE,) if postgres is not None else ())
    try:
        yield federation
    finally:
        federation.destroy()


async def _fill(fed: Federation, now: datetime) -> datetime:
    be, nl = fed.nodes[BE], fed.nodes[NL]
    ledger = open_ledger(be.settings, lambda: datetime.now(UTC))
    await ledger.open()
    first = now - timedelta(days=2) - PAIRS * STEP
    try:
        await grow(ledger, Pair(Side(BE, be.key()), Side(NL, nl.key())), range(PAIRS), first,
                   now=now, step=STEP)
    finally:
        await ledger.close()
    return first


def _counters_hold(conn: Conn) -> None:
    """Every counter kept with the changes equals the plain count over the rows left."""
    counters = dict(conn.execute("SELECT name, n FROM counters").fetchall())
    assert counters.get("inbox", 0) == conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
    kept = {(r[0], r[1], r[2]): r[3] for r in conn.execute(
        "SELECT recipient, receipt, state, n FROM delivery_counts WHERE n != 0")}
    actual = {(r[0], r[1], r[2]): r[3] for r in conn.execute(
        "SELECT recipient, receipt, state, COUNT(*) FROM deliveries GROUP BY 1, 2, 3")}
    assert kept == actual
    for priority in ("flash", "urgent", "routine"):
        out = conn.execute("SELECT COUNT(*) FROM deliveries WHERE receipt = 0 AND priority = ?"
                           " AND state IN ('queued', 'sent', 'delivered')",
                           (priority,)).fetchone()[0]
        assert counters.get(f"unacknowledged_out:{priority}", 0) == out
        into = conn.execute("SELECT COUNT(*) FROM inbox WHERE state = 'delivered' AND "
                            "priority = ?", (priority,)).fetchone()[0]
        assert counters.get(f"unacknowledged_in:{priority}", 0) == into


async def test_settled_months_move_to_signed_archives_that_verify_offline(
        fed: Federation, tmp_path: Path) -> None:
    be = fed.nodes[BE]
    now = datetime.now(UTC)
    first = await _fill(fed, now)
    embedded = not offline.is_postgres(be.settings)
    path = ledger_path(be.settings)
    with _db(be.settings) as conn:
        before_rows = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] + \
            conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        if embedded:
            assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # a new ledger
    before_bytes = path.stat().st_size if embedded else 0

    # The node's pass runs as its own process. Made to die after registering its second
    # file, before deleting anything of it, it leaves that file to the next pass, here
    # one run by hand.
    fed.start(BE, NL, env={"CRISISGW_FAILPOINTS": "archive.before_delete@2"})
    await fed.wait_ready()

    async def failed() -> bool:
        return "retention_failed" in be.log.read_text(encoding="utf-8", errors="replace")
    await wait_until(failed, 120, "the node's retention pass to die")
    with _db(be.settings) as conn:
        states = [r[0] for r in conn.execute("SELECT state FROM archives ORDER BY n")]
    assert states == ["done", "deleting"]
    done = _cli("archive", "run", "-c", str(be.config))
    assert done.returncode == 0, done.stdout + done.stderr
    with _db(be.settings) as conn:
        assert {r[0] for r in conn.execute("SELECT state FROM archives")} == {"done"}

    # One file per month that ended more than keep_days ago, in the archive folder.
    cutoff = now - timedelta(days=KEEP_DAYS)
    folder = be.settings.node.data_dir / "archive"
    files = sorted(folder.glob("*.archive.gz"))
    months = [f.name.split("-")[2] + "-" + f.name.split("-")[3] for f in files]
    expected, m = [], first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while (m + timedelta(days=32)).replace(day=1) <= cutoff:
        expected.append(m.strftime("%Y-%m"))
        m = (m + timedelta(days=32)).replace(day=1)
    assert months == expected, (months, expected)
    assert len(files) >= 4

    # Every archive verifies offline, against the keys pinned in BE-NCCN's configuration.
    for f in files:
        done = _cli("verify", str(f), "-c", str(be.config))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "VERIFIED" in done.stdout
        assert f"Archive of {BE}" in done.stdout

    # A changed byte, a dropped record and a cut-off file are each refused.
    with gzip.open(files[0], "rb") as src:
        lines = src.readlines()
    received = next(i for i, line in enumerate(lines) if b'"record":"received"' in line)
    changed = lines.copy()
    changed[received] = changed[received].replace(b'"state":"delivered"', b'"state":"rejected"'
                                                  ).replace(b'"state":"acknowledged"',
                                                            b'"state":"rejected"')
    assert changed != lines
    for name, body in (("changed", changed), ("dropped", lines[:received] + lines[received + 1:]),
                       ("cut", lines[:-1])):
        bad = tmp_path / f"{name}.archive.gz"
        bad.write_bytes(gzip.compress(b"".join(body)))
        done = _cli("verify", str(bad))
        assert done.returncode == 1, (name, done.stdout)
        assert "REFUSED" in done.stdout, (name, done.stdout)

    # The chain verifies across every archive and the ledger.
    done = _cli("audit", "verify", "-c", str(be.config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("intact, entries") == len(files)
    assert "audit chain intact" in done.stdout

    # What is left in the ledger: nothing settled before the cutoff; counters exact.
    with _db(be.settings) as conn:
        last_end = (datetime.strptime(expected[-1] + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
                    + timedelta(days=32)).replace(day=1)
        old = format_time(last_end)
        assert conn.execute("SELECT COUNT(*) FROM inbox WHERE received_at < ?",
                            (old,)).fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM outbox WHERE submitted_at < ?",
                            (old,)).fetchone()[0] == 0
        after_rows = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] + \
            conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        _counters_hold(conn)
        lowest = conn.execute("SELECT MIN(seq) FROM audit_log").fetchone()[0]
        assert lowest > 1
    assert after_rows < before_rows / 2
    archived_ids = [json.loads(b64url_decode(str(r["wire"])))["envelope"]
                    for f in files for r in _records(f) if r.get("record") == "received"]
    assert len(archived_ids) > PAIRS / 2

    # The node still serves every page, and new traffic extends the same chain.
    for page in ("/v1/incidents", "/v1/messages", "/v1/inbox", "/v1/audit", "/readyz"):
        status, _ = await fed.api(BE, "GET", page)
        assert status == 200, page
    assert "<h1" in await console_page(fed, BE, "/console/incidents")
    incident = archived_ids[0]["incident"]
    status, summary = await fed.api(BE, "GET", f"/v1/incidents/{incident}")
    assert status == 200, summary
    assert "<h1" in await console_page(fed, BE, f"/console/incidents/{incident}")
    status, body = await fed.api(BE, "POST", "/v1/sitreps", body={**EXAMPLE, "to": [NL]})
    assert status == 202, body

    async def delivered() -> bool:
        status, view = await fed.api(BE, "GET", f"/v1/messages/{body['id']}")
        return status == 200 and view["recipients"][0]["state"] == "delivered"
    await wait_until(delivered, 30, "the new sitrep delivered")

    # Evidence of the new message still exports and verifies; of an archived one, the
    # archive is the evidence.
    bundle = tmp_path / "evidence.json"
    done = _cli("evidence", "export", body["id"], "-c", str(be.config), "-o", str(bundle))
    assert done.returncode == 0, done.stderr
    done = _cli("verify", str(bundle), "-c", str(be.config))
    assert done.returncode == 0, done.stdout
    done = _cli("evidence", "export", archived_ids[0]["id"], "-c", str(be.config), "-o",
                str(tmp_path / "gone.json"))
    assert done.returncode != 0
    assert archived_ids[0]["id"] in done.stderr + done.stdout

    # A replay of an archived message is refused as stale, not admitted again.
    old_env = archived_ids[0]
    replay = next(r for r in _records(files[0]) if r.get("record") == "received")
    await fed.inject(BE, NL, b64url_decode(str(replay["wire"])))

    async def answered() -> bool:
        with _db(be.settings) as conn:
            row = conn.execute("SELECT state, reason FROM inbox WHERE sender = ? AND id = ?",
                               (NL, old_env["id"])).fetchone()
        return row is not None
    await wait_until(answered, 30, "the replay answered")
    with _db(be.settings) as conn:
        row = conn.execute("SELECT state, reason FROM inbox WHERE sender = ? AND id = ?",
                           (NL, old_env["id"])).fetchone()
    assert (row["state"], row["reason"]) == ("rejected", "stale")

    # Inside the window a replay is a duplicate, as before: one row, one duplicate entry.
    fresh = envelope(NL, [BE], created=now - timedelta(minutes=1))
    wire = sealed(fresh, fed.nodes[NL].key())
    for _ in range(2):
        await fed.inject(BE, NL, wire)

    async def duplicate_seen() -> bool:
        with _db(be.settings) as conn:
            seen = conn.execute("SELECT COUNT(*) FROM audit_log WHERE kind = "
                                "'message.duplicate' AND subject = ?",
                                (fresh["id"],)).fetchone()[0]
        return bool(seen == 1)
    await wait_until(duplicate_seen, 30, "the duplicate recognised")
    with _db(be.settings) as conn:
        assert conn.execute("SELECT COUNT(*) FROM inbox WHERE id = ?",
                            (fresh["id"],)).fetchone()[0] == 1

    # A second pass finds nothing more to move; the chain still verifies, new entries too.
    done = _cli("archive", "run", "-c", str(be.config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wrote" not in done.stdout, done.stdout
    done = _cli("audit", "verify", "-c", str(be.config))
    assert done.returncode == 0, done.stdout
    assert "audit chain intact" in done.stdout, done.stdout

    # The ledger file shrank: the archived pages were handed back (PostgreSQL's
    # autovacuum gives the space of deleted rows to new ones instead).
    fed.stop(BE)
    await asyncio.sleep(0)
    after_bytes = path.stat().st_size if embedded else 0
    assert not embedded or after_bytes < before_bytes * 0.6, (before_bytes, after_bytes)
    print(f"retention: {len(files)} archives, {sum(f.stat().st_size for f in files)} bytes;"
          f" rows {before_rows} -> {after_rows}; ledger {before_bytes} -> {after_bytes} bytes")
