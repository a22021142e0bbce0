"""Message templates over HTTP: ``GET /v1/templates``, and the ``template`` member of a
JSON ``POST /v1/sitreps`` or ``POST /v1/alerts`` (:mod:`gateway.protocol.templates`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.config import Settings
from gateway.config_templates import templates_in_force
from gateway.errors import InvalidBody, InvalidRequest
from gateway.protocol.directory import FieldOfWork
from gateway.protocol.templates import TEMPLATE_ID_PATTERN, Template, apply_template
from gateway.protocol.types import Priority, Tlp
from gateway.service.node import NodeApi

MAX_NAME_SHOWN = 80


def template_json(template: Template, own: bool) -> dict[str, Any]:
    """A template as ``GET /v1/templates`` lists it; ``source`` says whose it is."""
    return {**template.model_dump(mode="json"), "source": "centre" if own else "built-in"}


def listing(settings: Settings, kind: str | None = None,
            field: str | None = None) -> list[dict[str, Any]]:
    """The templates in force (built-in and the centre's), of ``kind`` and ``field`` when
    given."""
    own = {t.id for t in settings.templates}
    return [template_json(t, t.id in own) for t in templates_in_force(settings.templates).values()
            if kind in (None, t.kind) and field in (None, t.field.value)]


def _refused(name: object, detail: str, code: str) -> InvalidBody:
    return InvalidBody("Unknown template" if code == "template_unknown" else "Wrong template",
                       detail, [{"loc": ["template"], "field": "template", "msg": detail,
                                 "type": code, "code": code, "name": str(name)[:MAX_NAME_SHOWN]}])


def find_template(settings: Settings, name: object, kind: str) -> Template:
    """The template ``name`` of ``kind``. Raises :class:`InvalidBody` (``loc``
    ``["template"]``) for an unknown one or one of the other kind."""
    found = templates_in_force(settings.templates).get(name) if isinstance(name, str) else None
    shown = str(name)[:MAX_NAME_SHOWN]
    if found is None:
        raise _refused(name, f"no template {shown!r} (GET /v1/templates lists them)",
                       "template_unknown")
    if found.kind != kind:
        raise _refused(name, f"{shown} is a template for {found.kind}s: send it to "
                             f"/v1/{found.kind}s", "template_kind")
    return found


def templated(settings: Settings, data: Any, kind: str) -> Any:
    """A submission body (``kind``: ``sitrep`` or ``alert``) with the template it names in
    its ``template`` member applied; a body without one as it is. Raises
    :class:`InvalidBody` for an unknown template, one of the other kind, or a required
    field left empty (naming each)."""
    if not isinstance(data, dict) or "template" not in data:
        return data
    return apply_template(find_template(settings, data["template"], kind), data)


def templates_route(node_key: web.AppKey[NodeApi]
                    ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of ``GET /v1/templates``, finding the node under ``node_key``."""

    async def get_templates(request: web.Request) -> web.Response:
        """GET /v1/templates?kind=&field=: the message templates in force, built-in and
        the centre's own."""
        unknown = sorted(set(request.query) - {"kind", "field"})
        if unknown:
            raise InvalidRequest("Unknown filter", f"unknown query parameters: {unknown}",
                                 [{"loc": ["query", u], "msg": "unknown parameter"}
                                  for u in unknown])
        items = listing(request.app[node_key].settings, request.query.get("kind"),
                        request.query.get("field"))
        return web.json_response({"items": items})

    return get_templates


_STRINGS = {"type": "array", "items": {"type": "string"}}
#: What the OpenAPI document says of templates (gateway/web/openapi.py).
TEMPLATE_SCHEMAS: dict[str, Any] = {
    "TemplatedSubmission": {
        "type": "object", "required": ["template"], "additionalProperties": True,
        "description": "A submission from a template (GET /v1/templates): the template's "
                       "recipients, TLP, priority and body fields first, the members given "
                       "over them; every field the template requires must be filled in.",
        "properties": {"template": {"type": "string", "pattern": TEMPLATE_ID_PATTERN}}},
    "Template": {
        "type": "object", "additionalProperties": False,
        "required": ["id", "kind", "field", "title", "to", "tlp", "priority", "required",
                     "defaults", "source"],
        "properties": {
            "id": {"type": "string", "pattern": TEMPLATE_ID_PATTERN},
            "kind": {"enum": ["sitrep", "alert"]},
            "field": {"enum": [f.value for f in FieldOfWork]},
            "title": {"type": "object", "required": ["en", "nl", "fr", "de"],
                      "properties": {lang: {"type": "string"} for lang in
                                     ("en", "nl", "fr", "de")}},
            "to": _STRINGS, "tlp": {"enum": [t.value for t in Tlp]},
            "priority": {"enum": [*(p.value for p in Priority), None]},
            "required": _STRINGS, "defaults": {"type": "object"},
            "source": {"enum": ["built-in", "centre"]}}},
}
#: ``GET /v1/templates`` in the OpenAPI document.
TEMPLATES_PATH: dict[str, Any] = {"get": {
    "summary": "Message templates: the built-in ones and the centre's own",
    "operationId": "listTemplates",
    "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                   for n in ("kind", "field")],
    "responses": {
        "200": {"description": "templates", "content": {"application/json": {"schema": {
            "type": "object", "required": ["items"], "properties": {"items": {
                "type": "array", "items": {"$ref": "#/components/schemas/Template"}}}}}}},
        **{str(code): {"description": "problem", "content": {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/Problem"}}}} for code in (400, 401)}}}}


def templated_schema(submission: str) -> dict[str, Any]:
    """The request body of a route that takes ``submission`` or a templated one."""
    return {"oneOf": [{"$ref": f"#/components/schemas/{submission}"},
                      {"$ref": "#/components/schemas/TemplatedSubmission"}]}
