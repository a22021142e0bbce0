"""Communication tests: start one, report on it, keep the history, export it.

A test is one ``commcheck`` message to every active peer; its per-peer outcome is read
from the delivery states and the signed receipts the ledger already keeps, so the
history needs no table of its own. The report functions are pure.
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from typing import Any

from gateway.formats.spreadsheet import to_csv
from gateway.protocol.commcheck import COMMCHECK_TYPE, CommCheck
from gateway.protocol.messages import CommCheckEnvelope
from gateway.protocol.types import Mode, Priority, Tlp, parse_optional_time
from gateway.service.fallback import Fallbacks
from gateway.service.submit import Submitter

CSV_COLUMNS = ("check_id", "started", "requested_by", "peer", "reached", "round_trip_s",
               "receipt_verified", "confirmed_after_s", "confirmed_by", "failure",
               "fallback", "fallback_after_s", "fallback_contact")



def _seconds(start: str | None, end: str | None) -> float | None:
    a, b = parse_optional_time(start), parse_optional_time(end)
    return None if a is None or b is None else round((b - a).total_seconds(), 3)


def quarter(value: str) -> str:
    """The calendar quarter of an RFC 3339 time, e.g. ``2026-Q4``."""
    when = parse_optional_time(value)
    assert when is not None
    return f"{when.year}-Q{(when.month - 1) // 3 + 1}"


def fallback_outcome(leg: dict[str, Any] | None) -> str:
    """The fallback leg in one word: ``confirmed``, ``refused`` (only wrong codes came
    back), ``sent`` (waiting for the code), ``failed`` (no code went out) or ``none``."""
    if leg is None:
        return "none"
    if leg.get("confirmed_at"):
        return "confirmed"
    if leg.get("error") and not leg.get("sent_at"):
        return "failed"
    return "refused" if leg.get("wrong") else "sent"


def report(view: dict[str, Any], now: datetime, *, wait: timedelta = timedelta(minutes=2),
           fallback: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per-peer outcome of one test, from its message view (recipients and receipts)
    and its fallback legs by peer (:meth:`CommCheckStore.fallbacks`).

    A peer is *reached* when its node's signed ``delivered`` (or ``acknowledged``)
    receipt came back; without one after ``wait`` it is reported unreachable with the
    last publish error, if any. Its fallback *worked* when it returned the code.
    """
    fallback = fallback or {}
    receipts = {r["issuer"]: r for r in view.get("receipts", [])
                if r["state"] in ("delivered", "acknowledged")}
    acks = {r["issuer"]: r for r in view.get("receipts", []) if r["state"] == "acknowledged"}
    started = view["created"]
    pending = now < (parse_optional_time(started) or now) + wait
    peers = []
    for r in view["recipients"]:
        reached = r["state"] in ("delivered", "acknowledged")
        failure = None
        if r["state"] == "rejected":
            failure = f"rejected: {r['reason']}"
        elif r["state"] == "expired":
            failure = "expired before delivery"
        elif not reached and not pending:
            failure = "unreachable" + (f": {r['last_error']}" if r.get("last_error") else
                                       " (no receipt)")
        ack = acks.get(r["centre"])
        peers.append({
            "peer": r["centre"], "state": r["state"], "reached": reached,
            "round_trip_s": _seconds(started, r.get("delivered_at")) if reached else None,
            "receipt_verified": r["centre"] in receipts,
            "confirmed_after_s": _seconds(started, r.get("acknowledged_at")),
            "confirmed_by": (ack or {}).get("signed", {}).get("envelope", {})
            .get("body", {}).get("by"),
            "failure": failure, "pending": pending and not reached and failure is None,
            **_fallback(started, fallback.get(r["centre"])),
        })
    body = view["envelope"]["body"]
    return {"id": view["id"], "started": started, "quarter": quarter(started),
            "requested_by": body.get("requested_by"), "note": body.get("note"),
            "peers": peers, "reached": sum(p["reached"] for p in peers),
            "total": len(peers), "complete": not any(p["pending"] for p in peers)}


def _fallback(started: str, leg: dict[str, Any] | None) -> dict[str, Any]:
    outcome = fallback_outcome(leg)
    leg = leg or {}
    return {"fallback": outcome, "fallback_worked": outcome == "confirmed",
            "fallback_after_s": _seconds(started, leg.get("confirmed_at")),
            "fallback_contact": leg.get("contact"), "fallback_by": leg.get("confirmed_by"),
            "fallback_error": leg.get("error") if outcome == "failed" else
            leg.get("last_refusal") if outcome == "refused" else None}


def history_csv(reports: list[dict[str, Any]]) -> str:
    """One row per test and peer."""
    return to_csv(CSV_COLUMNS, ([rep["id"], rep["started"], rep["requested_by"], p["peer"],
                                 p["reached"], p["round_trip_s"], p["receipt_verified"],
                                 p["confirmed_after_s"], p["confirmed_by"], p["failure"],
                                 p["fallback"], p["fallback_after_s"], p["fallback_contact"]]
                                for rep in reports for p in rep["peers"]))


def history_html(reports: list[dict[str, Any]], centre: str) -> str:
    """A self-contained HTML report: a table per test and a chart per peer over quarters
    (round-trip time as bars; a red mark where the peer was not reached)."""
    by_peer: dict[str, dict[str, dict[str, Any]]] = {}
    for rep in sorted(reports, key=lambda r: r["started"]):
        for p in rep["peers"]:
            by_peer.setdefault(p["peer"], {})[rep["quarter"]] = p
    quarters = sorted({rep["quarter"] for rep in reports})
    charts = [_chart(peer, quarters, rows) for peer, rows in sorted(by_peer.items())]
    tables = []
    for rep in sorted(reports, key=lambda r: r["started"], reverse=True):
        rows = "".join(
            f"<tr><td>{html.escape(p['peer'])}</td><td>{'yes' if p['reached'] else 'no'}</td>"
            f"<td>{p['round_trip_s'] if p['round_trip_s'] is not None else '—'}</td>"
            f"<td>{'yes' if p['receipt_verified'] else 'no'}</td>"
            f"<td>{p['confirmed_after_s'] if p['confirmed_after_s'] is not None else '—'}</td>"
            f"<td>{html.escape(p['failure'] or '')}</td>"
            f"<td>{html.escape(p['fallback'])}</td></tr>" for p in rep["peers"])
        tables.append(
            f"<h3>{html.escape(rep['started'])} ({html.escape(rep['quarter'])}) — "
            f"{rep['reached']}/{rep['total']} reached</h3><table><thead><tr><th>Peer</th>"
            f"<th>Reached</th><th>Round trip (s)</th><th>Receipt verified</th>"
            f"<th>Confirmed after (s)</th><th>Failure</th><th>Fallback code</th></tr>"
            f"</thead><tbody>{rows}"
            f"</tbody></table>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Communication tests — {html.escape(centre)}</title><style>"
        "body{font-family:'DejaVu Sans',sans-serif;margin:2rem;color:#111}"
        "table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #999;"
        "padding:.3rem .6rem;text-align:left}.charts{display:flex;flex-wrap:wrap;gap:1.5rem}"
        "figure{margin:0}@media print{body{margin:1cm}}</style></head><body>"
        f"<h1>Communication tests of {html.escape(centre)}</h1>"
        f"<h2>Per peer, by quarter</h2><div class='charts'>{''.join(charts)}</div>"
        f"<h2>Tests</h2>{''.join(tables)}</body></html>")


def _chart(peer: str, quarters: list[str], rows: dict[str, dict[str, Any]]) -> str:
    width, height, bar = 60 * max(len(quarters), 1) + 40, 160, 30
    values = [rows[q]["round_trip_s"] for q in quarters
              if q in rows and rows[q]["round_trip_s"] is not None]
    top = max(values, default=1.0) or 1.0
    parts = []
    for i, q in enumerate(quarters):
        x = 30 + i * 60
        row = rows.get(q)
        if row is not None and row["round_trip_s"] is not None:
            h = max(2.0, 110 * row["round_trip_s"] / top)
            parts.append(f"<rect x='{x}' y='{130 - h:.1f}' width='{bar}' height='{h:.1f}' "
                         f"fill='#2f7bd9'><title>{row['round_trip_s']} s</title></rect>")
        elif row is not None:
            parts.append(f"<text x='{x + 8}' y='125' fill='#c0282d' font-size='20'>✗</text>")
        parts.append(f"<text x='{x - 4}' y='150' font-size='10'>{html.escape(q)}</text>")
    return (f"<figure><figcaption>{html.escape(peer)} — round trip (s)</figcaption>"
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"role='img' aria-label='{html.escape(peer)}'>{''.join(parts)}"
            f"<line x1='25' y1='130' x2='{width}' y2='130' stroke='#555'/></svg></figure>")


class CommChecks:
    """Starts communication tests through the normal, signed, receipted path."""

    def __init__(self, *, submitter: Submitter, peers: Any,
                 fallbacks: Fallbacks | None = None) -> None:
        """``fallbacks``: e-mail each peer's contact point a code with each test."""
        self._submitter = submitter
        self._peers = peers
        self._fallbacks = fallbacks

    async def start(self, requested_by: str, note: str | None = None) -> str:
        """Send a test to every active peer; returns its id (the message id)."""
        to = tuple(p.id for p in self._peers() if not p.suspended)
        check = CommCheck(requested_by=requested_by, note=note)
        message_id, _ = await self._submitter.submit_body(
            msg_type=COMMCHECK_TYPE, model=CommCheckEnvelope, body=check,
            body_json=check.model_dump(mode="json", exclude_none=True), to=to, tlp=Tlp.CLEAR,
            priority=Priority.ROUTINE, mode=Mode.TEST, incident=None, expires=None,
            idempotency=None)
        if self._fallbacks is not None:
            self._fallbacks.start_sending(message_id, to)
        return message_id
