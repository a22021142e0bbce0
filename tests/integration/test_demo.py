"""The README's demo command, run for real: ready nodes, the example delivered, clean Ctrl-C."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.adapters.provision import delete
from gateway.demo import CENTRES, peer_user
from tests.integration.harness import EXAMPLE, free_base_port, wait_until

pytestmark = pytest.mark.broker


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """Read the demo's stdout until ``marker`` appears."""
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"demo never printed {marker!r}; got:\n{''.join(seen)}")


def _cards_and_credentials_follow_the_schemas(demo: Path) -> None:
    """Each demo centre's exported identity card, and credentials granted by one of them,
    validate against schemas/ (what docs/PROTOCOL.md §15 specifies)."""
    import jsonschema  # noqa: PLC0415

    root = Path(__file__).resolve().parents[2] / "schemas"
    card_schema = json.loads((root / "identity-card.schema.json").read_text())
    cred_schema = json.loads((root / "credentials.schema.json").read_text())
    for centre in CENTRES:
        config = demo / centre.id / "gateway.toml"
        card = subprocess.run([sys.executable, "-m", "gateway", "identity", "export", "-c",
                               str(config)], capture_output=True, text=True, timeout=60,
                              check=True).stdout
        parsed = json.loads(card)
        jsonschema.Draft202012Validator(card_schema).validate(parsed)
        assert "BEGIN CERTIFICATE" in parsed["card"]["inbox"]["tls"]["ca"]
    out = demo / "grant.json"
    try:
        subprocess.run([sys.executable, "-m", "gateway", "peers", "grant", "XX-SCHEMA", "-c",
                        str(demo / "BE-NCCN" / "gateway.toml"), "-o", str(out)],
                       capture_output=True, timeout=60, check=True)
        granted = json.loads(out.read_text())
        jsonschema.Draft202012Validator(cred_schema).validate(granted)
        assert granted["url"].startswith("amqps://")
    finally:
        delete([], ["XX-SCHEMA@BE-NCCN"])


async def _console(http: aiohttp.ClientSession, demo: Path, centre: str, port: int) -> str:
    """Log in to a demo centre's console as its operator; its base URL."""
    base = f"http://127.0.0.1:{port}"
    password = (demo / centre / "operator-password").read_text().strip()
    async with http.get(f"{base}/console/login") as resp:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
    assert token is not None
    async with http.post(f"{base}/console/login", allow_redirects=False, data={
            "csrf_token": token.group(1), "name": "operator", "password": password}) as resp:
        assert resp.status == 303
    return base


async def _fallback_round_trip(demo: Path, base: int) -> None:
    """A communication test on the demo: each peer's one-time code lands in the demo
    mailbox, its duty officer follows the e-mail's link and confirms it in its own
    console, and BE-NCCN's trend page shows the fallback working for all three."""
    token = (demo / "BE-NCCN" / "api-token").read_text().strip()
    peers = {c.id: base + i for i, c in enumerate(CENTRES) if c.id != "BE-NCCN"}
    contacts = {p: f"communication@{p.lower().replace('-', '')}.example" for p in peers}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as api:
        async def knows_peers() -> bool:
            async with api.get(f"http://127.0.0.1:{base}/v1/directory") as r:
                held = {x.get("email") for x in (await r.json())["items"]}
            return set(contacts.values()) <= held
        await wait_until(knows_peers, 30, "BE-NCCN holding its peers' contact points")
        async with api.post(f"http://127.0.0.1:{base}/v1/commchecks", json={}) as resp:
            assert resp.status == 202
            check = (await resp.json())["id"]

        def mails() -> dict[str, str]:
            found = {}
            for path in sorted((demo / "mail").glob("*.eml")):
                mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                assert isinstance(mail, email.message.EmailMessage)
                text = mail.get_content()
                for peer, address in contacts.items():
                    if f"-{address}.eml" in path.name and check in text:
                        found[peer] = text
            return found

        async def mailed() -> bool:
            return len(mails()) == len(peers)
        await wait_until(mailed, 20, "a code for each peer in the demo mailbox")
        for peer, text in mails().items():
            link = re.search(r"(/console/fallback\?\S+)", text)
            assert link is not None, f"{peer}: no link to its console"
            async with aiohttp.ClientSession(
                    cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                console = await _console(http, demo, peer, peers[peer])
                async with http.get(console + link.group(1)) as resp:
                    page = await resp.text()
                form = re.search(r'<tr data-test="BE-NCCN\|' + check + r'".*?</tr>', page, re.S)
                assert form is not None, f"{peer}: the test is not listed"
                code = re.search(r'name="code"[^>]*value="([^"]+)"', form.group(0))
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.group(0))
                assert code is not None, f"{peer}: the link did not fill the code in"
                assert csrf is not None
                async with http.post(f"{console}/console/fallback", allow_redirects=False,
                                     data={"csrf_token": csrf.group(1), "from": "BE-NCCN",
                                           "check": check, "code": code.group(1)}) as resp:
                    assert resp.status == 303

        async def confirmed() -> bool:
            async with api.get(f"http://127.0.0.1:{base}/v1/commchecks/{check}") as r:
                rep = await r.json()
            return {p["fallback"] for p in rep["peers"]} == {"confirmed"}
        await wait_until(confirmed, 20, "BE-NCCN recording the three fallback codes")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        console = await _console(http, demo, "BE-NCCN", base)
        async with http.get(f"{console}/console/commchecks") as resp:
            page = await resp.text()
    for peer in peers:
        row = re.search(r'<tr data-score="[0-9]{4}-Q[1-4]\|' + peer + '".*?</tr>', page, re.S)
        assert row is not None, f"{peer}: no scorecard row"
        assert "<td data-fallback>1/1</td>" in row.group(0)
    assert page.count("<svg") == 3


async def test_demo_runs_delivers_the_example_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """`crisisgw demo` starts 4 nodes, the example reaches `delivered`, Ctrl-C stops all."""
    prefix = f"tdemo{secrets.token_hex(2)}"
    base = free_base_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--dir", str(tmp_path / "demo"),
         "--base-port", str(base), "--broker-prefix", prefix],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        # No PYTHONUNBUFFERED: the demo itself must write line by line into a pipe
        # (`run-demo.sh | tee demo.log`).
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"})
    try:
        out = _read_until(proc, "Ctrl-C stops the federation", 120)
        for index, centre in enumerate(("BE-NCCN", "NL-NCC", "LU-HCPN", "DE-NW")):
            assert f"{centre}" in out
            assert f"http://127.0.0.1:{base + index}" in out
        assert "curl -sS -X POST" in out
        token = (tmp_path / "demo" / "BE-NCCN" / "api-token").read_text().strip()
        assert (tmp_path / "demo" / "NL-NCC" / "gateway.toml").exists()
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"http://127.0.0.1:{base}/v1/sitreps", json=EXAMPLE) as resp:
                assert resp.status == 202
                message_id = (await resp.json())["id"]

            async def delivered() -> bool:
                async with http.get(f"http://127.0.0.1:{base}/v1/messages/{message_id}") as r:
                    view = await r.json()
                return {x["state"] for x in view["recipients"]} == {"delivered"}

            await wait_until(delivered, 15, "the example delivered to all three peers")
        assert "Every link is AMQPS" in out
        assert "Demo mailbox: smtp://127.0.0.1:" in out
        await _fallback_round_trip(tmp_path / "demo", base)
        listed = subprocess.run(["rabbitmqctl", "-q", "list_connections", "user", "ssl",
                                 "--formatter", "json"], capture_output=True, text=True,
                                timeout=60, check=True)
        ours = [c for c in json.loads(listed.stdout) if c["user"].startswith(f"{prefix}.")]
        users = {c["user"] for c in ours}
        assert {f"{prefix}.{c.id}" for c in CENTRES} <= users  # each node's own inbox
        assert {f"{prefix}.BE-NCCN@{c.id}" for c in CENTRES if c.id != "BE-NCCN"} <= users
        assert all(c["ssl"] is True for c in ours), ours
        _cards_and_credentials_follow_the_schemas(tmp_path / "demo")
        for centre in CENTRES:
            cdir = tmp_path / "demo" / centre.id
            assert (cdir / "node.log").stat().st_mode & 0o777 == 0o600
            assert (cdir / "data").stat().st_mode & 0o777 == 0o700
            for f in (cdir / "data").iterdir():
                assert f.stat().st_mode & 0o077 == 0, f
        children = subprocess.run(["pgrep", "-g", str(os.getpgid(proc.pid)), "-f",
                                   "gateway run"], capture_output=True, text=True, check=False)
        assert len(children.stdout.split()) == 4
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert proc.wait(timeout=30) == 0
        left = subprocess.run(["pgrep", "-g", str(proc.pid), "-f", "gateway run"],
                              capture_output=True, text=True, check=False)
        assert left.stdout.strip() == ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        users = [f"{prefix}.{c.id}" for c in CENTRES]
        users += [peer_user(a.id, b.id, f"{prefix}.") for a in CENTRES for b in CENTRES
                  if a.id != b.id]
        delete([c.vhost(prefix) for c in CENTRES], users)
