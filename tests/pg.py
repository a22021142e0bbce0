"""PostgreSQL for the tests: one database per test session, one schema per ledger.

The server is the one ``deploy/setup.sh`` installs and starts (or the one named by
``CRISISGW_TEST_POSTGRES``, a libpq URL of a role that may create databases). Each
ledger gets a schema of its own in the session's database, reached through the URL's
``options=-csearch_path=...``: a node process connects to it as to any other ledger.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
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

    def __init__(self, admin_url: str = ADMIN_URL) -> None:
        self.admin_url = admin_url
        self.database = f"crisisgw_test_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.url = _with_database(admin_url, self.database)
        self._more: list[str] = []

    def ledger_url(self, name: str | None = None) -> str:
        """A new, empty schema (``name`` or a random one) and the URL of a ledger in it."""
        schema = name or f"l_{secrets.token_hex(6)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        return _with_database(self.admin_url, self.database, schema)

    def ledger_url_in_new_database(self, url: str) -> str:
        """An empty database of its own, and ``url`` (with its schema) pointed at it: where
        a backup of the ledger at ``url`` can be restored."""
        database = f"{self.database}_{len(self._more) + 1}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        self._more.append(database)
        return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))

    def drop(self) -> None:
        """Drop the session's databases (every connection to them is ended first)."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
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


class PrivateServer:
    """A PostgreSQL server of a test's own (initdb in a fresh folder, a free port), which
    it may restart or stop without touching the machine's server and the other tests.
    Run as the ``postgres`` user when the tests run as root (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: int(p.name))
        self._bin = versions[-1] / "bin"
        self.root = Path(tempfile.mkdtemp(prefix="crisisgw-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "crisisgw_test",
                  "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        self.start()
        self.admin_url = f"postgresql://crisisgw_test@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self._bin / tool), *args], capture_output=True,
                              text=True, timeout=120, check=False, cwd=self.root)
        assert done.returncode == 0, f"{tool}: {done.stdout}{done.stderr}"

    def _ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
                  "-w", "-t", "60", *args)

    def start(self) -> None:
        """Start the server (waits until it accepts connections)."""
        self._ctl("start")

    def restart(self) -> None:
        """Stop it at once (every connection dropped) and start it again."""
        self._ctl("-m", "immediate", "restart")

    def stop(self) -> None:
        """Stop it at once."""
        self._ctl("-m", "immediate", "stop")

    def destroy(self) -> None:
        """Stop it and remove its files."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
