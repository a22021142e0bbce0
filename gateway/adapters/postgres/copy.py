"""Move a centre's ledger from its SQLite file to PostgreSQL, with its history intact.

Every row of every table is copied as it is stored, in one PostgreSQL transaction:
the messages' signed bytes, the deliveries and receipts, and the audit log entry by
entry with its chain hashes and signed checkpoints, so ``crisisgw audit verify`` finds
the same chain, with the same head, on the new engine. The SQLite file is only read;
the target must be an empty ledger (a new one is migrated to this release's schema
first). Run it with the node stopped; start the node on the new ``[ledger] url`` after.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.adapters.postgres import schema as pg_schema
from gateway.adapters.postgres.db import LOCK_SQL, PgConn, connect
from gateway.adapters.sqlite import schema as sqlite_schema
from gateway.adapters.stores.offline import connect_sqlite
from gateway.errors import LedgerError

#: Tables in an order that keeps foreign keys satisfied (deliveries after outbox).
TABLES = ("outbox", "deliveries", "idempotency", "inbox", "receipts_in", "directory",
          "security_events", "security_suppressed", "console_sessions", "audit_log",
          "audit_checkpoints", "peer_keys", "own_keys", "delivery_counts", "counters",
          "incident_index", "incident_centres", "incident_reports", "archives", "dedup")
#: Identity columns, set past the copied rows so that new rows follow them.
_IDENTITY = {"security_events": "seq", "peer_keys": "seq"}
_CHUNK = 1000


@dataclass
class CopyReport:
    """What was copied: rows per table, and the audit chain's head on both sides."""

    rows: dict[str, int] = field(default_factory=dict)
    head_seq: int = 0
    head: str = ""

    def lines(self) -> list[str]:
        """A line per table and one for the chain."""
        return [*(f"{table}: {n} rows" for table, n in self.rows.items()),
                f"audit chain head #{self.head_seq} {self.head} (the same on both)"]


def _columns(pg: PgConn, table: str) -> list[str]:
    return [r[0] for r in pg.raw.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema ="
        " current_schema() AND table_name = %s ORDER BY ordinal_position", (table,))]


def _head(conn: sqlite3.Connection | PgConn) -> tuple[int, str]:
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, "") if row is None else (int(row[0]), str(row[1]))


def copy_ledger(source: Path, url: str,
                progress: Callable[[str], None] = lambda _line: None) -> CopyReport:
    """Copy the SQLite ledger at ``source`` into the empty PostgreSQL ledger at ``url``.

    Raises :class:`LedgerError` when the source is not at this release's schema version,
    when the target already holds a ledger's rows, or when the copy does not match
    (then nothing is committed).
    """
    lite = connect_sqlite(source)
    try:
        if (found := sqlite_schema.version_of(lite)) != sqlite_schema.LATEST:
            raise LedgerError(f"{source} has schema version {found}, this release "
                              f"{sqlite_schema.LATEST}: start the node once on it (it "
                              "migrates the file), stop it, then copy")
        pg = connect(url)
        try:
            pg_schema.migrate(pg)
            return _copy(lite, pg, progress)
        finally:
            pg.close()
    finally:
        lite.close()


def _copy(lite: sqlite3.Connection, pg: PgConn,
          progress: Callable[[str], None]) -> CopyReport:
    report = CopyReport()
    raw = pg.raw
    raw.execute("BEGIN")
    try:
        raw.execute(LOCK_SQL)
        _refuse_rows(pg)
        lite.execute("BEGIN")  # one snapshot of the file
        try:
            for table in TABLES:
                report.rows[table] = _copy_table(lite, pg, table)
                progress(f"{table}: {report.rows[table]} rows")
            for table, column in _IDENTITY.items():
                raw.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"  # noqa: S608 - fixed names
                    f" COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")
            head = _head(lite)
        finally:
            lite.execute("COMMIT")
        _same_head(pg, head)
        report.head_seq, report.head = head
        raw.execute("COMMIT")
    except BaseException:
        if not raw.broken:
            raw.execute("ROLLBACK")
        raise
    return report


def _refuse_rows(pg: PgConn) -> None:
    for table in ("outbox", "inbox", "audit_log"):
        if pg.raw.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:  # noqa: S608 - fixed names
            raise LedgerError(f"the target ledger already has rows in {table}: copy into "
                              "an empty database (or schema) only")


def _same_head(pg: PgConn, head: tuple[int, str]) -> None:
    if _head(pg) != head:
        raise LedgerError(f"the copied audit chain ends at {_head(pg)}, the file's at "
                          f"{head}: nothing was committed")


def _copy_table(lite: sqlite3.Connection, pg: PgConn, table: str) -> int:
    columns = _columns(pg, table)
    names = ", ".join(columns)
    cursor = lite.execute(f"SELECT {names} FROM {table}")  # noqa: S608 - the schema's names
    insert = (f"INSERT INTO {table} ({names}) VALUES"  # noqa: S608 - the schema's names
              f" ({', '.join(['%s'] * len(columns))})")
    count = 0
    with pg.raw.cursor() as out:
        while rows := cursor.fetchmany(_CHUNK):
            out.executemany(insert, [tuple(r) for r in rows])
            count += len(rows)
    copied = pg.raw.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608 - fixed
    if copied is None or int(copied[0]) != count:
        raise LedgerError(f"{table}: {count} rows read, {copied} in the target")
    return count
