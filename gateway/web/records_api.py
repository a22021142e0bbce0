"""The API's records: incident threads (the board, a thread, its timeline and areas) and
the federated contact directory."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from gateway.errors import InvalidRequest, NotFound
from gateway.formats.geo import collection
from gateway.protocol.types import INCIDENT_ID_PATTERN
from gateway.service import contacts
from gateway.service.incidents import incident_thread, timeline_csv
from gateway.service.node import NodeApi
from gateway.web.requests import NODE, after_cursor, filters_of, page_of
from gateway.web.shapes import directory_json, incident_features


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


INCIDENT_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("GET", "/v1/incidents", list_incidents),
    # Incident ids may contain "/": the suffixed routes are registered first.
    ("GET", r"/v1/incidents/{id:.+}/timeline.csv", get_timeline_csv),
    ("GET", r"/v1/incidents/{id:.+}/areas.geojson", get_areas_geojson),
    ("GET", r"/v1/incidents/{id:.+}/timeline.json", get_timeline_json),
    ("GET", r"/v1/incidents/{id:.+}", get_incident),
)
DIRECTORY_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("GET", "/v1/directory", get_directory),
    ("GET", "/v1/directory.csv", get_directory_csv),
    ("GET", "/v1/directory.html", get_directory_html),
    ("POST", "/v1/directory/publish", publish_directory),
)
#: The exports the console's pages link to (its session, no token).
CONSOLE_EXPORTS: tuple[tuple[str, Any], ...] = (
    ("/console/exports/directory.csv", get_directory_csv),
    ("/console/exports/directory.html", get_directory_html),
    (r"/console/incidents/{id:.+}/timeline.csv", get_timeline_csv),
    (r"/console/incidents/{id:.+}/areas.geojson", get_areas_geojson),
)
