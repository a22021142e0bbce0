// Live console over server-sent events (one shared feed on the node: live.py); local
// times with UTC on hover; the alarm for unacknowledged flash and urgent messages.
// No framework, no inline script (the CSP forbids it), nothing from another origin.
"use strict";
(function () {
  const body = document.body;
  const labels = JSON.parse(body.dataset.labels || "{}");
  const canOperate = body.dataset.canOperate === "1";
  const baseTitle = document.title;
  const NOTIFIED = "crisisgw-notified";
  let announced = null;  // alert ids already seen by this page (null: first event)

  function text(key, values) {
    let s = labels[key] || key;
    Object.entries(values || {}).forEach(function ([k, v]) { s = s.split("%(" + k + ")s").join(v); });
    return s;
  }

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      const d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      const pad = function (n) { return String(n).padStart(2, "0"); };
      // ISO order with the zone shown: never "12/1/26".
      const offset = -d.getTimezoneOffset();
      const zone = "UTC" + (offset >= 0 ? "+" : "-") + pad(Math.floor(Math.abs(offset) / 60)) +
        (offset % 60 ? ":" + pad(Math.abs(offset) % 60) : "");
      el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
        " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " + zone;
      el.title = "UTC " + d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
      if (el.hasAttribute("data-ago")) el.textContent += " (" + ago(d) + ")";
    });
  }

  function ago(d) {
    const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
    if (s < 60) return text("ago_now");
    if (s < 3600) return text("ago_m", { n: Math.floor(s / 60) });
    if (s < 86400) return text("ago_h", { n: Math.floor(s / 3600) });
    return text("ago_d", { n: Math.floor(s / 86400) });
  }

  function fillCsrf(root) {
    root.querySelectorAll('input[name="csrf_token"]').forEach(function (input) {
      if (!input.value) input.value = body.dataset.csrf || "";
    });
  }

  function applyStates(data) {
    Object.entries(data.states || {}).forEach(function ([mid, recipients]) {
      Object.entries(recipients).forEach(function ([peer, info]) {
        const chip = document.querySelector('[data-chip="' + CSS.escape(mid + "|" + peer) + '"]');
        if (!chip) return;
        const overdue = (data.overdue_out && data.overdue_out[mid] || []).indexOf(peer) >= 0;
        chip.className = "chip chip-" + info.state + (overdue ? " chip-overdue" : "");
        chip.dataset.state = info.state;
        const state = chip.querySelector(".state");
        if (state) state.textContent = labels[info.state] || info.state;
      });
    });
    (data.overdue_in || []).forEach(function (mid) {
      const row = document.querySelector('[data-inbox="' + CSS.escape(mid) + '"]');
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

  function fragment(html) {
    const t = document.createElement("template");
    t.innerHTML = html;  // drawn by the node's own escaping templates (rows.html)
    fillCsrf(t.content);
    localTimes(t.content);
    return t.content;
  }

  // Rows sort as the page does: by group (what waits first, by priority), newest first.
  function placeRows(tbody) {
    const rows = Array.from(tbody.children);
    const oldest = tbody.dataset.order === "asc";  // a timeline reads oldest first
    rows.sort(function (a, b) {
      const at = (b.dataset.at || "").localeCompare(a.dataset.at || "");
      return (a.dataset.group || "").localeCompare(b.dataset.group || "") || (oldest ? -at : at);
    });
    rows.forEach(function (row) { tbody.appendChild(row); });
  }

  function applyRows(rows) {
    Object.entries(rows || {}).forEach(function ([section, update]) {
      const tbody = document.querySelector('[data-live-rows="' + section + '"]');
      if (!tbody) return;
      const paused = tbody.hasAttribute("data-live-paused");
      let added = 0;
      const only = tbody.dataset.liveOnly;  // a list of some rows only (what waits)
      Object.entries(update.html || {}).forEach(function ([key, html]) {
        const old = tbody.querySelector('[data-row="' + CSS.escape(key) + '"]');
        const next = fragment(html);
        const wanted = !only || (next.firstElementChild && next.firstElementChild.classList.contains(only));
        if (old) {
          if (wanted) old.replaceWith(next); else old.remove();
        } else if (!wanted) {
          return;
        } else if (paused) {
          const more = document.querySelector("[data-live-more]");
          if (more) more.hidden = false;
        } else {
          tbody.appendChild(next);
          added += 1;
        }
      });
      if (added) {
        placeRows(tbody);
        document.querySelectorAll("[data-live-empty]").forEach(function (el) { el.hidden = true; });
      }
      if (only) {
        const empty = tbody.closest("section") && tbody.closest("section").querySelector("[data-live-empty]");
        if (empty) empty.hidden = tbody.children.length > 0;
      }
    });
  }

  function applyBlocks(blocks) {
    Object.entries(blocks || {}).forEach(function ([name, html]) {
      const el = document.querySelector('[data-live-block="' + name + '"]');
      if (!el) return;
      const next = fragment(html);
      const shown = el.querySelector("[data-map]");
      const drawn = next.querySelector("[data-map]");
      // A map whose areas did not change keeps its view (the operator's zoom).
      if (shown && drawn && shown.dataset.geojson === drawn.dataset.geojson) return;
      el.replaceChildren(next);
      document.dispatchEvent(new CustomEvent("crisisgw:block", { detail: el }));
    });
  }

  // -- the alarm ----------------------------------------------------------------------

  function beep() {
    if (localStorage.getItem("crisisgw-sound") !== "on") return;
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      [0, 0.35].forEach(function (start) {
        const osc = ctx.createOscillator(); const gain = ctx.createGain();
        osc.frequency.value = 880; gain.gain.value = 0.2;
        osc.connect(gain); gain.connect(ctx.destination);
        osc.start(ctx.currentTime + start); osc.stop(ctx.currentTime + start + 0.2);
      });
    } catch (e) { /* no audio on this machine */ }
  }

  function notified() {
    try { return JSON.parse(localStorage.getItem(NOTIFIED) || "[]"); } catch (e) { return []; }
  }

  function notify(alert) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const seen = notified();
    if (seen.indexOf(alert.id) >= 0) return;  // once per message, whatever the tab
    localStorage.setItem(NOTIFIED, JSON.stringify(seen.concat([alert.id]).slice(-200)));
    const n = new Notification(text("alert_from", { priority: (labels[alert.priority] || alert.priority).toUpperCase(), sender: alert.from }),
      { body: alert.title || alert.incident || "", tag: alert.id, requireInteraction: alert.priority === "flash" });
    n.onclick = function () { window.focus(); location.href = "/console/messages/" + encodeURIComponent(alert.id); };
  }

  function alertTitle(alerts) {
    const real = alerts.filter(function (a) { return a.mode === "actual"; });
    const flash = real.filter(function (a) { return a.priority === "flash"; }).length;
    const urgent = real.length - flash;
    let prefix = "";
    if (flash) prefix = "(" + flash + " " + (labels.flash || "flash").toUpperCase() + ") ";
    else if (urgent) prefix = "(" + urgent + " " + (labels.urgent || "urgent").toUpperCase() + ") ";
    document.title = prefix + baseTitle;
  }

  function ackButton(alert) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "primary";
    button.textContent = labels.acknowledge || "Acknowledge";
    button.addEventListener("click", function () {
      button.disabled = true;
      fetch("/console/inbox/" + encodeURIComponent(alert.from) + "/" + encodeURIComponent(alert.id) + "/ack", {
        method: "POST", redirect: "manual", credentials: "same-origin",
        headers: { "X-CSRF-Token": body.dataset.csrf || "" },
      }).then(function (resp) {
        if (resp.type !== "opaqueredirect" && !resp.ok) button.disabled = false;
      }).catch(function () { button.disabled = false; });
    });
    return button;
  }

  function alertBar(alerts) {
    const bar = document.getElementById("alertbar");
    if (!bar) return;
    bar.hidden = !alerts.length;
    bar.className = "alertbar" + (alerts.length && alerts[0].priority === "flash" ? " alertbar-flash" : "");
    const list = bar.querySelector("[data-alerts]");
    list.replaceChildren();
    alerts.slice(0, 3).forEach(function (alert) {
      const item = document.createElement("li");
      item.dataset.alert = alert.id;
      const prio = document.createElement("span");
      prio.className = "prio prio-" + alert.priority;
      prio.textContent = (labels[alert.priority] || alert.priority);
      const link = document.createElement("a");
      link.href = "/console/messages/" + encodeURIComponent(alert.id);
      link.textContent = alert.from + (alert.title ? ": " + alert.title : "");
      item.append(prio, " ");
      if (alert.mode !== "actual") {
        const ex = document.createElement("span");
        ex.className = "mode-exercise";
        ex.textContent = (labels[alert.mode] || alert.mode).toUpperCase();
        item.append(ex, " ");
      }
      item.append(link);
      if (canOperate) item.append(" ", ackButton(alert));
      list.append(item);
    });
    const more = bar.querySelector("[data-alerts-more]");
    more.hidden = alerts.length <= 3;
    more.textContent = text("more", { count: alerts.length - 3 });
    const enable = bar.querySelector("[data-notify]");
    enable.hidden = !("Notification" in window) || Notification.permission !== "default";
  }

  function applyAlerts(alerts) {
    alertTitle(alerts);
    alertBar(alerts);
    const fresh = announced === null ? [] : alerts.filter(function (a) { return !announced.has(a.id); });
    announced = new Set(alerts.map(function (a) { return a.id; }));
    alerts.forEach(notify);
    if (fresh.length) {
      const live = document.getElementById("announce");
      if (live) live.textContent = fresh.map(function (a) {
        return text("alert_from", { priority: labels[a.priority] || a.priority, sender: a.from }) + (a.title ? ": " + a.title : "");
      }).join(". ");
      beep();
    }
  }

  // -- connection and session ---------------------------------------------------------

  function setConnected(up) {
    const banner = document.getElementById("connection");
    if (banner) banner.hidden = up;
    body.classList.toggle("stale", !up);
    document.querySelectorAll("main button, #alertbar button").forEach(function (b) {
      if (!up) { if (!b.disabled) { b.disabled = true; b.dataset.offline = "1"; } }
      else if (b.dataset.offline) { b.disabled = false; delete b.dataset.offline; }
    });
  }

  function connect() {
    if (!document.getElementById("connection")) return;
    const source = new EventSource("/console/events?page=" + encodeURIComponent(body.dataset.page || ""));
    source.addEventListener("states", function (event) {
      const data = JSON.parse(event.data);
      setConnected(true);
      applyStates(data);
      applyRows(data.rows);
      applyBlocks(data.blocks);
      applyAlerts(data.alerts || []);
      body.dataset.live = "1";  // the first event has been applied
    });
    source.addEventListener("session", function () {
      source.close();
      setConnected(false);
      const banner = document.getElementById("session-ended");
      if (banner) banner.hidden = false;
      const lost = document.getElementById("connection");
      if (lost) lost.hidden = true;
    });
    source.addEventListener("closing", function () { setConnected(false); });  // node stopping
    source.addEventListener("open", function () { setConnected(true); });
    source.addEventListener("error", function () { setConnected(false); });
  }

  // Language tabs of a multilingual text: without the script every language shows.
  function tabs(root) {
    root.querySelectorAll("[data-tabs]").forEach(function (box) {
      const buttons = Array.from(box.querySelectorAll('[role="tab"]'));
      function show(chosen) {
        buttons.forEach(function (b) {
          const on = b === chosen;
          b.setAttribute("aria-selected", on ? "true" : "false");
          b.tabIndex = on ? 0 : -1;
          const panel = document.getElementById(b.getAttribute("aria-controls"));
          if (panel) panel.hidden = !on;
        });
      }
      buttons.forEach(function (b, i) {
        b.addEventListener("click", function () { show(b); });
        b.addEventListener("keydown", function (e) {
          const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
          if (!step) return;
          const next = buttons[(i + step + buttons.length) % buttons.length];
          show(next); next.focus();
        });
      });
      show(buttons[0]);
    });
  }

  // Compose: the next report number of a known incident; a change after the preview
  // asks for a new preview before anything is signed.
  function compose() {
    const form = document.querySelector("form[data-compose]");
    if (!form) return;
    const incident = form.querySelector("[data-next-report]");
    incident.addEventListener("change", function () {
      if (!incident.value) return;
      fetch("/console/compose/next?incident=" + encodeURIComponent(incident.value), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (next) {
          if (!next) return;
          ["incident_title", "report_number", "supersedes", "purpose"].forEach(function (name) {
            const field = form.elements[name];
            if (field && next[name] !== undefined && (!field.value || field.dataset.suggested || (name === "report_number" && field.value === "1"))) {
              field.value = next[name]; field.dataset.suggested = "1";
            }
          });
        });
    });
    const send = document.getElementById("send");
    if (send) form.addEventListener("input", function () { send.disabled = true; send.hidden = true; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    tabs(document);
    compose();
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
    document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
    const sound = document.getElementById("alert-sound");
    if (sound) {
      sound.checked = localStorage.getItem("crisisgw-sound") === "on";
      sound.addEventListener("change", function () {
        localStorage.setItem("crisisgw-sound", sound.checked ? "on" : "off");
        if (sound.checked) beep();
      });
    }
    const enable = document.querySelector("[data-notify]");
    if (enable) enable.addEventListener("click", function () {
      Notification.requestPermission().then(function () { enable.hidden = Notification.permission !== "default"; });
    });
    connect();
    setInterval(function () { localTimes(document); }, 30000);  // keep "N min ago" true
  });
})();
