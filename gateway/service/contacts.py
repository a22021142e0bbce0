"""The federation-wide overview of contact points per field of work (pure)."""

from __future__ import annotations

import html
from datetime import date
from typing import Any

from gateway.formats import spreadsheet
from gateway.protocol.directory import STALE_AFTER, FieldOfWork

COLUMNS = ("field", "centre", "name", "role", "phone", "email", "languages",
           "available_24_7", "confirmed", "stale")


def overview(own_centre: str, own: list[dict[str, Any]], peers: dict[str, dict[str, Any]],
             today: date) -> list[dict[str, Any]]:
    """Every centre's entries, ordered by field then centre, flagged when stale."""
    rows = [{**e, "centre": own_centre} for e in own]
    for centre, data in peers.items():
        rows.extend({**e, "centre": centre} for e in data["entries"])
    order = {f.value: i for i, f in enumerate(FieldOfWork)}
    for row in rows:
        confirmed = date.fromisoformat(str(row["confirmed"]))
        row["stale"] = today - confirmed > STALE_AFTER
        row["confirmed"] = confirmed.isoformat()
    rows.sort(key=lambda r: (order.get(r["field"], 99), r["centre"], r["name"]))
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV, one contact point per row (lists joined by ", ", formulas defused)."""
    return spreadsheet.to_csv(COLUMNS, ([row.get(c) for c in COLUMNS] for row in rows))


def to_html(rows: list[dict[str, Any]], centre: str, today: date) -> str:
    """A printable (PDF-ready) overview grouped by field of work."""
    parts = []
    for field in FieldOfWork:
        items = [r for r in rows if r["field"] == field.value]
        if not items:
            continue
        body = "".join(
            f"<tr{' class=stale' if r['stale'] else ''}><td>{html.escape(r['centre'])}</td>"
            f"<td>{html.escape(r['name'])}</td><td>{html.escape(r.get('role') or '')}</td>"
            f"<td>{html.escape(r['phone'])}</td><td>{html.escape(r['email'])}</td>"
            f"<td>{html.escape(', '.join(r['languages']))}</td>"
            f"<td>{'24/7' if r['available_24_7'] else 'office hours'}</td>"
            f"<td>{html.escape(r['confirmed'])}{' — to re-confirm' if r['stale'] else ''}</td>"
            "</tr>" for r in items)
        parts.append(f"<h2>{html.escape(field.value)}</h2><table><thead><tr><th>Centre</th>"
                     "<th>Name</th><th>Role</th><th>Phone</th><th>E-mail</th><th>Languages</th>"
                     f"<th>Availability</th><th>Confirmed</th></tr></thead><tbody>{body}"
                     "</tbody></table>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>Contact points — {html.escape(centre)}</title><style>"
            "body{font-family:'DejaVu Sans',sans-serif;margin:2rem;color:#111}"
            "table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}"
            "td,th{border:1px solid #999;padding:.3rem .5rem;text-align:left;font-size:.9rem}"
            ".stale td{background:#fde2e1}h2{page-break-after:avoid}"
            "@page{size:A4 landscape;margin:1.5cm}</style></head><body>"
            f"<h1>Contact points of the federation</h1><p>As known to {html.escape(centre)} on "
            f"{today.isoformat()}. Rows in red were not re-confirmed for 90 days.</p>"
            f"{''.join(parts)}</body></html>")
