"""Compose: an operator writes and sends a sitrep from a form, with the API's validation."""

from __future__ import annotations

import re
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from pydantic import ValidationError

from gateway.errors import RequestRefused
from gateway.protocol.sitrep import PLAIN_TEXT
from gateway.protocol.templates import Template, fill_template, missing_fields
from gateway.protocol.types import INCIDENT_ID_PATTERN
from gateway.service.incidents import incident_thread
from gateway.service.node import NodeApi
from gateway.service.submit import SitrepSubmission
from gateway.web.console import i18n
from gateway.web.console.compose_templates import (
    CASUALTIES,
    LANGS,
    form_values,
    offered,
    required_marks,
    sitrep_templates,
)
from gateway.web.console.i18n import N_
from gateway.web.console.views import NODE_KEY, _audit, _ctx, _require

TEXT_FIELDS = ("incident_id", "incident_title", "incident_type", "report_number", "purpose",
               "severity", "urgency", "certainty", "language", "summary", "situation",
               "actions_taken", "outlook", "tlp", "priority", "mode", "supersedes",
               "place_names", "needs", "assistance", *(f"summary_{code}" for code in LANGS),
               *(f"casualties_{k}" for k in CASUALTIES))
#: Where a validation error on a submission field is shown in the form.
FIELD_OF: dict[tuple[str, ...], str] = {
    ("to",): "to", ("tlp",): "tlp", ("priority",): "priority", ("mode",): "mode",
    ("sitrep", "incident", "id"): "incident_id", ("incident",): "incident_id",
    ("sitrep", "incident", "title"): "incident_title",
    ("sitrep", "incident", "type"): "incident_type",
    ("sitrep", "report_number"): "report_number", ("sitrep", "purpose"): "purpose",
    ("sitrep", "severity"): "severity", ("sitrep", "urgency"): "urgency",
    ("sitrep", "certainty"): "certainty", ("sitrep", "language"): "language",
    ("sitrep", "summary"): "summary", ("sitrep", "sections", "situation"): "situation",
    ("sitrep", "sections", "actions_taken"): "actions_taken",
    ("sitrep", "sections", "outlook"): "outlook", ("sitrep", "supersedes"): "supersedes",
    ("sitrep", "affected_area"): "place_names", ("sitrep", "needs"): "needs",
    ("sitrep", "assistance_requests"): "assistance",
    **{("sitrep", "casualties", k): f"casualties_{k}" for k in CASUALTIES},
}
#: Pydantic's error types, said in plain words (translated where they are shown).
PLAIN = {
    "missing": N_("Required."),
    "string_too_short": N_("Please fill this in."),
    "too_short": N_("Choose at least one."),
    "string_too_long": N_("Too long."),
    "too_long": N_("Too many."),
    "int_parsing": N_("Enter a whole number."),
    "int_type": N_("Enter a whole number."),
    "greater_than_equal": N_("Too small."),
    "greater_than": N_("Too small."),
    "less_than_equal": N_("Too large."),
    "enum": N_("Choose one of the options."),
    "literal_error": N_("Choose one of the options."),
    "string_pattern_mismatch": N_("Not in the expected form (letters, digits and - only)."),
}


#: The release policy's rules and the submission's refusals (their ``rule`` or ``code``),
#: said in plain words; ``%(peer)s``/``%(name)s``/``%(days)s`` come from the refusal.
REFUSALS = {
    "red-named-only": N_("TLP:RED goes only to centres you tick one by one: %(peer)s was "
                         "reached through a group."),
    "amber-strict-named-only": N_("TLP:AMBER+STRICT goes only to centres you tick one by "
                                  "one: %(peer)s was reached through a group."),
    "exercise-participants": N_("%(peer)s does not take part in exercises: send the "
                                "exercise only to the centres that do."),
    "release-marking": N_("%(peer)s receives only what is marked releasable to its "
                          "group."),
    "recipient_unknown": N_("%(name)s is not one of our peers or groups."),
    "recipient_self": N_("%(name)s is this centre itself."),
    "recipient_suspended": N_("%(name)s is suspended: nothing is sent to it."),
    "no_recipient": N_("Choose at least one."),
    "expiry_out_of_range": N_("The expiry must be in the future and at most %(days)s days "
                              "ahead."),
    "template_required": N_("Required by the template."),
    "template_unknown": N_("This template is not offered (any more): %(name)s."),
}


def refusal(problem: dict[str, object], default: str) -> str:
    """A refusal of the service (policy, recipients, expiry) in the operator's language,
    the service's own text when the refusal is not one of :data:`REFUSALS`."""
    kind = problem.get("rule") or problem.get("code")
    known = REFUSALS.get(str(kind))
    if known is None:
        return str(problem.get("msg", default))
    values = {k: str(problem.get(k, "")) for k in ("peer", "name", "days")}
    return i18n._(known) % values


def _field(loc: tuple[Any, ...]) -> str:
    for length in range(len(loc), 0, -1):
        if tuple(loc[:length]) in FIELD_OF:
            return FIELD_OF[tuple(loc[:length])]
    return "form"


def plain(error: dict[str, Any], field: str) -> str:
    """A validation error in plain words in the operator's language (the model's own
    message when there is no plain one). An empty text (the summary is a text per
    language) reads as one to fill in; only the recipients are chosen."""
    kind = str(error.get("type"))
    if kind == "too_short" and field != "to":
        kind = "string_too_short"
    known = PLAIN.get(kind)
    return i18n._(known) if known else str(error.get("msg", ""))


def _number(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def submission(form: dict[str, Any], to: list[str]) -> dict[str, Any]:
    """The API submission a filled-in form stands for (unvalidated)."""
    lang = form.get("language") or "en"
    text = {k: form.get(k, "").strip() for k in TEXT_FIELDS}
    summary = {lang: text["summary"]} if text["summary"] else {}
    summary |= {code: text[f"summary_{code}"] for code in LANGS
                if code != lang and text[f"summary_{code}"]}
    sections = {k: {lang: text[k]} for k in ("situation", "actions_taken", "outlook") if text[k]}
    sitrep: dict[str, Any] = {
        "incident": {"id": text["incident_id"], "title": text["incident_title"]},
        "report_number": int(text["report_number"]) if text["report_number"].isdigit()
        else text["report_number"],
        "severity": text["severity"], "language": lang, "summary": summary,
    }
    if text["supersedes"]:
        sitrep["supersedes"] = _number(text["supersedes"])
    places = [p.strip() for p in text["place_names"].split(",") if p.strip()]
    if places:
        sitrep["affected_area"] = {"place_names": places}
    casualties = {k: _number(text[f"casualties_{k}"]) for k in CASUALTIES
                  if text[f"casualties_{k}"]}
    if casualties:
        sitrep["casualties"] = casualties
    needs = [line.strip() for line in text["needs"].splitlines() if line.strip()]
    if needs:  # one per line; a leading "!" marks it urgent
        sitrep["needs"] = [{"description": {lang: n.lstrip("! ")}, "urgent": n.startswith("!")}
                           for n in needs]
    requests = [line.strip() for line in text["assistance"].splitlines() if line.strip()]
    if requests:  # one request for assistance per line, to every recipient
        sitrep["assistance_requests"] = [{"description": {lang: r}} for r in requests]
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
    """GET /console/compose[?template=][&incident=]: a template's recipients, TLP,
    priority and texts; for an incident already known, its title, and our next report
    number and the one it supersedes."""
    _require(request, "operator")
    node = request.app[NODE_KEY]
    values: dict[str, Any] = {}
    chosen: list[str] = []
    name = request.query.get("template", "")[:80]
    template = offered(node.settings, name) if name else None
    if template is not None:
        values, chosen = form_values(template, i18n.current()), list(template.to)
    incident = request.query.get("incident", "")
    if re.fullmatch(INCIDENT_ID_PATTERN, incident):
        values |= await next_report(node, incident)
    return _render(request, values, {}, chosen, template=template,
                   unknown_template=name if name and template is None else None)


async def next_report(node: NodeApi, incident: str) -> dict[str, Any]:
    """What a new report on ``incident`` starts from: its id and title, our next report
    number, and our latest report as the one it supersedes."""
    thread = await incident_thread(node.ledger.incidents, incident, node.me)
    values: dict[str, Any] = {"incident_id": incident}
    if thread is None:
        return values
    values["incident_title"] = thread.get("title") or ""
    ours = [c for c in thread.get("centres", []) if c.get("centre") == node.me]
    latest = max((int(c.get("report_number") or 0) for c in ours), default=0)
    values["report_number"] = str(latest + 1)
    values["purpose"] = "update" if latest else "initial"
    if latest:
        values["supersedes"] = str(latest)
    return values


async def compose_next(request: web.Request) -> web.Response:
    """GET /console/compose/next?incident=: the same, for the form's script."""
    _require(request, "operator")
    incident = request.query.get("incident", "")
    if not re.fullmatch(INCIDENT_ID_PATTERN, incident):
        raise web.HTTPBadRequest(text="not an incident id")
    return web.json_response(await next_report(request.app[NODE_KEY], incident))


def _render(request: web.Request, values: dict[str, Any], errors: dict[str, list[str]],
            chosen: list[str], *, status: int = 200, preview: Any = None,
            template: Template | None = None, unknown_template: str | None = None
            ) -> web.Response:
    node = request.app[NODE_KEY]
    peers = [p for p in node.settings.peers if not p.suspended]
    groups = sorted({g for p in node.settings.peers for g in p.groups})
    required, elsewhere = required_marks(template, _field)
    lang = i18n.current()
    return aiohttp_jinja2.render_template("compose.html", request, _ctx(
        request, "compose", values=values, errors=errors, chosen=chosen, peers=peers,
        groups=groups, other_recipients=[t for t in chosen if t not in groups
                                         and t not in {p.id for p in peers}],
        preview=preview, other_langs=LANGS, casualty_fields=CASUALTIES,
        templates=[(t.id, t.title.pick(lang)) for t in sitrep_templates(node.settings)],
        template=template, template_title=template.title.pick(lang) if template else "",
        required=required, required_elsewhere=elsewhere,
        unknown_template=unknown_template and refusal(
            {"code": "template_unknown", "name": unknown_template}, "")),
        status=status)


def _note(errors: dict[str, list[str]], loc: Any, text: str) -> None:
    errors.setdefault(_field(tuple(loc) if isinstance(loc, list | tuple) else ("form",)),
                      []).append(text)


async def compose_send(request: web.Request) -> web.StreamResponse:
    """POST /console/compose: validate like the API (a template's fields first, its
    required fields filled in); errors are shown next to the fields."""
    session = _require(request, "operator")
    node = request.app[NODE_KEY]
    form = await request.post()
    values = {k: str(form.get(k, ""))[:20000] for k in TEXT_FIELDS}
    chosen = [str(v) for v in form.getall("to", [])][:64]
    name = str(form.get("template", ""))[:80]
    template = offered(node.settings, name) if name else None
    if name and template is None:
        return _render(request, values, {}, chosen, status=422, unknown_template=name)
    data = submission(values, chosen)
    errors: dict[str, list[str]] = {}
    if template is not None:
        data = fill_template(template, data)
        for problem in missing_fields(template, data):
            _note(errors, problem["loc"], refusal(problem, ""))
    flagged = set(errors)  # a field the template requires is said to be so, once
    sub: SitrepSubmission | None = None
    try:
        sub = SitrepSubmission.model_validate(data, context=PLAIN_TEXT)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            field = _field(tuple(err["loc"]))
            if field not in flagged:
                errors.setdefault(field, []).append(plain(dict(err), field))
    if errors or sub is None:
        return _render(request, values, errors, chosen, status=422, template=template)
    if form.get("action") != "send":  # first a preview: nothing is signed yet
        return _render(request, values, {}, chosen, preview=sub.sitrep, template=template)
    try:
        message_id, _ = await node.submitter.submit_sitrep(sub)
    except RequestRefused as exc:
        for problem in exc.errors or [{"loc": ["form"], "msg": exc.detail}]:
            _note(errors, problem.get("loc"), refusal(problem, exc.detail))
        return _render(request, values, errors, chosen, status=422, template=template)
    await _audit(request, "message.composed", message_id,
                 f"to={','.join(chosen)} by {session.name}"
                 + (f" template={template.id}" if template else ""))
    raise web.HTTPSeeOther(f"/console/outbox#m-{message_id}")
