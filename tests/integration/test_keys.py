"""Key rotation keeps traffic flowing; a revoked key is refused at once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import load_settings, update_config
from gateway.keyfiles import load_signing_key
from gateway.protocol.keys import SigningKey, public_key_text
from gateway.protocol.types import format_time
from tests.integration.harness import (
    EXAMPLE,
    Federation,
    console_page,
    envelope,
    sealed,
    wait_until,
)

pytestmark = pytest.mark.broker


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60, check=False)


async def _pins(fed: Federation, centre: str, peer: str) -> dict[str, dict[str, Any]]:
    """``peer``'s keys in force at ``centre`` (its file's and what it learned), by kid."""
    _, answer = await fed.api(centre, "GET", "/v1/peers")
    entry = next(p for p in answer["peers"] if p["id"] == peer)
    return {k["kid"]: k for k in entry["keys"]}


def _digests(fed: Federation) -> dict[str, str]:
    """The SHA-256 of every node's gateway.toml."""
    return {c: hashlib.sha256(n.config.read_bytes()).hexdigest() for c, n in fed.nodes.items()}


async def _states(fed: Federation, message_id: str) -> dict[str, tuple[str, str | None]]:
    _, view = await fed.api("LU-HCPN", "GET", f"/v1/messages/{message_id}")
    return {r["centre"]: (r["state"], r["reason"]) for r in view["recipients"]}


async def test_rotation_keeps_traffic_flowing_and_revocation_is_immediate(
        federation: Federation) -> None:
    """LU-HCPN rotates: peers pin the new key from the signed key-update and its next
    sitrep is delivered; NL-NCC then revokes that key and refuses the next one at once."""
    await federation.wait_ready()
    lu = federation.nodes["LU-HCPN"]
    old_kid = json.loads(_cli("keys", "show", "-c", str(lu.config)).stdout)["kid"]
    files = _digests(federation)
    done = _cli("keys", "rotate", "-c", str(lu.config), "--overlap-days", "7")
    assert done.returncode == 0, done.stdout + done.stderr
    rotated = json.loads(done.stdout)
    new_kid = rotated["kid"]
    assert new_kid != old_kid

    async def pinned_everywhere() -> bool:
        for centre in ("BE-NCCN", "NL-NCC", "DE-NW"):
            kids = await _pins(federation, centre, "LU-HCPN")
            if new_kid not in kids or kids[old_kid]["not_after"] is None:
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
    assert json.loads(_cli("keys", "show", "-c", str(lu.config)).stdout)["kid"] == new_kid

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
        assert (await _pins(federation, "NL-NCC", "LU-HCPN"))[new_kid]["revoked"]
        # Rotating, pinning from a key-update and revoking wrote no node's gateway.toml.
        assert _digests(federation) == files
    finally:
        # As after a real compromise: LU-HCPN makes a new key (NL-NCC refuses its
        # key-update, signed with the revoked key), and NL-NCC's operator pins it by hand.
        again = json.loads(_cli("keys", "rotate", "-c", str(lu.config)).stdout)

        def repin(raw: dict[str, Any]) -> None:
            for peer in raw["peers"]:
                if peer["id"] == "LU-HCPN":
                    peer["keys"].append({"kid": again["kid"], "public_key": json.loads(
                        _cli("keys", "show", "-c", str(lu.config)).stdout)["public_key"]})

        update_config(federation.nodes["NL-NCC"].config, repin)

        async def healthy() -> bool:
            return again["kid"] in await _pins(federation, "NL-NCC", "LU-HCPN")
        await wait_until(healthy, 15, "NL-NCC pinning LU-HCPN's re-issued key")


async def test_a_stolen_phased_out_key_cannot_take_over_the_centre(
        federation: Federation) -> None:
    """The takeover of docs/PROTOCOL.md §3.3c against real nodes: DE-NW rotates; someone
    holding its old key (still valid for the overlap) sends BE-NCCN a key-update naming
    their own key and ending the genuine new one. BE-NCCN refuses it (key_not_valid,
    security event key_update_refused, shown on its console), keeps the genuine key, and
    never accepts the thief's key; DE-NW's next sitrep is still delivered."""
    await federation.wait_ready()
    de = federation.nodes["DE-NW"]
    old_kid = load_settings(de.config).node.signing_key_id
    old_file = load_settings(de.config).node.signing_key_file
    toml = de.config.read_bytes()
    done = _cli("keys", "rotate", "-c", str(de.config), "--overlap-days", "7")
    assert done.returncode == 0, done.stdout + done.stderr
    rotated = json.loads(done.stdout)
    new_kid = rotated["kid"]
    archived = old_file.parent / "retired-keys" / f"{old_kid}.key"
    assert rotated["previous_private_key"].startswith(f"archived to {archived}")
    assert not old_file.exists()
    assert archived.stat().st_mode & 0o777 == 0o600
    assert archived.parent.stat().st_mode & 0o777 == 0o700
    assert (old_file.parent / "public-keys" / f"{old_kid}.pub").exists()
    assert de.config.read_bytes() == toml  # the rotation is in the ledger, not the file

    async def be_keys() -> dict[str, Any]:
        return await _pins(federation, "BE-NCCN", "DE-NW")

    async def pinned() -> bool:
        keys = await be_keys()
        return new_kid in keys and keys[old_kid]["not_after"] is not None
    await wait_until(pinned, 20, "BE-NCCN pinning DE-NW's new key")

    # The thief reads the archived key (as if stolen) and announces a key of their own.
    stolen = load_signing_key(archived, old_kid)
    thief = SigningKey(kid="DE-NW.thief", private=Ed25519PrivateKey.generate())
    now = datetime.now(UTC)
    takeover = envelope("DE-NW", ["BE-NCCN"], type="key-update", mode="actual",
                        priority="urgent", tlp="CLEAR", incident=None, body={
                            "new_key": {"kid": thief.kid,
                                        "public_key": public_key_text(thief.public())},
                            "previous_kid": new_kid, "previous_not_after": format_time(now)})
    await federation.inject("BE-NCCN", "DE-NW", sealed(takeover, stolen))

    async def refused() -> bool:
        # The security event is written before the rejection is stored: wait for both.
        _, events = await federation.api("BE-NCCN", "GET", "/v1/security-events")
        _, inbox = await federation.api("BE-NCCN", "GET",
                                        "/v1/inbox?from=DE-NW&type=key-update")
        return any(e["reason"] == "key_update_refused" and e["claimed_id"] == takeover["id"]
                   for e in events["items"]) and any(
                       i["id"] == takeover["id"] for i in inbox["items"])
    await wait_until(refused, 20, "BE-NCCN recording and storing the refused key-update")
    _, events = await federation.api("BE-NCCN", "GET", "/v1/security-events")
    event = next(e for e in events["items"] if e["claimed_id"] == takeover["id"])
    assert "signer-not-current" in event["detail"]
    assert event["claimed_sender"] == "DE-NW"
    _, inbox = await federation.api("BE-NCCN", "GET", "/v1/inbox?from=DE-NW&type=key-update")
    stored = next(i for i in inbox["items"] if i["id"] == takeover["id"])
    assert (stored["state"], stored["reason"]) == ("rejected", "key_not_valid")
    keys = await be_keys()
    assert thief.kid not in keys
    assert keys[new_kid]["not_after"] is None
    assert not keys[new_kid]["revoked"]
    page = await console_page(federation, "BE-NCCN", "/console")
    assert "Key update refused" in page
    assert "signer-not-current" in page

    # The genuine key keeps verifying; the thief's key never does.
    status, answer = await federation.api("DE-NW", "POST", "/v1/sitreps",
                                          {**EXAMPLE, "to": ["BE-NCCN"]})
    assert status == 202

    async def delivered() -> bool:
        _, view = await federation.api("DE-NW", "GET", f"/v1/messages/{answer['id']}")
        return view["recipients"][0]["state"] == "delivered"
    await wait_until(delivered, 20, "DE-NW's sitrep, signed with its new key, delivered")
    forged = envelope("DE-NW", ["BE-NCCN"])
    await federation.inject("BE-NCCN", "DE-NW", sealed(forged, thief))

    async def unknown_key() -> bool:
        _, events = await federation.api("BE-NCCN", "GET", "/v1/security-events")
        return any(e["reason"] == "unknown_key" and e["claimed_id"] == forged["id"]
                   for e in events["items"])
    await wait_until(unknown_key, 20, "BE-NCCN refusing the thief's key")
    _, inbox = await federation.api("BE-NCCN", "GET", "/v1/inbox?from=DE-NW")
    assert forged["id"] not in {i["id"] for i in inbox["items"]}
