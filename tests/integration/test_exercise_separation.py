"""Exercise traffic kept apart from real traffic, on real nodes and the real broker: a real
and an exercise flash sitrep and a real and an exercise CAP alert with an area go from
BE-NCCN to NL-NCC (its ledger on each engine). At NL-NCC the exercise ones are in no real
count (the Inbox badge of the live feed, the overdue problem, the alarms), not on the
real incident board (console and API) nor on the overview's map, but on the exercise
board and its map; every page carries the EXERCISE banner. The real ones are where they
always were."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.integration.harness import EXAMPLE, Federation, console_page, wait_until

pytestmark = pytest.mark.broker
BE, NL = "BE-NCCN", "NL-NCC"
REAL, DRILL = "BE-2026-0101", "BE-2026-0909"
CAP = (Path(__file__).resolve().parents[1] / "assets" / "cap" / "oasis-appendix-a2.xml"
       ).read_bytes()


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def fed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Federation]:
    """BE-NCCN and NL-NCC running (NL-NCC's ledger on each engine), flash deadline 2 s."""
    overrides = {"console": {"deadlines": {"flash": 2, "urgent": 900, "routine": 14400}}}
    if request.param == "postgresql":
        federation = Federation.create(tmp_path / "fed", overrides,
                                       postgres=request.getfixturevalue("postgres"),
                                       on_postgres=(NL,))
    else:
        federation = Federation.create(tmp_path / "fed", overrides)
    try:
        federation.start(BE, NL)
        await federation.wait_ready()
        yield federation
    finally:
        federation.destroy()


async def _sitrep(fed: Federation, incident: str, mode: str) -> str:
    body = {**EXAMPLE, "to": [NL], "priority": "flash", "mode": mode,
            "sitrep": {**EXAMPLE["sitrep"], "incident": {"id": incident, "title": incident}}}
    status, answer = await fed.api(BE, "POST", "/v1/sitreps", body)
    assert status == 202, answer
    return str(answer["id"])


async def _alert(fed: Federation, incident: str, status_text: str) -> str:
    cap = CAP.replace(b"<status>Actual</status>", f"<status>{status_text}</status>".encode())
    status, answer = await fed.api(
        BE, "POST", f"/v1/alerts?to={NL}&tlp=GREEN&priority=urgent&incident={incident}",
        raw=cap, headers={"Content-Type": "application/cap+xml"})
    assert status == 202, answer
    return str(answer["id"])


async def _inbox(fed: Federation, query: str = "") -> set[str]:
    status, page = await fed.api(NL, "GET", f"/v1/inbox?limit=1000{query}")
    assert status == 200, page
    return {m["id"] for m in page["items"]}


async def _first_event(fed: Federation, page: str) -> dict[str, Any]:
    """The first live event of NL-NCC's console for ``page``, as the operator's browser
    gets it from /console/events."""
    node = fed.nodes[NL]
    base = f"http://127.0.0.1:{node.port}"
    password = (node.config.parent / "operator-password").read_text().strip()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/console/login") as resp:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
        assert token is not None
        async with http.post(f"{base}/console/login", allow_redirects=False, data={
                "csrf_token": token.group(1), "name": "operator", "password": password}) as resp:
            assert resp.status == 303
        async with http.get(f"{base}/console/events?page={page}",
                            timeout=aiohttp.ClientTimeout(total=20)) as resp:
            event = None
            async for raw in resp.content:
                line = raw.decode().strip()
                if line == "event: states":
                    event = "states"
                elif event == "states" and line.startswith("data: "):
                    return dict(json.loads(line[6:]))
    raise AssertionError("no live event")


async def _overdue_incoming(fed: Federation) -> float:
    """NL-NCC's ``crisisgw_overdue_acknowledgements{direction="incoming"}``."""
    _, metrics = await fed.api(NL, "GET", "/metrics")
    found = re.search(r'^crisisgw_overdue_acknowledgements\{direction="incoming"\} (\S+)$',
                      str(metrics), re.M)
    return float(found.group(1)) if found else 0.0


def _map_ids(html: str) -> set[str]:
    """The message ids of the features on a page's maps."""
    return {f["properties"]["id"] for data in re.findall(r"data-geojson='([^']*)'", html)
            for f in json.loads(data)["features"]}


def _incident_rows(html: str) -> set[str]:
    return set(re.findall(r'<tr data-row="(BE-2026-\d+)"', html))


async def test_exercise_traffic_stays_out_of_real_counts_boards_and_maps(fed: Federation) -> None:
    """Real traffic counts, is on the real board and map; exercise traffic is only on the
    exercise board and map, marked, and raises the EXERCISE banner on every page."""
    real_flash, drill_flash = await _sitrep(fed, REAL, "actual"), await _sitrep(
        fed, DRILL, "exercise")
    real_alert, drill_alert = await _alert(fed, REAL, "Actual"), await _alert(
        fed, DRILL, "Exercise")
    ours = {real_flash, drill_flash, real_alert, drill_alert}

    async def arrived() -> bool:
        return ours <= await _inbox(fed)
    await wait_until(arrived, 30, "the four messages at NL-NCC")
    assert {drill_flash, drill_alert} <= await _inbox(fed, "&mode=exercise&state=delivered")
    assert not {drill_flash, drill_alert} & await _inbox(fed, "&mode=actual")

    # counts: the live feed's Inbox badge counts the real unacknowledged messages only,
    # the alarms hold the real ones only; past the 2 s flash deadline, one overdue
    waiting_real = await _inbox(fed, "&mode=actual&state=delivered")
    assert {real_flash, real_alert} <= waiting_real

    async def overdue() -> bool:
        return await _overdue_incoming(fed) > 0
    await wait_until(overdue, 30, "the real flash past its 2 s deadline on /metrics")
    assert await _overdue_incoming(fed) == 1  # the exercise flash has no deadline
    event = await _first_event(fed, "overview")
    assert event["unacknowledged"] == len(waiting_real)
    assert {a["id"] for a in event["alerts"]} & ours == {real_flash, real_alert}
    assert event["overdue_in"] == [real_flash]
    assert "EXERCISE IN PROGRESS" in event["blocks"]["exercise"]
    assert _map_ids(event["blocks"]["areas"]) == {real_alert}

    # the overview: its map and what waits are real; the banner counts the two exercises
    overview = await console_page(fed, NL, "/console")
    assert _map_ids(overview) == {real_alert}
    waiting = overview.split('id="waiting"', 1)[1].split("</table>", 1)[0]
    assert real_flash in waiting
    assert drill_flash not in waiting
    assert "exercise messages in the last 2 h: 2" in overview
    assert "1 incoming messages are past their acknowledgement deadline" in overview

    # the incident boards, on the console and the API
    board = await console_page(fed, NL, "/console/incidents")
    assert _incident_rows(board) == {REAL}
    drills = await console_page(fed, NL, "/console/incidents?mode=exercise")
    assert _incident_rows(drills) == {DRILL}
    assert "row-exercise" in drills
    assert _map_ids(drills) == {drill_alert}
    _, api_board = await fed.api(NL, "GET", "/v1/incidents")
    _, api_drills = await fed.api(NL, "GET", "/v1/incidents?mode=exercise")
    assert [r["incident"] for r in api_board["items"]] == [REAL]
    assert [r["incident"] for r in api_drills["items"]] == [DRILL]

    # an incident page: the exercise says so, its alert on the exercise map only
    drill_page = await console_page(fed, NL, f"/console/incidents/{DRILL}")
    assert "This incident is an exercise" in drill_page
    real_page = await console_page(fed, NL, f"/console/incidents/{REAL}")
    assert "This incident is an exercise" not in real_page
    assert _map_ids(real_page) == {real_alert}

    # every page carries the banner, on both sides of the exchange
    for centre, path in ((NL, "/console/inbox"), (NL, f"/console/messages/{real_flash}"),
                         (BE, "/console/outbox"), (BE, "/console")):
        assert "EXERCISE IN PROGRESS" in await console_page(fed, centre, path), (centre, path)
