"""Shared fixtures: one real federation (4 node processes on the real RabbitMQ) per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Federation
from tests.pg import Postgres

#: Short acknowledgement deadlines so that escalation can be observed in tests.
TEST_DEADLINES = {"flash": 4.0, "urgent": 900.0, "routine": 14400.0}


#: The centres of the session's federation whose ledgers are PostgreSQL databases; the
#: others keep the embedded SQLite file, so that every exchange test crosses engines.
ON_POSTGRES = ("NL-NCC", "DE-NW")


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory,
               postgres: Postgres) -> Iterator[Federation]:
    """Four running nodes (BE-NCCN, NL-NCC, LU-HCPN, DE-NW) shared by the session; NL
    and DE on PostgreSQL, BE and LU on SQLite."""
    root: Path = tmp_path_factory.mktemp("federation")
    fed = Federation.create(root, overrides={"console": {"deadlines": TEST_DEADLINES,
                                                              "silent_seconds": 6.0}},
                            postgres=postgres, on_postgres=ON_POSTGRES)
    fed.start()
    try:
        yield fed
    finally:
        fed.destroy()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The session's PostgreSQL database (dropped at the end)."""
    pg = Postgres()
    try:
        yield pg
    finally:
        pg.drop()
