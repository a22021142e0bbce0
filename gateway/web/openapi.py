"""The OpenAPI 3.1 document, built from the same pydantic models as the API."""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic.json_schema import models_json_schema

from gateway import __version__
from gateway.service.submit import AlertSubmission, SitrepSubmission
from gateway.web.templates_api import TEMPLATE_SCHEMAS, TEMPLATES_PATH, templated_schema

_PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "properties": {
                "loc": {"type": "array"}, "field": {"type": "string"},
                "msg": {"type": "string"}, "type": {"type": "string"},
                "rule": {"type": "string", "description": "the release-policy rule broken"},
                "peer": {"type": "string", "description": "the peer the rule refused"},
                "code": {"type": "string", "enum": [
                    "recipient_unknown", "recipient_self", "recipient_suspended",
                    "no_recipient", "expiry_out_of_range", "template_required",
                    "template_unknown", "template_kind"]},
                "name": {"type": "string", "description": "the recipient refused"},
                "days": {"type": "integer", "description": "the longest lifetime"}}}},
    },
}


def _problems(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "problem", "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}} for c in codes}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ID_PARAM = {"name": "id", "in": "path", "required": True,
             "schema": {"type": "string", "format": "uuid"}}


_INCIDENT_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(*names: str) -> list[dict[str, Any]]:
    """Filters of a list, its ``limit`` and its ``after`` cursor (keyset pagination:
    the ``next`` of the previous page)."""
    params = [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
              for n in names]
    params.append({"name": "limit", "in": "query", "required": False,
                   "schema": {"type": "integer", "minimum": 1, "maximum": 1000}})
    params.append({"name": "after", "in": "query", "required": False,
                   "description": "the `next` cursor of the previous page",
                   "schema": {"type": "string", "maxLength": 600}})
    return params


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``/v1``."""
    # One generation for both, so that same-named models (the sitrep's lower-case
    # Severity and CAP's capitalised one) get distinct names instead of overwriting.
    _, top = models_json_schema(
        [(SitrepSubmission, "validation"), (AlertSubmission, "validation")],
        ref_template="#/components/schemas/{model}")
    text = json.dumps(top.get("$defs", {}))
    for module, prefix in (("alert", "Cap"), ("sitrep", "Sitrep")):
        text = text.replace(f"gateway__protocol__{module}__", prefix)
    schemas = {**json.loads(text), "Problem": _PROBLEM, **TEMPLATE_SCHEMAS}
    obj = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Crisis Exchange Gateway API", "version": __version__,
                 "description": "Submit sitreps, follow their delivery, read the inbox."},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "A token with the scope the route needs: read (GET), submit "
                               "(sitreps, alerts, commchecks), acknowledge, admin (keys, "
                               "directory publishing); 403 names a missing scope"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/sitreps": {"post": {
                "summary": "Submit a sitrep", "operationId": "submitSitrep",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string", "minLength": 1, "maxLength": 200}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": templated_schema("SitrepSubmission")}}},
                "responses": {
                    "202": _json({"type": "object", "required": ["id"], "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string"}}}, "stored durably, delivery under way"),
                    **_problems(400, 401, 413, 415, 422, 503, 507)}}},
            "/v1/alerts": {"post": {
                "summary": "Submit a CAP alert (JSON, or CAP 1.2 XML with routing in the query)",
                "operationId": "submitAlert",
                "parameters": [
                    {"name": "Idempotency-Key", "in": "header", "required": False,
                     "schema": {"type": "string", "minLength": 1, "maxLength": 200}},
                    *[{"name": n, "in": "query", "required": False, "schema": {"type": "string"},
                       "description": "routing for an XML body"}
                      for n in ("to", "tlp", "priority", "incident", "expires", "mode")]],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": templated_schema("AlertSubmission")},
                    "application/cap+xml": {"schema": {"type": "string"}},
                    "application/xml": {"schema": {"type": "string"}}}},
                "responses": {
                    "202": _json({"type": "object", "required": ["id"], "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string"}}}, "stored durably, delivery under way"),
                    **_problems(400, 401, 413, 415, 422, 503, 507)}}},
            "/v1/messages": {"get": {
                "summary": "List sent messages", "operationId": "listMessages",
                "parameters": _query("type", "incident", "mode", "state", "peer", "since"),
                "responses": {"200": _json(obj, "messages"), **_problems(400, 401)}}},
            "/v1/messages/{id}": {"get": {
                "summary": "A message with its recipients' states, or as CAP / EDXL-DE",
                "operationId": "getMessage",
                "parameters": [_ID_PARAM, {"name": "format", "in": "query", "required": False,
                                           "schema": {"enum": ["json", "cap", "edxl-de"]}}],
                "responses": {"200": {"description": "the message", "content": {
                    "application/json": {"schema": obj},
                    "application/cap+xml": {"schema": {"type": "string"}},
                    "application/xml": {"schema": {"type": "string"}}}},
                    **_problems(400, 401, 404, 422)}}},
            "/v1/messages/{id}/ack": {"post": {
                "summary": "Acknowledge an incoming message", "operationId": "ackMessage",
                "parameters": [_ID_PARAM, {"name": "from", "in": "query", "required": False,
                                           "schema": {"type": "string"}}],
                "responses": {"200": _json(obj, "acknowledged"),
                              **_problems(400, 401, 404, 409, 415)}}},
            "/v1/inbox": {"get": {
                "summary": "Verified incoming messages", "operationId": "getInbox",
                "parameters": _query("from", "type", "incident", "state", "priority", "mode"),
                "responses": {"200": _json(obj, "incoming messages"), **_problems(400, 401)}}},
            "/v1/peers": {"get": {
                "summary": "Configured peers", "operationId": "getPeers",
                "responses": {"200": _json(obj, "peers"), **_problems(401)}}},
            "/v1/incidents": {"get": {
                "summary": "Incidents with their centres, activity and warnings",
                "description": "The real incidents; with mode=exercise, those whose every"
                               " message is exercise or test traffic.",
                "operationId": "listIncidents", "parameters": [
                    {"name": "mode", "in": "query", "required": False,
                     "schema": {"enum": ["actual", "exercise"], "default": "actual"}},
                    *_query()],
                "responses": {"200": _json(obj, "incidents"), **_problems(400, 401)}}},
            "/v1/incidents/{id}": {"get": {
                "summary": "An incident thread: latest report per centre, timeline, gap warnings",
                "operationId": "getIncident", "parameters": [_INCIDENT_PARAM],
                "responses": {"200": _json(obj, "the thread"), **_problems(401, 404)}}},
            "/v1/incidents/{id}/timeline.json": {"get": {
                "summary": "Incident timeline (who knew what, when)",
                "operationId": "getIncidentTimeline", "parameters": [_INCIDENT_PARAM],
                "responses": {"200": _json(obj, "timeline"), **_problems(401, 404)}}},
            "/v1/incidents/{id}/timeline.csv": {"get": {
                "summary": "Incident timeline as CSV for after-action evaluation",
                "operationId": "getIncidentTimelineCsv", "parameters": [_INCIDENT_PARAM],
                "responses": {"200": {"description": "CSV", "content": {
                    "text/csv": {"schema": {"type": "string"}}}}, **_problems(401, 404)}}},
            "/v1/incidents/{id}/areas.geojson": {"get": {
                "summary": "Every centre's latest area and the incident's CAP areas",
                "operationId": "getIncidentAreas", "parameters": [_INCIDENT_PARAM],
                "responses": {"200": {"description": "GeoJSON FeatureCollection (RFC 7946)",
                                      "content": {"application/geo+json": {"schema": {
                                          "type": "object"}}}}, **_problems(401, 404)}}},
            "/v1/commchecks": {
                "post": {"summary": "Run a communication test with every peer",
                         "operationId": "startCommcheck",
                         "responses": {"202": _json(obj, "started"), **_problems(401)}},
                "get": {"summary": "History of communication tests", "operationId":
                        "listCommchecks", "parameters": _query(),
                        "responses": {"200": _json(obj, "reports"), **_problems(400, 401)}}},
            "/v1/commchecks/{id}": {"get": {
                "summary": "Per-peer report of one communication test",
                "operationId": "getCommcheck",
                "parameters": [_ID_PARAM, {"name": "wait", "in": "query", "required": False,
                                           "schema": {"type": "number"}}],
                "responses": {"200": _json(obj, "report"), **_problems(400, 401, 404)}}},
            "/v1/commchecks/history.csv": {"get": {
                "summary": "History as CSV", "operationId": "commchecksCsv",
                "responses": {"200": {"description": "CSV", "content": {
                    "text/csv": {"schema": {"type": "string"}}}}, **_problems(401)}}},
            "/v1/commchecks/report.html": {"get": {
                "summary": "History as a printable HTML report with charts",
                "operationId": "commchecksHtml",
                "responses": {"200": {"description": "HTML", "content": {
                    "text/html": {"schema": {"type": "string"}}}}, **_problems(401)}}},
            "/v1/commchecks/scorecard": {"get": {
                "summary": "Per quarter and centre: tests, reached, median time to receipt "
                           "and to acknowledgement, fallback codes sent and confirmed",
                "operationId": "commchecksScorecard",
                "responses": {"200": _json(obj, "scorecard rows"), **_problems(401)}}},
            "/v1/commchecks/scorecard.csv": {"get": {
                "summary": "The scorecard as CSV", "operationId": "commchecksScorecardCsv",
                "responses": {"200": {"description": "CSV", "content": {
                    "text/csv": {"schema": {"type": "string"}}}}, **_problems(401)}}},
            "/v1/commchecks/fallback": {"post": {
                "summary": "Return the one-time code a peer e-mailed for its communication "
                           "test (sent to that peer in a signed 'fallback' message)",
                "operationId": "returnFallbackCode",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "required": ["from", "check_id", "code"],
                    "properties": {
                        "from": {"type": "string", "minLength": 1, "maxLength": 32,
                                 "description": "The centre whose test it is"},
                        "check_id": {"type": "string", "format": "uuid"},
                        "code": {"type": "string", "minLength": 4, "maxLength": 32,
                                 "pattern": "^[0-9A-Za-z -]+$"},
                        "by": {"type": "string", "minLength": 1, "maxLength": 100}}}}}},
                "responses": {"202": _json(obj, "the fallback message"),
                              **_problems(400, 401, 403, 404, 415, 422)}}},
            "/v1/exercises": {
                "post": {"summary": "Start an exercise: a scenario (TOML or JSON) or the replay "
                                    "of a past incident, played through the real nodes in "
                                    "exercise mode",
                         "operationId": "startExercise",
                         "requestBody": {"required": True, "content": {
                             "application/toml": {"schema": {"type": "string"}},
                             "application/json": {"schema": {
                                 "type": "object", "properties": {
                                     "scenario": {"oneOf": [{"type": "string"},
                                                            {"type": "object"}]},
                                     "replay": {"type": "string", "minLength": 1,
                                                "maxLength": 64},
                                     "speed": {"type": "number", "exclusiveMinimum": 0,
                                               "maximum": 3600}}}}}},
                         "responses": {"201": _json(obj, "started"),
                                       **_problems(400, 401, 403, 404, 422)}},
                "get": {"summary": "The latest exercise runs", "operationId": "listExercises",
                        "responses": {"200": _json(obj, "runs"), **_problems(401)}}},
            "/v1/exercises/{id}": {"get": {
                "summary": "Where an exercise stands, inject by inject",
                "operationId": "getExercise", "parameters": [_ID_PARAM],
                "responses": {"200": _json(obj, "run"), **_problems(401, 404)}}},
            "/v1/exercises/{id}/{action}": {"post": {
                "summary": "Pause, resume or stop an exercise",
                "operationId": "controlExercise",
                "parameters": [_ID_PARAM, {"name": "action", "in": "path", "required": True,
                                           "schema": {"enum": ["pause", "resume", "stop"]}}],
                "responses": {"200": _json(obj, "run"), **_problems(401, 403, 404, 409)}}},
            "/v1/exercises/{id}/report.{fmt}": {"get": {
                "summary": "The after-action report: every inject with its delivery, reading, "
                           "acknowledgement and escalation per centre, the timeline, KPIs",
                "operationId": "exerciseReport",
                "parameters": [_ID_PARAM, {"name": "fmt", "in": "path", "required": True,
                                           "schema": {"enum": ["json", "csv", "html"]}}],
                "responses": {"200": {"description": "the report", "content": {
                    "application/json": {"schema": obj}, "text/csv": {"schema": {
                        "type": "string"}}, "text/html": {"schema": {"type": "string"}}}},
                    **_problems(401, 404)}}},
            "/v1/audit": {"get": {
                "summary": "The hash-chained audit log (messages, receipts, state changes, "
                           "peer and key changes, operator actions), newest first",
                "operationId": "getAudit", "parameters": _query("kind", "subject"),
                "responses": {"200": _json(obj, "audit entries"), **_problems(400, 401)}}},
            "/v1/audit/checkpoint": {"get": {
                "summary": "The audit chain's head, signed by this node (to share with peers)",
                "operationId": "getAuditCheckpoint",
                "responses": {"200": _json(obj, "signed checkpoint"), **_problems(401)}}},
            "/v1/security-events": {"get": {
                "summary": "Refused input (forged, tampered, malformed)",
                "operationId": "getSecurityEvents", "parameters": _query(),
                "responses": {"200": _json(obj, "events"), **_problems(400, 401)}}},
            "/v1/directory": {"get": {
                "summary": "Every centre's contact points per field of work",
                "operationId": "getDirectory",
                "parameters": [{"name": "field", "in": "query", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json(obj, "contact points"), **_problems(401, 403)}}},
            "/v1/directory.csv": {"get": {
                "summary": "The directory as CSV (cells safe for spreadsheets)",
                "operationId": "getDirectoryCsv",
                "responses": {"200": {"description": "CSV", "content": {
                    "text/csv": {"schema": {"type": "string"}}}}, **_problems(401, 403)}}},
            "/v1/directory.html": {"get": {
                "summary": "The directory as a printable page", "operationId": "getDirectoryHtml",
                "responses": {"200": {"description": "HTML", "content": {
                    "text/html": {"schema": {"type": "string"}}}}, **_problems(401, 403)}}},
            "/v1/directory/publish": {"post": {
                "summary": "Send our contact points to every peer now (scope admin)",
                "operationId": "publishDirectory",
                "responses": {"202": _json(obj, "the directory message id (null if no peer)"),
                              **_problems(401, 403, 503)}}},
            "/v1/keys/rotate": {"post": {
                "summary": "A new signing key, announced to every peer (scope admin)",
                "operationId": "rotateKey",
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "properties": {
                        "overlap_days": {"type": "number", "minimum": 0, "maximum": 90}}}}}},
                "responses": {"200": _json(obj, "the new key id, its fingerprint, the "
                                           "key-update id and what became of the old key"),
                              **_problems(400, 401, 403, 415, 422, 503)}}},
            "/v1/peers/{id}/keys/{kid}/revoke": {"post": {
                "summary": "Refuse a peer's key at once (scope admin)",
                "operationId": "revokePeerKey",
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "string"}},
                               {"name": "kid", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json(obj, "revoked"), **_problems(401, 403, 404)}}},
            "/v1/templates": TEMPLATES_PATH,
            "/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                         "operationId": "getOpenapi",
                                         "responses": {"200": _json(obj, "OpenAPI 3.1")}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                                 "responses": {"200": _json(obj, "alive")}}},
            "/readyz": {"get": {"summary": "Readiness", "security": [],
                                "responses": {"200": _json(obj, "ready"),
                                              "503": _json(obj, "not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (a token with scope read "
                                            "when [api] metrics_token)",
                                 "responses": {"200": {"description": "text exposition"},
                                               **_problems(401, 403)}}},
        },
    }
