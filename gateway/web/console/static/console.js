// Live updates over server-sent events; local times with UTC on hover. No framework.
"use strict";
(function () {
  const labels = JSON.parse(document.body.dataset.labels || "{}");

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      const d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      el.textContent = d.toLocaleString(document.documentElement.lang || undefined,
        { dateStyle: "short", timeStyle: "medium" });
      el.title = "UTC " + d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
    });
  }

  function applyStates(data) {
    Object.entries(data.states || {}).forEach(function ([mid, recipients]) {
      Object.entries(recipients).forEach(function ([peer, info]) {
        const chip = document.querySelector('[data-chip="' + mid + "|" + peer + '"]');
        if (!chip) return;
        const overdue = (data.overdue_out && data.overdue_out[mid] || []).indexOf(peer) >= 0;
        chip.className = "chip chip-" + info.state + (overdue ? " chip-overdue" : "");
        chip.dataset.state = info.state;
        const state = chip.querySelector(".state");
        if (state) state.textContent = labels[info.state] || info.state;
      });
    });
    (data.overdue_in || []).forEach(function (mid) {
      const row = document.querySelector('[data-inbox="' + mid + '"]');
      if (row && !row.classList.contains("row-overdue")) {
        row.classList.add("row-overdue");
        const cell = row.querySelector("td");
        const chip = document.createElement("span");
        chip.className = "chip chip-overdue";
        chip.dataset.overdue = mid;
        chip.textContent = labels.overdue || "overdue";
        cell.append(" ", chip);
      }
    });
    const counter = document.getElementById("unacked");
    if (counter) {
      counter.hidden = !data.unacknowledged;
      counter.textContent = data.unacknowledged || "";
    }
  }

  function connect() {
    const banner = document.getElementById("connection");
    if (!banner) return;
    const source = new EventSource("/console/events");
    source.addEventListener("states", function (event) {
      banner.hidden = true;
      document.body.classList.remove("stale");
      applyStates(JSON.parse(event.data));
    });
    source.addEventListener("open", function () { banner.hidden = true; });
    source.addEventListener("error", function () {
      banner.hidden = false;
      document.body.classList.add("stale");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
    connect();
  });
})();
