"""The API of exercises: start one (a scenario, or the replay of a past incident), follow
it, pause, resume and stop it, and its after-action report."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.errors import InvalidBody, NotFound
from gateway.protocol.exercise import Run, Scenario, next_at
from gateway.protocol.types import INCIDENT_ID_PATTERN, format_time, parse_optional_time
from gateway.service.exercise_scenario import parse_scenario, replayed, scenario_of
from gateway.service.node import NodeApi
from gateway.web.exercise_report import collect, report, report_csv, report_html
from gateway.web.requests import CLIENT, NODE, read_body
from gateway.web.shapes import inbox_view, message_json

TOML_TYPES = frozenset({"application/toml", "text/toml", "text/plain"})


async def incident_messages(node: NodeApi, incident: str) -> list[dict[str, Any]]:
    """The sitreps and alerts of ``incident`` this node holds (ours and those it
    received, not refused), oldest first, as :func:`replayed` takes them."""
    out = []
    for item in await node.ledger.incidents.thread_items(incident):
        if item.type not in ("sitrep", "alert"):
            continue
        if item.direction == "out":
            stored = await node.ledger.outbox.get(item.id)
            envelope = message_json(stored)["envelope"] if stored else None
        else:
            entry = await node.ledger.inbox.get(item.sender, item.id)
            envelope = inbox_view(entry)["envelope"] if entry and entry.state != "rejected" \
                else None
        if not isinstance(envelope, dict):
            continue
        out.append({"id": item.id, "from": envelope["from"], "type": item.type,
                    "to": [c for c in envelope["to"] if c != envelope["from"]],
                    "created": envelope["created"], "tlp": envelope["tlp"],
                    "priority": envelope["priority"], "body": envelope["body"]})
    out.sort(key=lambda m: parse_optional_time(m["created"]) or datetime.min)
    return out


async def replay_scenario(node: NodeApi, incident: str, speed: float, run_hint: str
                          ) -> Scenario:
    """A past incident as a scenario (:func:`replayed`)."""
    if not re.fullmatch(INCIDENT_ID_PATTERN, incident):
        raise InvalidBody("Invalid replay", "not an incident id",
                          [{"loc": ["replay"], "msg": "not an incident id"}])
    messages = await incident_messages(node, incident)
    if not messages:
        raise NotFound("Not found", f"no sitrep or alert of incident {incident} here")
    return replayed(incident, speed, messages, run_hint)


def state_json(run: Run, scenario: Scenario, now: datetime) -> dict[str, Any]:
    """A run as the API and the console show it."""
    nxt = next_at(run, scenario, now)
    return {
        "id": run.id, "name": run.name, "status": run.status.value, "speed": run.speed,
        "started_at": format_time(run.started_at), "minute": round(run.minute(now), 2),
        "ended_at": format_time(run.ended_at) if run.ended_at else None,
        "next_at": format_time(nxt) if nxt else None,
        "sent": len(run.sent), "total": len(scenario.injects),
        "injects": [{
            "index": n, "minute": i.minute, "from": i.sender, "to": list(i.to),
            "type": i.kind, "note": i.note,
            "message_id": run.sent[n].message_id if n in run.sent else None,
            "sent_at": format_time(run.sent[n].at) if n in run.sent else None,
            "errors": [e for _, e in run.failures.get(n, [])]}
            for n, i in enumerate(scenario.injects)]}


async def start_from(node: NodeApi, data: Any, by: str) -> str:
    """Start the run ``data`` asks for: ``{"scenario": <TOML text or object>}`` or
    ``{"replay": <incident id>}``, with an optional ``speed``."""
    if not isinstance(data, dict) or ("scenario" in data) == ("replay" in data):
        raise InvalidBody("Invalid body", "give either 'scenario' or 'replay'",
                          [{"loc": ["scenario"], "msg": "scenario or replay required"}])
    speed = data.get("speed")
    if speed is not None and (not isinstance(speed, int | float) or not 0 < speed <= 3600):
        raise InvalidBody("Invalid body", "speed is a number in (0, 3600]",
                          [{"loc": ["speed"], "msg": "out of range"}])
    if "replay" in data:
        scenario = await replay_scenario(node, str(data["replay"]), float(speed or 1.0),
                                         uuid.uuid4().hex[:8])
    elif isinstance(data["scenario"], str):
        scenario = parse_scenario(data["scenario"])
    else:
        scenario = scenario_of(data["scenario"])
    return await node.exercises.start(scenario, by, float(speed) if speed else None)


async def post_exercise(request: web.Request) -> web.Response:
    """POST /v1/exercises: a scenario as TOML (``application/toml``) or JSON
    (``{"scenario": ...}`` or ``{"replay": "<incident>"}``, optional ``speed``)."""
    node = request.app[NODE]
    raw = await read_body(request)
    if request.content_type in TOML_TYPES:
        data: Any = {"scenario": raw.decode("utf-8", errors="replace")}
        if "speed" in request.query:
            data["speed"] = float(request.query["speed"])
    else:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidBody("Invalid body", "send TOML or JSON") from exc
    run_id = await start_from(node, data, request[CLIENT])
    return web.json_response({"id": run_id, "status": f"/v1/exercises/{run_id}"}, status=201)


def _run_id(request: web.Request) -> str:
    value = request.match_info["id"]
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise NotFound("Not found", "exercise ids are UUIDs") from exc


async def list_exercises(request: web.Request) -> web.Response:
    """GET /v1/exercises: the latest runs, newest first."""
    return web.json_response({"items": await request.app[NODE].ledger.exercises.runs(100)})


async def get_exercise(request: web.Request) -> web.Response:
    """GET /v1/exercises/{id}: where a run stands, inject by inject."""
    node = request.app[NODE]
    run, scenario = await node.exercises.load(_run_id(request))
    return web.json_response(state_json(run, scenario, node.clock.now()))


async def control_exercise(request: web.Request) -> web.Response:
    """POST /v1/exercises/{id}/pause|resume|stop."""
    node = request.app[NODE]
    action = request.match_info["action"]
    if action not in ("pause", "resume", "stop"):
        raise NotFound("Not found", f"no action {action[:20]}")
    run = await node.exercises.control(_run_id(request), action, request[CLIENT])
    _, scenario = await node.exercises.load(run.id)
    return web.json_response(state_json(run, scenario, node.clock.now()))


async def after_action(node: NodeApi, run_id: str) -> dict[str, Any]:
    """The after-action report of one run."""
    run, scenario = await node.exercises.load(run_id)
    facts = await collect(node, node.exercises.remote, run, scenario)
    return report(run, scenario, facts, node.clock.now())


async def get_report(request: web.Request) -> web.Response:
    """GET /v1/exercises/{id}/report.json|.csv|.html: the after-action report."""
    node = request.app[NODE]
    fmt = request.match_info["fmt"]
    if fmt not in ("json", "csv", "html"):
        raise NotFound("Not found", "the report is report.json, report.csv or report.html")
    rep = await after_action(node, _run_id(request))
    if fmt == "csv":
        return web.Response(text=report_csv(rep), content_type="text/csv", charset="utf-8")
    if fmt == "html":
        return web.Response(text=report_html(rep, node.me), content_type="text/html",
                            charset="utf-8")
    return web.json_response(rep)


ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("POST", "/v1/exercises", post_exercise),
    ("GET", "/v1/exercises", list_exercises),
    ("GET", "/v1/exercises/{id}/report.{fmt}", get_report),
    ("GET", "/v1/exercises/{id}", get_exercise),
    ("POST", "/v1/exercises/{id}/{action}", control_exercise),
)
CONSOLE_EXPORTS: tuple[tuple[str, Any], ...] = (
    ("/console/exports/exercises/{id}/report.{fmt}", get_report),
)
