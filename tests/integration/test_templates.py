"""Message templates on real nodes and the real broker: a built-in template reaches its
field's contact points with its defaults, a missing required field is a 422 naming it,
the README's centre templates are listed and usable once in gateway.toml, an invalid
template keeps a node from starting, and Compose offers the templates."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from gateway.config import update_config
from tests.integration.harness import Federation, console_page, wait_until

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
PEERS = ("NL-NCC", "LU-HCPN", "DE-NW")
FOUR = ["de", "en", "fr", "nl"]


def readme_examples() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The [[templates]] tables and the curl bodies of README.md, "Message templates"."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Message templates", 1)[1].split("\n## ", 1)[0]
    toml = re.search(r"```toml\n(.*?)```", section, re.S)
    assert toml is not None
    bodies = [json.loads(b) for b in re.findall(r"-d '(\{.*?\})'", section, re.S)]
    return tomllib.loads(toml.group(1))["templates"], bodies


async def _arrived(fed: Federation, centre: str, message_id: str) -> dict[str, Any] | None:
    """The message as ``centre`` stored it, once it has."""
    status, view = await fed.api(centre, "GET", f"/v1/messages/{message_id}")
    return view if status == 200 and view.get("direction") == "in" else None


async def _delivered(fed: Federation, message_id: str, centres: tuple[str, ...]
                     ) -> dict[str, dict[str, Any]]:
    """Wait until each of ``centres`` stored the message; their views of it."""
    async def everywhere() -> bool:
        return all([await _arrived(fed, c, message_id) for c in centres])

    await wait_until(everywhere, 30, f"{message_id} stored at {', '.join(centres)}")
    return {c: view for c in centres if (view := await _arrived(fed, c, message_id))}


async def test_a_built_in_template_reaches_its_fields_contact_points_with_its_defaults(
        federation: Federation) -> None:
    """POST /v1/sitreps {"template": "flood", ...} from BE-NCCN goes to every centre with
    a civil-protection contact point, TLP:GREEN, urgent, with the flood wording in four
    languages next to what was filled in."""
    await federation.wait_ready()

    async def fields_known() -> bool:
        _, directory = await federation.api("BE-NCCN", "GET",
                                            "/v1/directory?field=civil-protection")
        return {e["centre"] for e in directory["items"]} >= set(PEERS)

    await wait_until(fields_known, 30, "every peer's civil-protection contact at BE-NCCN")
    status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps", {
        "template": "flood", "sitrep": {
            "incident": {"id": "BE-2026-T001", "title": "Meuse flood at Liège"},
            "affected_area": {"place_names": ["Liège", "Visé"]},
            "sections": {"situation": {"en": "The Meuse is 1.2 m above alert level."}}}})
    assert status == 202, answer
    views = await _delivered(federation, answer["id"], PEERS)
    for view in views.values():
        envelope = view["envelope"]
        assert (envelope["tlp"], envelope["priority"]) == ("GREEN", "urgent")
        body = envelope["body"]
        assert sorted(body["summary"]) == FOUR
        assert body["incident"] == {"id": "BE-2026-T001", "title": "Meuse flood at Liège",
                                    "type": "flood"}
        assert (body["severity"], body["urgency"], body["purpose"]) == (
            "severe", "expected", "initial")
        assert body["affected_area"]["place_names"] == ["Liège", "Visé"]
    _, sent = await federation.api("BE-NCCN", "GET", f"/v1/messages/{answer['id']}")
    assert sorted(r["centre"] for r in sent["recipients"]) == sorted(PEERS)


async def test_a_required_field_left_out_is_a_422_naming_it(federation: Federation) -> None:
    """The README's incomplete flood submission is a 422 naming the three fields it lacks;
    an unknown template is a 422 on "template"; neither stores anything."""
    await federation.wait_ready()
    _, before = await federation.api("BE-NCCN", "GET", "/v1/messages?type=sitrep&limit=1000")
    _, bodies = readme_examples()
    status, problem = await federation.api("BE-NCCN", "POST", "/v1/sitreps", bodies[1])
    assert status == 422, problem
    assert [e["field"] for e in problem["errors"]] == [
        "sitrep.incident.title", "sitrep.affected_area.place_names", "sitrep.sections.situation"]
    assert {e["code"] for e in problem["errors"]} == {"template_required"}
    status, problem = await federation.api("BE-NCCN", "POST", "/v1/sitreps",
                                           {**bodies[1], "template": "volcano"})
    assert status == 422, problem
    assert problem["errors"][0]["loc"] == ["template"]
    _, after = await federation.api("BE-NCCN", "GET", "/v1/messages?type=sitrep&limit=1000")
    assert len(after["items"]) == len(before["items"])


async def test_the_readme_centre_templates_are_listed_and_usable(federation: Federation) -> None:
    """With the README's [[templates]] in BE-NCCN's gateway.toml (a running node reloads
    it), GET /v1/templates lists them as the centre's, and the README's curl bodies send a
    flash sitrep to benelux and a CAP alert with one area per language."""
    await federation.wait_ready()
    node = federation.nodes["BE-NCCN"]
    templates, bodies = readme_examples()
    update_config(node.config, lambda raw: raw.__setitem__("templates", templates))
    try:
        async def listed() -> bool:
            _, found = await federation.api("BE-NCCN", "GET", "/v1/templates?kind=alert")
            return [i["id"] for i in found["items"]] == ["heat-warning"]

        await wait_until(listed, 20, "the centre's templates listed at BE-NCCN")
        _, found = await federation.api("BE-NCCN", "GET", "/v1/templates")
        sources = {i["id"]: i["source"] for i in found["items"]}
        assert sources["dike-breach"] == sources["heat-warning"] == "centre"
        assert sources["flood"] == "built-in"
        status, sitrep = await federation.api("BE-NCCN", "POST", "/v1/sitreps", bodies[0])
        assert status == 202, sitrep
        status, alert = await federation.api("BE-NCCN", "POST", "/v1/alerts", bodies[2])
        assert status == 202, alert
        for view in (await _delivered(federation, sitrep["id"], ("NL-NCC", "LU-HCPN"))).values():
            envelope = view["envelope"]
            assert (envelope["tlp"], envelope["priority"]) == ("AMBER", "flash")
            assert sorted(envelope["body"]["summary"]) == FOUR
            assert envelope["body"]["casualties"] == {"evacuated": 1200}
        at_nl = (await _delivered(federation, alert["id"], ("NL-NCC",)))["NL-NCC"]
        infos = at_nl["envelope"]["body"]["infos"]
        assert [(i["language"], i["areas"][0]["area_desc"]) for i in infos] == [
            ("en", "Belgium"), ("nl", "België")]
        assert at_nl["envelope"]["body"]["sender"] == "crisiscentrum@nccn.example"
    finally:
        update_config(node.config, lambda raw: raw.pop("templates", None))


def test_an_invalid_template_keeps_the_node_from_starting(federation: Federation,
                                                          tmp_path: Path) -> None:
    """`crisisgw run` on a gateway.toml whose template has a bad TLP exits at once with
    an error naming the file, the template and the field."""
    raw = tomllib.loads(federation.nodes["LU-HCPN"].config.read_text(encoding="utf-8"))
    templates, _ = readme_examples()
    raw["templates"] = [{**templates[0], "tlp": "PURPLE"}]
    config = tmp_path / "gateway.toml"
    config.write_text(tomli_w.dumps(raw), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "gateway", "run", "-c", str(config)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2, run.stderr[-2000:]
    assert str(config) in run.stderr
    assert "template 'dike-breach': tlp: Input should be 'CLEAR'" in run.stderr


async def test_compose_offers_the_templates_and_fills_one_in(federation: Federation) -> None:
    """The console's Compose page lists the sitrep templates; with ?template= it is
    filled in with the template's recipients, TLP, priority and four summaries."""
    await federation.wait_ready()
    page = await console_page(federation, "LU-HCPN", "/console/compose")
    for name in ("nuclear-notification", "flood", "public-health-threat",
                 "telecom-cyber-outage", "request-for-assistance"):
        assert f'<option value="{name}"' in page
    page = await console_page(federation, "LU-HCPN",
                              "/console/compose?template=nuclear-notification")
    assert 'name="template" value="nuclear-notification"' in page
    assert 'value="field:nuclear-radiological" checked' in page
    assert "<option selected>AMBER</option>" in page
    assert '<option value="flash" selected>' in page
    assert "Vroegtijdige kennisgeving van een nucleair" in page
    assert "Frühzeitige Benachrichtigung" in page
