"""The `crisisgw` command against a running node: send, status, keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.protocol.keys import public_key_from_text
from tests.integration.harness import EXAMPLE, Federation, wait_until

pytestmark = pytest.mark.broker


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60, check=False)


async def test_send_then_status_shows_each_recipient(federation: Federation,
                                                     tmp_path: Path) -> None:
    """`crisisgw send FILE -c CONFIG` submits; `crisisgw status ID` lists the recipients."""
    await federation.wait_ready()
    body = tmp_path / "sitrep.json"
    body.write_text(json.dumps(EXAMPLE), encoding="utf-8")
    config = str(federation.nodes["BE-NCCN"].config)
    sent = _cli("send", str(body), "-c", config)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    message_id = json.loads(sent.stdout)["id"]

    async def delivered() -> bool:
        out = _cli("status", message_id, "-c", config, "--json")
        view = json.loads(out.stdout)
        return {r["state"] for r in view["recipients"]} == {"delivered"}

    await wait_until(delivered, 15, "delivery seen through `crisisgw status`")
    table = _cli("status", message_id, "-c", config)
    assert table.returncode == 0
    for centre in ("NL-NCC", "LU-HCPN", "DE-NW"):
        assert any(line.split()[:2] == [centre, "delivered"] for line in table.stdout.splitlines())


async def test_send_of_an_invalid_file_exits_non_zero_with_the_problem(
        federation: Federation, tmp_path: Path) -> None:
    """An invalid submission prints the problem naming the field and exits 1."""
    await federation.wait_ready()
    body = tmp_path / "bad.json"
    body.write_text(json.dumps({**EXAMPLE, "to": ["XX-NONE"]}), encoding="utf-8")
    out = _cli("send", str(body), "-c", str(federation.nodes["BE-NCCN"].config))
    assert out.returncode == 1
    assert "XX-NONE" in out.stdout


def test_keys_generate_writes_a_private_key_and_prints_the_public_one(tmp_path: Path) -> None:
    """`crisisgw keys generate` writes a 0600 PEM and prints a usable public key."""
    target = tmp_path / "k.pem"
    out = _cli("keys", "generate", "--centre", "FR-COGIC", "--out", str(target))
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["kid"].startswith("FR-COGIC.")
    public_key_from_text(printed["public_key"])
    assert target.stat().st_mode & 0o777 == 0o600
    again = _cli("keys", "generate", "--centre", "FR-COGIC", "--out", str(target))
    assert again.returncode == 2
    assert "never overwritten" in again.stderr
