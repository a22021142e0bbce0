"""The `crisisgw` command against a running node: send, status, keys."""

from __future__ import annotations

import asyncio
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


EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "cap"


def test_cap_import_prints_the_alert_message(tmp_path: Path) -> None:
    """`crisisgw cap import` turns an OASIS example into alert JSON with derived routing."""
    out = _cli("cap", "import", str(EXAMPLES / "oasis-appendix-a2.xml"))
    assert out.returncode == 0, out.stderr
    message = json.loads(out.stdout)
    assert message["alert"]["identifier"] == "KSTO1055887203"
    assert message["mode"] == "actual"
    assert message["priority"] in ("routine", "urgent", "flash")
    assert message["alert"]["infos"][0]["event"] == "SEVERE THUNDERSTORM"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.xml")))
def test_cap_import_pipes_into_cap_export_unchanged(name: str) -> None:
    """`crisisgw cap import X.xml | crisisgw cap export -` gives back the same alert."""
    from gateway.formats.cap import parse_cap  # noqa: PLC0415

    cli = f"{sys.executable} -m gateway"
    done = subprocess.run(["bash", "-c", f'set -o pipefail; {cli} cap import "$1" | '
                           f"{cli} cap export -", "-", str(EXAMPLES / name)],
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert parse_cap(done.stdout) == parse_cap((EXAMPLES / name).read_bytes())


def test_cap_export_says_what_it_expects() -> None:
    """Anything but a message or an import's output is refused with a clear error."""
    done = subprocess.run([sys.executable, "-m", "gateway", "cap", "export", "-"],
                          input='{"sitrep": {}}', capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode != 0
    assert "output of `crisisgw cap import`" in done.stdout + done.stderr


def test_cap_import_refuses_an_invalid_document_naming_the_line(tmp_path: Path) -> None:
    """An invalid CAP file exits 2 with the line and element in the message."""
    bad = tmp_path / "bad.xml"
    bad.write_text((EXAMPLES / "oasis-appendix-a2.xml").read_text()
                   .replace("<scope>Public</scope>", "<scope>Everyone</scope>"))
    out = _cli("cap", "import", str(bad))
    assert out.returncode == 2
    assert "line" in out.stderr
    assert "scope" in out.stderr


async def test_cap_import_send_then_cap_and_edxl_export(federation: Federation,
                                                        tmp_path: Path) -> None:
    """`cap import --send` delivers; `cap export` and `edxl export` of the fetched message
    validate, and the CAP export equals the original alert."""
    from gateway.formats.cap import parse_cap  # noqa: PLC0415 - keeps collection light
    from gateway.formats.xml import parse_safely, validate  # noqa: PLC0415

    await federation.wait_ready()
    be = federation.nodes["BE-NCCN"]
    original = EXAMPLES / "oasis-appendix-a4.xml"
    sent = _cli("cap", "import", str(original), "--send", "-c", str(be.config),
                "--to", "NL-NCC", "--tlp", "GREEN")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    message_id = json.loads(sent.stdout)["id"]

    async def arrived() -> bool:
        status, _ = await federation.api("NL-NCC", "GET", f"/v1/messages/{message_id}")
        return status == 200

    await wait_until(arrived, 15, "the alert at NL-NCC")
    _, view = await federation.api("NL-NCC", "GET", f"/v1/messages/{message_id}")
    saved = tmp_path / "message.json"
    saved.write_text(json.dumps(view), encoding="utf-8")
    cap = _cli("cap", "export", str(saved), "-o", str(tmp_path / "out.xml"))
    assert cap.returncode == 0, cap.stderr
    assert parse_cap((tmp_path / "out.xml").read_bytes()) == parse_cap(original.read_bytes())
    edxl = _cli("edxl", "export", str(saved))
    assert edxl.returncode == 0, edxl.stderr
    validate(parse_safely(edxl.stdout.encode()), "edxl-de-1.0.xsd")


def test_operators_set_password_writes_an_argon2_hash_that_logs_in(
        federation: Federation, tmp_path: Path) -> None:
    """`crisisgw operators set-password` stores an argon2id hash the console accepts."""
    import asyncio  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    from gateway.config import load_settings  # noqa: PLC0415
    from gateway.web.console.auth import Operators  # noqa: PLC0415

    node_dir = tmp_path / "node"
    shutil.copytree(federation.nodes["BE-NCCN"].config.parent, node_dir,
                    ignore=shutil.ignore_patterns("data", "node.log"))
    config = node_dir / "gateway.toml"
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "operators", "set-password", "alice", "-c", str(config),
         "--role", "viewer", "--password-stdin"], input="correct horse battery\n",
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    settings = load_settings(config)
    alice = next(o for o in settings.console.operators if o.name == "alice")
    assert alice.role == "viewer"
    assert alice.password_hash.get_secret_value().startswith("$argon2id$")
    assert "correct horse" not in config.read_text()
    operators = Operators(settings.console.operators)
    assert asyncio.run(operators.verify("alice", "correct horse battery")) is not None
    assert asyncio.run(operators.verify("alice", "wrong")) is None
    short = subprocess.run(
        [sys.executable, "-m", "gateway", "operators", "set-password", "bob", "-c", str(config),
         "--password-stdin"], input="short\n", capture_output=True, text=True, timeout=60,
        check=False)
    assert short.returncode == 2


async def test_commcheck_reports_every_peer_and_a_stopped_one_as_unreachable(
        federation: Federation) -> None:
    """`crisisgw commcheck --json` lists every peer; DE-NW, stopped, is unreachable."""
    await federation.wait_ready()
    config = str(federation.nodes["BE-NCCN"].config)
    federation.stop("DE-NW")
    try:
        done = await asyncio.to_thread(_cli, "commcheck", "-c", config, "--json", "--wait", "6")
    finally:
        federation.start("DE-NW")
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    peers = {p["peer"]: p for p in report["peers"]}
    assert set(peers) == {"NL-NCC", "LU-HCPN", "DE-NW"}
    for centre in ("NL-NCC", "LU-HCPN"):
        assert peers[centre]["reached"] is True
        assert peers[centre]["receipt_verified"] is True
        assert peers[centre]["round_trip_s"] < 6
    assert peers["DE-NW"]["reached"] is False
    assert peers["DE-NW"]["failure"].startswith("unreachable")
    await federation.wait_ready()
    status, inbox = await federation.api("NL-NCC", "GET", "/v1/inbox?type=commcheck")
    item = next(m for m in inbox["items"] if m["id"] == report["id"])
    assert item["mode"] == "test"
    status, _ = await federation.api("NL-NCC", "POST", f"/v1/messages/{report['id']}/ack",
                                     {"by": "duty officer NL"})
    assert status == 200

    async def confirmed() -> bool:
        _, again = await federation.api("BE-NCCN", "GET", f"/v1/commchecks/{report['id']}")
        nl = next(p for p in again["peers"] if p["peer"] == "NL-NCC")
        return nl["confirmed_after_s"] is not None and nl["confirmed_by"] == "duty officer NL"

    await wait_until(confirmed, 15, "the human leg confirmed at BE-NCCN")
    status, csv_text = await federation.api("BE-NCCN", "GET", "/v1/commchecks/history.csv")
    assert status == 200
    assert report["id"] in csv_text
    status, page = await federation.api("BE-NCCN", "GET", "/v1/commchecks/report.html")
    assert status == 200
    assert "<svg" in page
