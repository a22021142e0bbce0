"""PostgreSQL plumbing (psycopg 3 and its pool): the same shape as the SQLite one.

One writer connection per node instance runs queued writes in batches, one
transaction and one commit (one WAL flush) per batch, each write in its own
SAVEPOINT so that one failing write does not undo the others. Readers take
connections from a :class:`psycopg_pool.ConnectionPool`, each read in a read-only
REPEATABLE READ transaction (a snapshot, as WAL gives SQLite readers).

Several instances of one node share the database. Each batch first takes the
ledger's write lock, a transaction-scoped advisory lock named after the schema: the
audit chain is one chain, and its appends (every batch makes some) are serialised by
the database, not by a process. Readers never take it.

A batch that changed something also sends ``NOTIFY`` on the ledger's channel, delivered
at commit: every instance listens (one connection each) and wakes its live views, so a
console on any instance sees what another instance committed.

The stores are written in the SQL both engines share (:mod:`gateway.adapters.stores.sql`);
:class:`PgConn` turns their ``?`` and ``:name`` placeholders into psycopg's, and loads
and dumps values as ``sqlite3`` does (integers for SUM, 0/1 for booleans).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg.adapt import Buffer, Dumper, Loader
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool, PoolTimeout

from gateway import failpoints
from gateway.adapters.stores.audit import ChainHead
from gateway.adapters.stores.batching import GroupCommit, Pending
from gateway.errors import LedgerError

T = TypeVar("T")

#: A quoted literal (left as it is), a ``?``, a ``:name`` (not a ``::`` cast), a ``%``,
#: or SQLite's index hint ``+column`` (a unary plus that PostgreSQL's planner does not
#: need, and refuses on text: dropped).
_TOKEN = re.compile(r"'(?:[^']|'')*'|\?|(?<![:\w]):([A-Za-z_]\w*)|%|(?<=[\s(])\+(?=[A-Za-z_])")
_WRITE_VERBS = frozenset({"INSERT", "UPDATE", "DELETE"})
#: The ledger's write lock: taken by every batch, and by ``BEGIN IMMEDIATE`` (what the
#: stores say when they write outside the node, as SQLite's writers do).
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.crisisgw.ledger'))"
#: The channel of a ledger's change notices (the schema is in the name: several ledgers
#: may share a database).
CHANNEL_SQL = "SELECT 'crisisgw_changes_' || md5(current_schema())"
#: How long the listener waits for a notice before it checks whether it should stop.
LISTEN_TICK = 1.0
#: libpq settings of every connection: a server (or a route to it) that goes silent is
#: noticed within seconds, not after the system's two-hour keep-alive, so a write fails
#: (and is retried by its caller) instead of hanging, and readiness says so.
CONNECT: dict[str, Any] = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 5,
           "keepalives_interval": 2, "keepalives_count": 3, "tcp_user_timeout": 10_000,
           "application_name": "crisisgw"}


@lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """``sql`` with psycopg's placeholders; quoted literals are left alone."""
    def one(m: re.Match[str]) -> str:
        piece = m.group(0)
        if piece.startswith("'"):
            return piece
        if piece == "?":
            return "%s"
        if piece == "%":
            return "%%"
        if piece == "+":
            return ""
        return f"%({m.group(1)})s"
    return _TOKEN.sub(one, sql)


class _Row:
    """A row by position and by column name, with ``keys()`` (as ``sqlite3.Row``)."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values, self._index = values, index

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Row):
            return tuple(self._values) == tuple(other._values)
        return isinstance(other, tuple) and tuple(self._values) == other

    __hash__ = None  # type: ignore[assignment] # mutable-looking, like a list

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _rows(cursor: Any) -> RowMaker[_Row]:
    names = [c.name for c in cursor.description or ()]
    index = {n: i for i, n in enumerate(names)}
    return lambda values: _Row(values, index)


class _NumericAsInt(Loader):
    """SUM() of integers is ``numeric`` in PostgreSQL: an int, as SQLite gives."""

    def load(self, data: Buffer) -> Any:
        text = bytes(data).decode()
        return float(text) if "." in text or "e" in text.lower() else int(text)


class _BoolAsInt(Dumper):
    """Flags are INTEGER 0/1 columns, as in SQLite."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> Buffer:
        return b"1" if obj else b"0"


def configure(conn: psycopg.Connection[Any]) -> None:
    """Row shape and value types of every connection to a ledger."""
    conn.row_factory = _rows
    conn.adapters.register_loader("numeric", _NumericAsInt)
    conn.adapters.register_dumper(bool, _BoolAsInt)


class PgConn:
    """A psycopg connection as the stores see it (:class:`gateway.adapters.stores.sql.Conn`).

    Counts the rows that writes change, so that a batch that changed nothing (a claim or
    a sweep that found nothing) wakes no live view.
    """

    def __init__(self, conn: psycopg.Connection[Any], *, writer: bool = False) -> None:
        self.raw = conn
        self.changed = 0
        #: The audit chain's head within a batch, on the writer's connection only.
        self.chain_head = ChainHead() if writer else None

    def execute(self, sql: str, parameters: Any = (), /) -> psycopg.Cursor[Any]:
        """Run one statement. ``BEGIN IMMEDIATE`` takes the ledger's write lock, as it
        does in SQLite; a bare ``BEGIN`` reads one snapshot, as SQLite's does."""
        verb = sql.strip().upper()
        if verb == "BEGIN IMMEDIATE":
            cur = self.raw.execute("BEGIN")
            self.raw.execute(LOCK_SQL)
            return cur
        if verb == "BEGIN":
            return self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        cur = self.raw.execute(translate(sql), parameters or ())
        if sql.lstrip()[:6].upper() in _WRITE_VERBS and cur.rowcount > 0:
            self.changed += cur.rowcount
        return cur

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> psycopg.Cursor[Any]:
        """Run one statement for each parameter set."""
        cur = self.raw.cursor()
        cur.executemany(translate(sql), list(parameters))
        self.changed += max(cur.rowcount, 0)
        return cur

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()


def connect(url: str, *, autocommit: bool = True, writer: bool = False) -> PgConn:
    """A connection to the ledger at ``url``, for one thread (``writer``: the group
    commit's, which keeps the audit chain's head within a batch). Raises LedgerError."""
    try:
        conn = psycopg.connect(url, autocommit=autocommit, **CONNECT)
    except psycopg.Error as exc:
        raise translate_error(exc) from exc
    configure(conn)
    return PgConn(conn, writer=writer)


def translate_error(exc: psycopg.Error) -> LedgerError:
    """Our error for a psycopg one; disk-full is flagged so the API can answer 507."""
    full = isinstance(exc, psycopg.errors.DiskFull | psycopg.errors.OutOfMemory)
    # Connection failures, a server shutting down or starting, deadlocks and
    # serialisation failures are OperationalErrors: all pass if one tries again.
    gone = isinstance(exc, psycopg.OperationalError)
    return LedgerError(f"ledger: {type(exc).__name__}: {str(exc).strip()[:300]}",
                       disk_full=full, unavailable=gone)


class PgDatabase(GroupCommit):
    """A PostgreSQL ledger with one writer connection (group commit) and a reader pool."""

    batch_errors = (psycopg.Error,)

    def __init__(self, url: str, migrate: Callable[[PgConn], None], readers: int = 2) -> None:
        super().__init__()
        self._url = url
        self._migrate = migrate
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="ledger-reader")
        self._pool = ConnectionPool(url, min_size=1, max_size=readers, open=False,
                                    kwargs={"autocommit": True, **CONNECT},
                                    configure=configure,
                                    check=ConnectionPool.check_connection,
                                    name="ledger-readers")
        self._wconn: PgConn | None = None
        self._listener: threading.Thread | None = None
        self._channel = ""
        self._instance = secrets.token_hex(8)

    async def open(self) -> None:
        """Connect, bring the schema to this release's version, start the commit loop."""
        loop = asyncio.get_running_loop()
        try:
            self._wconn = await loop.run_in_executor(self._writer, self._open_writer)
            await loop.run_in_executor(self._readers, self._pool.open, True, 30.0)
            self._channel = await loop.run_in_executor(self._writer, self._channel_name)
        except (LedgerError, psycopg.Error, PoolTimeout) as exc:
            self._writer.shutdown(wait=False)
            self._readers.shutdown(wait=False)
            if isinstance(exc, LedgerError):
                raise
            raise LedgerError(f"ledger: {exc}") from exc
        self._start_commits()
        self._listener = threading.Thread(target=self._listen, args=(loop,), daemon=True,
                                          name="ledger-listener")
        self._listener.start()

    def _channel_name(self) -> str:
        assert self._wconn is not None
        row = self._wconn.raw.execute(CHANNEL_SQL).fetchone()
        assert row is not None
        return str(row[0])

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the live views on every other instance's committed change; reconnects
        (a second later) when the server goes away."""
        while not self._closing:
            try:
                with psycopg.connect(self._url, autocommit=True, **CONNECT) as conn:
                    conn.execute(f"LISTEN {self._channel}")
                    # A change made while we were not listening: wake the views once.
                    loop.call_soon_threadsafe(self.changes.bump)
                    while not self._closing:
                        for notice in conn.notifies(timeout=LISTEN_TICK):
                            if self._closing:
                                break
                            if notice.payload != self._instance:
                                loop.call_soon_threadsafe(self.changes.bump)
            except psycopg.Error:
                time.sleep(LISTEN_TICK)
            except RuntimeError:  # the event loop closed under us: the node is stopping
                return

    def _stop_listening(self) -> None:
        """Our own notice: the listener wakes, sees that we are closing, and ends."""
        if self._wconn is not None and self._channel and not self._wconn.raw.broken:
            with contextlib.suppress(psycopg.Error):
                self._wconn.raw.execute("SELECT pg_notify(%s, %s)",
                                        (self._channel, self._instance))

    def _translate(self, exc: Exception) -> LedgerError:
        assert isinstance(exc, psycopg.Error)
        return translate_error(exc)

    def _open_writer(self) -> PgConn:
        conn = connect(self._url, writer=True)
        try:
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _writer_conn(self) -> PgConn:
        """The writer's connection, opened again after the server went away."""
        if self._wconn is None or self._wconn.raw.closed or self._wconn.raw.broken:
            if self._wconn is not None:
                self._wconn.close()
            self._wconn = None
            self._wconn = connect(self._url, writer=True)
        return self._wconn

    def _run_batch(self, batch: list[Pending]) -> list[tuple[bool, Any]]:
        conn = self._writer_conn()
        raw = conn.raw
        results: list[tuple[bool, Any]] = []
        conn.changed = 0
        assert conn.chain_head is not None
        raw.execute("BEGIN")
        try:
            raw.execute(LOCK_SQL)
            conn.chain_head.forget()
            for fn, _ in batch:
                raw.execute("SAVEPOINT w")
                try:
                    value = fn(conn)
                except psycopg.Error as exc:
                    if raw.broken:
                        raise  # the server went away: the batch failed with this error
                    raw.execute("ROLLBACK TO SAVEPOINT w")
                    conn.chain_head.forget()
                    results.append((False, translate_error(exc)))
                except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
                    raw.execute("ROLLBACK TO SAVEPOINT w")
                    conn.chain_head.forget()
                    results.append((False, exc))
                else:
                    results.append((True, value))
                raw.execute("RELEASE SAVEPOINT w")
                failpoints.hit("db.in_commit")
            if conn.changed and self._channel:
                raw.execute("SELECT pg_notify(%s, %s)", (self._channel, self._instance))
            raw.execute("COMMIT")
        except BaseException:
            if not raw.broken and not raw.closed:
                raw.execute("ROLLBACK")
            raise
        self._batch_changed = conn.changed > 0
        return results

    async def read(self, fn: Callable[[PgConn], T]) -> T:
        """Run ``fn`` on a pooled reader connection, in one read-only snapshot."""
        loop = asyncio.get_running_loop()
        self.reads += 1
        try:
            return await loop.run_in_executor(self._readers, self._run_read, fn)
        except psycopg.Error as exc:
            raise translate_error(exc) from exc
        except PoolTimeout as exc:
            raise LedgerError(f"ledger: {exc}", unavailable=True) from exc

    def _run_read(self, fn: Callable[[PgConn], T]) -> T:
        with self._pool.connection() as raw:
            raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                return fn(PgConn(raw))
            finally:
                if not raw.broken:
                    raw.execute("ROLLBACK")

    async def close(self) -> None:
        """Commit what is queued, then close every connection; a second call does nothing."""
        if not await self._drain():
            return
        loop = asyncio.get_running_loop()
        if self._wconn is not None:
            await loop.run_in_executor(self._writer, self._stop_listening)
            await loop.run_in_executor(self._writer, self._wconn.close)
        self._writer.shutdown(wait=True)
        if self._listener is not None:
            await loop.run_in_executor(None, self._listener.join, 2 * LISTEN_TICK)
        await loop.run_in_executor(None, self._pool.close)
        self._readers.shutdown(wait=True)

