"""The HTTP API for centre systems (aiohttp)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import timedelta
from typing import Any

import structlog
from aiohttp import web

from gateway.errors import ConfigError, InvalidBody, InvalidRequest, NotFound
from gateway.formats.cap import parse_cap
from gateway.protocol.keys import fingerprint
from gateway.protocol.peerhealth import PeerHealth
from gateway.protocol.sitrep import PLAIN_TEXT
from gateway.protocol.types import format_time
from gateway.service.node import NodeApi
from gateway.service.paging import next_cursor
from gateway.service.ports import IdempotencyKey
from gateway.service.submit import AlertSubmission, SitrepSubmission
from gateway.web import commchecks, exercises, health, records_api
from gateway.web.console import setup_console
from gateway.web.console.views import console_middleware
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
    inbox_view,
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
    *records_api.INCIDENT_ROUTES,
    ("GET", "/v1/security-events", get_security_events),
    ("GET", "/v1/audit", get_audit),
    ("GET", "/v1/audit/checkpoint", get_checkpoint),
    *records_api.DIRECTORY_ROUTES,
    ("POST", "/v1/keys/rotate", rotate_key),
    ("POST", "/v1/peers/{id}/keys/{kid}/revoke", revoke_key),
    *commchecks.ROUTES,
    *exercises.ROUTES,
    ("GET", "/v1/openapi.json", get_openapi),
    *health.ROUTES,
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
    *records_api.CONSOLE_EXPORTS,
    *commchecks.CONSOLE_EXPORTS,
    *exercises.CONSOLE_EXPORTS,
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
    app.on_startup.append(health.start_metrics)
    app.on_cleanup.append(health.stop_metrics)
    return app
