"""The HTTP API for centre systems (aiohttp)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
from datetime import timedelta
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.errors import ConfigError, InvalidBody, InvalidRequest, NotFound
from gateway.formats.cap import parse_cap
from gateway.formats.geo import collection
from gateway.protocol.keys import fingerprint
from gateway.protocol.peerhealth import PeerHealth
from gateway.protocol.sitrep import PLAIN_TEXT
from gateway.protocol.types import INCIDENT_ID_PATTERN, format_time
from gateway.service import contacts
from gateway.service.incidents import incident_thread, timeline_csv
from gateway.service.node import NodeApi
from gateway.service.paging import next_cursor
from gateway.service.ports import IdempotencyKey
from gateway.service.submit import AlertSubmission, SitrepSubmission
from gateway.web import commchecks, exercises
from gateway.web.console import setup_console
from gateway.web.console.views import console_middleware, overdue_counts
from gateway.web.exports import render
from gateway.web.openapi import openapi_document
from gateway.web.problems import (
    problem,
    problem_middleware,
)
from gateway.web.requests import (
    CLIENT,
    NODE,
    after_cursor,
    before_seq,
    filters_of,
    message_id_of,
    page_of,
    read_body,
    read_json,
)
from gateway.web.shapes import (
    audit_json,
    directory_json,
    inbox_view,
    incident_features,
    message_json,
    security_json,
    stored_message,
)
from gateway.web.templates_api import templated, templates_route

log = structlog.get_logger("crisisgw.api")
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/v1/openapi.json"})
MAX_IDEMPOTENCY_KEY = 200


def _token_client(node: NodeApi, header: str | None) -> tuple[str, frozenset[str]] | None:
    """The client a bearer token belongs to, and its scopes (constant-time comparison)."""
    if not header or not header.startswith("Bearer "):
        return None
    digest = hashlib.sha256(header[7:].strip().encode()).hexdigest()
    found = None
    for client, expected, scopes in node.settings.api.token_hashes():
        if hmac.compare_digest(digest, expected):
            found = (client, scopes)
    return found


#: POST routes and the scope each needs; any other POST needs ``admin`` (fail closed).
_POST_SCOPES = (
    (re.compile(r"^/v1/(sitreps|alerts|commchecks)$"), "submit"),
    (re.compile(r"^/v1/messages/[^/]+/ack$"), "acknowledge"),
    (re.compile(r"^/v1/commchecks/fallback$"), "acknowledge"),
    (re.compile(r"^/v1/exercises(/[^/]+/[^/]+)?$"), "submit"),
)


def required_scope(method: str, path: str) -> str:
    """The scope a request needs: ``read`` for GET and HEAD, by route for POST."""
    if method in ("GET", "HEAD"):
        return "read"
    return next((scope for pattern, scope in _POST_SCOPES if pattern.match(path)), "admin")


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Bearer-token authentication for everything under /v1 but the OpenAPI document (and
    /metrics when ``[api] metrics_token``); each token may do only what its scopes allow."""
    node = request.app[NODE]
    public = PUBLIC - ({"/metrics"} if node.settings.api.metrics_token else set())
    if request.path in public or not (request.path.startswith("/v1/")
                                      or request.path == "/metrics"):
        return await handler(request)  # type: ignore[no-any-return]
    found = _token_client(node, request.headers.get("Authorization"))
    if found is None:
        return problem(401, "Unauthorized", "a valid bearer token is required",
                       headers={"WWW-Authenticate": 'Bearer realm="crisisgw"'})
    client, scopes = found
    needed = required_scope(request.method, request.path)
    if needed not in scopes:
        return problem(403, "Forbidden", f"this token ({client}) lacks the {needed} scope",
                       headers={"WWW-Authenticate":
                                f'Bearer realm="crisisgw", error="insufficient_scope", '
                                f'scope="{needed}"'})
    request[CLIENT] = client
    return await handler(request)  # type: ignore[no-any-return]


def _idempotency(request: web.Request, raw: bytes) -> IdempotencyKey | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest("Bad Idempotency-Key", f"1 to {MAX_IDEMPOTENCY_KEY} characters")
    return IdempotencyKey(client=request[CLIENT], key=key,
                          request_sha256=request_digest(request, raw))


def request_digest(request: web.Request, raw: bytes) -> str:
    """What an Idempotency-Key binds: the route, the media type, the query (the routing of
    a CAP XML submission lives there) and the body. A replay that changes any of them is
    a different request, not a retry."""
    query = sorted(request.query.items())
    head = json.dumps([request.method, request.path, request.content_type, query],
                      ensure_ascii=False).encode()
    return hashlib.sha256(head + b"\n" + raw).hexdigest()


def _accepted(node: NodeApi, msg_type: str, message_id: str, created: bool) -> web.Response:
    if created:
        node.metrics.submitted.labels(msg_type).inc()
    headers = {"Location": f"/v1/messages/{message_id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response({"id": message_id, "status": f"/v1/messages/{message_id}"},
                             status=202, headers=headers)


async def post_sitrep(request: web.Request) -> web.Response:
    """POST /v1/sitreps: validate, seal and store; 202 once durable."""
    node = request.app[NODE]
    data, raw = await read_json(request)
    data = templated(node.settings, data, "sitrep")  # a "template" member: its defaults first
    sub = SitrepSubmission.model_validate(data, context=PLAIN_TEXT)
    message_id, created = await node.submitter.submit_sitrep(sub, _idempotency(request, raw))
    return _accepted(node, "sitrep", message_id, created)


CAP_MEDIA_TYPES = frozenset({"application/cap+xml", "application/xml", "text/xml"})


async def post_alert(request: web.Request) -> web.Response:
    """POST /v1/alerts: a CAP alert as JSON (AlertSubmission) or as CAP 1.2 XML.

    With XML, the routing fields come from the query: ``to`` (comma-separated, required),
    ``tlp``, ``priority``, ``incident``, ``expires``.
    """
    node = request.app[NODE]
    if request.content_type in CAP_MEDIA_TYPES:

        raw = await read_body(request)
        alert = parse_cap(raw)
        routing: dict[str, Any] = {k: v for k, v in request.query.items()
                                   if k in ("tlp", "priority", "incident", "expires", "mode")}
        routing["to"] = [t for t in request.query.get("to", "").split(",") if t]
        sub = AlertSubmission.model_validate({**routing, "alert": alert})
    else:
        data, raw = await read_json(request)
        data = templated(node.settings, data, "alert")  # a "template" member: its defaults first
        sub = AlertSubmission.model_validate(data)
    message_id, created = await node.submitter.submit_alert(sub, _idempotency(request, raw))
    return _accepted(node, "alert", message_id, created)


async def get_message(request: web.Request) -> web.Response:
    """GET /v1/messages/{id}: our message with per-recipient states, or an incoming one."""
    node = request.app[NODE]
    message_id = message_id_of(request)
    found = await stored_message(node, message_id)
    if found is None:
        raise NotFound("Not found", f"no message {message_id}")
    direction, view, wire, receipts = found
    fmt = request.query.get("format", "json")
    if fmt != "json":
        return render(view["envelope"], wire, fmt)
    if direction == "out":
        view["receipts"] = receipts
    return web.json_response({**view, "direction": direction})


async def list_messages(request: web.Request) -> web.Response:
    """GET /v1/messages?type=&incident=&mode=&state=&peer=&since=&limit=&after="""
    filters, limit = filters_of(request, ("type", "incident", "mode", "state", "peer",
                                          "since"), paged=True)
    items = await request.app[NODE].ledger.outbox.list(filters, limit, after_cursor(request, 2))
    return page_of([message_json(m) for m in items], [m.cursor for m in items], limit)


async def get_inbox(request: web.Request) -> web.Response:
    """GET /v1/inbox?from=&type=&incident=&state=&priority=&mode=&limit=&after="""
    filters, limit = filters_of(request, ("from", "type", "incident", "state", "priority",
                                          "mode"), paged=True)
    if "from" in filters:
        filters["sender"] = filters.pop("from")
    entries = await request.app[NODE].ledger.inbox.list(filters, limit, after_cursor(request, 3))
    return page_of([inbox_view(e) for e in entries], [e.cursor for e in entries], limit)


async def post_ack(request: web.Request) -> web.Response:
    """POST /v1/messages/{id}/ack: acknowledge an incoming message."""
    node = request.app[NODE]
    message_id = message_id_of(request)
    by = request[CLIENT]
    if request.can_read_body:
        data, _ = await read_json(request)
        if isinstance(data, dict) and isinstance(data.get("by"), str):
            by = data["by"][:100]
    entry = await node.acknowledger.acknowledge(message_id, by, request.query.get("from"),
                                                actor=request[CLIENT])
    return web.json_response(inbox_view(entry))


async def get_peers(request: web.Request) -> web.Response:
    """GET /v1/peers: configured peers, their keys and link state."""

    node = request.app[NODE]
    stats = await node.ledger.stats()
    down = node.unreachable()
    peers = []
    for p in node.settings.peers:
        link = node.peer_links().get(p.id)
        backlog = stats.backlog
        peers.append({
            "id": p.id, "name": p.name, "country": p.country, "groups": list(p.groups),
            "suspended": p.suspended, "link_up": bool(link and link.connected),
            "link_tls": bool(link and link.secure),
            "link_problem": None if link is None or link.last_error is None else {
                "tls": link.tls_problem, "detail": link.last_error},
            "keys": [{"kid": k.kid, "fingerprint": fingerprint(k.key),
                      "not_after": k.not_after and format_time(k.not_after), "revoked": k.revoked}
                     for k in node.ring.keys.get(p.id, {}).values()],
            "backlog": backlog[p.id].count if p.id in backlog else 0,
            "unreachable": None if p.id not in down else _backed_off(down[p.id]),
        })
    return web.json_response({"me": node.me, "peers": peers})


def _backed_off(h: PeerHealth) -> dict[str, Any]:
    """How the dispatcher backs off a peer whose link failed."""
    return {"since": None if h.since is None else format_time(h.since),
            "failures": h.failures, "refused": h.refused,
            "next_probe": None if h.probe_at is None else format_time(h.probe_at)}


async def get_security_events(request: web.Request) -> web.Response:
    """GET /v1/security-events?limit=&after=: refused unauthenticated, forged or
    malformed input."""
    _, limit = filters_of(request, (), paged=True)
    ledger = request.app[NODE].ledger
    events = await ledger.security.recent(limit, before_seq(request))
    return web.json_response({"items": [security_json(e) for e in events],
                              "next": next_cursor([(str(e.seq),) for e in events], limit),
                              "suppressed": [security_json(c) for c in
                                             await ledger.security.suppressed()]})


def _incident_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if not re.fullmatch(INCIDENT_ID_PATTERN, value):
        raise NotFound("Not found", "not an incident id")
    return value


async def _thread(request: web.Request) -> dict[str, Any]:
    node = request.app[NODE]
    incident = _incident_id(request)
    thread = await incident_thread(node.ledger.incidents, incident, node.me)
    if thread is None:
        raise NotFound("Not found", f"no message on incident {incident}")
    return thread


async def list_incidents(request: web.Request) -> web.Response:
    """GET /v1/incidents?mode=&limit=&after=: one row per incident with its centres,
    activity and warnings, most recent activity first (from the incident index); the
    real incidents, or with ``mode=exercise`` those whose every message is exercise or
    test traffic."""
    filters, limit = filters_of(request, ("mode",), paged=True)
    board = filters.get("mode", "actual")
    if board not in ("actual", "exercise"):
        raise InvalidRequest("Bad mode", "mode is actual (the default) or exercise",
                             [{"loc": ["query", "mode"], "msg": "actual or exercise"}])
    rows = await request.app[NODE].ledger.incidents.index(
        after_cursor(request, 2), limit, exercise=board == "exercise")
    return page_of([r.as_json() for r in rows], [r.cursor for r in rows], limit)


async def get_incident(request: web.Request) -> web.Response:
    """GET /v1/incidents/{id}: latest report per centre, timeline, gap warnings."""
    return web.json_response(await _thread(request))


async def get_timeline_json(request: web.Request) -> web.Response:
    """GET /v1/incidents/{id}/timeline.json: who knew what, when."""
    thread = await _thread(request)
    return web.json_response({"incident": thread["incident"], "node": thread["node"],
                              "timeline": thread["timeline"], "warnings": thread["warnings"]})


async def get_timeline_csv(request: web.Request) -> web.Response:
    """GET /v1/incidents/{id}/timeline.csv: the timeline for an after-action evaluation."""
    thread = await _thread(request)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", thread["incident"])
    return web.Response(text=timeline_csv(thread), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="incident-{name}-timeline.csv"'})


async def get_areas_geojson(request: web.Request) -> web.Response:
    """GET /v1/incidents/{id}/areas.geojson: every centre's latest sitrep area and the
    incident's latest CAP areas, as a GeoJSON FeatureCollection (RFC 7946)."""
    thread = await _thread(request)
    features = await incident_features(request.app[NODE], thread)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", thread["incident"])
    return web.Response(text=json.dumps(collection(features), ensure_ascii=False),
                        content_type="application/geo+json", charset="utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="incident-{name}-areas.geojson"'})


async def get_audit(request: web.Request) -> web.Response:
    """GET /v1/audit?kind=&subject=&limit=&after=: the hash-chained audit log, newest
    first."""
    filters, limit = filters_of(request, ("kind", "subject"), paged=True)
    items = await request.app[NODE].ledger.audit.entries(
        limit, kind=filters.get("kind"), subject=filters.get("subject"),
        before=before_seq(request))
    return page_of([audit_json(e) for e in items], [(str(e.seq),) for e in items], limit)


async def get_checkpoint(request: web.Request) -> web.Response:
    """GET /v1/audit/checkpoint: the chain head signed now (or the latest if unchanged),
    to hand to peers; PROTOCOL.md §16."""
    wire = await request.app[NODE].checkpoint(force=True)
    return web.Response(body=wire, content_type="application/json")


async def rotate_key(request: web.Request) -> web.Response:
    """POST /v1/keys/rotate {"overlap_days": 7}: new signing key, announced to every peer."""
    node = request.app[NODE]
    data, _ = await read_json(request) if request.can_read_body else ({}, b"")
    if not isinstance(data, dict) or set(data) - {"overlap_days"}:
        raise InvalidBody("Bad request body", 'expected {"overlap_days": <0 to 90>}',
                              [{"loc": ["body"], "msg": "only overlap_days is allowed"}])
    days = data.get("overlap_days", 7)
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 <= days <= 90:
        raise InvalidBody("Bad overlap", "overlap_days is a number from 0 to 90",
                              [{"loc": ["overlap_days"], "msg": "0 to 90"}])
    result = await node.rotate_key(timedelta(days=days))
    await node.ledger.audit.record(request[CLIENT], "key.rotation_requested", result["kid"],
                                   "",
                            node.clock.now())
    return web.json_response(result)


async def revoke_key(request: web.Request) -> web.Response:
    """POST /v1/peers/{id}/keys/{kid}/revoke: refuse a peer's compromised key at once."""
    node = request.app[NODE]
    peer, kid = request.match_info["id"], request.match_info["kid"]
    try:
        await node.revoke_peer_key(peer, kid)
    except ConfigError as exc:
        raise NotFound("Not found", str(exc)) from exc
    await node.ledger.audit.record(request[CLIENT], "key.revocation_requested",
                                   f"{peer}/{kid}", "",
                            node.clock.now())
    return web.json_response({"peer": peer, "kid": kid, "revoked": True})


async def _contact_rows(node: NodeApi) -> list[dict[str, Any]]:
    own = [e.model_dump(mode="json") for e in node.settings.directory]
    return contacts.overview(node.me, own, {c: directory_json(d) for c, d in
                                            (await node.ledger.directory.all()).items()},
                             node.clock.now().date())


async def get_directory(request: web.Request) -> web.Response:
    """GET /v1/directory: every centre's contact points per field of work."""
    node = request.app[NODE]
    field = request.query.get("field")
    rows = [r for r in await _contact_rows(node) if field in (None, r["field"])]
    return web.json_response({"items": rows})


async def get_directory_csv(request: web.Request) -> web.Response:
    """GET /v1/directory.csv."""
    return web.Response(text=contacts.to_csv(await _contact_rows(request.app[NODE])),
                        content_type="text/csv", charset="utf-8")


async def get_directory_html(request: web.Request) -> web.Response:
    """GET /v1/directory.html: printable, PDF-ready."""
    node = request.app[NODE]
    return web.Response(text=contacts.to_html(await _contact_rows(node), node.me,
                                              node.clock.now().date()),
                        content_type="text/html", charset="utf-8")


async def publish_directory(request: web.Request) -> web.Response:
    """POST /v1/directory/publish: send our contact points to every peer now."""
    node = request.app[NODE]
    message_id = await node.publish_directory()
    return web.json_response({"id": message_id}, status=202)


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the ledger answers and our inbox consumer is connected."""
    node = request.app[NODE]
    checks = {"ledger": True, "inbox": node.inbox_link.connected}
    try:
        await node.ledger.ping()
    except Exception:  # noqa: BLE001 - any ledger failure means not ready
        checks["ledger"] = False
    ok = all(checks.values())
    return web.json_response({"status": "ready" if ok else "not ready", "checks": checks},
                             status=200 if ok else 503)


def _tls_metrics(node: NodeApi) -> None:
    """Which links run over TLS, and which have a TLS problem now (with its reason)."""
    node.metrics.tls_problem.clear()
    links: list[tuple[str, bool, str | None]] = [
        ("inbox", node.inbox_link.secure, node.inbox_link.tls_problem)]
    links += [(peer, link.secure, link.tls_problem) for peer, link in node.peer_links().items()]
    for name, secure, reason in links:
        node.metrics.link_tls.labels(name).set(1 if secure else 0)
        if reason is not None:
            node.metrics.tls_problem.labels(name, reason).set(1)


#: The ledger-backed gauges are refreshed this often, never per scrape.
METRICS_REFRESH = 5.0
METRICS_TASK: web.AppKey[asyncio.Task[None]] = web.AppKey("metrics_task")


async def refresh_metrics(node: NodeApi) -> None:
    """Recompute the gauges that need the ledger (delivery states, backlog, overdue)."""
    stats = await node.ledger.stats()
    for state, n in stats.deliveries.items():
        node.metrics.deliveries.labels(state).set(n)
    for p in node.settings.peers:
        backlog = stats.backlog.get(p.id)
        node.metrics.backlog.labels(p.id).set(backlog.count if backlog else 0)
    incoming, outgoing = await overdue_counts(node)
    node.metrics.overdue.labels("incoming").set(incoming)
    node.metrics.overdue.labels("outgoing").set(outgoing)


async def _metrics_loop(node: NodeApi) -> None:
    while True:
        try:
            await refresh_metrics(node)
        except Exception as exc:  # noqa: BLE001 - a failed refresh must not end the loop
            log.warning("metrics_refresh_failed", error=repr(exc)[:300])
        await asyncio.sleep(METRICS_REFRESH)


async def _start_metrics(app: web.Application) -> None:
    app[METRICS_TASK] = asyncio.create_task(_metrics_loop(app[NODE]), name="metrics-refresh")


async def _stop_metrics(app: web.Application) -> None:
    task = app.get(METRICS_TASK)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics: in-memory state and the gauges refreshed in the background, so
    a scrape (or a flood of them) never touches the ledger."""
    node = request.app[NODE]
    for p in node.settings.peers:
        link = node.peer_links().get(p.id)
        node.metrics.peer_up.labels(p.id).set(1 if link and link.connected else 0)
    _tls_metrics(node)
    node.metrics.inbox_up.set(1 if node.inbox_link.connected else 0)
    node.metrics.dead_letters.set(node.inbox_link.dead_letters)
    body = generate_latest(node.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def get_openapi(_request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API."""
    return web.json_response(openapi_document())


#: Every route of the API: the OpenAPI document describes each one (a test checks it).
ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("POST", "/v1/sitreps", post_sitrep),
    ("POST", "/v1/alerts", post_alert),
    ("GET", "/v1/templates", templates_route(NODE)),
    ("GET", "/v1/messages", list_messages),
    ("GET", "/v1/messages/{id}", get_message),
    ("POST", "/v1/messages/{id}/ack", post_ack),
    ("GET", "/v1/inbox", get_inbox),
    ("GET", "/v1/peers", get_peers),
    ("GET", "/v1/incidents", list_incidents),
    # Incident ids may contain "/": the suffixed routes are registered first.
    ("GET", r"/v1/incidents/{id:.+}/timeline.csv", get_timeline_csv),
    ("GET", r"/v1/incidents/{id:.+}/areas.geojson", get_areas_geojson),
    ("GET", r"/v1/incidents/{id:.+}/timeline.json", get_timeline_json),
    ("GET", r"/v1/incidents/{id:.+}", get_incident),
    ("GET", "/v1/security-events", get_security_events),
    ("GET", "/v1/audit", get_audit),
    ("GET", "/v1/audit/checkpoint", get_checkpoint),
    ("GET", "/v1/directory", get_directory),
    ("GET", "/v1/directory.csv", get_directory_csv),
    ("GET", "/v1/directory.html", get_directory_html),
    ("POST", "/v1/directory/publish", publish_directory),
    ("POST", "/v1/keys/rotate", rotate_key),
    ("POST", "/v1/peers/{id}/keys/{kid}/revoke", revoke_key),
    *commchecks.ROUTES,
    *exercises.ROUTES,
    ("GET", "/v1/openapi.json", get_openapi),
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics),
)

#: What an HTTPS node tells browsers: HTTPS only, for a year (RFC 6797).
HSTS = "max-age=31536000"


@web.middleware
async def hsts_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every answer of a node that serves HTTPS itself carries Strict-Transport-Security."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        exc.headers["Strict-Transport-Security"] = HSTS
        raise
    response.headers["Strict-Transport-Security"] = HSTS
    return response


#: The API's exports a console page links to, served under /console with the operator's
#: session (a browser has no bearer token): the same handlers, the console's login.
CONSOLE_EXPORTS: tuple[tuple[str, Any], ...] = (
    ("/console/exports/directory.csv", get_directory_csv),
    ("/console/exports/directory.html", get_directory_html),
    *commchecks.CONSOLE_EXPORTS,
    *exercises.CONSOLE_EXPORTS,
    (r"/console/incidents/{id:.+}/timeline.csv", get_timeline_csv),
    (r"/console/incidents/{id:.+}/areas.geojson", get_areas_geojson),
)


def build_app(node: NodeApi) -> web.Application:
    """The aiohttp application of a node."""
    https = [hsts_middleware] if node.settings.api.https else []
    app = web.Application(middlewares=[*https, problem_middleware, auth_middleware,
                                       console_middleware],
                          client_max_size=node.settings.api.max_body_bytes + 1024)
    app[NODE] = node
    setup_console(app, node, exports=CONSOLE_EXPORTS)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.on_startup.append(_start_metrics)
    app.on_cleanup.append(_stop_metrics)
    return app
