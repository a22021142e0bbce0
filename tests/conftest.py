"""Shared fixtures: one real federation (4 node processes on the real RabbitMQ) per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Federation

#: Short acknowledgement deadlines so that escalation can be observed in tests.
TEST_DEADLINES = {"flash": 4.0, "urgent": 900.0, "routine": 14400.0}


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Four running nodes (BE-NCCN, NL-NCC, LU-HCPN, DE-NW) shared by the session."""
    root: Path = tmp_path_factory.mktemp("federation")
    fed = Federation.create(root, overrides={"console": {"deadlines": TEST_DEADLINES,
                                                              "silent_seconds": 6.0}})
    fed.start()
    try:
        yield fed
    finally:
        fed.destroy()
