"""Console pages about records: incident board, message detail and its evidence."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from gateway.errors import MalformedInput, NotFound, RejectedMessage, VerificationError
from gateway.formats.geo import collection
from gateway.keyfiles import own_public_keys
from gateway.protocol.alert import Alert
from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.keys import KeyRing, PinnedKey, fingerprint
from gateway.protocol.signing import verify_signed
from gateway.protocol.sitrep import Sitrep
from gateway.protocol.types import INCIDENT_ID_PATTERN, UUID_PATTERN
from gateway.service import contacts
from gateway.service.incidents import incident_thread
from gateway.service.node import NodeApi
from gateway.web.console.overview import live_areas
from gateway.web.console.readable import validated
from gateway.web.console.separation import (
    DRILL_MODES,
    EXERCISE_PAGE,
    exercise_board,
    split_features,
    thread_is_exercise,
)
from gateway.web.console.views import (
    NODE_KEY,
    PAGE,
    _ctx,
    _require,
    console_after,
    older_link,
    overdue_outgoing,
)
from gateway.web.shapes import (
    directory_json,
    incident_features,
    stored_message,
    view_features,
)


@aiohttp_jinja2.template("directory.html")
async def directory(request: web.Request) -> dict[str, Any]:
    """GET /console/directory: contact points per field of work, federation-wide."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    own = [e.model_dump(mode="json") for e in node.settings.directory]
    rows = contacts.overview(node.me, own, {c: directory_json(d) for c, d in
                                            (await node.ledger.directory.all()).items()},
                             node.clock.now().date())
    return _ctx(request, "directory", rows=rows)


@aiohttp_jinja2.template("incidents.html")
async def incidents(request: web.Request) -> dict[str, Any]:
    """GET /console/incidents: the real incidents with their centres and warnings;
    ``?mode=exercise``: the exercise board, the incidents whose every message is exercise
    or test traffic, with the map of exercise and test alerts in force."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    exercise = exercise_board(request.query)
    after = console_after(request, 2)
    page = await node.ledger.incidents.index(after, PAGE, exercise=exercise)
    features = collection(await live_areas(node, DRILL_MODES) if exercise else [])
    return _ctx(request, "incidents", incidents=[r.as_json() for r in page],
                paused=after is not None, exercise_board=exercise, features=features,
                live_page=EXERCISE_PAGE if exercise else None,
                older=older_link(request, {"mode": "exercise"} if exercise else {},
                                 [r.cursor for r in page]))


@aiohttp_jinja2.template("incidents.html")
async def incident(request: web.Request) -> dict[str, Any]:
    """GET /console/incidents/{id}: latest sitrep of each centre side by side, timeline."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    incident_id = request.match_info["id"]
    if not re.fullmatch(INCIDENT_ID_PATTERN, incident_id):
        raise web.HTTPNotFound(text="not an incident id")
    thread = await incident_thread(node.ledger.incidents, incident_id, node.me)
    if thread is None:
        raise web.HTTPNotFound(text="no message on this incident")
    actual, drill = split_features(await incident_features(node, thread))
    return _ctx(request, "incidents", thread=thread, live_page=f"incident:{incident_id}",
                drill=thread_is_exercise(thread), features=collection(actual),
                drill_features=collection(drill))


def _ring(node: NodeApi) -> KeyRing:
    """Every key we know: the peers' pinned keys, and our own current and earlier ones."""
    own = {node.key.kid: node.key.public()}
    own |= {kid: key for kid, key in own_public_keys(node.settings.node.signing_key_file,
                                                     node.settings.node.signing_key_id).items()
            if kid not in own}
    entries = [(c, k) for c, keys in node.ring.keys.items() for k in keys.values()]
    return KeyRing.build([*entries, *((node.me, PinnedKey(kid=kid, key=key))
                                      for kid, key in own.items())])


def verify(node: NodeApi, wire: bytes) -> dict[str, Any]:
    """Verification of signed bytes against the keys pinned now (never keys in a message),
    the same as admission and evidence: a valid signature by a key that was valid, and is
    not revoked, at the message's creation."""
    try:
        verified = verify_signed(wire, _ring(node))
    except (MalformedInput, VerificationError, RejectedMessage) as exc:
        return {"ok": False, "reason": exc.reason, "detail": exc.detail}
    return {"ok": True, "kid": verified.kid, "signer": verified.sender,
            "fingerprint": fingerprint(verified.key.key), "sha256": verified.digest}


async def _record(node: NodeApi, message_id: str) -> tuple[str, dict[str, Any], bytes,
                                                        list[dict[str, Any]]]:

    found = await stored_message(node, message_id)
    if found is None:
        raise web.HTTPNotFound(text="no such message")
    return found


def _valid_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if not re.fullmatch(UUID_PATTERN, value):
        raise web.HTTPNotFound(text="message ids are UUIDs")
    return value


@aiohttp_jinja2.template("message.html")
async def message(request: web.Request) -> dict[str, Any]:
    """GET /console/messages/{id}: envelope, verification, key id, receipts."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    direction, view, wire, receipts = await _record(node, _valid_id(request))
    if direction == "in":
        await _first_view(request, node, view)
    for r in receipts:
        r["verification"] = verify(node, canonical_bytes(r["signed"]))
    stored = await node.ledger.outbox.get(view["id"]) if direction == "out" else None
    escalations = await node.ledger.escalations.steps(view["id"]) if direction == "out" else []
    noticed = await node.ledger.escalations.notices(view["from"], view["id"]) \
        if direction == "in" else []
    overdue = overdue_outgoing(node, stored, node.clock.now()) if stored else set()
    envelope = view["envelope"] if isinstance(view.get("envelope"), dict) else {}
    model, unreadable = validated(view["type"], envelope.get("body"))
    return _ctx(request, "message", direction=direction, view=view,
                verification=verify(node, wire), receipts=receipts, overdue=sorted(overdue),
                escalations=escalations, noticed=noticed,
                sitrep=model if isinstance(model, Sitrep) else None,
                alert=model if isinstance(model, Alert) else None,
                unreadable=unreadable if view["type"] in ("sitrep", "alert") else None,
                features=collection(view_features(view, direction)),
                envelope_json=json.dumps(view["envelope"], indent=2, ensure_ascii=False))


async def _first_view(request: web.Request, node: NodeApi, view: dict[str, Any]) -> None:
    """Keep, once per operator, that they opened an incoming message (``message.viewed``:
    who read what, when, for the after-action reports of exercises)."""
    session = _require(request, "viewer")
    seen = await node.ledger.audit.entries(50, kind="message.viewed", subject=view["id"])
    if not any(e.actor == session.name for e in seen):
        await node.ledger.audit.record(session.name, "message.viewed", view["id"],
                                       f"from {view['from']}", node.clock.now())


async def evidence(request: web.Request) -> web.Response:
    """GET /console/messages/{id}/evidence.json: the signed evidence bundle (PROTOCOL.md
    §17), to be checked offline with ``crisisgw verify``."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    message_id = _valid_id(request)
    await _record(node, message_id)  # 404 unless the message is ours to show
    try:
        bundle = await node.evidence(message_id)
    except NotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    return web.Response(
        body=bundle, content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="evidence-{message_id}.json"'})
