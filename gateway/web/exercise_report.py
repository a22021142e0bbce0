"""The after-action report of an exercise: per inject, who received, read, acknowledged
and escalated it, and when; the timeline; KPIs per centre. As JSON, CSV and a printable
HTML page.

:func:`collect` reads each inject's facts where they are: its sender's node knows the
deliveries, acknowledgements (signed receipts) and escalations; each recipient's node
knows who opened it (``message.viewed``). This node is asked directly, the others
through their APIs (``[[exercise.centres]]``); what cannot be read is reported as
unknown, never guessed. :func:`report` and the renderers are pure.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import datetime
from statistics import median
from typing import Any

from gateway.errors import GatewayError
from gateway.formats.spreadsheet import to_csv
from gateway.protocol.exercise import Run, Scenario
from gateway.protocol.types import format_time, parse_optional_time
from gateway.service.exercise import Remote
from gateway.service.node import NodeApi
from gateway.web.shapes import audit_json, message_json, receipt_json

CSV_COLUMNS = ("inject", "minute", "from", "type", "title", "message_id", "sent_at",
               "recipient", "state", "delivered_at", "delivered_after_s", "read_at",
               "read_after_s", "read_by", "acknowledged_at", "acknowledged_after_s",
               "acknowledged_by", "escalations")


async def _facts(node: NodeApi, remote: Callable[[str], Remote | None], sender: str,
                 message_id: str) -> dict[str, Any]:
    """The sender's view of one message (recipients, receipts) and its audit entries."""
    if sender == node.me:
        stored = await node.ledger.outbox.get(message_id)
        if stored is None:
            return {"error": "not in our outbox"}
        view = message_json(stored)
        view["receipts"] = [receipt_json(r)
                            for r in await node.ledger.receipts.for_message(message_id)]
        audit = [audit_json(e) for e in await node.ledger.audit.entries(200, subject=message_id)]
        return {"view": view, "audit": audit}
    api = remote(sender)
    if api is None:
        return {"error": f"no API access to {sender}"}
    try:
        view = await api.call("GET", f"/v1/messages/{message_id}")
        audit = (await api.call("GET", f"/v1/audit?subject={message_id}&limit=200"))["items"]
    except (GatewayError, KeyError, TypeError) as exc:
        return {"error": str(exc)[:300]}
    return {"view": view, "audit": audit}


async def _views(node: NodeApi, remote: Callable[[str], Remote | None], centre: str,
                 message_id: str) -> list[dict[str, Any]] | None:
    """Who opened ``message_id`` at ``centre`` (None: unknown)."""
    if centre == node.me:
        entries = await node.ledger.audit.entries(50, kind="message.viewed", subject=message_id)
        return [audit_json(e) for e in entries]
    api = remote(centre)
    if api is None:
        return None
    try:
        answer = await api.call(
            "GET", f"/v1/audit?subject={message_id}&kind=message.viewed&limit=50")
    except GatewayError:
        return None
    return list(answer.get("items", [])) if isinstance(answer, dict) else None


async def collect(node: NodeApi, remote: Callable[[str], Remote | None], run: Run,
                  scenario: Scenario) -> dict[int, dict[str, Any]]:
    """Per inject sent, the facts :func:`report` needs."""
    out: dict[int, dict[str, Any]] = {}
    for index, sent in sorted(run.sent.items()):
        facts = await _facts(node, remote, sent.sender, sent.message_id)
        recipients = [r["centre"] for r in facts.get("view", {}).get("recipients", [])]
        facts["views"] = {c: await _views(node, remote, c, sent.message_id) for c in recipients}
        out[index] = facts
    return out


def _after(start: str | datetime | None, end: str | None) -> float | None:
    a = start if isinstance(start, datetime) else parse_optional_time(start)
    b = parse_optional_time(end)
    return None if a is None or b is None else round((b - a).total_seconds(), 3)


def _title(scenario: Scenario, index: int) -> str:
    inject = scenario.injects[index]
    if inject.sitrep is not None:
        summary = inject.sitrep.get("summary")
        title = inject.sitrep.get("incident", {}).get("title", "")
        text = summary if isinstance(summary, str) else next(iter((summary or {}).values()), "")
        return f"{title}: {text}"[:200]
    infos = (inject.alert or {}).get("infos") or [{}]
    return str(infos[0].get("headline") or infos[0].get("event") or "CAP alert")[:200]


def _recipient(r: dict[str, Any], facts: dict[str, Any], sent_at: datetime) -> dict[str, Any]:
    centre = r["centre"]
    acks = [x for x in facts["view"].get("receipts", [])
            if x["issuer"] == centre and x["state"] == "acknowledged"]
    by = (acks[0]["signed"]["envelope"].get("body", {}).get("by") if acks else None)
    views = facts["views"].get(centre)
    first = min(views, key=lambda e: e["at"]) if views else None
    escalations = [{"at": e["at"], "channel": e["data"].get("channel"),
                    "contact": e["data"].get("contact")}
                   for e in facts.get("audit", [])
                   if e["kind"] == "escalation.sent" and e["data"].get("recipient") == centre]
    return {"centre": centre, "state": r["state"], "delivered_at": r.get("delivered_at"),
            "delivered_after_s": _after(sent_at, r.get("delivered_at")),
            "read_known": views is not None, "read_at": first["at"] if first else None,
            "read_by": first["actor"] if first else None,
            "read_after_s": _after(sent_at, first["at"]) if first else None,
            "acknowledged_at": r.get("acknowledged_at"),
            "acknowledged_after_s": _after(sent_at, r.get("acknowledged_at")),
            "acknowledged_by": by, "escalations": sorted(escalations, key=lambda e: e["at"])}


def report(run: Run, scenario: Scenario, facts: dict[int, dict[str, Any]],
           now: datetime) -> dict[str, Any]:
    """The after-action report (JSON)."""
    injects, timeline = [], []
    for index, inject in enumerate(scenario.injects):
        sent = run.sent.get(index)
        item: dict[str, Any] = {
            "index": index, "minute": inject.minute, "from": inject.sender,
            "type": inject.kind, "title": _title(scenario, index), "note": inject.note,
            "message_id": sent.message_id if sent else None,
            "sent_at": format_time(sent.at) if sent else None, "recipients": [],
            "error": None if sent else "; ".join(e for _, e in run.failures.get(index, []))
            or "not sent"}
        f = facts.get(index, {})
        if sent and "view" in f:
            item["recipients"] = [_recipient(r, f, sent.at) for r in f["view"]["recipients"]]
        elif sent:
            item["error"] = f.get("error", "unknown")
        injects.append(item)
        if sent:
            timeline.append({"at": format_time(sent.at), "centre": inject.sender,
                             "event": "sent", "inject": index, "detail": item["title"]})
        for r in item["recipients"]:
            for event, at, who in (("delivered", r["delivered_at"], None),
                                   ("read", r["read_at"], r["read_by"]),
                                   ("acknowledged", r["acknowledged_at"], r["acknowledged_by"])):
                if at:
                    timeline.append({"at": at, "centre": r["centre"], "event": event,
                                     "inject": index, "detail": who})
            timeline.extend({"at": e["at"], "centre": inject.sender, "event": "escalated",
                             "inject": index,
                             "detail": f"{r['centre']}: {e['contact']} by {e['channel']}"}
                            for e in r["escalations"])
    timeline.sort(key=lambda e: (_sortable(e["at"]), e["inject"]))
    return {"id": run.id, "name": run.name, "status": run.status.value, "speed": run.speed,
            "started_at": format_time(run.started_at), "minute": round(run.minute(now), 2),
            "ended_at": format_time(run.ended_at) if run.ended_at else None,
            "injects": injects, "timeline": timeline, "kpis": kpis(injects)}


def _sortable(at: str) -> datetime:
    return parse_optional_time(at) or datetime.max.replace(tzinfo=None)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(median(present)), 3) if present else None


def kpis(injects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per centre: injects sent (and not sent), received, delivered, read, acknowledged,
    with median times from sending, and escalations."""
    centres = sorted({i["from"] for i in injects} |
                     {r["centre"] for i in injects for r in i["recipients"]})
    rows = []
    for c in centres:
        got = [r for i in injects for r in i["recipients"] if r["centre"] == c]
        rows.append({
            "centre": c, "sent": sum(1 for i in injects if i["from"] == c and i["message_id"]),
            "not_sent": sum(1 for i in injects if i["from"] == c and not i["message_id"]),
            "received": len(got),
            "delivered": sum(1 for r in got if r["delivered_at"]),
            "delivery_median_s": _median([r["delivered_after_s"] for r in got]),
            "read": sum(1 for r in got if r["read_at"]),
            "read_unknown": sum(1 for r in got if not r["read_known"]),
            "read_median_s": _median([r["read_after_s"] for r in got]),
            "acknowledged": sum(1 for r in got if r["acknowledged_at"]),
            "ack_median_s": _median([r["acknowledged_after_s"] for r in got]),
            "escalated": sum(1 for r in got if r["escalations"])})
    return rows


def report_csv(rep: dict[str, Any]) -> str:
    """One line per inject and recipient (an inject not sent: one line, no recipient)."""
    lines = []
    for i in rep["injects"]:
        head = [i["index"], i["minute"], i["from"], i["type"], i["title"], i["message_id"],
                i["sent_at"]]
        if not i["recipients"]:
            lines.append([*head, None, i["error"], *([None] * 11)])
        for r in i["recipients"]:
            lines.append([*head, r["centre"], r["state"], r["delivered_at"],
                          r["delivered_after_s"], r["read_at"], r["read_after_s"], r["read_by"],
                          r["acknowledged_at"], r["acknowledged_after_s"], r["acknowledged_by"],
                          " ".join(f"{e['at']} {e['contact']} ({e['channel']})"
                                   for e in r["escalations"])])
    return to_csv(CSV_COLUMNS, lines)


def _cell(value: Any) -> str:
    return "—" if value is None or value == "" else html.escape(str(value))


def _read(r: dict[str, Any]) -> str:
    if not r["read_known"]:
        return "unknown"
    return f"{_cell(r['read_at'])} {_cell(r['read_by'])}"


def _escalated(r: dict[str, Any]) -> str:
    return _cell(", ".join(f"{e['contact']} by {e['channel']}" for e in r["escalations"]))


def report_html(rep: dict[str, Any], centre: str) -> str:
    """A self-contained, printable page: KPIs, every inject with its recipients, the
    timeline."""
    kpi_rows = "".join(
        f"<tr><td><b>{_cell(k['centre'])}</b></td><td>{k['sent']}</td><td>{k['received']}</td>"
        f"<td>{k['delivered']}</td><td>{_cell(k['delivery_median_s'])}</td>"
        f"<td>{k['read']}</td><td>{_cell(k['read_median_s'])}</td><td>{k['acknowledged']}</td>"
        f"<td>{_cell(k['ack_median_s'])}</td><td>{k['escalated']}</td></tr>"
        for k in rep["kpis"])
    blocks = []
    for i in rep["injects"]:
        rows = "".join(
            f"<tr><td>{_cell(r['centre'])}</td><td>{_cell(r['state'])}</td>"
            f"<td>{_cell(r['delivered_at'])} ({_cell(r['delivered_after_s'])} s)</td>"
            f"<td>{_read(r)}</td>"
            f"<td>{_cell(r['acknowledged_at'])} ({_cell(r['acknowledged_after_s'])} s) "
            f"{_cell(r['acknowledged_by'])}</td>"
            f"<td>{_escalated(r)}</td></tr>" for r in i["recipients"])
        blocks.append(
            f"<h3 id='inject-{i['index']}'>#{i['index']} · minute {i['minute']:g} · "
            f"{_cell(i['from'])} · {_cell(i['type'])} — {_cell(i['title'])}</h3>"
            f"<p>sent {_cell(i['sent_at'])} · message {_cell(i['message_id'])}"
            + (f" · <b>{_cell(i['error'])}</b>" if i["error"] else "") + "</p>"
            + (f"<table><thead><tr><th>Recipient</th><th>State</th><th>Delivered</th>"
               f"<th>Read</th><th>Acknowledged</th><th>Escalated</th></tr></thead>"
               f"<tbody>{rows}</tbody></table>" if rows else ""))
    timeline = "".join(
        f"<tr><td>{_cell(e['at'])}</td><td>{_cell(e['centre'])}</td><td>{_cell(e['event'])}</td>"
        f"<td>#{e['inject']}</td><td>{_cell(e['detail'])}</td></tr>" for e in rep["timeline"])
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>After-action report — {_cell(rep['name'])}</title><style>"
        "body{font-family:'DejaVu Sans',sans-serif;margin:2rem;color:#111}"
        "table{border-collapse:collapse;margin:.4rem 0 1.2rem}td,th{border:1px solid #999;"
        "padding:.25rem .5rem;text-align:left;font-size:.9rem}.ex{background:#b45309;"
        "color:#fff;padding:.4rem .8rem;font-weight:700}@media print{body{margin:1cm}}"
        "</style></head><body><p class='ex'>EXERCISE — not about a real event</p>"
        f"<h1>After-action report: {_cell(rep['name'])}</h1>"
        f"<p>Controller node {_cell(centre)} · started {_cell(rep['started_at'])} · "
        f"{_cell(rep['status'])} · ended {_cell(rep['ended_at'])} · speed x{rep['speed']:g} · "
        f"{sum(1 for i in rep['injects'] if i['message_id'])}/{len(rep['injects'])} injects "
        "sent</p><h2>Per centre</h2><table><thead><tr><th>Centre</th><th>Sent</th>"
        "<th>Received</th><th>Delivered</th><th>Median to delivery (s)</th><th>Read</th>"
        "<th>Median to reading (s)</th><th>Acknowledged</th><th>Median to acknowledgement "
        f"(s)</th><th>Escalated</th></tr></thead><tbody>{kpi_rows}</tbody></table>"
        f"<h2>Injects</h2>{''.join(blocks)}<h2>Timeline</h2><table><thead><tr><th>When</th>"
        "<th>Centre</th><th>Event</th><th>Inject</th><th>Detail</th></tr></thead>"
        f"<tbody>{timeline}</tbody></table></body></html>")
