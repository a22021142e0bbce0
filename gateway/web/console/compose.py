"""Compose: an operator writes and sends a sitrep from a form, with the API's validation."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from pydantic import ValidationError

from gateway.errors import RequestRefused
from gateway.protocol.sitrep import PLAIN_TEXT
from gateway.service.submit import SitrepSubmission
from gateway.web.console.views import NODE_KEY, _audit, _ctx, _require

TEXT_FIELDS = ("incident_id", "incident_title", "incident_type", "report_number", "purpose",
               "severity", "urgency", "certainty", "language", "summary", "situation",
               "actions_taken", "outlook", "tlp", "priority", "mode")
#: Where a validation error on a submission field is shown in the form.
FIELD_OF = {
    ("to",): "to", ("tlp",): "tlp", ("priority",): "priority", ("mode",): "mode",
    ("sitrep", "incident", "id"): "incident_id", ("incident",): "incident_id",
    ("sitrep", "incident", "title"): "incident_title",
    ("sitrep", "incident", "type"): "incident_type",
    ("sitrep", "report_number"): "report_number", ("sitrep", "purpose"): "purpose",
    ("sitrep", "severity"): "severity", ("sitrep", "urgency"): "urgency",
    ("sitrep", "certainty"): "certainty", ("sitrep", "language"): "language",
    ("sitrep", "summary"): "summary", ("sitrep", "sections", "situation"): "situation",
    ("sitrep", "sections", "actions_taken"): "actions_taken",
    ("sitrep", "sections", "outlook"): "outlook",
}


def _field(loc: tuple[Any, ...]) -> str:
    for length in range(len(loc), 0, -1):
        if tuple(loc[:length]) in FIELD_OF:
            return FIELD_OF[tuple(loc[:length])]
    return "form"


def submission(form: dict[str, Any], to: list[str]) -> dict[str, Any]:
    """The API submission a filled-in form stands for (unvalidated)."""
    lang = form.get("language") or "en"
    text = {k: form.get(k, "").strip() for k in TEXT_FIELDS}
    sections = {k: {lang: text[k]} for k in ("situation", "actions_taken", "outlook") if text[k]}
    sitrep: dict[str, Any] = {
        "incident": {"id": text["incident_id"], "title": text["incident_title"]},
        "report_number": int(text["report_number"]) if text["report_number"].isdigit()
        else text["report_number"],
        "severity": text["severity"], "language": lang,
        "summary": {lang: text["summary"]} if text["summary"] else {},
    }
    if text["incident_type"]:
        sitrep["incident"]["type"] = text["incident_type"]
    for key in ("purpose", "urgency", "certainty"):
        if text[key]:
            sitrep[key] = text[key]
    if sections:
        sitrep["sections"] = sections
    return {"to": to, "tlp": text["tlp"], "priority": text["priority"] or "routine",
            "mode": text["mode"] or "actual", "sitrep": sitrep}


async def compose_form(request: web.Request) -> web.Response:
    """GET /console/compose."""
    _require(request, "operator")
    return _render(request, {}, {}, [])


def _render(request: web.Request, values: dict[str, Any], errors: dict[str, list[str]],
            chosen: list[str], status: int = 200) -> web.Response:
    node = request.app[NODE_KEY]
    groups = sorted({g for p in node.settings.peers for g in p.groups})
    return aiohttp_jinja2.render_template("compose.html", request, _ctx(
        request, "compose", values=values, errors=errors, chosen=chosen,
        peers=[p for p in node.settings.peers if not p.suspended], groups=groups),
        status=status)


async def compose_send(request: web.Request) -> web.StreamResponse:
    """POST /console/compose: validate like the API; errors are shown next to the fields."""
    session = _require(request, "operator")
    node = request.app[NODE_KEY]
    form = await request.post()
    values = {k: str(form.get(k, ""))[:20000] for k in TEXT_FIELDS}
    chosen = [str(v) for v in form.getall("to", [])][:64]
    errors: dict[str, list[str]] = {}
    try:
        sub = SitrepSubmission.model_validate(submission(values, chosen), context=PLAIN_TEXT)
        message_id, _ = await node.submitter.submit_sitrep(sub)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            errors.setdefault(_field(tuple(err["loc"])), []).append(err["msg"])
        return _render(request, values, errors, chosen, status=422)
    except RequestRefused as exc:
        problems: list[dict[str, object]] = exc.errors or [{"loc": ["form"], "msg": exc.detail}]
        for problem in problems:
            loc = problem.get("loc")
            errors.setdefault(_field(tuple(loc) if isinstance(loc, list) else ("form",)),
                              []).append(str(problem.get("msg", exc.detail)))
        return _render(request, values, errors, chosen, status=422)
    await _audit(request, "message.composed", message_id,
                 f"to={','.join(chosen)} by {session.name}")
    raise web.HTTPSeeOther(f"/console/outbox#m-{message_id}")
