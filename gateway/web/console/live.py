"""Live console updates: one reader of the ledger for every open browser.

A browser's page subscribes to ``/console/events`` (server-sent events). Instead of a
query loop per browser, one :class:`LiveFeed` task per node waits for the ledger's
:class:`~gateway.service.changes.ChangeSignal` (or, every few seconds, a refresh for
links and deadlines that change without a write), reads what the pages show once, and hands the
same :class:`Snapshot` to every subscriber. Each subscriber then sends only what changed
since its last event: rows drawn by the same Jinja macros as the pages (rows.html), in
its operator's language, rendered once per language and role and shared.

The ledger's read count therefore grows with the rate of change, never with the number
of open browsers (``crisisgw_ledger_queries_total`` on /metrics shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import structlog

from gateway.errors import GatewayError
from gateway.protocol.types import format_time
from gateway.service.node import NodeApi
from gateway.web.console.readable import preview
from gateway.web.console.separation import EXERCISE_PAGE

log = structlog.get_logger("crisisgw.console")

#: Rows of each list a live event can carry (the newest).
LIVE_ROWS = 50
#: Message types a duty officer must act on: only these raise the alarm (title, bar,
#: sound, notification). Housekeeping (contact lists, key updates, tests) does not.
ATTENTION_TYPES = frozenset({"sitrep", "alert"})
ATTENTION_PRIORITIES = ("flash", "urgent")
#: Row sections every page gets (the others come with the page: see :func:`sections`).
ROW_SECTIONS = ("inbox", "outbox")
#: Blocks every page gets: the EXERCISE banner (web/console/separation.py).
PAGE_BLOCKS = ("exercise",)
#: The incident lists: the real board and the exercise board.
BOARDS = ("incidents", EXERCISE_PAGE)
#: Incidents whose timeline the feed follows at once (the ones open in a browser).
LIVE_INCIDENTS = 8

Renderer = Callable[[str, Any, bool], str]


def _rev(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def live_rev(item: Any) -> str:
    """A row's revision when all of it is drawn (incident rows, timeline entries)."""
    return _rev(item)


def inbox_rev(item: dict[str, Any]) -> str:
    """What an inbox row's drawing depends on."""
    return _rev(item["id"], item["from"], item["priority"], item["state"], item["overdue"],
                item["incident"], item["received_at"], item["acknowledged_by"], item["type"],
                item["sha256"], item["mode"], item["tlp"], item["group"])


def outbox_rev(item: dict[str, Any]) -> str:
    """What an outbox row's drawing depends on."""
    return _rev(item["id"], item["type"], item["incident"], item["priority"], item["tlp"],
                item["mode"], item["created"], item["overdue"], [
                    (r["centre"], r["state"], r["reason"], r["last_error"],
                     r["to_delivered"], r["to_acknowledged"]) for r in item["recipients"]])


@dataclass
class Snapshot:
    """What the pages show, read once for every subscriber."""

    serial: int
    #: Language-neutral figures: delivery states, counts, overdue ids.
    data: dict[str, Any]
    #: Per section, (row key, revision, item), in the page's order.
    rows: dict[str, list[tuple[str, str, dict[str, Any]]]]
    #: Unacknowledged flash and urgent messages a duty officer must act on.
    alerts: list[dict[str, Any]]
    #: Per block (the overview's problems and peers, an incident's cards), its data;
    #: only the blocks some open page shows are read.
    blocks: dict[str, Any] = field(default_factory=dict)
    _drawn: dict[tuple[str, ...], str] = field(default_factory=dict)

    def block_rev(self, name: str) -> str:
        """What the drawing of block ``name`` depends on."""
        key = ("rev", name)
        found = self._drawn.get(key)
        if found is None:
            found = self._drawn[key] = _rev(self.blocks[name])
        return found


@dataclass(frozen=True)
class Reading:
    """What :class:`LiveFeed`'s reader returns (see :class:`Snapshot`)."""

    data: dict[str, Any]
    rows: dict[str, list[tuple[str, str, dict[str, Any]]]]
    alerts: list[dict[str, Any]]
    blocks: dict[str, Any]


def sections(page: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(row sections, blocks) a page shows live: every page the inbox and outbox rows
    (their chips and counts) and the EXERCISE banner, plus the overview's problems, peers
    and map, the incident list or the exercise board, or one incident's timeline and
    cards."""
    rows: tuple[str, ...] = ROW_SECTIONS
    blocks: tuple[str, ...] = ()
    if page == "overview":
        blocks = ("problems", "peers", "areas")
    elif page in BOARDS:
        rows += (page,)
    elif page.startswith("incident:"):
        rows += (f"timeline:{page[9:]}",)
        blocks = (f"cards:{page[9:]}",)
    return rows, blocks + PAGE_BLOCKS


class LiveFeed:
    """The one shared reader behind every open console's event stream."""

    def __init__(self, node: NodeApi,
                 read: Callable[[NodeApi, frozenset[str]], Awaitable[Reading]], *,
                 refresh: float = 5.0, spacing: float = 0.2) -> None:
        self._node = node
        self._read = read
        self._refresh, self._spacing = refresh, spacing
        self._subscribers: dict[asyncio.Queue[Snapshot], str] = {}
        self._task: asyncio.Task[None] | None = None
        self._latest: Snapshot | None = None
        self._serial = 0
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self.snapshots = 0

    @contextlib.asynccontextmanager
    async def subscribe(self, page: str) -> AsyncIterator[asyncio.Queue[Snapshot]]:
        """A queue that always holds the latest snapshot not yet taken, for a browser
        showing ``page``; the feed runs while anyone subscribes."""
        queue: asyncio.Queue[Snapshot] = asyncio.Queue(maxsize=1)
        self._subscribers[queue] = page
        latest = self._latest
        if latest is not None and all(b in latest.blocks for b in sections(page)[1]) and \
                all(r in latest.rows for r in sections(page)[0]):
            queue.put_nowait(latest)
        else:
            self._wake.set()  # a page the last read did not cover: read for it now
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="console-live-feed")
        try:
            yield queue
        finally:
            self._subscribers.pop(queue, None)

    @property
    def closing(self) -> bool:
        """The node is stopping: every stream says so and ends (see :meth:`close`)."""
        return self._closing.is_set()

    async def wait_closing(self) -> None:
        """Return once the node starts to stop."""
        await self._closing.wait()

    async def close(self) -> None:
        """Stop the feed at shutdown, first telling every open stream, so that a console
        shows the node gone at once rather than after the server's grace period."""
        self._closing.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        changes = self._node.ledger.changes
        while self._subscribers:
            seen = changes.version  # a change committed while reading wakes the next read
            self._wake.clear()
            try:
                snapshot = await self._take()
            except GatewayError as exc:  # the ledger failing: say so, try again later
                log.warning("console_live_read_failed", error=str(exc))
            else:
                self._latest = snapshot
                for queue in list(self._subscribers):
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(snapshot)
            await asyncio.sleep(self._spacing)
            if self._wake.is_set():
                continue
            waits = (asyncio.ensure_future(changes.wait(seen)),
                     asyncio.ensure_future(self._wake.wait()))
            try:
                await asyncio.wait(waits, timeout=self._refresh,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        self._latest = None

    async def _take(self) -> Snapshot:
        now = self._node.clock.now()
        pages = frozenset(self._subscribers.values())
        reading = await self._read(self._node, pages)
        self._serial += 1
        self.snapshots += 1
        data = {**reading.data, "server_time": format_time(datetime.now(UTC)),
                "now": format_time(now)}
        return Snapshot(serial=self._serial, data=data, rows=reading.rows,
                        alerts=reading.alerts, blocks=reading.blocks)


def draw(snapshot: Snapshot, key: tuple[str, ...], make: Callable[[], str]) -> str:
    """A fragment of ``snapshot`` drawn once per key (section, row, revision, language,
    role) and shared by every subscriber that needs it."""
    found = snapshot._drawn.get(key)
    if found is None:
        found = snapshot._drawn[key] = make()
    return found


@dataclass
class Subscriber:
    """What one browser was last sent, so that the next event carries only changes."""

    lang: str
    can_operate: bool
    page: str
    sent: dict[str, dict[str, str]] = field(default_factory=dict)
    blocks_sent: dict[str, str] = field(default_factory=dict)

    def event(self, snapshot: Snapshot, render: dict[str, Renderer]) -> dict[str, Any]:
        """The event for this browser: the snapshot's figures, its alerts in this
        language, and the rows and blocks of its page that changed since the last."""
        out: dict[str, Any] = dict(snapshot.data)
        out["alerts"] = [{**{k: v for k, v in a.items() if k != "body"},
                          "title": preview(a["type"], a["body"], self.lang)["text"] or ""}
                         for a in snapshot.alerts]
        row_sections, block_names = sections(self.page)
        rows: dict[str, Any] = {}
        for section in row_sections:
            listed = snapshot.rows.get(section, [])
            before = self.sent.setdefault(section, {})
            changed = {}
            kind = section.split(":", 1)[0]
            for key, rev, item in listed:
                if before.get(key) != rev:
                    changed[key] = draw(
                        snapshot, (section, key, rev, self.lang, str(self.can_operate)),
                        partial(render[kind], self.lang, item, self.can_operate))
                    before[key] = rev
            rows[section] = {"order": [key for key, _, _ in listed], "html": changed}
        out["rows"] = rows
        blocks = {}
        for name in block_names:
            if name not in snapshot.blocks:
                continue
            rev = snapshot.block_rev(name)
            if self.blocks_sent.get(name) != rev:
                blocks[name] = draw(snapshot, (name, rev, self.lang, str(self.can_operate)),
                                    partial(render[name.split(":", 1)[0]], self.lang,
                                            snapshot.blocks[name], self.can_operate))
                self.blocks_sent[name] = rev
        if blocks:
            out["blocks"] = blocks
        return out
