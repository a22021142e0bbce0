"""Ledger schema versions: a ledger written by the release before versions existed opens,
migrates and keeps everything; newer ledgers are refused; a failing step changes nothing.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.adapters.sqlite import schema
from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.adapters.stores import audit as sqlite_audit
from gateway.adapters.stores.offline import connect_sqlite
from gateway.errors import LedgerError
from gateway.protocol.auditlog import open_checkpoint, parse_checkpoint, verify_chain
from gateway.protocol.keys import PinnedKey, public_key_from_text
from gateway.service.records import OutgoingMessage

ASSET = Path(__file__).resolve().parents[1] / "assets" / "ledgers" / "v1-nl-ncc.sqlite3"
#: NL-NCC's key when the asset was made (tests/assets/ledgers/README.md).
NL_KEY = PinnedKey(kid="NL-NCC.387ea9410892",
                   key=public_key_from_text("bwCM-9BtfPkGoiEoKKcLT_r6-LYIzJIgrSj3KvJKM4Q"))
#: Rows per table in the asset, counted when it was made.
ASSET_ROWS = {"outbox": 9, "deliveries": 14, "idempotency": 0, "inbox": 5, "receipts_in": 8,
              "directory": 3, "security_events": 1, "security_suppressed": 0,
              "console_sessions": 1, "audit_log": 64, "audit_checkpoints": 1}
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ASSET_ROWS}
    finally:
        conn.close()


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def old_ledger(tmp_path: Path) -> Path:
    """A copy of the ledger made by the release before schema versions."""
    path = tmp_path / "data" / "ledger.sqlite3"
    path.parent.mkdir()
    shutil.copyfile(ASSET, path)
    return path


def test_the_asset_is_what_its_readme_says() -> None:
    """The asset is unversioned (user_version 0) and holds the rows its README lists."""
    assert _version(ASSET) == 0
    assert _counts(ASSET) == ASSET_ROWS


async def test_a_ledger_of_the_previous_release_migrates_with_nothing_lost(
    old_ledger: Path,
) -> None:
    """Opened by today's code, the old ledger reaches the latest version, is backed up
    first, keeps every row, its audit chain and checkpoint still verify, and the stores
    read what it holds."""
    ledger = SqliteLedger(old_ledger, clock=lambda: NOW)
    await ledger.open()
    try:
        assert ledger.found_version == 0
        messages = await ledger.outbox.list({}, 100)
        inbox = await ledger.inbox.list({}, 100)
        directories = await ledger.directory.all()
        events = await ledger.security.recent()
        sessions = await ledger.sessions.load(0)
        threads = await ledger.incidents.thread_items("BE-2026-0001")
        stats = await ledger.stats()
        receipts = [await ledger.receipts.for_message(m.id) for m in messages]
        logins = await ledger.audit.entries(kind="login")
    finally:
        await ledger.close()
    assert _version(old_ledger) == schema.LATEST
    backup = old_ledger.with_name("ledger.sqlite3.v0.bak")
    assert _version(backup) == 0
    assert _counts(backup) == ASSET_ROWS
    assert backup.stat().st_mode & 0o777 == 0o600
    assert _counts(old_ledger) == ASSET_ROWS
    # What the traffic of make_v1.py left, read through today's stores:
    assert {m.type for m in messages} == {"sitrep", "directory", "commcheck"}
    sitrep = next(m for m in messages if m.type == "sitrep")
    assert {r.centre: r.state for r in sitrep.recipients} == {
        "BE-NCCN": "delivered", "DE-NW": "delivered"}
    assert sum(len(r) for r in receipts) == ASSET_ROWS["receipts_in"]
    assert {e.sender for e in inbox} == {"BE-NCCN", "LU-HCPN", "DE-NW"}
    assert any(e.state == "acknowledged" for e in inbox)
    assert set(directories) == {"BE-NCCN", "LU-HCPN", "DE-NW"}
    assert all(d.entries for d in directories.values())
    assert [e.reason for e in events] == ["not_ijson"]
    assert [s.name for s in sessions.values()] == ["operator"]
    assert {t.direction for t in threads} == {"in", "out"}
    assert stats.inbox == ASSET_ROWS["inbox"]
    # Step 2 renamed the searchable kind; the hashed content keeps the old one.
    assert [e.kind for e in logins] == ["session.login"]
    conn = connect_sqlite(old_ledger)
    try:
        report = verify_chain(sqlite_audit.rows(conn))
        assert report.ok
        assert report.entries == ASSET_ROWS["audit_log"]
        [(seq, wire)] = sqlite_audit.checkpoints(conn)
        assert open_checkpoint(parse_checkpoint(wire), NL_KEY).head == \
            str(conn.execute("SELECT hash FROM audit_log WHERE seq=?", (seq,)).fetchone()[0])
        content = conn.execute("SELECT content FROM audit_log WHERE kind='session.login'"
                               ).fetchone()[0]
        assert json.loads(content)["kind"] == "login"
    finally:
        conn.close()


async def test_a_migrated_ledger_takes_new_writes_and_reopens_without_a_second_backup(
    old_ledger: Path,
) -> None:
    """After the upgrade the node writes on (the chain goes on from the old head), and
    a second open finds the latest version: no step runs, no backup is made."""
    ledger = SqliteLedger(old_ledger, clock=lambda: NOW)
    await ledger.open()
    message = OutgoingMessage(
        id=str(uuid.uuid4()), type="sitrep", created=NOW, expires=NOW + timedelta(days=1),
        priority="routine", mode="actual", tlp="GREEN", incident=None, digest="ab" * 32,
        wire=json.dumps({"envelope": {}, "signature": {}}).encode(), recipients=("BE-NCCN",))
    try:
        assert await ledger.outbox.submit(message, None, NOW) == (message.id, True)
        await ledger.audit.record("operator", "session.logout", "-", "", NOW)
    finally:
        await ledger.close()
    old_ledger.with_name("ledger.sqlite3.v0.bak").unlink()
    again = SqliteLedger(old_ledger, clock=lambda: NOW)
    await again.open()
    try:
        assert again.found_version == schema.LATEST
        assert (await again.outbox.get(message.id)) is not None
    finally:
        await again.close()
    assert not old_ledger.with_name("ledger.sqlite3.v0.bak").exists()
    assert not old_ledger.with_name(f"ledger.sqlite3.v{schema.LATEST}.bak").exists()
    conn = connect_sqlite(old_ledger)
    try:
        report = verify_chain(sqlite_audit.rows(conn))
        assert report.ok
        assert report.entries > ASSET_ROWS["audit_log"]
    finally:
        conn.close()


async def test_a_new_ledger_starts_at_the_latest_version_without_backup(tmp_path: Path) -> None:
    """A new file runs every step and needs no copy."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    await ledger.open()
    await ledger.close()
    assert ledger.found_version == 0
    assert _version(path) == schema.LATEST
    assert list(tmp_path.glob("*.bak")) == []


async def test_a_ledger_from_a_later_release_is_refused_and_left_alone(
    old_ledger: Path,
) -> None:
    """A schema version this release does not know is refused, naming both versions."""
    conn = sqlite3.connect(old_ledger)
    conn.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    conn.close()
    before = old_ledger.read_bytes()
    ledger = SqliteLedger(old_ledger)
    with pytest.raises(LedgerError, match=f"version {schema.LATEST + 1}.*up to {schema.LATEST}"):
        await ledger.open()
    assert old_ledger.read_bytes() == before
    assert list(old_ledger.parent.glob("*.bak")) == []


def test_a_failing_step_leaves_the_file_as_it_was(old_ledger: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """All steps run in one transaction: if one fails, the version and tables stay."""
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(schema, "STEPS", (*schema.STEPS, schema.Step(99, "broken", broken)))
    monkeypatch.setattr(schema, "LATEST", 99)
    conn = sqlite3.connect(old_ledger, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            schema.migrate(conn, old_ledger)
        assert schema.version_of(conn) == 0
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name='half_done'").fetchone() \
            is None
        assert conn.execute("SELECT COUNT(*) FROM audit_log WHERE kind='login'").fetchone()[0] \
            == 1
    finally:
        conn.close()


def test_steps_are_numbered_in_order() -> None:
    """Step N takes version N-1 to N, with no gap: every ledger can reach the latest."""
    assert [s.version for s in schema.STEPS] == list(range(1, schema.LATEST + 1))
