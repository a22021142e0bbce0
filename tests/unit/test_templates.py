"""Message templates: the pure model, its load-time check and how a submission is made of
it (gateway.protocol.templates), the built-in ones, and the ``[[templates]]`` section."""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from pydantic import ValidationError

from gateway.config import load_settings
from gateway.config_templates import builtin_templates, parse_templates, templates_in_force
from gateway.errors import ConfigError, InvalidBody
from gateway.protocol.directory import FieldOfWork
from gateway.protocol.sitrep import PLAIN_TEXT
from gateway.protocol.templates import Template, apply_template, is_empty, merge
from gateway.service.submit import AlertSubmission, SitrepSubmission
from tests.unit.fake_node import settings_dict

ROOT = Path(__file__).resolve().parents[2]
TITLE = {"en": "Dike breach", "nl": "Dijkdoorbraak", "fr": "Rupture de digue",
         "de": "Deichbruch"}
SUMMARY = {"en": "A dike has breached.", "nl": "Een dijk is doorgebroken.",
           "fr": "Une digue a cédé.", "de": "Ein Deich ist gebrochen."}


def sitrep_template(**changes: Any) -> dict[str, Any]:
    """A valid raw sitrep template; ``changes`` replace its top-level members."""
    raw: dict[str, Any] = {
        "id": "dike-breach", "kind": "sitrep", "field": "civil-protection",
        "title": dict(TITLE), "to": ["benelux"], "tlp": "AMBER", "priority": "flash",
        "required": ["incident.id", "incident.title", "affected_area.place_names"],
        "defaults": {"report_number": 1, "severity": "extreme",
                     "incident": {"type": "flood"}, "summary": dict(SUMMARY)}}
    return raw | changes


def alert_template(**changes: Any) -> dict[str, Any]:
    """A valid raw CAP alert template with an English and a Dutch info."""
    info = {"categories": ["Met"], "event": "Storm", "urgency": "Expected",
            "severity": "Severe", "certainty": "Likely"}
    raw: dict[str, Any] = {
        "id": "storm-warning", "kind": "alert", "field": "civil-protection",
        "title": dict(TITLE), "to": ["NL-NCC"], "tlp": "GREEN",
        "required": ["identifier", "sent", "infos.0.areas"],
        "defaults": {"sender": "ops@crisiscenter.example", "status": "Actual",
                     "msg_type": "Alert", "scope": "Public",
                     "infos": [{**info, "language": "en", "headline": "Storm warning"},
                               {**info, "language": "nl", "headline": "Stormwaarschuwing"}]}}
    return raw | changes


def put(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted ``path`` (list positions as numbers) of ``data``."""
    parts = path.split(".")
    node: Any = data
    for part, after in itertools.pairwise(parts):
        nxt: Any = [] if after.isdigit() else {}
        if isinstance(node, list):
            while len(node) <= int(part):
                node.append(nxt)
            node = node[int(part)]
        else:
            node = node.setdefault(part, nxt)
    if isinstance(node, list):
        node.append(value)
    else:
        node[parts[-1]] = value


#: What a submitter writes into each required field of the built-in templates.
FILLED = {"incident.id": "BE-2026-0100", "incident.title": "Test incident",
          "affected_area.place_names": ["Liège"], "sections.situation": "What happened.",
          "sections.actions_taken": "Sheltering ordered.", "sections.outlook": "Until 18:00.",
          "report_number": 2, "assistance_requests.0.description": "Four pumps."}


# -- the built-in templates -------------------------------------------------------------


def test_the_five_built_in_templates_load_with_all_four_languages() -> None:
    """nuclear, flood, public health, telecom/cyber and assistance are built in, each with
    its title and summary in en, nl, fr and de, addressed to its field's contact points."""
    found = {t.id: t for t in builtin_templates()}
    assert sorted(found) == ["flood", "nuclear-notification", "public-health-threat",
                             "request-for-assistance", "telecom-cyber-outage"]
    assert found["nuclear-notification"].field is FieldOfWork.NUCLEAR_RADIOLOGICAL
    assert found["public-health-threat"].field is FieldOfWork.PUBLIC_HEALTH
    for t in found.values():
        assert t.kind == "sitrep"
        assert t.to == (f"field:{t.field.value}",)
        assert sorted(t.defaults["summary"]) == ["de", "en", "fr", "nl"]
        assert len({t.title.en, t.title.nl, t.title.fr, t.title.de}) == 4, t.id


@pytest.mark.parametrize("template", builtin_templates(), ids=lambda t: t.id)
def test_each_built_in_filled_in_is_a_valid_submission(template: Template) -> None:
    """Filling in exactly a built-in template's required fields gives a valid sitrep
    submission that carries the template's recipients, TLP, priority and wording."""
    body: dict[str, Any] = {}
    for path in template.required:
        put(body, path, FILLED[path])
    sub = SitrepSubmission.model_validate(apply_template(template, {"sitrep": body}),
                                          context=PLAIN_TEXT)
    assert sub.to == template.to
    assert sub.tlp is template.tlp
    assert sub.priority is template.priority
    assert sub.sitrep.summary == template.defaults["summary"]
    assert sub.sitrep.incident.id == "BE-2026-0100"


# -- making a submission ----------------------------------------------------------------


def test_the_callers_members_win_and_a_text_is_replaced_in_every_language() -> None:
    """Routing given by the caller replaces the template's; objects merge key by key;
    the caller's summary replaces the template's whole (no stale translations)."""
    t = Template.model_validate(sitrep_template())
    out = apply_template(t, {"template": "dike-breach", "to": ["NL-NCC"], "tlp": "RED",
                             "sitrep": {"incident": {"id": "BE-1", "title": "Kallo"},
                                        "affected_area": {"place_names": ["Kallo"]},
                                        "summary": {"en": "Our own words."}}})
    assert "template" not in out
    assert out["to"] == ["NL-NCC"]
    assert (out["tlp"], out["priority"]) == ("RED", "flash")
    assert out["sitrep"]["incident"] == {"type": "flood", "id": "BE-1", "title": "Kallo"}
    assert out["sitrep"]["summary"] == {"en": "Our own words."}
    assert t.defaults["incident"] == {"type": "flood"}  # the template is left as it was


def test_lists_of_objects_merge_item_by_item_and_other_lists_are_replaced() -> None:
    """An alert's infos get the caller's areas position by position; a list of plain
    values (place names) is the caller's alone."""
    t = Template.model_validate(alert_template())
    out = apply_template(t, {"alert": {
        "identifier": "A-1", "sent": "2026-11-27T10:00:00+01:00",
        "infos": [{"areas": [{"area_desc": "Coast"}]}, {"areas": [{"area_desc": "Kust"}]}]}})
    sub = AlertSubmission.model_validate(out)
    assert [(i.language, i.headline, i.areas[0].area_desc) for i in sub.alert.infos] == [
        ("en", "Storm warning", "Coast"), ("nl", "Stormwaarschuwing", "Kust")]
    assert merge({"p": ["a", "b"]}, {"p": ["c"]}) == {"p": ["c"]}


def test_every_required_field_left_empty_is_named() -> None:
    """Absent, null, blank, [] and {"en": ""} are all missing: one error per field, on its
    place in the submission, with the code template_required; 0 is a value."""
    t = Template.model_validate(sitrep_template(required=[
        "incident.id", "incident.title", "affected_area.place_names", "casualties.dead",
        "sections.situation"]))
    with pytest.raises(InvalidBody) as info:
        apply_template(t, {"sitrep": {"incident": {"id": "  ", "title": None},
                                      "affected_area": {"place_names": []},
                                      "casualties": {"dead": 0},
                                      "sections": {"situation": {"en": ""}}}})
    assert [e["field"] for e in info.value.errors] == [
        "sitrep.incident.id", "sitrep.incident.title", "sitrep.affected_area.place_names",
        "sitrep.sections.situation"]
    assert info.value.errors[2]["loc"] == ["sitrep", "affected_area", "place_names"]
    assert {e["code"] for e in info.value.errors} == {"template_required"}
    assert "sitrep.incident.title" in info.value.detail
    assert is_empty([" ", None])
    assert not is_empty(["x"])
    assert not is_empty(False)


def test_a_required_list_position_is_named_with_its_index() -> None:
    """A required request for assistance is reported at assistance_requests, position 0."""
    t = next(t for t in builtin_templates() if t.id == "request-for-assistance")
    with pytest.raises(InvalidBody) as info:
        apply_template(t, {"sitrep": {"incident": {"id": "BE-1", "title": "x"},
                                      "report_number": 3}})
    assert info.value.errors[0]["loc"] == ["sitrep", "assistance_requests", 0, "description"]


# -- the check when a template is loaded ------------------------------------------------


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        Template.model_validate(raw)
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in info.value.errors())


@pytest.mark.parametrize(("raw", "expected"), [
    (sitrep_template(tlp="PURPLE"), "tlp: Input should be 'CLEAR'"),
    (sitrep_template(field="astrology"), "field: Input should be 'public-health'"),
    (sitrep_template(title={"en": "x", "nl": "x", "fr": "x"}), "title.de: Field required"),
    (sitrep_template(kind="memo"), "kind: Input should be 'sitrep' or 'alert'"),
    (sitrep_template(id="Dike Breach"), "id: String should match pattern"),
    (sitrep_template(to=["benelux", "field:astrology"]), "to.1: String should match"),
    (sitrep_template(colour="red"), "colour: Extra inputs are not permitted"),
    (sitrep_template(defaults={**sitrep_template()["defaults"], "colour": "red"}),
     "defaults.colour: Extra inputs are not permitted"),
    (sitrep_template(defaults={**sitrep_template()["defaults"], "severity": "bad"}),
     "defaults.severity: Input should be 'extreme'"),
    (sitrep_template(required=["incident.id", "incident.title", "incident.colour"]),
     "required: incident.colour is not a field of a sitrep"),
    (sitrep_template(required=["incident.id", "incident.title", "severity"]),
     "required: severity has a default too"),
    (sitrep_template(required=["incident.id"]),
     "incident.title: every sitrep needs it: give it a default or list it in required"),
    (sitrep_template(required=["incident.id", "incident.title", "needs.0.urgent"]),
     "needs.0.description: every sitrep needs it"),
    (alert_template(required=["identifier", "sent", "infos.2.areas"]),
     "infos.2.categories: every alert needs it"),
    (alert_template(kind="sitrep"), "defaults.sender: Extra inputs are not permitted"),
])
def test_an_invalid_template_is_refused_naming_the_field(raw: dict[str, Any],
                                                         expected: str) -> None:
    """Bad TLP, unknown field of work, a missing language, unknown fields, bad defaults,
    required fields that do not exist, have a default, or leave the body incomplete."""
    assert expected in _error(raw)


def test_a_complete_template_needs_no_required_fields() -> None:
    """A template whose defaults are a whole body is valid with nothing required."""
    raw = sitrep_template(required=[], defaults={
        **sitrep_template()["defaults"], "incident": {"id": "X-1", "title": "Drill"}})
    assert Template.model_validate(raw).required == ()


# -- the [[templates]] section ------------------------------------------------------------


def _config(tmp_path: Path, templates: list[dict[str, Any]]) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps({**settings_dict(), "templates": templates}))
    return path


def test_a_centre_template_is_loaded_and_replaces_the_built_in_of_its_id(
        tmp_path: Path) -> None:
    """[[templates]] are parsed with the settings; a centre's "flood" replaces the
    built-in one in place, its others come after the built-in ones."""
    settings = load_settings(_config(tmp_path, [
        sitrep_template(), sitrep_template(id="flood", title={**TITLE, "en": "Our flood"})]))
    in_force = templates_in_force(settings.templates)
    assert list(in_force)[-1] == "dike-breach"
    assert list(in_force).index("flood") == [t.id for t in builtin_templates()].index("flood")
    assert in_force["flood"].title.en == "Our flood"
    assert len(in_force) == len(builtin_templates()) + 1


@pytest.mark.parametrize(("templates", "expected"), [
    ([sitrep_template(tlp="PURPLE")], "templates: template 'dike-breach': tlp: Input should"),
    ([sitrep_template(), sitrep_template()], "template 'dike-breach': two templates have "
                                             "this id"),
    ([{"kind": "sitrep"}], "template 1: id: Field required"),
    ([alert_template(), sitrep_template(defaults={"severity": "extreme"})],
     "template 'dike-breach': report_number: every sitrep needs it"),
])
def test_an_invalid_template_in_the_config_stops_loading_with_a_clear_error(
        tmp_path: Path, templates: list[dict[str, Any]], expected: str) -> None:
    """load_settings raises ConfigError naming the file, the template and the field."""
    with pytest.raises(ConfigError) as info:
        load_settings(_config(tmp_path, templates))
    assert str(info.value).startswith(str(tmp_path / "gateway.toml"))
    assert expected in str(info.value)


def test_templates_must_be_tables() -> None:
    """``templates = "flood"`` is refused (not a list of tables)."""
    with pytest.raises(ValueError, match=r"\[\[templates\]\] tables"):
        parse_templates("flood")


def test_the_readme_examples_are_valid() -> None:
    """The [[templates]] example of README.md ("Message templates") loads as it is; its
    curl bodies make a valid sitrep, a 422 naming the three missing fields, and a valid
    alert."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Message templates", 1)[1].split("\n## ", 1)[0]
    toml = re.search(r"```toml\n(.*?)```", section, re.S)
    assert toml is not None
    own = parse_templates(tomllib.loads(toml.group(1))["templates"])
    templates = templates_in_force(own)
    assert [t.id for t in own] == ["dike-breach", "heat-warning"]
    sitrep, incomplete, alert = (json.loads(b) for b in re.findall(r"-d '(\{.*?\})'",
                                                                     section, re.S))
    sub = SitrepSubmission.model_validate(
        apply_template(templates[sitrep["template"]], sitrep), context=PLAIN_TEXT)
    assert (sub.tlp.value, sub.priority.value, sub.to) == ("AMBER", "flash", ("benelux",))
    with pytest.raises(InvalidBody) as info:
        apply_template(templates[incomplete["template"]], incomplete)
    assert [e["field"] for e in info.value.errors] == [
        "sitrep.incident.title", "sitrep.affected_area.place_names", "sitrep.sections.situation"]
    cap = AlertSubmission.model_validate(apply_template(templates[alert["template"]], alert))
    assert [i.areas[0].area_desc for i in cap.alert.infos] == ["Belgium", "België"]
