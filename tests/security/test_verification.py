""""Verified" means one thing (finding 4): the console calls a message signed with a key
that is now revoked not verified, as admission and evidence do."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.config import update_config
from tests.integration.harness import EXAMPLE, Federation, console_page, wait_until

pytestmark = pytest.mark.broker


async def test_a_revoked_key_is_not_shown_as_verified(federation: Federation) -> None:
    """NL-NCC receives LU-HCPN's sitrep (verified), then revokes the key: the console's
    message page says it does not verify, because the key is revoked."""
    await federation.wait_ready()
    status, answer = await federation.api("LU-HCPN", "POST", "/v1/sitreps",
                                          {**EXAMPLE, "to": ["NL-NCC"]})
    assert status == 202

    async def delivered() -> bool:
        _, view = await federation.api("LU-HCPN", "GET", f"/v1/messages/{answer['id']}")
        return view["recipients"][0]["state"] == "delivered"
    await wait_until(delivered, 20, "the sitrep delivered")
    _, view = await federation.api("LU-HCPN", "GET", f"/v1/messages/{answer['id']}")
    kid = view["signature"]["kid"]
    page = await console_page(federation, "NL-NCC", f"/console/messages/{answer['id']}")
    assert "Signature verified" in page
    nl = federation.nodes["NL-NCC"]
    done = subprocess.run([sys.executable, "-m", "gateway", "keys", "revoke", "LU-HCPN", kid,
                           "-c", str(nl.config)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        page = await console_page(federation, "NL-NCC", f"/console/messages/{answer['id']}")
        assert "Signature verified" not in page
        assert "key_not_valid" in page
        assert "revoked" in page
    finally:
        def unrevoke(raw: dict[str, object]) -> None:
            for peer in raw["peers"]:  # type: ignore[attr-defined]
                if peer["id"] == "LU-HCPN":
                    for key in peer["keys"]:
                        key["revoked"] = False
        update_config(nl.config, unrevoke)
