"""The console's Exercises page, for the exercise controller: start a scenario or the
replay of a past incident, follow it inject by inject, pause, resume and stop it, and
open its after-action report."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from gateway.errors import RequestRefused
from gateway.web.console.views import NODE_KEY, _audit, _ctx, _require
from gateway.web.exercise_report import collect, report
from gateway.web.exercises import start_from, state_json


@aiohttp_jinja2.template("exercises.html")
async def exercises_page(request: web.Request) -> dict[str, Any]:
    """GET /console/exercises: the runs, and the forms to start one."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    incidents = [s.incident for s in await node.ledger.incidents.index(None, 50)
                 if s.actual_messages]
    return _ctx(request, "exercises", runs=await node.ledger.exercises.runs(50),
                incidents=incidents, error=request.query.get("error", "")[:300],
                centres=[node.me, *(c.id for c in node.settings.exercise.centres)])


async def start_exercise(request: web.Request) -> web.StreamResponse:
    """POST /console/exercises: start a scenario (pasted TOML) or a replay."""
    session = _require(request, "operator")
    node = request.app[NODE_KEY]
    form = await request.post()
    data: dict[str, Any] = {}
    if form.get("replay"):
        data["replay"] = str(form["replay"])
    else:
        data["scenario"] = str(form.get("scenario", ""))
    speed = str(form.get("speed", "")).strip()
    try:
        if speed:
            data["speed"] = float(speed)
        run_id = await start_from(node, data, session.name)
    except (RequestRefused, ValueError) as exc:
        detail = getattr(exc, "detail", str(exc))
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                           for e in getattr(exc, "errors", [])[:5])
        raise web.HTTPSeeOther("/console/exercises?" + urlencode(
            {"error": f"{detail} {errors}".strip()[:300]})) from exc
    await _audit(request, "exercise.requested", run_id, str(data.get("replay", "scenario")))
    raise web.HTTPSeeOther(f"/console/exercises/{run_id}")


def _run_id(request: web.Request) -> str:
    try:
        return str(uuid.UUID(request.match_info["id"]))
    except ValueError as exc:
        raise web.HTTPNotFound(text="no such exercise") from exc


@aiohttp_jinja2.template("exercise.html")
async def exercise_page(request: web.Request) -> dict[str, Any]:
    """GET /console/exercises/{id}: a run inject by inject, its controls, and per inject
    who received and acknowledged it (the after-action report as it stands)."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    try:
        run, scenario = await node.exercises.load(_run_id(request))
    except RequestRefused as exc:
        raise web.HTTPNotFound(text="no such exercise") from exc
    facts = await collect(node, node.exercises.remote, run, scenario)
    rep = report(run, scenario, facts, node.clock.now())
    return _ctx(request, "exercises", run=state_json(run, scenario, node.clock.now()),
                report=rep, live=run.status.value in ("running", "paused"))


async def control(request: web.Request) -> web.StreamResponse:
    """POST /console/exercises/{id}/pause|resume|stop."""
    session = _require(request, "operator")
    node = request.app[NODE_KEY]
    run_id, action = _run_id(request), request.match_info["action"]
    if action not in ("pause", "resume", "stop"):
        raise web.HTTPNotFound(text="no such action")
    try:
        await node.exercises.control(run_id, action, session.name)
    except RequestRefused as exc:
        raise web.HTTPConflict(text=exc.detail) from exc
    raise web.HTTPSeeOther(f"/console/exercises/{run_id}")
