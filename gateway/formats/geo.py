"""Where a message applies, as GeoJSON features for the console's maps and the incident
export (pure).

A sitrep's ``affected_area.geometry`` is GeoJSON already. A CAP area is text: polygons
as "lat,lon lat,lon ..." (WGS 84, at least four pairs, closed) and circles as
"lat,lon radius" with the radius in kilometres (CAP 1.2, 3.2.4). A CAP circle has no
GeoJSON type: it is a Point with ``radius_m`` in its properties. Geocodes name areas in
a scheme the node cannot draw: they are listed, not mapped. Text that does not parse,
or coordinates outside WGS 84, give no feature (the area is still listed as text).
"""

from __future__ import annotations

import math
from typing import Any

from gateway.protocol.alert import Alert
from gateway.protocol.sitrep import Sitrep

Feature = dict[str, Any]
#: Features per message: a hostile peer's thousand areas draw no more than this.
MAX_FEATURES = 64


def _pair(text: str) -> list[float] | None:
    """"lat,lon" as a GeoJSON position [lon, lat]; None when it is not one."""
    parts = text.split(",")
    if len(parts) != 2:
        return None
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90
            and -180 <= lon <= 180):
        return None
    return [lon, lat]


def cap_polygon(text: str) -> dict[str, Any] | None:
    """A CAP polygon as a GeoJSON Polygon (closed when the sender forgot to)."""
    ring = [_pair(p) for p in text.split()]
    if len(ring) < 3 or any(p is None for p in ring):
        return None
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def cap_circle(text: str) -> tuple[dict[str, Any], float] | None:
    """A CAP circle as (GeoJSON Point of its centre, radius in metres)."""
    parts = text.split()
    if len(parts) != 2:
        return None
    centre = _pair(parts[0])
    try:
        radius_km = float(parts[1])
    except ValueError:
        return None
    if centre is None or not math.isfinite(radius_km) or not 0 <= radius_km <= 20_000:
        return None
    return {"type": "Point", "coordinates": centre}, radius_km * 1000


def alert_features(alert: Alert, properties: dict[str, Any]) -> list[Feature]:
    """The polygons and circles of every area of every info block of ``alert``."""
    out: list[Feature] = []
    for info in alert.infos:
        for area in info.areas:
            label = {**properties, "label": area.area_desc, "language": info.language}
            for text in area.polygons:
                polygon = cap_polygon(text)
                if polygon is not None:
                    out.append({"type": "Feature", "geometry": polygon, "properties": label})
            for text in area.circles:
                circle = cap_circle(text)
                if circle is not None:
                    out.append({"type": "Feature", "geometry": circle[0],
                                "properties": {**label, "radius_m": circle[1]}})
    return _unique(out)[:MAX_FEATURES]


def sitrep_features(sitrep: Sitrep, properties: dict[str, Any]) -> list[Feature]:
    """A sitrep's affected area (its geometry, labelled with its place names)."""
    area = sitrep.affected_area
    if area is None or area.geometry is None:
        return []
    geometry = area.geometry.model_dump(mode="json")
    label = ", ".join(area.place_names) or sitrep.incident.title
    return [{"type": "Feature", "geometry": geometry,
             "properties": {**properties, "label": label}}]


def _unique(features: list[Feature]) -> list[Feature]:
    """The same area in several languages is drawn once."""
    seen: set[str] = set()
    out = []
    for f in features:
        key = repr((f["geometry"], f["properties"].get("radius_m")))
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def collection(features: list[Feature]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (RFC 7946)."""
    return {"type": "FeatureCollection", "features": features}
