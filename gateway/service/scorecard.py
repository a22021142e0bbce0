"""The federation's scorecard of communication tests, per centre and quarter (pure).

From the per-test reports (:func:`gateway.service.commcheck.report`), each row says for
one peer in one quarter: how many tests it got, how many it answered with a verified
receipt, the median time to that technical receipt and to the human acknowledgement,
and how often the fallback code came back. The charts are inline SVG (no script, no
style sheet, no CDN), so they print and pass the console's content policy.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from statistics import median
from typing import Any

from gateway.formats.spreadsheet import to_csv

COLUMNS = ("quarter", "centre", "tests", "reached", "receipt_median_s", "acknowledged",
           "ack_median_s", "fallback_sent", "fallback_worked", "fallback_median_s")
#: One colour per centre, in the order of their ids (colour-blind safe, Okabe-Ito).
_SMALL = "font-size='11' fill='currentColor'"
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
           "#f0e442")


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(median(present)), 3) if present else None


def scorecard(reports: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per quarter and peer, quarters oldest first, peers by id."""
    cells: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rep in reports:
        for p in rep["peers"]:
            if not p.get("pending"):
                cells.setdefault((rep["quarter"], p["peer"]), []).append(p)
    rows = []
    for (quarter, centre), legs in sorted(cells.items()):
        sent = [p for p in legs if p.get("fallback", "none") != "none"]
        rows.append({
            "quarter": quarter, "centre": centre, "tests": len(legs),
            "reached": sum(bool(p["reached"]) for p in legs),
            "receipt_median_s": _median(p["round_trip_s"] for p in legs),
            "acknowledged": sum(p["confirmed_after_s"] is not None for p in legs),
            "ack_median_s": _median(p["confirmed_after_s"] for p in legs),
            "fallback_sent": len(sent),
            "fallback_worked": sum(p.get("fallback") == "confirmed" for p in sent),
            "fallback_median_s": _median(p.get("fallback_after_s") for p in sent),
        })
    return rows


def scorecard_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The scorecard as CSV, one line per quarter and centre."""
    return to_csv(COLUMNS, ([r[c] for c in COLUMNS] for r in rows))


def fallback_share(row: Mapping[str, Any]) -> float | None:
    """The share of tests whose fallback code came back, in percent (None: none sent)."""
    sent = row["fallback_sent"]
    return None if not sent else round(100 * row["fallback_worked"] / sent, 1)


def trend_svg(rows: Sequence[Mapping[str, Any]], value: str, *, title: str,
              unit: str, top: float | None = None) -> str:
    """A line chart of ``value`` (a column, or ``fallback_share``) per centre over the
    quarters, with a legend; a quarter without a value leaves a gap."""
    quarters = sorted({r["quarter"] for r in rows})
    centres = sorted({r["centre"] for r in rows})
    points: dict[str, dict[str, float]] = {c: {} for c in centres}
    for r in rows:
        v = fallback_share(r) if value == "fallback_share" else r.get(value)
        if v is not None:
            points[r["centre"]][r["quarter"]] = float(v)
    peak = top or max((v for p in points.values() for v in p.values()), default=1.0) or 1.0
    left, width, plot_h, step = 48, 80 * max(len(quarters), 1) + 60, 150, 80
    height = plot_h + 50 + 18 * len(centres)

    def x(i: int) -> float:
        return left + 20 + i * step

    def y(v: float) -> float:
        return 10 + plot_h - plot_h * v / peak

    parts = [f"<line x1='{left}' y1='{10 + plot_h}' x2='{width}' y2='{10 + plot_h}' "
             "stroke='currentColor' stroke-opacity='.6'/>",
             f"<line x1='{left}' y1='10' x2='{left}' y2='{10 + plot_h}' "
             "stroke='currentColor' stroke-opacity='.6'/>",
             f"<text x='{left - 4}' y='16' {_SMALL} text-anchor='end'>{_num(peak)}</text>",
             f"<text x='{left - 4}' y='{10 + plot_h}' {_SMALL} text-anchor='end'>0</text>"]
    for i, q in enumerate(quarters):
        parts.append(f"<text x='{x(i):.0f}' y='{plot_h + 26}' {_SMALL} "
                     f"text-anchor='middle'>{html.escape(q)}</text>")
    for n, centre in enumerate(centres):
        colour = PALETTE[n % len(PALETTE)]
        segment: list[str] = []
        for i, q in enumerate(quarters):
            if q in points[centre]:
                v = points[centre][q]
                segment.append(f"{x(i):.1f},{y(v):.1f}")
                parts.append(f"<circle cx='{x(i):.1f}' cy='{y(v):.1f}' r='3.5' fill='{colour}'>"
                             f"<title>{html.escape(centre)} {html.escape(q)}: {_num(v)} "
                             f"{html.escape(unit)}</title></circle>")
            else:
                parts.append(_line(segment, colour))
                segment = []
        parts.append(_line(segment, colour))
        ly = plot_h + 44 + 18 * n
        parts.append(f"<rect x='{left}' y='{ly - 9}' width='12' height='10' fill='{colour}'/>"
                     f"<text x='{left + 18}' y='{ly}' {_SMALL}>{html.escape(centre)}</text>")
    label = html.escape(f"{title} ({unit})")
    return (f"<figure class='chart'><figcaption>{label}</figcaption>"
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{label}'>"
            f"{''.join(p for p in parts if p)}</svg></figure>")


def _line(segment: list[str], colour: str) -> str:
    if len(segment) < 2:
        return ""
    return (f"<polyline points='{' '.join(segment)}' fill='none' stroke='{colour}' "
            "stroke-width='2'/>")


def _num(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.2g}"
