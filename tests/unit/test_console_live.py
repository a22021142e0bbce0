"""The console's live feed (gateway/web/console/live.py): one reader for every browser,
and each browser sent only what changed."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.service.changes import ChangeSignal
from gateway.service.node import NodeApi
from gateway.web.console.live import (
    LiveFeed,
    Reading,
    Snapshot,
    Subscriber,
    inbox_rev,
    sections,
)

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def _item(i: int, state: str = "delivered") -> dict[str, Any]:
    return {"id": f"m{i}", "from": "NL-NCC", "priority": "flash", "state": state,
            "overdue": False, "incident": "EU-1", "received_at": f"2026-12-01T03:00:0{i}Z",
            "acknowledged_by": None, "type": "sitrep", "sha256": f"h{i}", "mode": "actual",
            "tlp": "GREEN", "group": "00", "body": {}}


class _Reads:
    """A stand-in for the ledger reads behind the feed, counting them."""

    def __init__(self) -> None:
        self.rows = 0
        self.overviews = 0
        self.items = [_item(1)]

    async def read(self, _node: Any, pages: frozenset[str]) -> Reading:
        self.rows += 1
        rows = {"inbox": [(f"NL-NCC/{i['id']}", inbox_rev(i), i) for i in self.items],
                "outbox": []}
        blocks: dict[str, Any] = {}
        if "overview" in pages:
            self.overviews += 1
            blocks["problems"] = blocks["peers"] = {"problems": [], "peers": []}
        return Reading(data={"unacknowledged": len(self.items)}, rows=rows, alerts=[],
                       blocks=blocks)


def _node(changes: ChangeSignal) -> NodeApi:
    return cast(NodeApi, SimpleNamespace(ledger=SimpleNamespace(changes=changes),
                                         clock=SimpleNamespace(now=lambda: NOW)))


async def test_five_browsers_share_one_read_per_change() -> None:
    """However many subscribe, the ledger is read once per change (and once at start)."""
    changes, reads = ChangeSignal(), _Reads()
    feed = LiveFeed(_node(changes), reads.read, refresh=60,
                    spacing=0.01)
    async with contextlib.AsyncExitStack() as stack:
        queues = [await stack.enter_async_context(feed.subscribe("inbox")) for _ in range(5)]
        first = [await asyncio.wait_for(q.get(), 2) for q in queues]
        assert {s.serial for s in first} == {first[0].serial}
        before = reads.rows
        for _ in range(3):
            changes.bump()
            got = [await asyncio.wait_for(q.get(), 2) for q in queues]
            assert len({s.serial for s in got}) == 1
        assert reads.rows - before == 3
        assert reads.overviews == 0  # nobody shows the overview
    await feed.close()


async def test_the_overview_is_read_only_while_one_is_open() -> None:
    """The overview's heavier reads run only for a subscriber showing it."""
    changes, reads = ChangeSignal(), _Reads()
    feed = LiveFeed(_node(changes), reads.read, refresh=60,
                    spacing=0.01)
    async with feed.subscribe("overview") as queue:
        snapshot = await asyncio.wait_for(queue.get(), 2)
        assert snapshot.blocks["problems"] == {"problems": [], "peers": []}
        assert reads.overviews >= 1
    await feed.close()


async def test_a_change_during_a_read_is_not_missed() -> None:
    """A write committed while the feed reads wakes the next read at once."""
    changes, reads = ChangeSignal(), _Reads()
    slow = reads.read

    async def read_then_change(node: Any, pages: frozenset[str]) -> Any:
        result = await slow(node, pages)
        if reads.rows == 1:
            changes.bump()  # committed while the first read ran
        return result

    feed = LiveFeed(_node(changes), read_then_change, refresh=60,
                    spacing=0.01)
    async with feed.subscribe("inbox") as queue:
        await asyncio.wait_for(queue.get(), 2)
        second = await asyncio.wait_for(queue.get(), 2)  # no refresh for 60 s: the bump
        assert second.serial == 2
    await feed.close()


def _snapshot(serial: int, items: list[dict[str, Any]]) -> Snapshot:
    rows = {"inbox": [(f"NL-NCC/{i['id']}", inbox_rev(i), i) for i in items], "outbox": []}
    return Snapshot(serial=serial, data={}, rows=rows, alerts=[])


def test_a_browser_is_sent_only_rows_that_changed() -> None:
    """The first event draws every row; later ones only new or changed rows, each drawn
    once per language and role whoever asks."""
    drawn: list[tuple[str, str]] = []

    def render(lang: str, item: Any, _can: bool) -> str:
        drawn.append((lang, item["id"]))
        return f"<tr>{item['id']}:{item['state']}</tr>"

    renderers = {"inbox": render, "outbox": render}
    one = Subscriber(lang="nl", can_operate=True, page="inbox")
    two = Subscriber(lang="nl", can_operate=True, page="inbox")
    first = _snapshot(1, [_item(1), _item(2)])
    assert set(one.event(first, renderers)["rows"]["inbox"]["html"]) == {"NL-NCC/m1",
                                                                          "NL-NCC/m2"}
    assert set(two.event(first, renderers)["rows"]["inbox"]["html"]) == {"NL-NCC/m1",
                                                                          "NL-NCC/m2"}
    assert sorted(drawn) == [("nl", "m1"), ("nl", "m2")]  # shared between the two
    second = _snapshot(2, [_item(3), _item(1, "acknowledged"), _item(2)])
    event = one.event(second, renderers)["rows"]["inbox"]
    assert event["order"] == ["NL-NCC/m3", "NL-NCC/m1", "NL-NCC/m2"]
    assert event["html"] == {"NL-NCC/m3": "<tr>m3:delivered</tr>",
                             "NL-NCC/m1": "<tr>m1:acknowledged</tr>"}
    assert one.event(second, renderers)["rows"]["inbox"]["html"] == {}


async def test_change_signal_wakes_every_waiter() -> None:
    """Each waiter sees the version after a bump; a stale ``seen`` returns at once."""
    changes = ChangeSignal()
    waiters = [asyncio.create_task(changes.wait(0)) for _ in range(3)]
    await asyncio.sleep(0)
    changes.bump()
    assert await asyncio.gather(*waiters) == [1, 1, 1]
    assert await asyncio.wait_for(changes.wait(0), 0.1) == 1


async def test_the_ledger_signals_committed_changes_only(tmp_path: Path) -> None:
    """A write that changes rows bumps the signal; a sweep or claim that finds nothing
    (the dispatcher's every tick) does not, so an idle node wakes no live view."""
    ledger = SqliteLedger(tmp_path / "l.db")
    await ledger.open()
    try:
        start = ledger.changes.version
        await ledger.outbox.expire(NOW)
        await ledger.outbox.claim(NOW, 10, NOW)
        assert ledger.changes.version == start
        reads, writes = ledger.query_counts()
        await ledger.audit.record("operator", "console.test", "x", "", NOW)
        assert ledger.changes.version == start + 1
        assert ledger.query_counts()[1] == writes + 1
        await ledger.inbox.waiting()
        assert ledger.query_counts()[0] == reads + 1
    finally:
        await ledger.close()


def test_each_page_gets_its_own_live_sections() -> None:
    """Every page follows the inbox and outbox and the EXERCISE banner; the overview its
    blocks; the incident list and the exercise board their rows; an incident board its
    timeline and cards."""
    assert sections("inbox") == (("inbox", "outbox"), ("exercise",))
    assert sections("overview") == (("inbox", "outbox"),
                                    ("problems", "peers", "areas", "exercise"))
    assert sections("incidents") == (("inbox", "outbox", "incidents"), ("exercise",))
    assert sections("incidents:exercise") == (("inbox", "outbox", "incidents:exercise"),
                                              ("exercise",))
    assert sections("incident:NL-1") == (("inbox", "outbox", "timeline:NL-1"),
                                         ("cards:NL-1", "exercise"))


def test_a_block_is_sent_again_only_when_it_changed() -> None:
    """An incident's cards go to its board when they change, not on every event."""
    drawn: list[str] = []

    def cards(_lang: str, thread: Any, _can: bool) -> str:
        drawn.append(thread["v"])
        return f"<article>{thread['v']}</article>"

    render = {"inbox": cards, "outbox": cards, "timeline": cards, "cards": cards}
    board = Subscriber(lang="en", can_operate=False, page="incident:NL-1")
    first = Snapshot(serial=1, data={}, rows={}, alerts=[], blocks={"cards:NL-1": {"v": "a"}})
    assert board.event(first, render)["blocks"] == {"cards:NL-1": "<article>a</article>"}
    same = Snapshot(serial=2, data={}, rows={}, alerts=[], blocks={"cards:NL-1": {"v": "a"}})
    assert "blocks" not in board.event(same, render)
    changed = Snapshot(serial=3, data={}, rows={}, alerts=[],
                       blocks={"cards:NL-1": {"v": "b"}})
    assert board.event(changed, render)["blocks"] == {"cards:NL-1": "<article>b</article>"}
    assert drawn == ["a", "b"]
