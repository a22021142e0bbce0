"""Exercise and test traffic kept apart from real traffic (gateway/web/console/separation.py):
the pure rules, the ledger's mode filters and boards on both engines (schema step 8), and
the console's counts, boards, maps and EXERCISE banner on an in-memory node."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.adapters.stores.incidents import BOARDS
from gateway.formats.cap import parse_cap
from gateway.protocol.receipts import ReceiptState, receipt_envelope
from gateway.protocol.types import Mode, Priority, format_time
from gateway.service.incidents import IncidentSummary
from gateway.service.submit import outgoing
from gateway.web.api import build_app
from gateway.web.console import separation
from gateway.web.console.stream import live_read, renderers
from gateway.web.console.views import NODE_KEY
from tests.unit.fake_node import ME as FAKE_ME
from tests.unit.fake_node import (
    NL,
    NOW,
    FakeNode,
    auth,
    envelope,
    inbox_entry,
    make_settings,
    serve,
    wire,
)
from tests.unit.test_incident_index import _fill
from tests.unit.test_incidents import DE, report
from tests.unit.test_sqlite_incidents import (
    KEYS,
    ME,
    MIN,
    T0,
    ledger,
    ours,
    received,
    sitrep,
)
from tests.unit.test_web_console import open_session

__all__ = ["ledger"]  # the fixture
Client = TestClient[web.Request, web.Application]
ALERT = parse_cap((Path(__file__).resolve().parents[1] / "assets" / "cap" /
                   "oasis-appendix-a2.xml").read_bytes()).model_dump(mode="json",
                                                                      exclude_none=True)
REAL_ALERT, DRILL_ALERT = "0b0e7f52-6a0e-4f5c-9d43-2c1c8f1e9a11", \
    "0b0e7f52-6a0e-4f5c-9d43-2c1c8f1e9a22"
REAL_FLASH, DRILL_FLASH = "0b0e7f52-6a0e-4f5c-9d43-2c1c8f1e9a33", \
    "0b0e7f52-6a0e-4f5c-9d43-2c1c8f1e9a44"


def _summary(messages: int, actual: int) -> IncidentSummary:
    return IncidentSummary(incident="X-1", title=None, centres=(), messages=messages,
                           rejected=1, last_activity="t", warnings=0, highest_severity=None,
                           actual_messages=actual)


# -- the pure rules ----------------------------------------------------------------------


def test_an_incident_is_an_exercise_only_when_none_of_its_messages_is_actual() -> None:
    """Exercise board: messages, none actual; one actual message, or only rejected ones,
    keeps an incident on the real board."""
    assert _summary(3, 0).exercise
    assert not _summary(3, 1).exercise
    assert not _summary(0, 0).exercise  # only rejected messages: not an exercise


def test_a_thread_is_an_exercise_when_every_timeline_entry_is_exercise_or_test() -> None:
    """A thread of exercise and test messages is an exercise; one actual one is not; an
    empty one is not."""
    drill = {"timeline": [{"mode": "exercise"}, {"mode": "test"}]}
    assert separation.thread_is_exercise(drill)
    assert not separation.thread_is_exercise({"timeline": [{"mode": "exercise"},
                                                           {"mode": "actual"}]})
    assert not separation.thread_is_exercise({"timeline": [{"mode": None}]})
    assert not separation.thread_is_exercise({"timeline": []})


def test_map_features_split_into_actual_and_exercise_keeping_their_order() -> None:
    """Features without a mode count as actual; exercise and test ones go apart."""
    features = [{"properties": {"id": str(n), "mode": mode}}
                for n, mode in enumerate(["actual", "exercise", None, "test", "actual"])]
    actual, drill = separation.split_features(features)
    assert [f["properties"]["id"] for f in actual] == ["0", "2", "4"]
    assert [f["properties"]["id"] for f in drill] == ["1", "3"]


def test_query_modes_pick_a_board_and_a_list_filter() -> None:
    """?mode=exercise or test is the exercise board; a list filters by a known mode only."""
    assert separation.exercise_board({"mode": "exercise"})
    assert separation.exercise_board({"mode": "test"})
    assert not separation.exercise_board({"mode": "actual"})
    assert not separation.exercise_board({})
    assert separation.list_filter({"mode": "exercise"}) == {"mode": "exercise"}
    assert separation.list_filter({"mode": "'; DROP"}) == {}
    assert separation.banner(3) == {"count": 3, "hours": 2}


# -- the ledger, on both engines ----------------------------------------------------------


async def test_the_two_boards_split_the_index_and_page_on_their_own(
        ledger: SqliteLedger) -> None:
    """The real board and the exercise board together are every incident once, each on
    the side IncidentSummary.exercise says, paged through their own cursors."""
    await _fill(ledger, random.Random(5), 60)
    for n in range(3):  # incidents of exercise traffic only, and of rejected messages only
        body = sitrep(1)
        body["incident"]["id"] = f"DRILL-{n}"
        m = ours(T0 + n * MIN, body, incident=f"DRILL-{n}", mode="exercise")
        await ledger.outbox.submit(m, None, m.created)
    rejected = received(DE, T0, sitrep(1), state="rejected", incident="ONLY-REJECTED")
    await ledger.inbox.ingest(rejected, None, rejected.received_at)
    every = await ledger.incidents.index(None, 1000)
    for exercise in (False, True):
        paged, after = [], None
        while page := await ledger.incidents.index(after, 2, exercise=exercise):
            paged += page
            after = page[-1].cursor
        assert paged == [r for r in every if r.exercise is exercise]
    drills = {r.incident for r in every if r.exercise}
    assert {"DRILL-0", "DRILL-1", "DRILL-2"} <= drills
    assert "ONLY-REJECTED" not in drills


async def test_lists_filter_by_mode_and_recent_counts_the_window(ledger: SqliteLedger) -> None:
    """Inbox and outbox pages of one mode hold exactly that mode's messages; recent()
    counts that mode's messages since a time, receipts never."""
    modes = ["actual", "exercise", "test", "exercise", "actual"]
    for n, mode in enumerate(modes):
        m = ours(T0 + n * MIN, sitrep(n + 1), mode=mode)
        await ledger.outbox.submit(m, None, m.created)
        entry = received(DE, T0 + n * MIN, sitrep(n + 1), mode=mode)
        receipt = outgoing(receipt_envelope(  # a receipt carries its message's mode
            receipt_id=uuid.uuid4(), issuer=ME, sender=DE, message_id=entry.id,
            digest=entry.digest, state=ReceiptState.DELIVERED, now=entry.received_at,
            mode=Mode(mode), priority=Priority.URGENT), KEYS[ME], (DE,),
            answers=(DE, entry.id))
        await ledger.inbox.ingest(entry, receipt, entry.received_at)
    for mode in ("actual", "exercise", "test"):
        out = await ledger.outbox.list({"mode": mode}, 100)
        inbox = await ledger.inbox.list({"mode": mode}, 100)
        assert [v.mode for v in out] == [mode] * modes.count(mode)
        assert [e.mode for e in inbox] == [mode] * modes.count(mode)
        assert await ledger.outbox.list({"mode": mode, "state": "queued"}, 100) == out
    assert await ledger.outbox.recent("exercise", format_time(T0)) == 2
    assert await ledger.outbox.recent("exercise", format_time(T0 + 2 * MIN)) == 1
    assert await ledger.inbox.recent("exercise", format_time(T0 + 2 * MIN)) == 2  # +1 min
    assert await ledger.inbox.recent("exercise", format_time(T0 + 3 * MIN)) == 1
    assert await ledger.inbox.recent("exercise", format_time(T0 + 9 * MIN)) == 0


async def test_exercise_messages_never_crowd_a_real_one_out_of_what_waits(
        ledger: SqliteLedger) -> None:
    """Five unacknowledged urgent exercise messages newer than a real one: the actual
    read of what waits (the overview's list, the alert bar) still gives the real one."""
    real = received(DE, T0, sitrep(1))
    await ledger.inbox.ingest(real, None, real.received_at)
    for n in range(5):
        drill = received(DE, T0 + (n + 1) * MIN, sitrep(n + 2), mode="exercise")
        await ledger.inbox.ingest(drill, None, drill.received_at)
    assert [e.mode for e in await ledger.inbox.unacknowledged("urgent", 3)] == \
        ["exercise"] * 3
    assert [e.id for e in await ledger.inbox.unacknowledged("urgent", 3, actual=True)] == \
        [real.id]


async def test_mode_lists_counts_and_boards_run_on_their_indexes(tmp_path: Path) -> None:
    """On SQLite, recent(), a list by mode and both boards use schema step 8's indexes."""
    led = SqliteLedger(tmp_path / "l.db")
    await led.open()

    def plans(conn: sqlite3.Connection) -> dict[str, str]:
        queries = {
            "inbox_recent": "SELECT COUNT(*) FROM inbox WHERE mode = 'exercise' AND type !="
                            " 'receipt' AND received_at >= 'x'",
            "outbox_recent": "SELECT COUNT(*) FROM outbox WHERE mode = 'exercise' AND type !="
                             " 'receipt' AND submitted_at >= 'x'",
            "inbox_list": "SELECT * FROM inbox WHERE type != 'receipt' AND mode = 'test'"
                          " ORDER BY received_at DESC, sender DESC, id DESC LIMIT 5",
            "waiting": "SELECT * FROM inbox WHERE state = 'delivered' AND priority ="
                       " 'flash' AND mode = 'actual' ORDER BY received_at DESC LIMIT 5",
            "real": f"SELECT * FROM incident_index WHERE {BOARDS[False]}"
                    " ORDER BY last_activity DESC, incident LIMIT 5",
            "exercise": f"SELECT * FROM incident_index WHERE {BOARDS[True]}"
                        " ORDER BY last_activity DESC, incident LIMIT 5"}
        return {k: " ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {q}"))
                for k, q in queries.items()}

    try:
        found = await led.db.read(plans)
    finally:
        await led.close()
    assert "inbox_mode_listed" in found["inbox_recent"] + found["inbox_list"]
    assert "outbox_mode_listed" in found["outbox_recent"]
    assert "inbox_unacked_actual" in found["waiting"]
    assert "incident_index_real" in found["real"]
    assert "incident_index_exercise" in found["exercise"]
    assert "TEMP B-TREE" not in " ".join(found.values()), found


# -- the console, on an in-memory node ----------------------------------------------------


def _in(message_id: str, mode: str, *, msg_type: str = "sitrep", priority: str = "urgent",
        at: datetime = NOW, body: dict[str, Any] | None = None, incident: str = "INC-1"
        ) -> Any:
    """An incoming message of ``mode`` from NL-NCC."""
    env = envelope(message_id, sender=NL, to=[FAKE_ME], msg_type=msg_type, priority=priority,
                   created=at - timedelta(seconds=2), incident=incident, body=body)
    env["mode"] = mode
    entry = inbox_entry(message_id, msg_type=msg_type, priority=priority, received_at=at)
    return dataclasses.replace(entry, mode=mode, incident=incident, wire=wire(env))


@pytest.fixture
def node() -> FakeNode:
    """A node that received a real and an exercise flash and a real and an exercise
    alert (with areas) half an hour ago, an exercise message three hours ago and a test."""
    fake = FakeNode(current=make_settings())
    half_hour = NOW - timedelta(minutes=30)
    fake.ledger.inbox.add(
        _in(REAL_FLASH, "actual", priority="flash", at=half_hour),
        _in(DRILL_FLASH, "exercise", priority="flash", at=half_hour, incident="DRILL-1"),
        _in(REAL_ALERT, "actual", msg_type="alert", body=ALERT, at=half_hour),
        _in(DRILL_ALERT, "exercise", msg_type="alert", body=ALERT, at=half_hour,
            incident="DRILL-1"),
        _in("0b0e7f52-6a0e-4f5c-9d43-2c1c8f1e9a55", "exercise", at=NOW - timedelta(hours=3)),
        _in("0b0e7f52-6a0e-4f5c-9d43-2c1c8f1e9a66", "test", at=NOW))
    fake.ledger.incidents.items = [
        report(DE, 1, incident="DRILL-1", title="Dyke drill", mode="exercise"),
        report(NL, 1, incident="INC-1", title="Real flood", at=5)]
    return fake


@pytest.fixture
async def client(node: FakeNode) -> AsyncIterator[Client]:
    """The whole app on the fake node, with an operator's session open."""
    async with serve(build_app(node)) as c:
        await open_session(c)
        yield c


def _map_ids(html: str) -> set[str]:
    """The message ids of the features on a page's maps."""
    return {f["properties"]["id"] for data in re.findall(r"data-geojson='([^']*)'", html)
            for f in json.loads(data)["features"]}


async def test_every_page_carries_the_banner_counting_recent_exercise_messages_only(
        client: Client) -> None:
    """Two exercise messages in the last 2 h (not the older one, not the test): every
    page says EXERCISE IN PROGRESS with 2 and links to the exercise board."""
    for path in ("/console", "/console/inbox", "/console/outbox", "/console/incidents",
                 "/console/directory", f"/console/messages/{REAL_FLASH}"):
        html = await (await client.get(path)).text()
        banner = html.split('id="exercise-banner"', 1)[1].split("</div>", 1)[0]
        assert "EXERCISE IN PROGRESS" in banner, path
        assert "in the last 2 h: 2" in banner, path
        assert separation.EXERCISE_BOARD in banner, path


async def test_no_banner_without_recent_exercise_traffic(client: Client, node: FakeNode) -> None:
    """With only actual, test and old exercise traffic no page has the banner."""
    for key in [k for k, e in node.ledger.inbox.entries.items()
                if e.mode == "exercise" and e.received_at > NOW - timedelta(hours=2)]:
        del node.ledger.inbox.entries[key]
    html = await (await client.get("/console")).text()
    assert "EXERCISE IN PROGRESS" not in html


async def test_the_overview_map_has_actual_alerts_the_exercise_board_exercise_ones(
        client: Client) -> None:
    """The overview's map draws the real alert only; the exercise board's map the
    exercise alert only, marked, with the exercise incidents and not the real ones."""
    overview = await (await client.get("/console")).text()
    assert _map_ids(overview) == {REAL_ALERT}
    board = await (await client.get("/console/incidents?mode=exercise")).text()
    assert _map_ids(board) == {DRILL_ALERT}
    assert 'data-row="DRILL-1"' in board
    assert 'data-row="INC-1"' not in board
    assert 'data-live-rows="incidents:exercise"' in board
    real = await (await client.get("/console/incidents")).text()
    assert 'data-row="INC-1"' in real
    assert 'data-row="DRILL-1"' not in real


async def test_the_inbox_filters_by_mode(client: Client) -> None:
    """/console/inbox?mode=exercise lists exercise messages only, each marked."""
    html = await (await client.get("/console/inbox?mode=exercise")).text()
    rows = re.findall(r'<tr data-inbox="([^"]+)"[^>]*class="([^"]*)"', html)
    assert {r for r, _ in rows} == {DRILL_FLASH, DRILL_ALERT,
                                    "0b0e7f52-6a0e-4f5c-9d43-2c1c8f1e9a55"}
    assert all("row-exercise" in cls for _, cls in rows)


async def test_the_api_lists_real_incidents_unless_asked_for_exercises(
        client: Client) -> None:
    """GET /v1/incidents: the real ones; ?mode=exercise the exercises; another mode 400."""
    headers = auth()
    real = await (await client.get("/v1/incidents", headers=headers)).json()
    drills = await (await client.get("/v1/incidents?mode=exercise", headers=headers)).json()
    assert [r["incident"] for r in real["items"]] == ["INC-1"]
    assert [r["incident"] for r in drills["items"]] == ["DRILL-1"]
    assert (await client.get("/v1/incidents?mode=test", headers=headers)).status == 400


async def test_the_live_feed_raises_no_alarm_for_exercises_and_draws_the_banner(
        client: Client) -> None:
    """The live alerts (bar, title, sound, notification) hold the real flash and alert,
    never an exercise one; the banner block, drawn in Dutch, counts 2; the exercise
    board's rows are the exercise incidents."""
    node = client.app[NODE_KEY]
    reading = await live_read(node, frozenset({"inbox", separation.EXERCISE_PAGE}))
    assert {a["id"] for a in reading.alerts} == {REAL_FLASH, REAL_ALERT}
    assert reading.blocks["exercise"] == {"count": 2, "hours": 2}
    assert [key for key, _, _ in reading.rows[separation.EXERCISE_PAGE]] == ["DRILL-1"]
    drawn = renderers(client.app)["exercise"]("nl", reading.blocks["exercise"], False)
    assert "OEFENING BEZIG" in drawn
    assert renderers(client.app)["exercise"]("nl", separation.banner(0), False).strip() == ""


async def test_an_exercise_incident_page_is_bannered_and_maps_apart(
        client: Client, node: FakeNode) -> None:
    """An exercise incident's page says so on top; its alert is on the exercise map,
    not on the map of real areas."""
    node.ledger.incidents.items.append(dataclasses.replace(
        report(NL, 2, incident="DRILL-1", mode="exercise", at=7), id=DRILL_ALERT,
        type="alert", report_number=None))
    html = await (await client.get("/console/incidents/DRILL-1")).text()
    assert "This incident is an exercise" in html
    maps = re.findall(r'aria-label="([^"]*)" data-geojson=\'([^\']*)\'', html)
    assert [(label.startswith("EXERCISE"), DRILL_ALERT in data) for label, data in maps] == [
        (True, True)]
