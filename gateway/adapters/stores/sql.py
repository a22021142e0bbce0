"""What the store modules need of a database, whichever engine holds the ledger.

The stores are written once, in the SQL that SQLite (3.35 and later) and PostgreSQL
(13 and later) share: ``?`` and ``:name`` placeholders, ``INSERT ... ON CONFLICT``,
``RETURNING``, row values, partial indexes. Each engine's adapter hands them a
connection of the shape below (:mod:`gateway.adapters.sqlite.db` the ``sqlite3`` one
itself, :mod:`gateway.adapters.postgres.db` a thin wrapper over psycopg's) and runs
them through a :class:`Db`: one writer with group commit, readers on snapshots.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeAlias, TypeVar

import psycopg

from gateway.service.changes import ChangeSignal

T = TypeVar("T")

#: A result row: by position (``row[0]``) and by column name (``row["state"]``), and
#: ``dict(row)`` through ``keys()``, as ``sqlite3.Row`` is.
Row: TypeAlias = Any


class Cursor(Protocol):
    """The part of a DB-API cursor the stores use."""

    @property
    def rowcount(self) -> int:
        """Rows changed by the last statement."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        ...

    def __iter__(self) -> Iterator[Any]:
        """Row by row."""
        ...


class Conn(Protocol):
    """A connection inside the transaction the :class:`Db` opened for it."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor:
        """Run one statement with ``?`` or ``:name`` parameters."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        """Run one statement for each parameter set."""
        ...


class Db(Protocol):
    """One ledger database: writes grouped into committed batches, reads on snapshots."""

    changes: ChangeSignal
    #: Reads, writes and committed batches so far (the node's metrics, the bench).
    reads: int
    writes: int
    batches: int

    async def open(self) -> None:
        """Connect and bring the schema to this release's version."""
        ...

    async def close(self) -> None:
        """Commit what is queued and close."""
        ...

    async def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn`` in the next batch; its result once the batch has committed."""
        ...

    async def read(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn`` on a reader connection."""
        ...


def database_errors() -> tuple[type[Exception], ...]:
    """The exceptions either engine's driver raises (for code that reads a ledger
    outside the node and treats a missing table as "nothing yet")."""
    return (sqlite3.Error, psycopg.Error)
