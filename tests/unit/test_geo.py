"""Message areas as GeoJSON (gateway/formats/geo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.formats.cap import parse_cap
from gateway.formats.geo import (
    MAX_FEATURES,
    alert_features,
    cap_circle,
    cap_polygon,
    collection,
    sitrep_features,
)
from gateway.protocol.alert import Alert
from gateway.protocol.sitrep import Sitrep

CAP = Path(__file__).resolve().parents[1] / "assets" / "cap"


def test_a_cap_polygon_becomes_a_geojson_polygon_in_lon_lat_order() -> None:
    """CAP writes "lat,lon"; GeoJSON wants [lon, lat], and the ring stays closed."""
    polygon = cap_polygon("38.47,-120.14 38.34,-119.95 38.52,-119.74 38.47,-120.14")
    assert polygon == {"type": "Polygon", "coordinates": [[
        [-120.14, 38.47], [-119.95, 38.34], [-119.74, 38.52], [-120.14, 38.47]]]}


def test_an_open_cap_polygon_is_closed() -> None:
    """A sender that forgot the closing pair still gets its area drawn."""
    polygon = cap_polygon("50.8,4.3 50.9,4.4 50.7,4.5")
    assert polygon is not None
    ring = polygon["coordinates"][0]
    assert ring[0] == ring[-1]
    assert len(ring) == 4


@pytest.mark.parametrize("text", [
    "", "50.8,4.3", "50.8,4.3 50.9,4.4", "50.8;4.3 50.9,4.4 50.7,4.5",
    "91,4 50,4 50,5", "50,181 50,4 50,5", "nan,4 50,4 50,5", "a,b c,d e,f",
])
def test_text_that_is_no_polygon_gives_none(text: str) -> None:
    """Garbage or coordinates outside WGS 84 draw nothing (the area stays listed)."""
    assert cap_polygon(text) is None


def test_a_cap_circle_is_a_point_with_a_radius_in_metres() -> None:
    """"lat,lon km" becomes a Point and radius_m."""
    assert cap_circle("32.9525,-115.5527 0") == (
        {"type": "Point", "coordinates": [-115.5527, 32.9525]}, 0.0)
    assert cap_circle("50.85,4.35 2.5") == (
        {"type": "Point", "coordinates": [4.35, 50.85]}, 2500.0)
    for bad in ("50.85,4.35", "50.85,4.35 -1", "50.85,4.35 x", "50.85 4.35 1", "1e400,4 1"):
        assert cap_circle(bad) is None


def test_the_oasis_examples_give_their_polygon_and_circle() -> None:
    """Appendix A2's polygon and A3's circle are drawn; A1 (no area shape) gives none."""
    a2 = parse_cap((CAP / "oasis-appendix-a2.xml").read_bytes())
    a3 = parse_cap((CAP / "oasis-appendix-a3.xml").read_bytes())
    a1 = parse_cap((CAP / "oasis-appendix-a1.xml").read_bytes())
    f2 = alert_features(a2, {"centre": "NL-NCC"})
    assert [f["geometry"]["type"] for f in f2] == ["Polygon"]
    assert f2[0]["properties"]["centre"] == "NL-NCC"
    assert f2[0]["properties"]["label"]
    f3 = alert_features(a3, {})
    assert [f["geometry"]["type"] for f in f3] == ["Point"]
    assert f3[0]["properties"]["radius_m"] == 0.0
    assert alert_features(a1, {}) == []


def test_many_areas_draw_a_bounded_number_of_features() -> None:
    """A hostile alert with hundreds of polygons draws at most MAX_FEATURES."""
    a2 = parse_cap((CAP / "oasis-appendix-a2.xml").read_bytes()).model_dump()
    a2["infos"][0]["areas"] = [{"area_desc": f"a{i}", "polygons": [
        f"50.{i:03d}{j},4.1 50.{i:03d},4.2 50.5,4.3" for j in range(10)]} for i in range(20)]
    alert = Alert.model_validate(a2)
    assert len(alert_features(alert, {})) == MAX_FEATURES


def test_a_sitrep_area_keeps_its_geojson_and_names() -> None:
    """The affected area's geometry is the feature; its place names label it."""
    sitrep = Sitrep.model_validate({
        "incident": {"id": "NL-1", "title": "Flood"}, "report_number": 1,
        "severity": "severe", "summary": {"en": "x"},
        "affected_area": {"place_names": ["Roermond", "Venlo"], "geometry": {
            "type": "Polygon", "coordinates": [[[5.9, 51.1], [6.0, 51.1], [6.0, 51.2],
                                                 [5.9, 51.1]]]}}})
    features = sitrep_features(sitrep, {"centre": "NL-NCC"})
    assert features[0]["geometry"]["type"] == "Polygon"
    assert features[0]["properties"] == {"centre": "NL-NCC", "label": "Roermond, Venlo"}
    assert collection(features)["type"] == "FeatureCollection"
    no_area = sitrep.model_copy(update={"affected_area": None})
    assert sitrep_features(no_area, {}) == []
