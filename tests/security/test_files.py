"""A node's files are its own (finding 12): the ledger, its WAL and everything in the
data folder hold TLP:RED texts and are readable by the node's user only."""

from __future__ import annotations

import pytest

from tests.conftest import ON_POSTGRES
from tests.integration.harness import EXAMPLE, Federation, wait_until

pytestmark = pytest.mark.broker


async def test_a_running_nodes_data_folder_is_0700_and_its_files_0600(
        federation: Federation) -> None:
    """After traffic (so the WAL exists), no file of the ledger is readable by others."""
    await federation.wait_ready()
    status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps",
                                          {**EXAMPLE, "tlp": "RED", "to": ["NL-NCC"]})
    assert status == 202, answer

    async def delivered() -> bool:
        _, view = await federation.api("BE-NCCN", "GET", f"/v1/messages/{answer['id']}")
        return view["recipients"][0]["state"] == "delivered"
    await wait_until(delivered, 20, "the TLP:RED sitrep delivered")
    for centre in ("BE-NCCN", "LU-HCPN", *ON_POSTGRES):
        data = federation.nodes[centre].settings.node.data_dir
        assert data.stat().st_mode & 0o777 == 0o700, centre
        files = list(data.iterdir())
        if centre not in ON_POSTGRES:  # the embedded ledger's files
            assert any(f.name.endswith("-wal") for f in files), files
        for f in files:
            assert f.stat().st_mode & 0o077 == 0, f"{f} is readable by others"
