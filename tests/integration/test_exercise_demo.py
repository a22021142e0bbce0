"""Exercises on the demo federation, run for real: `crisisgw exercise run` plays the
shipped 12-inject scenario from BE-NCCN, NL-NCC and LU-HCPN through the four demo
nodes; duty officers read and acknowledge some injects; the after-action report (JSON,
CSV, HTML) lists every inject with its delivered and acknowledged times per centre; a
second run is paused, resumed and stopped; a real incident is replayed as an exercise;
and no exercise message shows in a real count, board or map."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.adapters.provision import delete
from gateway.demo import CENTRES, peer_user
from tests.integration.harness import EXAMPLE, free_base_port, wait_until

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "deploy" / "exercises" / "meuse-flood.toml"
BE, NL, LU, DE = (c.id for c in CENTRES)


@dataclass
class Demo:
    root: Path
    base: int

    def port(self, centre: str) -> int:
        return self.base + [c.id for c in CENTRES].index(centre)

    def token(self, centre: str) -> str:
        return (self.root / centre / "api-token").read_text().strip()

    async def api(self, centre: str, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as http, http.request(
                method, f"http://127.0.0.1:{self.port(centre)}{path}", json=body,
                headers={"Authorization": f"Bearer {self.token(centre)}"}) as resp:
            answer = await resp.json(content_type=None) if "json" in resp.content_type \
                else await resp.text()
            assert resp.status // 100 == 2, (method, path, resp.status, answer)
            return answer

    async def console(self, centre: str, path: str) -> str:
        """A console page as the centre's operator sees it (each call logs in)."""
        base = f"http://127.0.0.1:{self.port(centre)}"
        password = (self.root / centre / "operator-password").read_text().strip()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{base}/console/login") as resp:
                token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
            assert token is not None
            async with http.post(f"{base}/console/login", allow_redirects=False, data={
                    "csrf_token": token.group(1), "name": "operator",
                    "password": password}) as resp:
                assert resp.status == 303
            async with http.get(f"{base}{path}") as resp:
                assert resp.status == 200, path
                return await resp.text()

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "exercise", *args, "-c",
             str(self.root / BE / "gateway.toml")], capture_output=True, text=True,
            timeout=timeout, check=False)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """`crisisgw demo` running: four nodes, every link TLS, the demo mailbox."""
    prefix = f"tex{secrets.token_hex(2)}"
    base = free_base_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--dir", str(tmp_path / "demo"),
         "--base-port", str(base), "--broker-prefix", prefix],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        deadline, seen = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if not line or "Ctrl-C stops the federation" in line:
                break
        assert "Ctrl-C stops the federation" in "".join(seen), "".join(seen)
        yield Demo(root=tmp_path / "demo", base=base)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        users = [f"{prefix}.{c.id}" for c in CENTRES]
        users += [peer_user(a.id, b.id, f"{prefix}.") for a in CENTRES for b in CENTRES
                  if a.id != b.id]
        delete([c.vhost(prefix) for c in CENTRES], users)


async def test_a_twelve_inject_exercise_runs_on_the_demo_with_its_after_action_report(
        demo: Demo) -> None:
    """The shipped scenario's 12 injects from 3 centres all go out; the report gives each
    its delivered, read and acknowledged times per centre; no real board shows them."""
    real = await demo.api(BE, "POST", "/v1/sitreps", {**EXAMPLE, "priority": "urgent"})

    # the scenario, played by the CLI at 600x (its 120 minutes in 12 s)
    played = demo.cli("run", str(SCENARIO), "--speed", "600")
    assert played.returncode == 0, played.stdout + played.stderr
    lines = [x for x in played.stdout.splitlines() if x.startswith("  minute")]
    assert len(lines) == 12
    assert "exercise finished: 12/12 injects sent" in played.stdout
    run_id = re.search(r"exercise ([0-9a-f-]{36}) started", played.stdout)
    assert run_id is not None
    run = await demo.api(BE, "GET", f"/v1/exercises/{run_id.group(1)}")
    assert run["status"] == "finished"

    # NL-NCC acknowledges what it received; LU-HCPN's duty officer opens one inject
    injects = {i["index"]: i for i in run["injects"]}
    for i in run["injects"]:
        if NL in i["to"]:
            async def arrived(i: dict[str, Any] = i) -> bool:
                inbox = await demo.api(NL, "GET", f"/v1/inbox?from={i['from']}&limit=200")
                return any(m["id"] == i["message_id"] for m in inbox["items"])
            await wait_until(arrived, 15, f"inject {i['index']} at NL-NCC")
            await demo.api(NL, "POST", f"/v1/messages/{i['message_id']}/ack?from={i['from']}",
                           {"by": "NL duty officer"})
    page = await demo.console(LU, f"/console/messages/{injects[0]['message_id']}")
    assert "This message is not about a real event." in page

    async def acknowledged() -> bool:
        rep = await demo.api(BE, "GET", f"/v1/exercises/{run['id']}/report.json")
        return all(r["acknowledged_at"] for i in rep["injects"] for r in i["recipients"]
                   if r["centre"] == NL)
    await wait_until(acknowledged, 20, "NL-NCC's acknowledgements back at each sender")
    rep = await demo.api(BE, "GET", f"/v1/exercises/{run['id']}/report.json")
    assert len(rep["injects"]) == 12
    assert {i["from"] for i in rep["injects"]} == {BE, NL, LU}
    for i in rep["injects"]:
        assert i["message_id"], i
        assert i["recipients"], i
        for r in i["recipients"]:
            assert r["delivered_at"], (i["index"], r)
            assert r["delivered_after_s"] is not None
            assert (r["acknowledged_at"] is not None) == (r["centre"] == NL), (i["index"], r)
    lu = next(r for r in rep["injects"][0]["recipients"] if r["centre"] == LU)
    assert (lu["read_by"], lu["read_known"]) == ("operator", True)
    kpi = {k["centre"]: k for k in rep["kpis"]}
    assert (kpi[BE]["sent"], kpi[NL]["sent"], kpi[LU]["sent"]) == (5, 4, 3)
    assert kpi[NL]["acknowledged"] == kpi[NL]["received"] == 6
    assert kpi[LU]["read"] == 1
    rows = list(csv.DictReader(io.StringIO(
        await demo.api(BE, "GET", f"/v1/exercises/{run['id']}/report.csv"))))
    assert len(rows) == sum(len(i["recipients"]) for i in rep["injects"])
    assert {r["recipient"] for r in rows if r["acknowledged_by"]} == {NL}
    printable = await demo.console(BE, f"/console/exports/exercises/{run['id']}/report.html")
    for i in rep["injects"]:
        assert f"id='inject-{i['index']}'" in printable
    assert "Meuse flood 2026" in await demo.console(BE, f"/console/exercises/{run['id']}")

    # no exercise message in a real count, board or map
    for centre in (NL, LU):
        overview = await demo.console(centre, "/console")
        assert "EXM-MEUSE-1" not in overview
        assert "Evacuate the Meuse riverbanks" not in overview
        board = await demo.console(centre, "/console/incidents")
        assert "EXM-MEUSE-1" not in board.split('id="exercise-incidents"')[0]
    assert "BE-2026-0001" in await demo.console(NL, "/console/incidents")
    assert real["id"]


async def test_an_exercise_pauses_resumes_and_stops_and_a_real_incident_replays(
        demo: Demo) -> None:
    """A paused run sends nothing until resumed, a stopped one nothing more, and a real
    incident of two centres replays with its texts, each part from its own centre."""
    await demo.api(BE, "POST", "/v1/sitreps", EXAMPLE)
    reply = {"to": [BE], "tlp": "GREEN", "priority": "urgent", "sitrep": {
        "incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
        "report_number": 1, "severity": "severe", "summary": "Maastricht on alert."}}
    await demo.api(NL, "POST", "/v1/sitreps", reply)

    async def thread_complete() -> bool:
        thread = await demo.api(BE, "GET", "/v1/incidents/BE-2026-0001")
        return len(thread["timeline"]) == 2
    await wait_until(thread_complete, 15, "both sitreps on BE-NCCN's incident")

    # pause at once, nothing more goes out, resume, then stop before the end
    started = demo.cli("run", str(SCENARIO), "--speed", "60", "--detach")
    assert started.returncode == 0, started.stderr
    match = re.search(r"exercise ([0-9a-f-]{36}) started", started.stdout)
    assert match is not None
    run_id = match.group(1)
    assert demo.cli("pause", run_id).returncode == 0
    held = (await demo.api(BE, "GET", f"/v1/exercises/{run_id}"))["sent"]
    await asyncio.sleep(2.5)
    run = await demo.api(BE, "GET", f"/v1/exercises/{run_id}")
    assert (run["status"], run["sent"]) == ("paused", held)
    assert demo.cli("resume", run_id).returncode == 0

    async def second_inject() -> bool:
        return (await demo.api(BE, "GET", f"/v1/exercises/{run_id}"))["sent"] >= 2
    await wait_until(second_inject, 20, "injects going out again after resume")
    stopped = demo.cli("stop", run_id)
    assert stopped.returncode == 0, stopped.stdout
    run = await demo.api(BE, "GET", f"/v1/exercises/{run_id}")
    assert run["status"] == "stopped"
    await asyncio.sleep(2)
    assert (await demo.api(BE, "GET", f"/v1/exercises/{run_id}"))["sent"] == run["sent"] < 12
    assert "stopped" in demo.cli("resume", run_id).stdout

    # the real incident replayed: both centres' texts, relative order, exercise mode
    replay = demo.cli("replay", "BE-2026-0001", "--speed", "600")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "exercise finished: 2/2 injects sent" in replay.stdout

    async def replayed() -> bool:
        inbox = await demo.api(NL, "GET", "/v1/inbox?incident=EX-BE-2026-0001&limit=10")
        return len(inbox["items"]) == 1
    await wait_until(replayed, 15, "the replayed BE-NCCN sitrep at NL-NCC")
    item = (await demo.api(NL, "GET", "/v1/inbox?incident=EX-BE-2026-0001&limit=10"))["items"][0]
    assert item["mode"] == "exercise"
    assert item["body"]["summary"] == {"und": "Water levels rising at Liège."}
    at_be = await demo.api(BE, "GET", "/v1/inbox?incident=EX-BE-2026-0001&limit=10")
    assert [m["from"] for m in at_be["items"]] == [NL], "NL-NCC's part replayed by its node"
    assert at_be["items"][0]["body"]["summary"] == {"und": "Maastricht on alert."}
