"""Message templates in the web layer, against an in-memory node: GET /v1/templates, the
``template`` member of the submission routes, the OpenAPI document, and Compose."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.config_templates import builtin_templates
from gateway.web.api import build_app
from gateway.web.openapi import openapi_document
from gateway.web.problems import PROBLEM_TYPE
from tests.unit.fake_node import LU, NL, FakeNode, auth, make_settings, serve
from tests.unit.test_templates import alert_template, sitrep_template
from tests.unit.test_web_console import open_session

Client = TestClient[web.Request, web.Application]
FLOOD_FILLED: dict[str, Any] = {
    "incident": {"id": "BE-2026-0100", "title": "Meuse at Liège"},
    "affected_area": {"place_names": ["Liège"]}, "sections": {"situation": "Rising."}}


@pytest.fixture
def node() -> FakeNode:
    """A node with two templates of its own: a sitrep (to LU-HCPN) and a CAP alert."""
    return FakeNode(current=make_settings(templates=[
        sitrep_template(to=[LU]), alert_template(to=[NL])]))


@pytest.fixture
async def client(node: FakeNode) -> AsyncIterator[Client]:
    """An HTTP client of the node's whole app (API and console)."""
    async with serve(build_app(node)) as c:
        yield c


async def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM_TYPE
    body: dict[str, Any] = await response.json(content_type=PROBLEM_TYPE)
    return body


# -- GET /v1/templates ---------------------------------------------------------------------


async def test_the_list_has_the_built_in_templates_then_the_centres(client: Client) -> None:
    """Every built-in template, then the centre's own, each saying whose it is, with its
    titles, routing, required fields and defaults; ?kind= and ?field= narrow it."""
    response = await client.get("/v1/templates", headers=auth())
    assert response.status == 200
    items = (await response.json())["items"]
    assert [i["id"] for i in items] == [*(t.id for t in builtin_templates()),
                                        "dike-breach", "storm-warning"]
    assert {i["id"]: i["source"] for i in items}["flood"] == "built-in"
    dike = items[-2]
    assert (dike["source"], dike["kind"], dike["to"], dike["tlp"]) == (
        "centre", "sitrep", [LU], "AMBER")
    assert dike["title"]["de"] == "Deichbruch"
    assert "affected_area.place_names" in dike["required"]
    alerts = await (await client.get("/v1/templates?kind=alert", headers=auth())).json()
    assert [i["id"] for i in alerts["items"]] == ["storm-warning"]
    health = await (await client.get("/v1/templates?field=public-health",
                                     headers=auth())).json()
    assert [i["id"] for i in health["items"]] == ["public-health-threat"]
    await _problem(await client.get("/v1/templates?colour=red", headers=auth()), 400)


async def test_listing_templates_needs_a_read_token(client: Client) -> None:
    """Without a token it is 401; a token without read is 403."""
    await _problem(await client.get("/v1/templates"), 401)
    await _problem(await client.get("/v1/templates", headers=auth("no-read")), 403)


# -- the template member ------------------------------------------------------------------


async def test_a_sitrep_from_a_template_is_submitted_with_its_defaults(
        client: Client, node: FakeNode) -> None:
    """POST /v1/sitreps with "template" submits the template's recipients, TLP, priority
    and wording with the caller's fields."""
    response = await client.post("/v1/sitreps", headers=auth(), json={
        "template": "flood", "sitrep": FLOOD_FILLED})
    assert response.status == 202, await response.text()
    sub, _ = node.fake_submitter.sitreps[-1]
    assert (sub.to, sub.tlp.value, sub.priority.value) == (
        ("field:civil-protection",), "GREEN", "urgent")
    assert sub.sitrep.incident.type == "flood"
    assert sorted(sub.sitrep.summary) == ["de", "en", "fr", "nl"]
    assert sub.sitrep.sections is not None
    assert sub.sitrep.sections.situation == {"und": "Rising."}


async def test_a_required_field_left_out_is_a_422_naming_it(client: Client,
                                                           node: FakeNode) -> None:
    """The problem names each missing field at its place in the submission; nothing is
    submitted."""
    body = await _problem(await client.post("/v1/sitreps", headers=auth(), json={
        "template": "dike-breach", "sitrep": {"incident": {"id": "BE-2026-0101"}}}), 422)
    assert body["title"] == "Required fields missing"
    assert [(e["field"], e["code"]) for e in body["errors"]] == [
        ("sitrep.incident.title", "template_required"),
        ("sitrep.affected_area.place_names", "template_required")]
    assert "sitrep.incident.title" in body["detail"]
    assert node.fake_submitter.sitreps == []


@pytest.mark.parametrize(("route", "name", "title"), [
    ("/v1/sitreps", "no-such-template", "Unknown template"),
    ("/v1/sitreps", 42, "Unknown template"),
    ("/v1/sitreps", "storm-warning", "Wrong template"),
    ("/v1/alerts", "flood", "Wrong template"),
])
async def test_an_unknown_template_or_one_of_the_other_kind_is_a_422(
        client: Client, node: FakeNode, route: str, name: object, title: str) -> None:
    """The problem is on the template member, and names what was asked for."""
    body = await _problem(await client.post(route, headers=auth(), json={
        "template": name, "sitrep": FLOOD_FILLED}), 422)
    assert body["title"] == title
    assert body["errors"][0]["loc"] == ["template"]
    assert str(name) in body["detail"]
    assert node.fake_submitter.sitreps == node.fake_submitter.alerts == []


async def test_a_cap_alert_from_a_template_gets_the_callers_areas_per_info(
        client: Client, node: FakeNode) -> None:
    """POST /v1/alerts with an alert template: the template's CAP fields and infos, the
    caller's identifier, time and areas."""
    response = await client.post("/v1/alerts", headers=auth(), json={
        "template": "storm-warning", "alert": {
            "identifier": "BE-2026-S1", "sent": "2026-11-27T10:00:00+01:00",
            "infos": [{"areas": [{"area_desc": "Coast"}]}]}})
    assert response.status == 202, await response.text()
    sub, _ = node.fake_submitter.alerts[-1]
    assert (sub.to, sub.tlp.value if sub.tlp else None) == ((NL,), "GREEN")
    assert [len(i.areas) for i in sub.alert.infos] == [1, 0]
    assert sub.alert.sender == "ops@crisiscenter.example"


def test_the_openapi_document_describes_templates() -> None:
    """GET /v1/templates and the template member of both submission routes are in the
    OpenAPI document, and so are the problem codes they give."""
    doc = openapi_document()
    assert "get" in doc["paths"]["/v1/templates"]
    for route in ("/v1/sitreps", "/v1/alerts"):
        schema = doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]
        assert {"$ref": "#/components/schemas/TemplatedSubmission"} in schema["schema"]["oneOf"]
    codes = doc["components"]["schemas"]["Problem"]["properties"]["errors"]["items"][
        "properties"]["code"]["enum"]
    assert {"template_required", "template_unknown", "template_kind"} <= set(codes)


# -- Compose -------------------------------------------------------------------------------


def _value(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" [^>]*value="([^"]*)"', html)
    assert found is not None, name
    return found.group(1)


async def test_compose_offers_the_sitrep_templates_and_prefills_one(client: Client) -> None:
    """The picker lists the sitrep templates (not the alert ones) by their title in the
    operator's language; ?template= fills in the form and marks the required fields."""
    await open_session(client)
    html = await (await client.get("/console/compose")).text()
    assert '<option value="flood" >Flood</option>' in html
    assert '<option value="dike-breach" >Dike breach</option>' in html
    assert "storm-warning" not in html
    page = await client.get("/console/compose?template=dike-breach")
    html = await page.text()
    assert page.status == 200
    assert 'name="template" value="dike-breach"' in html
    assert f'value="{LU}" checked' in html
    assert _value(html, "incident_type") == "flood"
    assert "A dike has breached." in html
    assert "Een dijk is doorgebroken." in html
    assert re.search(r'name="incident_title" value=""\s*aria-required="true"', html)
    assert re.search(r'name="place_names" value=""\s*aria-required="true"', html)
    assert 'name="summary" rows="3" aria-required' not in html


async def test_compose_with_a_template_names_the_fields_it_requires_then_sends(
        client: Client, node: FakeNode) -> None:
    """Sending a template's form with a required field empty is a 422 with "Required by
    the template." at that field; filled in, the sitrep keeps defaults the form has no
    field for (urgency) and the audit entry names the template."""
    csrf = await open_session(client)
    form = {"csrf_token": csrf, "template": "nuclear-notification", "to": NL, "tlp": "AMBER",
            "priority": "flash", "mode": "actual", "incident_id": "BE-2026-0200",
            "incident_title": "Doel 3", "report_number": "1", "purpose": "initial",
            "severity": "severe", "language": "en", "summary": "Early notification.",
            "place_names": "Doel", "situation": "Release at 04:10.", "action": "send"}
    response = await client.post("/console/compose", data={**form, "actions_taken": ""})
    html = await response.text()
    assert response.status == 422
    assert re.findall(r'id="err-(\w+)" role="alert">([^<]*)<', html) == [
        ("actions_taken", "Required by the template.")]
    response = await client.post("/console/compose", allow_redirects=False, data={
        **form, "actions_taken": "Sheltering within 10 km."})
    assert response.status == 303, await response.text()
    sub, _ = node.fake_submitter.sitreps[-1]
    assert (sub.to, sub.sitrep.urgency) == ((NL,), "immediate")
    assert node.ledger.audit.recorded[-1][3].endswith("template=nuclear-notification")


async def test_compose_refuses_a_template_that_is_not_offered(client: Client) -> None:
    """A form naming a template that is not (or no longer) offered is refused, said in
    plain words; a stale link shows the picker with the same words."""
    csrf = await open_session(client)
    response = await client.post("/console/compose", data={
        "csrf_token": csrf, "template": "storm-warning", "to": NL, "action": "send"})
    assert response.status == 422
    assert "This template is not offered (any more): storm-warning." in await response.text()
    html = await (await client.get("/console/compose?template=gone")).text()
    assert "This template is not offered (any more): gone." in html
