"""The federation benchmark runs end to end (small size here; 30 centres by hand)."""

from __future__ import annotations

import pytest

from gateway.adapters.provision import rabbitmqctl
from gateway.bench.federation import run
from tests.integration.harness import free_base_port

pytestmark = pytest.mark.broker


async def test_federation_benchmark_measures_broadcasts_and_cleans_up() -> None:
    """Four in-process centres: every broadcast is timed, and nothing is left on the broker."""
    result = await run(4, (1, 3), repeats=1, base_port=free_base_port(4))
    assert [r["recipients"] for r in result["broadcasts"]] == [1, 3]
    assert all(0 < r["median_s"] < 30 for r in result["broadcasts"])
    assert isinstance(result["cost_per_extra_peer_ms"], float)
    assert "bench" not in rabbitmqctl("list_vhosts", "--no-table-headers")
