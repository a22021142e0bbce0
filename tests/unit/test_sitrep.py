"""Tests of the sitrep body model (gateway.protocol.sitrep)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.protocol.sitrep import (
    PLAIN_TEXT,
    Need,
    Purpose,
    Severity,
    Sitrep,
    sitrep_json,
)

MINIMAL: dict[str, Any] = {
    "incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
    "report_number": 1,
    "severity": "severe",
    "summary": "Water levels rising at Liège.",
}

SQUARE = [[5.5, 50.6], [5.6, 50.6], [5.6, 50.7], [5.5, 50.7], [5.5, 50.6]]

RICH: dict[str, Any] = {
    "incident": {
        "id": "BE-2026-0001",
        "title": "Flooding of the Meuse",
        "type": "flood",
        "phase": "response",
    },
    "report_number": 3,
    "purpose": "update",
    "supersedes": 2,
    "period": {"start": "2026-11-27T06:00:00.000Z", "end": "2026-11-27T12:00:00.000Z"},
    "severity": "extreme",
    "urgency": "immediate",
    "certainty": "observed",
    "language": "en",
    "summary": {"nl": "Waterpeil stijgt.", "fr": "Le niveau monte.", "de": "Pegel steigt."},
    "sections": {
        "situation": "Dykes overtopped at two points.",
        "actions_taken": {"fr": "Évacuation de 1 200 personnes."},
        "outlook": "Peak expected tonight.",
    },
    "affected_area": {
        "geometry": {"type": "MultiPolygon", "coordinates": [[SQUARE]]},
        "place_names": ["Liège", "Visé"],
        "region_codes": ["BE332"],
    },
    "casualties": {"dead": 0, "injured": 12, "missing": 3, "evacuated": 1200},
    "needs": [
        {"description": "High-capacity pumps", "category": "equipment",
         "quantity": "10 units", "urgent": True},
    ],
    "assistance_requests": [
        {"to": "NL-NCC", "description": {"nl": "Pompcapaciteit gevraagd"},
         "resources": ["HCP module"]},
        {"description": "Sandbags"},
    ],
    "resources_deployed": [
        {"type": "rescue boat", "quantity": 14, "organisation": "Civil Protection"},
    ],
    "contact": {"name": "Duty officer", "role": "NCCN duty", "phone": "+32 2 506 47 11",
                "email": "duty@example.be", "organisation": "NCCN"},
    "attachments": [
        {"sha256": "ab" * 32, "filename": "map.pdf", "media_type": "application/pdf",
         "size": 123456, "description": "Flood extent map"},
    ],
}


def _submitted(data: Any) -> Sitrep:
    """Validate as the API does: plain-string texts allowed (PLAIN_TEXT context)."""
    return Sitrep.model_validate(data, context=PLAIN_TEXT)


def body(**changes: Any) -> dict[str, Any]:
    """Return a deep copy of MINIMAL with top-level ``changes`` applied."""
    data = copy.deepcopy(MINIMAL)
    data.update(changes)
    return data


def error_locs(data: dict[str, Any]) -> list[tuple[int | str, ...]]:
    """Validate ``data``, expect failure, and return the location of every error."""
    with pytest.raises(ValidationError) as info:
        _submitted(data)
    return [tuple(err["loc"]) for err in info.value.errors()]


def test_minimal_body_accepted_and_normalised() -> None:
    """The minimal body validates and dumps with its summary tagged ``und``."""
    s = _submitted(MINIMAL)
    assert s.severity is Severity.SEVERE
    assert s.needs == ()
    assert sitrep_json(s) == {
        "incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
        "report_number": 1,
        "severity": "severe",
        "summary": {"und": "Water levels rising at Liège."},
    }


def test_validation_does_not_mutate_input() -> None:
    """Normalising plain strings works on a copy, leaving the caller's dict as it was."""
    data = copy.deepcopy(RICH)
    _submitted(data)
    assert data == RICH


def test_multilingual_summary_kept() -> None:
    """A summary given in several languages is kept exactly."""
    texts = {"nl": "Waterpeil stijgt.", "fr": "Le niveau monte.", "de": "Pegel steigt."}
    s = _submitted(body(summary=texts))
    assert s.summary == texts
    assert sitrep_json(s)["summary"] == texts


def test_language_field_tags_every_plain_string() -> None:
    """With ``language`` set, every plain-string text, however nested, is tagged with it."""
    s = _submitted(RICH)
    assert s.sections is not None
    assert s.sections.situation == {"en": "Dykes overtopped at two points."}
    assert s.sections.actions_taken == {"fr": "Évacuation de 1 200 personnes."}
    assert s.sections.outlook == {"en": "Peak expected tonight."}
    assert s.needs[0].description == {"en": "High-capacity pumps"}
    assert s.assistance_requests[0].description == {"nl": "Pompcapaciteit gevraagd"}
    assert s.assistance_requests[1].description == {"en": "Sandbags"}
    assert s.summary == RICH["summary"]


def test_sitrep_json_omits_nulls_and_empty_lists() -> None:
    """sitrep_json drops None fields and empty tuples, including nested ones."""
    s = _submitted(
        body(needs=[{"description": "Water"}], assistance_requests=[{"description": "Help"}])
    )
    out = sitrep_json(s)
    assert "attachments" not in out
    assert "purpose" not in out
    assert out["needs"] == [{"description": {"und": "Water"}, "urgent": False}]
    assert out["assistance_requests"] == [{"description": {"und": "Help"}}]
    assert _submitted(out) == s


def test_rich_sitrep_round_trips() -> None:
    """A full sitrep survives validate -> JSON text -> validate unchanged."""
    s = _submitted(RICH)
    out = sitrep_json(s)
    again = Sitrep.model_validate_json(json.dumps(out))  # the wire form needs no leniency
    assert again == s
    assert sitrep_json(again) == out
    assert out["period"]["start"] == "2026-11-27T06:00:00.000Z"
    assert s.purpose is Purpose.UPDATE


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Point", "coordinates": [5.57, 50.63]},
        {"type": "Point", "coordinates": [5.57, 50.63, 60.0]},
        {"type": "LineString", "coordinates": [[5.5, 50.6], [5.6, 50.7]]},
        {"type": "Polygon", "coordinates": [SQUARE]},
    ],
)
def test_geometries_accepted(geometry: dict[str, Any]) -> None:
    """Each supported GeoJSON geometry type validates and dumps back to the same object."""
    s = _submitted(body(affected_area={"geometry": geometry}))
    assert sitrep_json(s)["affected_area"]["geometry"] == geometry


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"severity": "bad"}, "severity"),
        ({"report_number": 0}, "report_number"),
        ({"report_number": 2**31 + 1}, "report_number"),
        ({"report_number": "1"}, "report_number"),
        ({"report_number": True}, "report_number"),
        ({"report_number": 2, "supersedes": 2}, "supersedes"),
        ({"report_number": 2, "supersedes": 3}, "supersedes"),
        ({"bogus": 1}, "bogus"),
        ({"summary": {}}, "summary"),
        ({"summary": ""}, "summary"),
        ({"summary": {"english": "x"}}, "summary"),
        ({"language": "English"}, "language"),
        ({"urgency": "soon"}, "urgency"),
        ({"purpose": "initial-ish"}, "purpose"),
        ({"incident": {"id": "BE-1"}}, "incident"),
        ({"incident": {"id": "BE-1", "title": "t", "phase": "done"}}, "incident"),
        ({"period": {"start": "2026-11-27T12:00:00Z", "end": "2026-11-27T06:00:00Z"}},
         "period"),
        ({"period": {"start": "2026-11-27T12:00:00", "end": "2026-11-27T13:00:00Z"}},
         "period"),
        ({"sections": {"situation": ""}}, "sections"),
        ({"sections": {"weather": "rain"}}, "sections"),
        ({"casualties": {"dead": -1}}, "casualties"),
        ({"needs": [{"category": "food"}]}, "needs"),
        ({"assistance_requests": [{"to": "nl", "description": "x"}]}, "assistance_requests"),
        ({"resources_deployed": [{"quantity": 3}]}, "resources_deployed"),
        ({"contact": {"phone": "call me"}}, "contact"),
        ({"contact": {"email": "nobody"}}, "contact"),
        ({"affected_area": {"region_codes": ["be332"]}}, "affected_area"),
    ],
)
def test_invalid_field_rejected(changes: dict[str, Any], field: str) -> None:
    """An invalid value is refused with an error located at the offending field."""
    locs = error_locs(body(**changes))
    assert locs
    assert all(loc and loc[0] == field for loc in locs), locs


def test_bad_language_reported_only_on_language() -> None:
    """A bad ``language`` tag is not also blamed on the plain-string texts it would tag."""
    assert error_locs(body(language="EN_gb")) == [("language",)]


def test_empty_summary_dict_rejected() -> None:
    """A summary with no language at all is refused at ``summary``."""
    assert error_locs(body(summary={})) == [("summary",)]


@pytest.mark.parametrize(
    ("geometry", "bad_key"),
    [
        ({"type": "Polygon", "coordinates": [[*SQUARE[:-1], [5.5, 50.65]]]}, 0),
        ({"type": "Polygon", "coordinates": [[[5.5, 50.6], [5.6, 50.6], [5.5, 50.6]]]}, 0),
        ({"type": "Point", "coordinates": [5.5, 95.0]}, "coordinates"),
        ({"type": "Point", "coordinates": [50.6, 181.0]}, "coordinates"),
        ({"type": "Point", "coordinates": [181.0, 50.6]}, "coordinates"),
        ({"type": "Point", "coordinates": [5.5]}, "coordinates"),
        ({"type": "Point", "coordinates": ["5.5", "50.6"]}, "coordinates"),
        ({"type": "LineString", "coordinates": [[5.5, 50.6]]}, "coordinates"),
        ({"type": "Circle", "coordinates": [5.5, 50.6]}, "geometry"),
    ],
)
def test_invalid_geometry_rejected(geometry: dict[str, Any], bad_key: int | str) -> None:
    """Unclosed or short rings, out-of-range lon/lat and unknown types are refused."""
    locs = error_locs(body(affected_area={"geometry": geometry}))
    assert all(loc[:2] == ("affected_area", "geometry") for loc in locs), locs
    # pydantic also reports a bad ring's enclosing tuple as "too short": only require the cause.
    assert any(bad_key in loc[2:] or bad_key == "geometry" for loc in locs), locs


def test_latitude_95_error_names_latitude() -> None:
    """A latitude of 95 is refused with a message that says latitude."""
    with pytest.raises(ValidationError, match="latitude 95"):
        _submitted(
            body(affected_area={"geometry": {"type": "Point", "coordinates": [5.5, 95]}})
        )


@pytest.mark.parametrize(
    ("attachment_changes", "field"),
    [
        ({"sha256": "AB" * 32}, "sha256"),
        ({"sha256": "ab" * 31}, "sha256"),
        ({"filename": "../etc/passwd"}, "filename"),
        ({"filename": "dir\\map.pdf"}, "filename"),
        ({"filename": ".."}, "filename"),
        ({"filename": ""}, "filename"),
        ({"media_type": "pdf"}, "media_type"),
        ({"size": -1}, "size"),
    ],
)
def test_invalid_attachment_rejected(attachment_changes: dict[str, Any], field: str) -> None:
    """Bad hashes, path-like file names, bad media types and negative sizes are refused."""
    attachment = {**RICH["attachments"][0], **attachment_changes}
    assert error_locs(body(attachments=[attachment])) == [("attachments", 0, field)]


def test_over_long_text_rejected() -> None:
    """A text longer than 20000 characters is refused."""
    assert error_locs(body(summary="x" * 20_001)) == [("summary", "und")]


def test_model_is_frozen() -> None:
    """A validated sitrep cannot be modified."""
    s = _submitted(MINIMAL)
    with pytest.raises(ValidationError):
        s.report_number = 2  # type: ignore[misc]


def test_submodel_requires_tagged_text() -> None:
    """Outside a Sitrep there is no language to apply, so a plain string is refused."""
    with pytest.raises(ValidationError):
        Need.model_validate({"description": "Water"})
    assert Need(description={"fr": "Eau"}).description == {"fr": "Eau"}


def test_json_schema_generated() -> None:
    """Sitrep.model_json_schema() works and describes the wire form of the body."""
    schema = Sitrep.model_json_schema()
    json.dumps(schema)
    assert set(schema["required"]) == {"incident", "report_number", "severity", "summary"}
    assert schema["additionalProperties"] is False
    summary = schema["properties"]["summary"]
    assert summary["type"] == "object"
    assert summary["minProperties"] == 1
    assert summary["additionalProperties"] is False
    assert "Severity" in schema["$defs"]


def test_wire_validation_refuses_plain_string_texts() -> None:
    """Without the submission context (i.e. on reception) a plain-string summary is refused."""
    with pytest.raises(ValidationError) as info:
        Sitrep.model_validate(MINIMAL)
    assert info.value.errors()[0]["loc"][0] == "summary"
