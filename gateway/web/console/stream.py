"""The console's event stream (``/console/events``) and what the shared live feed
reads and draws for it (gateway/web/console/live.py holds the feed itself)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from gateway.errors import GatewayError
from gateway.formats.geo import collection
from gateway.service.incidents import incident_thread
from gateway.service.node import NodeApi
from gateway.web.console import i18n
from gateway.web.console.auth import role_allows
from gateway.web.console.live import (
    ATTENTION_PRIORITIES,
    ATTENTION_TYPES,
    LIVE_INCIDENTS,
    LIVE_ROWS,
    LiveFeed,
    Reading,
    Renderer,
    Snapshot,
    Subscriber,
    inbox_rev,
    live_rev,
    outbox_rev,
)
from gateway.web.console.overview import live_areas, overview_data, unacknowledged_attention
from gateway.web.console.separation import ACTUAL, EXERCISE_PAGE, exercise_traffic
from gateway.web.console.views import (
    NODE_KEY,
    PRIORITY_ORDER,
    _require,
    _session,
    inbox_items,
    outbox_items,
    overdue_incoming,
    overdue_outgoing,
    with_preview,
)

LIVE: web.AppKey[LiveFeed] = web.AppKey("console_live")
RENDER: web.AppKey[dict[str, Renderer]] = web.AppKey("console_render")
#: Seconds between two keep-alive comments on an idle event stream (and session checks).
KEEP_ALIVE = 15.0
#: How soon a browser reconnects after the stream dropped (ms).
RECONNECT_MS = 2000


async def events(request: web.Request) -> web.StreamResponse:
    """GET /console/events?page=: server-sent events from the shared live feed: delivery
    states, counts, alerts, and the rows and blocks of the page that changed."""
    session = _require(request, "viewer")
    feed, render = request.app[LIVE], request.app[RENDER]
    page = request.query.get("page", "")[:32]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    sub = Subscriber(lang=i18n.current(), can_operate=role_allows(session.role, "operator"),
                     page=page)
    try:
        async with feed.subscribe(page) as queue:
            # A first line that sets how soon the browser reconnects after a drop.
            await response.write(f"retry: {RECONNECT_MS}\n\n".encode())
            while not feed.closing:
                snapshot = await _next(queue, feed)
                if feed.closing:
                    break
                current = await _session(request)
                if current is None:  # logged out, expired, account removed or changed
                    await response.write(b"event: session\ndata: {\"ended\": true}\n\n")
                    return response
                sub.can_operate = role_allows(current.role, "operator")
                if snapshot is None:
                    await response.write(b": keep-alive\n\n")
                    continue
                text = json.dumps(sub.event(snapshot, render), separators=(",", ":"))
                await response.write(f"event: states\ndata: {text}\n\n".encode())
            await response.write(b"event: closing\ndata: {}\n\n")  # the node is stopping
    except (ConnectionResetError, asyncio.CancelledError, GatewayError):
        pass
    return response


async def _next(queue: asyncio.Queue[Snapshot], feed: LiveFeed) -> Snapshot | None:
    """The next snapshot; None after :data:`KEEP_ALIVE` seconds or once the node stops."""
    take = asyncio.ensure_future(queue.get())
    stop = asyncio.ensure_future(feed.wait_closing())
    try:
        done, _ = await asyncio.wait((take, stop), timeout=KEEP_ALIVE,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (take, stop):
            if not task.done():
                task.cancel()
    return take.result() if take in done and not take.cancelled() else None


async def live_read(node: NodeApi, pages: frozenset[str]) -> Reading:
    """What the open pages show live, read once for all browsers (live.LiveFeed):
    :func:`live_rows` and the EXERCISE banner for every page, the overview's problems,
    peers and map, the incident list or the exercise board and the timeline and cards of
    each incident open (a few at most)."""
    data, rows, alerts = await live_rows(node)
    blocks: dict[str, Any] = {"exercise": await exercise_traffic(node)}
    if "overview" in pages:
        overview = await overview_data(node)
        blocks["problems"] = blocks["peers"] = overview
        blocks["areas"] = collection(await live_areas(node))
    for board, exercise in (("incidents", False), (EXERCISE_PAGE, True)):
        if board in pages:
            rows[board] = [(r.incident, live_rev(r.as_json()), r.as_json()) for r in
                           await node.ledger.incidents.index(None, LIVE_ROWS,
                                                             exercise=exercise)]
    watched = sorted(p[9:] for p in pages if p.startswith("incident:"))[:LIVE_INCIDENTS]
    for incident in watched:
        thread = await incident_thread(node.ledger.incidents, incident, node.me)
        if thread is None:
            continue
        rows[f"timeline:{incident}"] = [(t["id"], live_rev(t), t) for t in thread["timeline"]]
        blocks[f"cards:{incident}"] = thread
    return Reading(data=data, rows=rows, alerts=alerts, blocks=blocks)


async def live_rows(node: NodeApi) -> tuple[dict[str, Any], dict[str, list[Any]],
                                            list[dict[str, Any]]]:
    """What every page's live part shows: delivery states and overdue flags of our
    latest messages, the inbox counts, the newest rows of the inbox and the outbox,
    and the alerts waiting for a duty officer."""
    now = node.clock.now()
    messages = await node.ledger.outbox.list({}, LIVE_ROWS)
    # What waits, most urgent first, on the index of unacknowledged messages (a few
    # reads of a page each, however long the history): flash, urgent, then the newest.
    waiting = await unacknowledged_attention(node, LIVE_ROWS)
    latest = await node.ledger.inbox.list({}, LIVE_ROWS)
    states = {m.id: {r.centre: {"state": r.state, "reason": r.reason,
                                "delivered_at": r.delivered_at,
                                "acknowledged_at": r.acknowledged_at}
                     for r in m.recipients} for m in messages}
    overdue_out = {m.id: sorted(overdue_outgoing(node, m, now)) for m in messages}
    seen: set[tuple[str, str]] = set()
    entries = []
    for e in [*waiting, *latest]:
        if (e.sender, e.id) not in seen:
            seen.add((e.sender, e.id))
            entries.append(e)
    inbox_rows = inbox_items(node, entries, now)
    unacked = [i for i in inbox_rows if i["state"] == "delivered"]
    alerts = sorted(
        ({k: a[k] for k in ("id", "from", "type", "priority", "mode", "tlp", "incident",
                            "received_at", "body")}
         for a in unacked  # exercise and test traffic raises no alarm
         if a["priority"] in ATTENTION_PRIORITIES and a["type"] in ATTENTION_TYPES
         and a["mode"] == ACTUAL),
        key=lambda a: a["received_at"], reverse=True)
    alerts.sort(key=lambda a: PRIORITY_ORDER.get(a["priority"], 3))
    data = {"states": states, "overdue_out": {k: v for k, v in overdue_out.items() if v},
            "unacknowledged": await node.ledger.inbox.waiting(),
            "overdue_in": [e["id"] for e in unacked if overdue_incoming(node, e, now)]}
    rows = {"inbox": [(f"{i['from']}/{i['id']}", inbox_rev(i), i) for i in inbox_rows],
            "outbox": [(m["id"], outbox_rev(m), m)
                       for m in outbox_items(node, messages, now)]}
    return data, rows, alerts


def renderers(app: web.Application) -> dict[str, Renderer]:
    """The live fragments, drawn by the pages' own macros (templates/rows.html)."""
    env = aiohttp_jinja2.get_env(app)
    rows = env.get_template("rows.html").module
    maps = env.get_template("map.html").module
    me = app[NODE_KEY].me

    def inbox_row(lang: str, item: Any, can_operate: bool) -> str:
        i18n.use(lang)
        return str(rows.inbox_row(with_preview(item, lang), can_operate, ""))  # type: ignore[attr-defined]

    def outbox_row(lang: str, item: Any, _can_operate: bool) -> str:
        i18n.use(lang)
        return str(rows.outbox_row(item))  # type: ignore[attr-defined]

    def problems(lang: str, overview: Any, _can_operate: bool) -> str:
        i18n.use(lang)
        return str(rows.problem_list(overview["problems"]))  # type: ignore[attr-defined]

    def peers(lang: str, overview: Any, _can_operate: bool) -> str:
        i18n.use(lang)
        return str(rows.peer_rows(overview["peers"]))  # type: ignore[attr-defined]

    def incident_row(lang: str, item: Any, _can_operate: bool) -> str:
        i18n.use(lang)
        return str(rows.incident_row(item))  # type: ignore[attr-defined]

    def timeline_row(lang: str, item: Any, _can_operate: bool) -> str:
        i18n.use(lang)
        return str(rows.timeline_row(item, me))  # type: ignore[attr-defined]

    def cards(lang: str, thread: Any, _can_operate: bool) -> str:
        i18n.use(lang)
        return str(rows.centre_cards(thread, lang))  # type: ignore[attr-defined]

    def areas(lang: str, features: Any, _can_operate: bool) -> str:
        i18n.use(lang)
        return str(maps.map(features, i18n._("Alerts in force")))  # type: ignore[attr-defined]

    def exercise(lang: str, traffic: Any, _can_operate: bool) -> str:
        i18n.use(lang)
        return str(rows.exercise_banner(traffic))  # type: ignore[attr-defined]

    return {"inbox": inbox_row, "outbox": outbox_row, "problems": problems, "peers": peers,
            "incidents": incident_row, "timeline": timeline_row, "cards": cards,
            "areas": areas, "exercise": exercise}
