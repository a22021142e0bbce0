"""Fixtures that start a real federation on the real RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Federation


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Four running nodes (BE-NCCN, NL-NCC, LU-HCPN, DE-NW) shared by the session."""
    root: Path = tmp_path_factory.mktemp("federation")
    fed = Federation.create(root)
    fed.start()
    try:
        yield fed
    finally:
        fed.destroy()
