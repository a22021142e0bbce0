"""The operator console, served by every node at /console."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway.config import Settings
from gateway.service.node import NodeApi
from gateway.web.console import i18n, readable
from gateway.web.console.auth import LoginLimiter, Operators, Sessions
from gateway.web.console.checks import commchecks_page, confirm_code, fallback_link
from gateway.web.console.compose import compose_form, compose_next, compose_send
from gateway.web.console.exercises import control, exercise_page, exercises_page, start_exercise
from gateway.web.console.live import LiveFeed
from gateway.web.console.overview import overview, run_commcheck
from gateway.web.console.records import directory, evidence, incident, incidents, message
from gateway.web.console.stream import LIVE, RENDER, events, live_read, renderers
from gateway.web.console.views import (
    LIMITER,
    NODE_KEY,
    OPERATORS,
    SESSIONS,
    Handler,
    acknowledge,
    inbox,
    login,
    login_form,
    logout,
    outbox,
    set_language,
)

STATES = ("queued", "sent", "delivered", "acknowledged", "rejected", "expired")


#: An export is a standalone document: its own inline styles, nothing else, no script.
EXPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
              "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _export(handler: Handler) -> Handler:
    async def run(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        response.headers["Content-Security-Policy"] = EXPORT_CSP
        return response

    return run


#: The console's pages and form targets.
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/console", overview),
    ("GET", "/console/", overview),
    ("GET", "/console/login", login_form),
    ("POST", "/console/login", login),
    ("POST", "/console/logout", logout),
    ("POST", "/console/language", set_language),
    ("GET", "/console/outbox", outbox),
    ("GET", "/console/inbox", inbox),
    ("POST", "/console/inbox/{sender}/{id}/ack", acknowledge),
    ("GET", "/console/events", events),
    ("GET", "/console/incidents", incidents),
    ("GET", "/console/directory", directory),
    ("GET", r"/console/incidents/{id:.+}", incident),
    ("GET", "/console/messages/{id}", message),
    ("GET", "/console/messages/{id}/evidence.json", evidence),
    ("POST", "/console/commcheck", run_commcheck),
    ("GET", "/console/commchecks", commchecks_page),
    ("GET", "/console/exercises", exercises_page),
    ("POST", "/console/exercises", start_exercise),
    ("GET", "/console/exercises/{id}", exercise_page),
    ("POST", "/console/exercises/{id}/{action}", control),
    ("GET", "/console/fallback", fallback_link),
    ("POST", "/console/fallback", confirm_code),
    ("GET", "/console/compose", compose_form),
    ("GET", "/console/compose/next", compose_next),
    ("POST", "/console/compose", compose_send),
)


def setup_console(app: web.Application, node: NodeApi,
                  exports: Iterable[tuple[str, Handler]] = ()) -> None:
    """Mount the console (pages, static files, live events) on ``app``; ``exports`` are
    GET routes under /console served with the console's session (registered first)."""
    console = node.settings.console
    app[NODE_KEY] = node
    app[SESSIONS] = Sessions(lifetime=console.session_hours * 3600, store=node.ledger.sessions)
    app[OPERATORS] = Operators(console.operators)

    def reload_accounts(new: Settings) -> None:
        app[OPERATORS].replace(new.console.operators)

    async def load_sessions(app: web.Application) -> None:
        await app[SESSIONS].load()

    app.on_startup.append(load_sessions)
    app[LIVE] = LiveFeed(node, live_read)

    async def stop_live(app: web.Application) -> None:
        await app[LIVE].close()

    app.on_shutdown.append(stop_live)

    node.subscribe_reload(reload_accounts)
    app[LIMITER] = LoginLimiter(per_minute=console.login_attempts_per_minute,
                                store=node.ledger.logins)
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("gateway.web.console", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        extensions=["jinja2.ext.i18n"], finalize=i18n.visible_controls)
    env.install_gettext_callables(  # type: ignore[attr-defined]  # added by the i18n extension
        gettext=i18n._, ngettext=i18n.ngettext, newstyle=True)
    env.globals["STATES"] = STATES
    env.filters["label"] = i18n.label
    env.filters["languages"] = readable.languages
    env.filters["pick"] = readable.pick
    env.filters["cap_info"] = readable.cap_info
    app[RENDER] = renderers(app)
    static = Path(str(resources.files("gateway.web.console").joinpath("static")))
    app.router.add_static("/console/static/", static, name="console_static")
    for path, handler in exports:
        app.router.add_get(path, _export(handler))
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
