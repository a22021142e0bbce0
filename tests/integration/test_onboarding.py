"""A fifth centre joins the running federation through the CLI, with no restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.adapters.provision import delete
from tests.integration.harness import EXAMPLE, TLS, Federation, free_base_port, wait_until

pytestmark = pytest.mark.broker


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def _ok(*args: str) -> str:
    done = _cli(*args)
    assert done.returncode == 0, f"crisisgw {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


async def test_fr_cogic_joins_with_init_cards_and_grants_without_restarting_be(
        federation: Federation, tmp_path: Path) -> None:
    """FR-COGIC: `init`, identity cards and grants exchanged through the CLI; BE-NCCN (not
    restarted) sends it a sitrep that reaches `delivered` with FR-COGIC's signed receipt."""
    await federation.wait_ready()
    be = federation.nodes["BE-NCCN"]
    be_pid = be.proc.pid if be.proc else None
    fr_dir = tmp_path / "fr"
    vhost, user = f"{federation.prefix}-fr-cogic", f"{federation.prefix}.FR-COGIC"
    port = free_base_port(1)
    broker = (["--amqp-url", f"amqps://{user}:frpassword123@{TLS.host}:{TLS.port}/{vhost}",
               "--broker-ca", str(TLS.ca_file)] if TLS else
              ["--amqp-url", f"amqp://{user}:frpassword123@127.0.0.1:5672/{vhost}"])
    _ok("init", "--centre", "FR-COGIC", "--name", "Centre opérationnel de gestion "
        "interministérielle des crises", "--country", "FR", *broker, "--dir", str(fr_dir),
        "--api-port", str(port))
    fr_config = fr_dir / "gateway.toml"
    (tmp_path / "fr.card").write_text(_ok("identity", "export", "-c", str(fr_config)))
    (tmp_path / "be.card").write_text(_ok("identity", "export", "-c", str(be.config)))
    _ok("peers", "grant", "FR-COGIC", "-c", str(be.config), "-o", str(tmp_path / "be-fr.json"))
    _ok("peers", "grant", "BE-NCCN", "-c", str(fr_config), "-o", str(tmp_path / "fr-be.json"))
    shown = _ok("peers", "add", str(tmp_path / "fr.card"), "-c", str(be.config),
                "--credentials", str(tmp_path / "fr-be.json"), "--groups", "eu", "--yes")
    assert "FR-COGIC" in shown
    _ok("peers", "add", str(tmp_path / "be.card"), "-c", str(fr_config),
        "--credentials", str(tmp_path / "be-fr.json"), "--yes")
    with (tmp_path / "fr.log").open("wb") as log:
        fr = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(fr_config),
                               "--log-format", "json"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        async def be_knows_fr() -> bool:
            _, peers = await federation.api("BE-NCCN", "GET", "/v1/peers")
            return "FR-COGIC" in {p["id"] for p in peers["peers"]}

        await wait_until(be_knows_fr, 15, "BE-NCCN picking up FR-COGIC without a restart")
        body = {**EXAMPLE, "to": ["FR-COGIC"], "releasable": ["eu"]}
        status, refused = await federation.api("BE-NCCN", "POST", "/v1/sitreps",
                                               {**body, "releasable": []})
        assert status == 422
        assert "release-marking" in refused["detail"]
        status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps", body)
        assert status == 202, answer

        async def delivered() -> bool:
            _, view = await federation.api("BE-NCCN", "GET", f"/v1/messages/{answer['id']}")
            return [r["state"] for r in view["recipients"]] == ["delivered"]

        await wait_until(delivered, 30, "FR-COGIC's delivered receipt at BE-NCCN")
        _, view = await federation.api("BE-NCCN", "GET", f"/v1/messages/{answer['id']}")
        assert [r["issuer"] for r in view["receipts"]] == ["FR-COGIC"]
        assert be.proc is not None
        assert be.proc.pid == be_pid
        assert be.proc.poll() is None
        listing = _ok("peers", "list", "-c", str(be.config))
        assert "FR-COGIC" in listing
        assert "eu" in listing
    finally:
        fr.terminate()
        fr.wait(timeout=20)
        _cli("peers", "remove", "FR-COGIC", "-c", str(be.config))
        await asyncio.sleep(2)  # BE-NCCN drops FR-COGIC again (other tests count peers)
        delete([vhost], [user, "FR-COGIC@BE-NCCN", "BE-NCCN@FR-COGIC"])


def test_peers_add_refuses_a_tampered_card(federation: Federation, tmp_path: Path) -> None:
    """A card whose content was changed after signing is refused with the reason."""
    card = json.loads(_ok("identity", "export", "-c", str(federation.nodes["NL-NCC"].config)))
    card["card"]["name"] = "Someone else"
    (tmp_path / "bad.card").write_text(json.dumps(card))
    done = _cli("peers", "add", str(tmp_path / "bad.card"), "-c",
                str(federation.nodes["BE-NCCN"].config), "--yes")
    assert done.returncode == 2
    assert "self-signature" in done.stderr
