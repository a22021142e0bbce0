"""The node's ledger on the engine its settings name: the embedded SQLite file, or a
PostgreSQL database that several instances of the node share (``[ledger] url``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.adapters.postgres.ledger import PostgresLedger
from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.adapters.stores.ledger import StoreLedger
from gateway.adapters.stores.offline import ledger_path
from gateway.config import Settings


def open_ledger(settings: Settings, clock: Callable[[], datetime]) -> StoreLedger:
    """The ledger object (not yet opened: call ``open()``). Raises ConfigError for an
    unreadable password file."""
    url = settings.ledger.postgres_url()
    if url is None:
        return SqliteLedger(ledger_path(settings), clock=clock)
    return PostgresLedger(url, clock=clock, readers=settings.ledger.readers)
