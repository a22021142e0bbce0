"""Key rotation keeps traffic flowing; a revoked key is refused at once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.config import load_settings
from tests.integration.harness import EXAMPLE, Federation, wait_until

pytestmark = pytest.mark.broker


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60, check=False)


async def _states(fed: Federation, message_id: str) -> dict[str, tuple[str, str | None]]:
    _, view = await fed.api("LU-HCPN", "GET", f"/v1/messages/{message_id}")
    return {r["centre"]: (r["state"], r["reason"]) for r in view["recipients"]}


async def test_rotation_keeps_traffic_flowing_and_revocation_is_immediate(
        federation: Federation) -> None:
    """LU-HCPN rotates: peers pin the new key from the signed key-update and its next
    sitrep is delivered; NL-NCC then revokes that key and refuses the next one at once."""
    await federation.wait_ready()
    lu = federation.nodes["LU-HCPN"]
    old_kid = lu.settings.node.signing_key_id
    done = _cli("keys", "rotate", "-c", str(lu.config), "--overlap-days", "7")
    assert done.returncode == 0, done.stdout + done.stderr
    rotated = json.loads(done.stdout)
    new_kid = rotated["kid"]
    assert new_kid != old_kid

    async def pinned_everywhere() -> bool:
        for centre in ("BE-NCCN", "NL-NCC", "DE-NW"):
            peer = load_settings(federation.nodes[centre].config).peer("LU-HCPN")
            assert peer is not None
            kids = {k.kid: k for k in peer.keys}
            if new_kid not in kids or kids[old_kid].not_after is None:
                return False
        return True

    await wait_until(pinned_everywhere, 20, "every peer pinning LU-HCPN's new key")
    body = {**EXAMPLE, "to": ["NL-NCC", "BE-NCCN"]}
    status, answer = await federation.api("LU-HCPN", "POST", "/v1/sitreps", body)
    assert status == 202

    async def delivered() -> bool:
        return {s for s, _ in (await _states(federation, answer["id"])).values()} == {
            "delivered"}

    await wait_until(delivered, 15, "delivery of a sitrep signed with the new key")
    _, view = await federation.api("LU-HCPN", "GET", f"/v1/messages/{answer['id']}")
    assert view["signature"]["kid"] == new_kid

    revoked = _cli("keys", "revoke", "LU-HCPN", new_kid, "-c",
                   str(federation.nodes["NL-NCC"].config))
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    try:
        status, answer = await federation.api("LU-HCPN", "POST", "/v1/sitreps", body)
        assert status == 202

        async def refused_by_nl() -> bool:
            states = await _states(federation, answer["id"])
            return states["NL-NCC"] == ("rejected", "key_not_valid") and \
                states["BE-NCCN"][0] == "delivered"

        await wait_until(refused_by_nl, 15, "NL-NCC refusing the revoked key")
    finally:
        # give NL-NCC the key back so that later tests see a healthy federation
        from gateway.config import update_config  # noqa: PLC0415

        def unrevoke(raw: dict[str, object]) -> None:
            for peer in raw["peers"]:  # type: ignore[attr-defined]
                if peer["id"] == "LU-HCPN":
                    for key in peer["keys"]:
                        key["revoked"] = False

        update_config(federation.nodes["NL-NCC"].config, unrevoke)
