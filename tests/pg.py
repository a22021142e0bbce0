"""PostgreSQL for the tests: one database per test session, one schema per ledger.

The server is the one ``deploy/setup.sh`` installs and starts (or the one named by
``CRISISGW_TEST_POSTGRES``, a libpq URL of a role that may create databases). Each
ledger gets a schema of its own in the session's database, reached through the URL's
``options=-csearch_path=...``: a node process connects to it as to any other ledger.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

ADMIN_URL = os.environ.get("CRISISGW_TEST_POSTGRES",
                           "postgresql://crisisgw_test:crisisgw_test@127.0.0.1:5432/postgres")


def _with_database(url: str, database: str, schema: str | None = None) -> str:
    parts = urlsplit(url)
    query = f"options={quote(f'-csearch_path={schema}')}" if schema else ""
    return urlunsplit(parts._replace(path=f"/{database}", query=query))


class Postgres:
    """The session's database; :meth:`ledger_url` makes a schema and its URL."""

    def __init__(self) -> None:
        self.database = f"crisisgw_test_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.url = _with_database(ADMIN_URL, self.database)
        self._more: list[str] = []

    def ledger_url(self, name: str | None = None) -> str:
        """A new, empty schema (``name`` or a random one) and the URL of a ledger in it."""
        schema = name or f"l_{secrets.token_hex(6)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        return _with_database(ADMIN_URL, self.database, schema)

    def ledger_url_in_new_database(self, url: str) -> str:
        """An empty database of its own, and ``url`` (with its schema) pointed at it: where
        a backup of the ledger at ``url`` can be restored."""
        database = f"{self.database}_{len(self._more) + 1}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        self._more.append(database)
        return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))

    def drop(self) -> None:
        """Drop the session's databases (every connection to them is ended first)."""
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for database in (self.database, *self._more):
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE datname = %s AND pid != pg_backend_pid()", (database,))
                conn.execute(f'DROP DATABASE IF EXISTS "{database}"')


def available() -> bool:
    """Whether the test server answers."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def host_of(url: str) -> str:
    """The host:port of ``url`` (for messages)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}"
