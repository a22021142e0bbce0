// Maps of message areas: Leaflet (SVG) on the Natural Earth countries shipped with the
// node (vendor/world-atlas); no tile server, nothing from another origin. Peer text is
// set as text, never as HTML.
"use strict";
(function () {
  const COLOURS = { flash: "#ff6b6b", urgent: "#f2b84b", routine: "#7cc4ff" };
  const BASEMAP = "/console/static/vendor/world-atlas/countries-50m.json";

  function style(feature) {
    const p = feature.properties || {};
    const exercise = p.mode && p.mode !== "actual";
    return { color: COLOURS[p.priority] || "#9aa8ff", weight: 2, fillOpacity: 0.25,
             dashArray: exercise ? "6 6" : null,
             className: "area area-" + (p.type || "message") + (exercise ? " area-exercise" : "") };
  }

  function label(feature) {
    const p = feature.properties || {};
    const el = document.createElement("span");
    const exercise = p.mode && p.mode !== "actual" ? " [" + String(p.mode).toUpperCase() + "]" : "";
    el.textContent = [p.centre, p.label].filter(Boolean).join(": ") + exercise;
    return el;
  }

  function draw(el, countries) {
    let data;
    try { data = JSON.parse(el.dataset.geojson || "{}"); } catch (e) { return; }
    const map = L.map(el, { zoomSnap: 0.25, worldCopyJump: true });
    map.attributionControl.setPrefix(false);
    map.attributionControl.addAttribution("Natural Earth");
    if (countries) {
      L.geoJSON(countries, { interactive: false,
        style: { color: "#5a6b82", weight: 1, fillColor: "#1d2a3b", fillOpacity: 1 } }).addTo(map);
    }
    const layer = L.geoJSON(data, {
      style: style,
      pointToLayer: function (feature, latlng) {
        const radius = (feature.properties || {}).radius_m;
        return radius ? L.circle(latlng, Object.assign({ radius: radius }, style(feature)))
                      : L.circleMarker(latlng, Object.assign({ radius: 8 }, style(feature)));
      },
      onEachFeature: function (feature, shape) {
        shape.bindTooltip(label(feature));
        const id = (feature.properties || {}).id;
        if (id && el.dataset.link !== "off") {
          shape.on("click", function () { location.href = "/console/messages/" + encodeURIComponent(id); });
        }
      },
    }).addTo(map);
    const bounds = layer.getBounds();
    if (bounds.isValid()) map.fitBounds(bounds.pad(0.5), { maxZoom: 10 });
    else map.setView([50.8, 5.5], 6);  // the Benelux
    el.dataset.drawn = String(layer.getLayers().length);
  }

  let basemap = null;  // the countries, fetched once per page
  function countries() {
    if (!basemap) {
      basemap = fetch(BASEMAP, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (world) {
          return world && window.topojson ? topojson.feature(world, world.objects.countries) : null;
        })
        .catch(function () { return null; });
    }
    return basemap;
  }

  function drawIn(root) {
    const maps = Array.from(root.querySelectorAll("[data-map]:not([data-pending])"));
    if (!maps.length || !window.L) return;
    maps.forEach(function (el) { el.dataset.pending = "1"; });
    countries().then(function (world) { maps.forEach(function (el) { draw(el, world); }); });
  }

  document.addEventListener("DOMContentLoaded", function () { drawIn(document); });
  // A live block (the overview's alerts in force) brought a new map.
  document.addEventListener("crisisgw:block", function (e) { drawIn(e.detail); });
})();
