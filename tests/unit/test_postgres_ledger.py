"""The PostgreSQL ledger's own parts: its schema against SQLite's, the SQL it is given,
its migrations, and what several instances of one node on one database rely on."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from gateway.adapters.postgres import schema as pg_schema
from gateway.adapters.postgres.db import connect, translate
from gateway.adapters.postgres.ledger import PostgresLedger
from gateway.adapters.sqlite import schema as sqlite_schema
from gateway.errors import LedgerError
from tests.pg import Postgres

_NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def _sqlite_tables(tmp_path: Path) -> tuple[dict[str, list[str]], set[str]]:
    conn = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    sqlite_schema.migrate(conn)
    tables = {name: [r[1] for r in conn.execute(f"PRAGMA table_info({name})")]
              for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type ="
                                          " 'table' AND name NOT LIKE 'sqlite_%'")}
    indexes = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    conn.close()
    return tables, indexes


def _pg_tables(url: str) -> tuple[dict[str, list[str]], set[str]]:
    conn = connect(url)
    pg_schema.migrate(conn)
    raw = conn.raw
    tables: dict[str, list[str]] = {}
    for table, column in raw.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE"
            " table_schema = current_schema() ORDER BY table_name, ordinal_position"):
        tables.setdefault(table, []).append(column)
    indexes = {r[0] for r in raw.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        " AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'")}
    conn.close()
    return tables, indexes


def test_the_baseline_has_every_table_column_and_index_of_sqlite_version_6(
        tmp_path: Path, postgres: Postgres) -> None:
    """Same tables, same columns in the same order, same named indexes on both engines."""
    lite_tables, lite_indexes = _sqlite_tables(tmp_path)
    pg_tables, pg_indexes = _pg_tables(postgres.ledger_url())
    pg_tables.pop("ledger_schema")
    assert pg_tables == lite_tables
    assert pg_indexes == lite_indexes
    assert pg_schema.LATEST == sqlite_schema.LATEST


def test_text_compares_byte_by_byte_as_in_sqlite(postgres: Postgres) -> None:
    """Ids and times sort in code-point order whatever the server's locale."""
    conn = connect(postgres.ledger_url())
    try:
        pg_schema.migrate(conn)
        ids = ["b-1", "B-2", "a_3", "A-4", "Z", "é"]
        conn.executemany("INSERT INTO counters VALUES (?, 0)", [(i,) for i in ids])
        found = [r[0] for r in conn.execute("SELECT name FROM counters ORDER BY name")]
        collations = {(r[0], r[1]): r[2] for r in conn.execute(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND data_type = 'text'")}
    finally:
        conn.close()
    assert found == sorted(ids)
    assert len(collations) > 100
    assert set(collations.values()) == {"C"}  # not the server's locale, which may differ


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
    ("INSERT INTO t VALUES (:id, :n)", "INSERT INTO t VALUES (%(id)s, %(n)s)"),
    ("SELECT '?' , ':x', 'it''s ?' FROM t WHERE c = ?",
     "SELECT '?' , ':x', 'it''s ?' FROM t WHERE c = %s"),
    ("SELECT x::int FROM t", "SELECT x::int FROM t"),
    ("DELETE FROM c WHERE name LIKE 'un_%' AND n = ?",
     "DELETE FROM c WHERE name LIKE 'un_%' AND n = %s"),
    ("SELECT * FROM t WHERE n LIKE ? || '%'", "SELECT * FROM t WHERE n LIKE %s || '%'"),
    ("SELECT 100 % 7", "SELECT 100 %% 7"),
    ("WHERE a = ? AND +o.type = ?", "WHERE a = %s AND o.type = %s"),
    ("SET n = counters.n + excluded.n", "SET n = counters.n + excluded.n"),
])
def test_placeholders_become_psycopgs_and_literals_stay(sql: str, expected: str) -> None:
    """``?`` and ``:name`` are turned into psycopg's; quoted text, casts and sums are not."""
    assert translate(sql) == expected


def test_a_ledger_of_a_later_release_is_refused(postgres: Postgres) -> None:
    """A schema version beyond this release's is not touched."""
    url = postgres.ledger_url()
    conn = connect(url)
    pg_schema.migrate(conn)
    conn.raw.execute("UPDATE ledger_schema SET version = %s", (pg_schema.LATEST + 1,))
    with pytest.raises(LedgerError, match="schema version"):
        pg_schema.migrate(conn)
    conn.close()


async def test_instances_opening_together_migrate_once(postgres: Postgres) -> None:
    """Three instances opening an empty database at once: one migrates, the others wait
    and find the schema in place."""
    url = postgres.ledger_url()
    ledgers = [PostgresLedger(url) for _ in range(3)]
    await asyncio.gather(*(led.open() for led in ledgers))
    try:
        assert sorted(led.found_version or 0 for led in ledgers) == [0, pg_schema.LATEST,
                                                                   pg_schema.LATEST]
    finally:
        for led in ledgers:
            await led.close()


async def test_audit_appends_of_two_instances_make_one_chain(postgres: Postgres) -> None:
    """Two instances writing at once: their entries interleave in one unbroken chain."""
    url = postgres.ledger_url()
    one, two = PostgresLedger(url), PostgresLedger(url)
    await one.open()
    await two.open()
    try:
        await asyncio.gather(*(
            led.audit.record("test", "config.changed", f"{name}-{n}", "d", _NOW)
            for n in range(40) for name, led in (("one", one), ("two", two))))
    finally:
        await one.close()
        await two.close()
    conn = connect(url)
    rows = conn.execute("SELECT seq, prev, hash, subject FROM audit_log ORDER BY seq").fetchall()
    conn.close()
    assert [r[0] for r in rows] == list(range(1, 81))
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, len(rows)))
    assert {r[3].split("-")[0] for r in rows} == {"one", "two"}


async def test_the_writer_comes_back_after_its_connection_is_killed(
        postgres: Postgres) -> None:
    """A batch on a connection the server ended fails as a LedgerError; the next batch
    opens a new connection and commits."""
    ledger = PostgresLedger(postgres.ledger_url())
    await ledger.open()
    try:
        await ledger.audit.record("test", "config.changed", "before", "d", _NOW)
        pid = await ledger.db.write(
            lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(LedgerError):
            await ledger.audit.record("test", "config.changed", "lost", "d", _NOW)
        await ledger.audit.record("test", "config.changed", "after", "d", _NOW)
        subjects = [e.subject for e in await ledger.audit.entries(10)]
        assert subjects == ["after", "before"]
    finally:
        await ledger.close()


async def test_a_change_on_one_instance_wakes_the_live_views_of_another(
        postgres: Postgres) -> None:
    """Instance two's change signal moves when instance one commits (LISTEN/NOTIFY), and
    a batch that changed nothing sends no notice."""
    url = postgres.ledger_url()
    one, two = PostgresLedger(url), PostgresLedger(url)
    await one.open()
    await two.open()
    try:
        await asyncio.sleep(0.5)  # the listener's first wake-up
        seen = two.changes.version
        async with asyncio.timeout(5):
            waiting = asyncio.ensure_future(two.changes.wait(seen))
            await one.audit.record("test", "config.changed", "x", "d", _NOW)
            assert await waiting > seen
        quiet = two.changes.version
        await one.db.write(lambda conn: conn.execute("SELECT 1").fetchone())
        await asyncio.sleep(1.5)
        assert two.changes.version == quiet
    finally:
        await one.close()
        await two.close()
