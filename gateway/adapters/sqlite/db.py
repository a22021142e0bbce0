"""SQLite (WAL) plumbing: a single writer thread with group commit, and reader threads.

Writes from many coroutines are queued and executed by one thread in a single
transaction per batch (one fsync per batch with ``synchronous=FULL``): the write that
acknowledges an API call or an AMQP delivery is durable when its future resolves.
Each queued write runs inside its own SAVEPOINT, so one failing write does not undo
the others in its batch. Readers use their own connections: WAL lets them read while
the writer commits, so long reads never see "database is locked".
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway import failpoints
from gateway.adapters.stores.audit import ChainHead
from gateway.adapters.stores.batching import GroupCommit, Pending
from gateway.errors import LedgerError

T = TypeVar("T")
#: Page cache of each reader connection (KiB).
READER_CACHE_KIB = 8192


def private_files(path: Path) -> None:
    """The ledger holds TLP:RED texts: its folder is 0700 and the database, its WAL and
    shared-memory files 0600 (SQLite gives the last two the database's mode). Existing
    ones are narrowed too."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            file.chmod(0o600)


class WriterConnection(sqlite3.Connection):
    """The writer's connection: it keeps the audit chain's head within a batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chain_head = ChainHead()


def _connect(path: Path, factory: type[sqlite3.Connection] = sqlite3.Connection
             ) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30,
                           factory=factory)
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        # A new file, before its first page (hence before WAL): retention can then hand
        # archived pages back (adapters/stores/archive.py).
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.row_factory = sqlite3.Row
    return conn


def translate(exc: sqlite3.Error) -> LedgerError:
    """Our error for a sqlite3 error; disk-full is flagged so the API can answer 507."""
    text = str(exc)
    full = isinstance(exc, sqlite3.OperationalError) and (
        "full" in text or "disk I/O" in text
    )
    return LedgerError(f"ledger: {text}", disk_full=full)


class Database(GroupCommit):
    """An SQLite file with one writer thread (group commit) and a few reader threads."""

    batch_errors = (sqlite3.Error,)

    def __init__(self, path: Path, migrate: Callable[[sqlite3.Connection], None],
                 readers: int = 2, writer_cache_kib: int | None = None) -> None:
        super().__init__()
        self._path = path
        self._writer_cache_kib = writer_cache_kib
        self._migrate = migrate
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="ledger-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._wconn: WriterConnection | None = None

    async def open(self) -> None:
        """Create the file, bring its schema to this release's version (``migrate``, on
        the writer's connection, before any other write), start the commit loop."""
        loop = asyncio.get_running_loop()
        private_files(self._path)
        try:
            self._wconn = await loop.run_in_executor(self._writer, self._open_writer)
        except sqlite3.Error as exc:
            self._writer.shutdown(wait=False)
            self._readers.shutdown(wait=False)
            raise translate(exc) from exc
        except LedgerError:
            self._writer.shutdown(wait=False)
            self._readers.shutdown(wait=False)
            raise
        self._start_commits()

    def _translate(self, exc: Exception) -> LedgerError:
        assert isinstance(exc, sqlite3.Error)
        return translate(exc)

    def _open_writer(self) -> WriterConnection:
        conn = _connect(self._path, WriterConnection)
        assert isinstance(conn, WriterConnection)
        if self._writer_cache_kib is not None:
            conn.execute(f"PRAGMA cache_size = -{int(self._writer_cache_kib)}")
        try:
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run_batch(self, batch: list[Pending]) -> list[tuple[bool, Any]]:
        conn = self._wconn
        assert conn is not None
        results: list[tuple[bool, Any]] = []
        before = conn.total_changes
        conn.execute("BEGIN IMMEDIATE")
        conn.chain_head.forget()
        try:
            for fn, _ in batch:
                conn.execute("SAVEPOINT w")
                try:
                    value = fn(conn)
                except sqlite3.Error as exc:
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back itself (it does so on
                        # SQLITE_FULL, for one): the batch failed with this error.
                        raise
                    conn.execute("ROLLBACK TO w")
                    conn.chain_head.forget()
                    results.append((False, translate(exc)))
                except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
                    conn.execute("ROLLBACK TO w")
                    conn.chain_head.forget()
                    results.append((False, exc))
                else:
                    results.append((True, value))
                conn.execute("RELEASE w")
                failpoints.hit("db.in_commit")  # some of the batch written, not committed
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._batch_changed = conn.total_changes != before
        return results

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a reader connection (snapshot isolation under WAL)."""
        loop = asyncio.get_running_loop()
        self.reads += 1
        try:
            return await loop.run_in_executor(self._readers, self._run_read, fn)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self._path)
            # A reader walks indexes of a ledger that grows for years: a larger page
            # cache than the 2 MiB default keeps their upper levels in memory.
            conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
            self._local.conn = conn
            self._reader_conns.append(conn)
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def close(self) -> None:
        """Commit what is queued, then close every connection; a second call does nothing."""
        if not await self._drain():
            return
        loop = asyncio.get_running_loop()
        if self._wconn is not None:
            await loop.run_in_executor(self._writer, self._wconn.close)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
