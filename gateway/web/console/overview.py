"""The console's overview, the wall screen: the peers and their links, the problems, what
waits for a duty officer and the map of alerts in force; and the communication test it
starts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from gateway.formats.geo import MAX_FEATURES, Feature, collection
from gateway.protocol.reasons import KEY_UPDATE_REFUSED
from gateway.protocol.types import format_time
from gateway.service.node import NodeApi
from gateway.service.records import InboxEntry, OutgoingView
from gateway.web.commchecks import reports
from gateway.web.console import i18n
from gateway.web.console.live import ATTENTION_PRIORITIES, ATTENTION_TYPES
from gateway.web.console.separation import ACTUAL
from gateway.web.console.views import (
    NODE_KEY,
    _audit,
    _ctx,
    _require,
    inbox_items,
    overdue_counts,
    with_preview,
)
from gateway.web.shapes import (
    MAP_ALERTS,
    inbox_view,
    message_json,
    view_features,
)

#: Peers' keys that stop being valid within this time are flagged on the overview.
KEY_WARNING = timedelta(days=30)
#: How long a refused key-update stays on the overview.
REFUSAL_SHOWN = timedelta(days=7)
#: The overview's list of what waits for a duty officer (flash, then urgent).
WAITING_ROWS = 10


def _stuck(recent: list[OutgoingView], peer: str, cutoff: str) -> tuple[int, str | None]:
    """How many of our recent messages to ``peer`` stay ``sent`` (in its broker, no
    receipt) since before ``cutoff`` (``[console] silent_seconds`` ago), and since when:
    its node is not answering, whatever its broker says."""
    times = [r.sent_at for m in recent for r in m.recipients
             if r.centre == peer and r.state == "sent" and r.sent_at and r.sent_at <= cutoff]
    return len(times), min(times, default=None)


def _duty_phone(directory: dict[str, Any], peer: str) -> dict[str, str] | None:
    """The peer's first contact point reachable day and night, from its contact list."""
    stored = directory.get(peer)
    for entry in stored.entries if stored else ():
        if entry.available_24_7:
            return {"phone": entry.phone, "name": entry.name, "field": entry.field.value}
    return None


async def overview_data(node: NodeApi) -> dict[str, Any]:
    """Per-peer rows and the problems to show on top."""
    stats = await node.ledger.stats()
    recent = await node.ledger.outbox.list({}, 200)
    directory = await node.ledger.directory.all()
    now = node.clock.now()
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for p in node.settings.peers:
        link = node.peer_links().get(p.id)
        sent_to = [m for m in recent if any(r.centre == p.id for r in m.recipients)]
        last_receipt = max((max(r.delivered_at or "", r.acknowledged_at or "",
                                r.rejected_at or "")
                            for m in sent_to for r in m.recipients if r.centre == p.id),
                           default="") or None
        latest_in = await node.ledger.inbox.list({"sender": p.id}, 1)
        last_in = format_time(latest_in[0].received_at) if latest_in else None
        stuck, stuck_since = _stuck(recent, p.id, format_time(
            now - timedelta(seconds=node.settings.console.silent_seconds)))
        backlog = stats.backlog.get(p.id)
        row: dict[str, Any] = {
               "id": p.id, "name": p.name, "country": p.country, "groups": p.groups,
               "suspended": p.suspended, "up": bool(link and link.connected),
               "tried": link is not None and (link.connected or link.failed),
               "tls": bool(link and link.secure),
               "tls_problem": link.tls_problem if link else None,
               "error": link.last_error if link else None,
               "last_message": sent_to[0].created if sent_to else None,
               "last_receipt": last_receipt,
               "last_heard": max(last_receipt or "", last_in or "") or None,
               "silent": stuck > 0, "stuck": stuck, "stuck_since": stuck_since,
               "duty": _duty_phone(directory, p.id),
               "backlog": backlog.count if backlog else 0,
               "oldest": backlog.oldest if backlog else None, "last_test": None,
               "keys": [{"kid": k.kid, "not_after": k.not_after and format_time(k.not_after),
                         "revoked": k.revoked,
                         "expiring": bool(k.not_after and not k.revoked
                                          and k.not_after - now < KEY_WARNING)}
                        for k in node.ring.keys.get(p.id, {}).values()]}
        rows.append(row)
        for k in row["keys"]:
            if k["expiring"]:
                problems.append({"kind": "key_expiring", "peer": p.id, "kid": k["kid"],
                                 "until": k["not_after"]})
        if row["tried"] and not row["up"]:
            problems.append({"kind": "peer_down", "peer": p.id, "tls": row["tls_problem"],
                             "error": row["error"], "link": f"/console/outbox?peer={p.id}"})
        elif row["silent"]:
            problems.append({"kind": "peer_silent", "peer": p.id, "count": stuck,
                             "since": stuck_since,
                             "link": f"/console/outbox?peer={p.id}&state=sent"})
        if row["backlog"]:
            problems.append({"kind": "backlog", "peer": p.id, "count": row["backlog"],
                             "link": f"/console/outbox?peer={p.id}&state=queued"})
    last_test = await _last_commcheck(node)
    for row in rows:
        row["last_test"] = last_test.get(row["id"])
    overdue_in, overdue_out = await overdue_counts(node)
    if overdue_in:
        problems.append({"kind": "overdue_incoming", "count": overdue_in,
                         "link": "/console/inbox?state=delivered"})
    if overdue_out:
        problems.append({"kind": "overdue_outgoing", "count": overdue_out,
                         "link": "/console/outbox?state=delivered"})
    if not node.inbox_link.connected:
        problems.append({"kind": "inbox_down", "tls": node.inbox_link.tls_problem,
                         "error": node.inbox_link.last_error})
    if node.inbox_link.dead_letters:
        problems.append({"kind": "dead_letters", "count": node.inbox_link.dead_letters})
    if stats.security_events:
        problems.append({"kind": "security_events", "count": stats.security_events})
        problems += await _refused_key_updates(node, now)
    rows.sort(key=lambda r: ((r["up"] and not r["silent"]) or not r["tried"], -r["backlog"],
                             r["id"]))
    return {"peers": rows, "problems": problems}


async def _refused_key_updates(node: NodeApi, now: datetime) -> list[dict[str, Any]]:
    """Key-updates refused by the rotation rule in the last week: what a stolen,
    phased-out key trying to take over a peer's identity looks like."""
    since = format_time(now - REFUSAL_SHOWN)
    return [{"kind": "key_update_refused", "peer": e.claimed_sender, "at": e.at,
             "detail": e.detail}
            for e in await node.ledger.security.recent(50)
            if e.reason == KEY_UPDATE_REFUSED and e.at >= since]


async def _last_commcheck(node: NodeApi) -> dict[str, dict[str, Any]]:
    """Per peer, the outcome of the most recent communication test."""

    last = await node.ledger.outbox.list({"type": "commcheck"}, 1)
    if not last:
        return {}
    rep = (await reports(node, last))[0]
    return {p["peer"]: {**p, "started": rep["started"]} for p in rep["peers"]}


async def run_commcheck(request: web.Request) -> web.StreamResponse:
    """POST /console/commcheck: an operator starts a communication test."""
    session = _require(request, "operator")
    node = request.app[NODE_KEY]
    check_id = await node.commchecks.start(session.name)
    await _audit(request, "commcheck.started", check_id)
    raise web.HTTPSeeOther("/console")



@aiohttp_jinja2.template("overview.html")
async def overview(request: web.Request) -> dict[str, Any]:
    """GET /console: the wall screen."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    data = await overview_data(node)
    waiting = [e for e in await unacknowledged_attention(node, WAITING_ROWS)
               if e.mode == "actual" and e.type in ATTENTION_TYPES]
    return _ctx(request, "overview", **data, features=collection(await live_areas(node)),
                waiting=[with_preview(i, i18n.current())
                         for i in inbox_items(node, waiting, node.clock.now())])


async def unacknowledged_attention(node: NodeApi, limit: int) -> list[InboxEntry]:
    """What waits for a duty officer, flash then urgent, newest first (``limit`` of each),
    actual messages only (exercise and test traffic raises no alarm, and never crowds a
    real message out), on the index of unacknowledged actual messages: a few reads
    however long the history."""
    return [e for p in ATTENTION_PRIORITIES
            for e in await node.ledger.inbox.unacknowledged(p, limit, actual=True)]


async def live_areas(node: NodeApi, modes: tuple[str, ...] = (ACTUAL,)) -> list[Feature]:
    """A map of alerts in force: the areas of the latest CAP alerts of ``modes``, ours
    and our peers', that have not expired (:data:`MAP_ALERTS` of each direction and mode
    at most). The overview's map is of actual alerts only: exercise and test alerts
    have their own map on the exercise board, and never take a real alert's place."""
    now = format_time(node.clock.now())
    features: list[Feature] = []
    for mode in modes:
        for entry in await node.ledger.inbox.list({"type": "alert", "mode": mode},
                                                  MAP_ALERTS):
            view = inbox_view(entry)
            if (view.get("expires") or "") > now and view["state"] != "rejected":
                features += view_features(view, "in")
        for stored in await node.ledger.outbox.list({"type": "alert", "mode": mode},
                                                    MAP_ALERTS):
            if (stored.expires or "") > now:
                features += view_features(message_json(stored), "out")
    return features[:MAX_FEATURES]
