"""The operator console: server-rendered pages, live updates over server-sent events."""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp_jinja2
import structlog
from aiohttp import web

from gateway.errors import RequestRefused
from gateway.protocol.types import Priority, format_time, parse_optional_time
from gateway.service.node import NodeApi
from gateway.service.paging import decode_cursor, next_cursor
from gateway.service.records import OutgoingView
from gateway.web.console import i18n
from gateway.web.console.auth import (
    SESSION_COOKIE,
    Busy,
    LoginLimiter,
    Operators,
    Session,
    Sessions,
    csrf_ok,
    password_tag,
    role_allows,
)
from gateway.web.console.readable import preview
from gateway.web.console.separation import EXERCISE_TRAFFIC, exercise_traffic, list_filter
from gateway.web.limits import read_deadline
from gateway.web.shapes import (
    inbox_view,
    message_json,
)

log = structlog.get_logger("crisisgw.console")
NODE_KEY: web.AppKey[NodeApi] = web.AppKey("console_node")
SESSIONS: web.AppKey[Sessions] = web.AppKey("console_sessions")
SESSION: web.RequestKey[Session] = web.RequestKey("console_session", Session)
LOGIN_CSRF: web.RequestKey[str] = web.RequestKey("login_csrf", str)
OPERATORS: web.AppKey[Operators] = web.AppKey("console_operators")
LIMITER: web.AppKey[LoginLimiter] = web.AppKey("console_limiter")
LANG_COOKIE = "crisisgw_lang"
PRIORITY_ORDER = {"flash": 0, "urgent": 1, "routine": 2}
#: Rows per page of the console's lists (older ones through the "Older" link).
PAGE = 200
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _session(request: web.Request) -> Session | None:
    """The request's session, re-checked against the account as it is now."""
    return await request.app[SESSIONS].check(request.cookies.get(SESSION_COOKIE),
                                             request.app[OPERATORS])


def _language(request: web.Request, session: Session | None) -> str:
    if session is not None:
        return session.lang
    return request.cookies.get(LANG_COOKIE) or i18n.pick(request.headers.get("Accept-Language"))


#: No inline script or style, no other origin; <base> and form targets pinned to us.
CSP = ("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication, CSRF on every POST, language, and security headers."""
    if not request.path.startswith("/console"):
        return await handler(request)
    session = await _session(request)
    i18n.use(_language(request, session))
    public = request.path in ("/console/login",) or request.path.startswith("/console/static/")
    if session is None and not public:
        if request.method == "GET" and request.path != "/console/events":
            raise web.HTTPFound("/console/login")
        raise web.HTTPUnauthorized(text="login required")
    if request.method == "POST":
        try:
            async with read_deadline(request.app[NODE_KEY].settings.api.body_seconds):
                form = await request.post()
        except TimeoutError as exc:
            raise web.HTTPRequestTimeout(text="the form did not arrive in time") from exc
        given = str(form.get("csrf_token") or request.headers.get("X-CSRF-Token") or "")
        expected = session.csrf if session is not None else request.cookies.get("crisisgw_csrf")
        if expected is None or not csrf_ok(expected, given):
            log.warning("console_csrf_refused", path=request.path)
            raise web.HTTPForbidden(text="CSRF token missing or wrong")
    if session is not None:
        request[SESSION] = session
        if request.method == "GET" and not public and request.path != "/console/events":
            # the EXERCISE banner every page carries (two indexed counts)
            request[EXERCISE_TRAFFIC] = await exercise_traffic(request.app[NODE_KEY])
    try:
        response = await handler(request)
    except web.HTTPRedirection as exc:  # raised redirects (login, logout) get them too
        _harden(exc)
        raise
    _harden(response)
    return response


def _harden(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")


def _https(request: web.Request) -> bool:
    """Whether the node serves HTTPS itself: then its cookies are Secure."""
    return request.app[NODE_KEY].settings.api.https


def _require(request: web.Request, role: str) -> Session:
    session: Session | None = request.get(SESSION)
    if session is None:
        raise web.HTTPUnauthorized(text="login required")
    if not role_allows(session.role, role):
        raise web.HTTPForbidden(text=f"needs the {role} role")
    return session


async def _audit(request: web.Request, action: str, target: str, detail: str = "") -> None:
    node = request.app[NODE_KEY]
    session: Session | None = request.get(SESSION)
    actor = session.name if session else "-"
    await node.ledger.audit.record(actor, action, target, detail, node.clock.now())
    log.info("console_action", operator=actor, action=action, target=target)


def _ctx(request: web.Request, page: str, **values: Any) -> dict[str, Any]:
    node = request.app[NODE_KEY]
    session: Session | None = request.get(SESSION)
    return {"page": page, "session": session, "me": node.me, "centre_name":
            node.settings.node.name, "lang": i18n.current(), "languages": i18n.LANGUAGES,
            "csrf": session.csrf if session else request.get(LOGIN_CSRF, ""),
            "can_operate": bool(session and role_allows(session.role, "operator")),
            "here": request.path_qs if request.method == "GET" else request.path,
            "exercise_traffic": request.get(EXERCISE_TRAFFIC), **values}


# -- login -----------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    """GET /console/login."""

    token = request.cookies.get("crisisgw_csrf") or secrets.token_urlsafe(32)
    request[LOGIN_CSRF] = token
    response = aiohttp_jinja2.render_template("login.html", request, _ctx(request, "login"))
    response.set_cookie("crisisgw_csrf", token, httponly=True, samesite="Strict",
                        path="/console", secure=_https(request))
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """POST /console/login: check the password, rate-limited, then start a session."""
    form = await request.post()
    name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))[:256]
    remote = request.remote or "?"
    wait = await request.app[LIMITER].wait(remote, name)
    if wait > 0:
        log.warning("console_login_rate_limited", operator=name, remote=remote,
                    retry_after=round(wait, 1))
        raise web.HTTPTooManyRequests(text=f"too many failed attempts; try again in "
                                      f"{math.ceil(wait)} s",
                                      headers={"Retry-After": str(math.ceil(wait))})
    try:
        entry = await request.app[OPERATORS].verify(name, password)
    except Busy as exc:
        log.warning("console_login_busy", remote=remote)
        raise web.HTTPTooManyRequests(text="too many logins at once; try again",
                                      headers={"Retry-After": "1"}) from exc
    node = request.app[NODE_KEY]
    if entry is None:
        await request.app[LIMITER].failed(remote, name)
        log.warning("console_login_failed", operator=name, remote=remote)
        await node.ledger.audit.record(name or "-", "session.login_failed", remote, "",
                                       node.clock.now())
        request[LOGIN_CSRF] = request.cookies.get("crisisgw_csrf", "")
        return aiohttp_jinja2.render_template(
            "login.html", request, _ctx(request, "login", error=True), status=401)
    await request.app[LIMITER].succeeded(remote, name)
    token, session = await request.app[SESSIONS].create(entry.name, entry.role, i18n.current(),
                                                        password_tag(entry))
    request[SESSION] = session
    await _audit(request, "session.login", remote)
    response = web.HTTPSeeOther("/console")
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict",
                        path="/console", secure=_https(request))
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /console/logout."""
    await _audit(request, "session.logout", "")
    await request.app[SESSIONS].drop(request.cookies.get(SESSION_COOKIE))
    response = web.HTTPSeeOther("/console/login")
    response.del_cookie(SESSION_COOKIE, path="/console")
    raise response


def back_to(form: Any, default: str) -> str:
    """The form's ``next`` page (the same page, with its filters) when it is one of the
    console's own (no "\\", no control or space), else ``default``."""
    back = str(form.get("next") or default)
    ours = back.startswith("/console") and "\\" not in back and \
        not any(ord(c) < 0x21 for c in back)
    return back if ours else default


async def set_language(request: web.Request) -> web.StreamResponse:
    """POST /console/language: remembered in the session and a year-long cookie."""
    form = await request.post()
    lang = str(form.get("lang", ""))
    if lang not in i18n.LANGUAGES:
        raise web.HTTPBadRequest(text="unknown language")
    session = _require(request, "viewer")
    await request.app[SESSIONS].set_language(request.cookies.get(SESSION_COOKIE), session, lang)
    await _audit(request, "session.language", lang)
    response = web.HTTPSeeOther(back_to(form, "/console"))
    response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="Strict",
                        path="/console", secure=_https(request))
    raise response


# -- data ------------------------------------------------------------------------------


def _deadline(node: NodeApi, priority: str) -> timedelta:
    return timedelta(seconds=node.settings.console.deadlines.get(priority, 14400.0))



def overdue_outgoing(node: NodeApi, message: OutgoingView, now: datetime) -> set[str]:
    """Recipients that have not acknowledged ``message`` (an actual one: exercises and
    tests have no deadline) by its priority's deadline."""
    created = parse_optional_time(message.created)
    if message.mode != "actual" or created is None or \
            now < created + _deadline(node, message.priority):
        return set()  # an exercise or test has no deadline

    return {r.centre for r in message.recipients
            if r.state in ("queued", "sent", "delivered")}


def overdue_incoming(node: NodeApi, item: dict[str, Any], now: datetime) -> bool:
    """An incoming actual message still unacknowledged at its priority's deadline."""
    received = parse_optional_time(item["received_at"])
    return (item["state"] == "delivered" and item["mode"] == "actual" and received is not None
            and now >= received + _deadline(node, item["priority"]))


def _cutoffs(node: NodeApi, now: datetime) -> dict[str, str]:
    """Per priority, the latest creation (or reception) time that is overdue now."""
    return {p.value: format_time(now - _deadline(node, p.value)) for p in Priority}


async def overdue_counts(node: NodeApi) -> tuple[int, int]:
    """(incoming messages, outgoing recipients) past their acknowledgement deadline,
    counted on the ledger's indexes of unacknowledged messages."""
    cutoffs = _cutoffs(node, node.clock.now())
    return (await node.ledger.inbox.overdue(cutoffs),
            await node.ledger.outbox.overdue(cutoffs))


# -- pages -----------------------------------------------------------------------------


@aiohttp_jinja2.template("outbox.html")
async def outbox(request: web.Request) -> dict[str, Any]:
    """GET /console/outbox?incident=&state=&peer=&mode=."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    filters = {k: v for k, v in request.query.items()
               if k in ("incident", "state", "peer") and v} | list_filter(request.query)
    after = console_after(request, 2)
    page = await node.ledger.outbox.list(filters, PAGE, after)
    messages = outbox_items(node, page, node.clock.now())
    return _ctx(request, "outbox", messages=messages, filters=filters,
                paused=bool(filters or after),
                older=older_link(request, filters, [m.cursor for m in page]),
                peers=[p.id for p in node.settings.peers],
                states=("queued", "sent", "delivered", "acknowledged", "rejected", "expired"))


def console_after(request: web.Request, arity: int) -> tuple[str, ...] | None:
    """``?after=`` of a console list page (400 if it is not a cursor of that list)."""
    cursor = request.query.get("after")
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor, arity)
    except RequestRefused as exc:
        raise web.HTTPBadRequest(text=exc.detail) from exc


def older_link(request: web.Request, filters: dict[str, str],
               cursors: list[tuple[str, ...]]) -> str | None:
    """The link to the next (older) page of a list, None on its last page."""
    cursor = next_cursor(cursors, PAGE)
    if cursor is None:
        return None
    return str(request.rel_url.with_query({**filters, "after": cursor}))


def _elapsed(start: str | None, end: str | None) -> str | None:
    a, b = parse_optional_time(start), parse_optional_time(end)
    if a is None or b is None:
        return None
    seconds = max(0.0, (b - a).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def outbox_items(node: NodeApi, page: list[OutgoingView], now: datetime
                 ) -> list[dict[str, Any]]:
    """Outbox rows as the page draws them (newest first), with overdue recipients and
    the time each took to deliver and acknowledge."""
    messages = []
    for stored in page:
        m = message_json(stored)
        messages.append(m)
        m["overdue"] = sorted(overdue_outgoing(node, stored, now))
        for r in m["recipients"]:
            r["to_delivered"] = _elapsed(m["created"], r["delivered_at"])
            r["to_acknowledged"] = _elapsed(m["created"], r["acknowledged_at"])
    return messages


def inbox_items(node: NodeApi, page: list[Any], now: datetime) -> list[dict[str, Any]]:
    """Inbox rows in the page's order: what waits for an acknowledgement first, by
    priority, newest first within each; ``group`` is that first key, for the script
    that places a row arriving live."""
    items = [inbox_view(e) for e in page]
    for item in items:
        item["overdue"] = overdue_incoming(node, item, now)
        item["group"] = f"{int(item['state'] != 'delivered')}" \
                        f"{PRIORITY_ORDER.get(item['priority'], 3)}"
    items.sort(key=lambda e: e["received_at"], reverse=True)
    items.sort(key=lambda e: e["group"])
    return items


def with_preview(item: dict[str, Any], lang: str) -> dict[str, Any]:
    """An inbox row with its one-line preview in ``lang``."""
    return {**item, "preview": preview(item["type"], item.get("body"), lang)}


@aiohttp_jinja2.template("inbox.html")
async def inbox(request: web.Request) -> dict[str, Any]:
    """GET /console/inbox?incident=&priority=&state=&mode=: by priority, unacknowledged
    urgent and flash first."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    filters = {k: v for k, v in request.query.items()
               if k in ("incident", "priority", "state") and v} | list_filter(request.query)
    after = console_after(request, 3)
    page = await node.ledger.inbox.list(filters, PAGE, after)
    entries = [with_preview(item, i18n.current())
               for item in inbox_items(node, page, node.clock.now())]
    return _ctx(request, "inbox", items=entries, filters=filters, paused=bool(filters or after),
                older=older_link(request, filters, [e.cursor for e in page]))


async def acknowledge(request: web.Request) -> web.StreamResponse:
    """POST /console/inbox/{sender}/{id}/ack: the signed `acknowledged` receipt."""
    session = _require(request, "operator")
    node = request.app[NODE_KEY]
    sender, message_id = request.match_info["sender"], request.match_info["id"]
    try:
        await node.acknowledger.acknowledge(message_id, session.name, sender)
    except RequestRefused as exc:
        raise web.HTTPConflict(text=exc.detail) from exc
    await _audit(request, "message.acknowledge_requested", f"{sender}/{message_id}")
    raise web.HTTPSeeOther(back_to(await request.post(), "/console/inbox"))
