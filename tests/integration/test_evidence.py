"""Audit log, checkpoints and evidence bundles on real nodes of the test federation."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w

from gateway.protocol.evidence import BundleRefused, verify_bundle
from tests.integration.harness import Federation, wait_until

pytestmark = pytest.mark.broker


def crisisgw(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI."""
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60, check=False)


async def _acknowledged_sitrep(federation: Federation) -> str:
    await federation.wait_ready()
    body = {"to": ["NL-NCC", "LU-HCPN", "DE-NW"], "tlp": "GREEN",
            "sitrep": {"incident": {"id": "BE-EVIDENCE", "title": "Evidence"},
                       "report_number": 1, "severity": "severe", "summary": "Dyke breach."}}
    status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps", body)
    assert status == 202, answer
    message_id = str(answer["id"])

    async def delivered() -> bool:
        _, view = await federation.api("BE-NCCN", "GET", f"/v1/messages/{message_id}")
        return {r["state"] for r in view["recipients"]} == {"delivered"}

    await wait_until(delivered, 30, "delivered everywhere")
    status, _ = await federation.api("NL-NCC", "POST", f"/v1/messages/{message_id}/ack",
                                     {"by": "duty officer Jansen"})
    assert status == 200

    async def acknowledged() -> bool:
        _, view = await federation.api("BE-NCCN", "GET", f"/v1/messages/{message_id}")
        return any(r["state"] == "acknowledged" for r in view["recipients"])

    await wait_until(acknowledged, 30, "acknowledged by NL-NCC")
    return message_id


async def test_bundle_exported_by_the_sender_verifies_offline_and_every_flipped_byte_is_refused(
        federation: Federation, tmp_path: Path) -> None:
    """Export at BE-NCCN, verify with the CLI, then flip each byte: always refused."""
    message_id = await _acknowledged_sitrep(federation)
    out = tmp_path / "evidence.json"
    be = federation.nodes["BE-NCCN"]
    done = await asyncio.to_thread(crisisgw, "evidence", "export", message_id, "-c",
                                   str(be.config), "-o", str(out))
    assert done.returncode == 0, done.stderr
    checked = await asyncio.to_thread(crisisgw, "verify", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = checked.stdout
    assert "VERIFIED" in text
    assert message_id in text
    assert "NL-NCC: delivered" in text
    assert "acknowledged" in text
    assert "Jansen" in text
    for peer in ("LU-HCPN", "DE-NW"):
        assert f"{peer}: delivered" in text
    pinned = await asyncio.to_thread(crisisgw, "verify", str(out), "-c", str(be.config))
    assert pinned.returncode == 0
    assert "pinned in your configuration" in pinned.stdout

    data = out.read_bytes()
    reasons: set[str] = set()
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        with pytest.raises(BundleRefused) as refused:
            verify_bundle(bytes(flipped))
        assert str(refused.value)
        reasons.add(str(refused.value).split(":")[0])
    assert len(reasons) >= 2, reasons

    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x04
    (tmp_path / "tampered.json").write_bytes(bytes(flipped))
    refused_cli = await asyncio.to_thread(crisisgw, "verify", str(tmp_path / "tampered.json"))
    assert refused_cli.returncode == 1
    assert refused_cli.stdout.startswith("REFUSED: ")


async def test_bundle_exported_by_a_recipient_holds_its_own_receipts(
        federation: Federation, tmp_path: Path) -> None:
    """NL-NCC's bundle shows the message it received and the receipts it signed."""
    message_id = await _acknowledged_sitrep(federation)
    out = tmp_path / "nl.json"
    nl = federation.nodes["NL-NCC"]
    done = await asyncio.to_thread(crisisgw, "evidence", "export", message_id, "-c",
                                   str(nl.config), "-o", str(out))
    assert done.returncode == 0, done.stderr
    checked = await asyncio.to_thread(crisisgw, "verify", str(out), "-c", str(nl.config))
    assert checked.returncode == 0, checked.stdout
    assert "sent by BE-NCCN" in checked.stdout
    assert "receipt.issued" in checked.stdout
    assert "message.received" in checked.stdout


async def test_audit_verify_reports_the_first_broken_link(
        federation: Federation, tmp_path: Path) -> None:
    """`crisisgw audit verify` passes on a live ledger and names an altered entry."""
    await _acknowledged_sitrep(federation)
    lu = federation.nodes["LU-HCPN"]
    status, checkpoint = await federation.api("LU-HCPN", "GET", "/v1/audit/checkpoint")
    assert status == 200
    assert checkpoint["checkpoint"]["centre"] == "LU-HCPN"
    ok = await asyncio.to_thread(crisisgw, "audit", "verify", "-c", str(lu.config))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "audit chain intact" in ok.stdout
    assert "checkpoints checked" in ok.stdout
    status, page = await federation.api("LU-HCPN", "GET", "/v1/audit?kind=message.received")
    assert status == 200
    assert page["items"]

    # Work on a copy: the running node keeps its own ledger intact.
    copy = tmp_path / "lu"
    copy.mkdir()
    src = sqlite3.connect(lu.settings.node.data_dir / "ledger.sqlite3")
    dst = sqlite3.connect(copy / "ledger.sqlite3")
    src.backup(dst)
    src.close()
    victim = page["items"][-1]["seq"]
    dst.execute("UPDATE audit_log SET content = replace(content, 'delivered', 'rejected') "
                "WHERE seq = ?", (victim,))
    dst.commit()
    dst.close()
    raw = tomllib.loads(lu.config.read_text())
    raw["node"]["data_dir"] = str(copy)
    raw["node"]["signing_key_file"] = str(lu.settings.node.signing_key_file)
    config = copy / "gateway.toml"
    config.write_bytes(tomli_w.dumps(raw).encode())
    broken = await asyncio.to_thread(crisisgw, "audit", "verify", "-c", str(config))
    assert broken.returncode == 1
    assert f"BROKEN at entry #{victim}" in broken.stdout
