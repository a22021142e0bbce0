"""A node's ledger read (or checkpointed) from another process than the node's: the
CLI, retention, evidence export, the start-up read of our own key history.

The node itself opens its ledger with :func:`gateway.adapters.ledgers.open_ledger`;
this opens what is already there, on whichever engine the settings name, and never
creates one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from gateway.adapters.postgres.db import connect as pg_connect
from gateway.adapters.stores.sql import Conn
from gateway.config import Settings
from gateway.errors import LedgerError


def ledger_path(settings: Settings) -> Path:
    """Where a node's embedded (SQLite) ledger file is."""
    return settings.node.data_dir / "ledger.sqlite3"


def is_postgres(settings: Settings) -> bool:
    """Whether the node's ledger is a PostgreSQL database."""
    return settings.ledger.url is not None


def exists(settings: Settings) -> bool:
    """Whether there is a ledger to read (a PostgreSQL one is always looked at)."""
    return is_postgres(settings) or ledger_path(settings).is_file()


def connect_sqlite(path: Path, *, write: bool = False) -> sqlite3.Connection:
    """Open an existing ledger file, never creating one. Raises :class:`LedgerError`
    when the file is missing or is not a ledger."""
    if not path.is_file():
        raise LedgerError(f"no ledger at {path}")
    mode = "rw" if write else "ro"
    try:
        conn = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=30,
                               isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.row_factory = sqlite3.Row
        conn.execute("SELECT 1 FROM audit_log LIMIT 1")
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: not a ledger with an audit log ({exc})") from exc
    return conn


@contextmanager
def connect(settings: Settings, *, write: bool = False) -> Iterator[Conn]:
    """A connection to the node's existing ledger, in autocommit mode: a caller that
    writes says ``BEGIN IMMEDIATE`` (the ledger's write lock on either engine) and
    ``COMMIT``. Raises :class:`LedgerError` when there is no ledger."""
    url = settings.ledger.postgres_url()
    if url is None:
        conn = connect_sqlite(ledger_path(settings), write=write)
        try:
            yield conn
        finally:
            conn.close()
        return
    pg = pg_connect(url)
    try:
        try:
            pg.execute("SELECT 1 FROM audit_log LIMIT 1")
        except psycopg.Error as exc:
            raise LedgerError(f"{settings.ledger.shown()}: not a ledger with an audit log "
                              f"({exc})") from exc
        yield pg
    finally:
        pg.close()
