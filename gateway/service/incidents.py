"""Incident threads: the shared picture of one incident as this node knows it (pure).

A thread is built from our own sent messages (outbox, receipts excluded) and the
messages we received (inbox, receipts excluded). Received messages we rejected are
left out of the picture and only counted. Per incident the thread shows:

* ``centres``: the latest sitrep of every centre (highest report number, ties broken
  by the later ``created``);
* ``timeline``: every message, oldest first, with "who knew what, when": per recipient
  delivery states and times for what we sent, our own reception and acknowledgement
  times for what we received;
* ``warnings``: gaps in each centre's series of sitreps (see :data:`WARNING_KINDS`).

Nothing here does I/O: the adapter (``adapters.sqlite_incidents``) loads
:class:`ThreadItem` records, and :func:`body_fields` extracts what a thread needs from
an envelope body that may come from a peer (it never trusts its shape).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from gateway.formats.spreadsheet import to_csv
from gateway.protocol.types import format_time

SITREP = "sitrep"
#: Inbox states that belong to the picture; any other (``rejected``) is only counted.
PICTURE_STATES = frozenset({"delivered", "acknowledged"})
PURPOSES = frozenset({"initial", "update", "final"})
PHASES = frozenset({"alert", "response", "recovery", "closed"})
#: CAP severities, highest first rank.
SEVERITY_RANK = {"extreme": 4, "severe": 3, "moderate": 2, "minor": 1, "unknown": 0}
WARNING_KINDS = ("missing_report", "superseded_unknown", "update_after_final",
                 "duplicate_number")
#: Warnings list at most this many report numbers (a centre may jump to 2**31).
MAX_LISTED = 100
MAX_TITLE = 200
MAX_LANGUAGES = 32
MAX_SUMMARY = 20_000
#: Cells starting with one of these are read as formulas by spreadsheet tools.
CSV_COLUMNS = ("incident", "message_id", "type", "from", "to", "report_number", "purpose",
               "created", "event", "recipient", "state", "sent_at", "delivered_at",
               "acknowledged_at", "acknowledged_by")


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """Where one of our sent messages stands with one recipient."""

    recipient: str
    state: str
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    acknowledged_at: datetime | None = None
    rejected_at: datetime | None = None
    expired_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadItem:
    """One message on an incident, sent (``direction="out"``) or received (``"in"``).

    ``recorded_at`` is when this node stored it: submitted_at for ours, received_at for
    received ones. ``sender`` is ignored for ours: the thread uses its ``me``. The body
    fields (``title`` .. ``phase``) are those :func:`body_fields` extracts.
    """

    direction: Literal["out", "in"]
    id: str
    sender: str
    incident: str
    type: str
    created: datetime | None
    recorded_at: datetime
    to: tuple[str, ...] = ()
    priority: str | None = None
    tlp: str | None = None
    mode: str | None = None
    #: Inbox state (delivered, acknowledged, rejected); None for ours.
    state: str | None = None
    reason: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    #: Our sent messages: one record per recipient.
    deliveries: tuple[DeliveryRecord, ...] = ()
    title: str | None = None
    report_number: int | None = None
    purpose: str | None = None
    supersedes: int | None = None
    severity: str | None = None
    #: (language tag, text) pairs, in the body's order.
    summary: tuple[tuple[str, str], ...] = ()
    phase: str | None = None

    @property
    def in_picture(self) -> bool:
        """Ours always; a received message unless we rejected it."""
        return self.direction == "out" or self.state in PICTURE_STATES

    @property
    def is_report(self) -> bool:
        """A sitrep with a usable report number."""
        return self.type == SITREP and self.report_number is not None


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    """One row of the incident index (what :func:`summarise_incidents` gives per
    incident, kept by the ledger as messages are stored)."""

    incident: str
    title: str | None
    centres: tuple[str, ...]
    messages: int
    rejected: int
    last_activity: str
    warnings: int
    highest_severity: str | None
    #: How many of ``messages`` are actual (the others are exercise or test traffic).
    actual_messages: int

    def as_json(self) -> dict[str, Any]:
        """The row as the API and the console show it."""
        return {"incident": self.incident, "title": self.title, "centres": list(self.centres),
                "messages": self.messages, "rejected": self.rejected,
                "last_activity": self.last_activity, "warnings": self.warnings,
                "highest_severity": self.highest_severity,
                "actual_messages": self.actual_messages}

    @property
    def cursor(self) -> tuple[str, str]:
        """Its place in the index's order (see :mod:`gateway.service.paging`)."""
        return self.last_activity, self.incident

    @property
    def exercise(self) -> bool:
        """An exercise: it has messages and none is actual (all exercise or test
        traffic). It is kept off the real incident board; an incident with only
        rejected messages stays on it."""
        return self.messages > 0 and self.actual_messages == 0


# ---------------------------------------------------------------------------------------
# Body extraction (input may be a peer's arbitrary JSON)
# ---------------------------------------------------------------------------------------


def _text(value: Any, limit: int = MAX_TITLE) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _number(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return value if ok else None


def _choice(value: Any, allowed: Iterable[str]) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.lower()
    return value if value in allowed else None


def _summary(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        return ()
    pairs = [(k[:35], v[:MAX_SUMMARY]) for k, v in value.items()
             if isinstance(k, str) and isinstance(v, str)]
    return tuple(pairs[:MAX_LANGUAGES])


def _highest(severities: Iterable[str | None]) -> str | None:
    known = [s for s in severities if s is not None]
    return max(known, key=SEVERITY_RANK.__getitem__) if known else None


def body_fields(msg_type: str, body: Any) -> dict[str, Any]:
    """The :class:`ThreadItem` body fields of an envelope body; absent or odd values -> None.

    A sitrep gives its incident title and phase, report number, purpose, supersedes,
    severity and summary. Any other type gets a short title only: ``infos[0].headline``
    (CAP alert), else ``identifier``, else ``title``; and the highest ``infos[].severity``.
    """
    fields: dict[str, Any] = {}
    if not isinstance(body, dict):
        return fields
    if msg_type == SITREP:
        incident = body.get("incident")
        incident = incident if isinstance(incident, dict) else {}
        fields["title"] = _text(incident.get("title"))
        fields["phase"] = _choice(incident.get("phase"), PHASES)
        fields["report_number"] = _number(body.get("report_number"))
        fields["purpose"] = _choice(body.get("purpose"), PURPOSES)
        fields["supersedes"] = _number(body.get("supersedes"))
        fields["severity"] = _choice(body.get("severity"), SEVERITY_RANK)
        fields["summary"] = _summary(body.get("summary"))
        return fields
    infos = body.get("infos")
    infos = [i for i in infos if isinstance(i, dict)] if isinstance(infos, list) else []
    headline = _text(infos[0].get("headline")) if infos else None
    fields["title"] = headline or _text(body.get("identifier")) or _text(body.get("title"))
    fields["severity"] = _highest(_choice(i.get("severity"), SEVERITY_RANK) for i in infos)
    return fields


# ---------------------------------------------------------------------------------------
# The thread
# ---------------------------------------------------------------------------------------


def _t(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _when(item: ThreadItem) -> datetime:
    return item.created or item.recorded_at


def _order(item: ThreadItem) -> tuple[datetime, datetime, str, str]:
    return _when(item), item.recorded_at, item.sender, item.id


def _sender(item: ThreadItem, me: str) -> str:
    return me if item.direction == "out" else item.sender


def _latest_key(item: ThreadItem) -> tuple[int, datetime, datetime, str]:
    return item.report_number or 0, _when(item), item.recorded_at, item.id


def _centre_entry(centre: str, reports: Sequence[ThreadItem]) -> dict[str, Any]:
    latest = max(reports, key=_latest_key)
    return {
        "centre": centre, "message_id": latest.id, "report_number": latest.report_number,
        "purpose": latest.purpose, "severity": latest.severity, "summary": dict(latest.summary),
        "created": _t(latest.created), "phase": latest.phase, "title": latest.title,
        "mode": latest.mode, "reports": len(reports),
    }


def _timeline_entry(item: ThreadItem, me: str) -> dict[str, Any]:
    out = item.direction == "out"
    return {
        "id": item.id, "direction": item.direction, "from": _sender(item, me),
        "to": list(item.to), "type": item.type, "title": item.title,
        "report_number": item.report_number, "purpose": item.purpose,
        "supersedes": item.supersedes, "severity": item.severity,
        "priority": item.priority, "tlp": item.tlp, "mode": item.mode,
        "created": _t(item.created),
        "submitted_at": _t(item.recorded_at) if out else None,
        "received_at": None if out else _t(item.recorded_at),
        "state": item.state, "acknowledged_at": _t(item.acknowledged_at),
        "acknowledged_by": item.acknowledged_by,
        "recipients": [
            {"centre": d.recipient, "state": d.state, "sent_at": _t(d.sent_at),
             "delivered_at": _t(d.delivered_at), "acknowledged_at": _t(d.acknowledged_at),
             "rejected_at": _t(d.rejected_at), "expired_at": _t(d.expired_at),
             "reason": d.reason}
            for d in sorted(item.deliveries, key=lambda d: d.recipient)
        ],
    }


def _listed(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    return shown + (f" (+{len(numbers) - 10} more)" if len(numbers) > 10 else "")


def _warning(kind: str, centre: str, detail: str, numbers: Sequence[int],
             reports: Iterable[ThreadItem] = ()) -> dict[str, Any]:
    return {"kind": kind, "centre": centre, "detail": detail,
            "report_numbers": list(numbers[:MAX_LISTED]),
            "message_ids": [r.id for r in reports]}


def _missing(have: Sequence[int]) -> tuple[list[int], int]:
    """Report numbers below the highest one that never came (listed up to MAX_LISTED)."""
    listed: list[int] = []
    total, previous = 0, 0
    for n in have:  # sorted, distinct
        gap = n - previous - 1
        total += gap
        listed.extend(range(previous + 1, previous + 1 + min(gap, MAX_LISTED - len(listed))))
        previous = n
    return listed, total


def centre_warnings(centre: str, reports: Sequence[ThreadItem]) -> list[dict[str, Any]]:
    """Gap warnings over one centre's sitreps on one incident (see :data:`WARNING_KINDS`)."""
    warnings: list[dict[str, Any]] = []
    by_number: dict[int, list[ThreadItem]] = defaultdict(list)
    for r in sorted(reports, key=_order):
        assert r.report_number is not None
        by_number[r.report_number].append(r)
    have = sorted(by_number)
    missing, total = _missing(have)
    if total:
        more = f" ({total} in all)" if total > len(missing) else ""
        warnings.append(_warning(
            "missing_report", centre,
            f"{centre}: no report {_listed(missing)}{more}; highest is {have[-1]}", missing))
    for r in sorted(reports, key=_latest_key):
        if r.supersedes is not None and r.supersedes not in by_number:
            warnings.append(_warning(
                "superseded_unknown", centre,
                f"{centre}: report {r.report_number} supersedes report {r.supersedes},"
                " which never came", [r.supersedes], [r]))
    finals = [r for r in reports if r.purpose == "final"]
    if finals:
        final = min(finals, key=_latest_key)
        assert final.report_number is not None
        after = sorted((r for r in reports if r.id != final.id and (
            (r.report_number or 0) > final.report_number or _when(r) > _when(final))),
            key=_latest_key)
        if after:
            numbers = sorted({r.report_number for r in after if r.report_number is not None})
            warnings.append(_warning(
                "update_after_final", centre,
                f"{centre}: report {_listed(numbers)} after final report"
                f" {final.report_number}", numbers, after))
    for number, same in sorted(by_number.items()):
        if len({r.id for r in same}) > 1:
            warnings.append(_warning(
                "duplicate_number", centre,
                f"{centre}: {len(same)} different messages carry report {number}",
                [number], same))
    return warnings


def _title(picture: Sequence[ThreadItem]) -> str | None:
    """The latest incident title a sitrep gave; else the latest title of any message."""
    for pool in ([i for i in picture if i.type == SITREP], picture):
        titled = [i for i in pool if i.title]
        if titled:
            return max(titled, key=_order).title
    return None


def build_thread(incident: str, items: Iterable[ThreadItem], me: str) -> dict[str, Any]:
    """The JSON-ready picture of ``incident`` from this node (``me``); other items ignored.

    Keys: incident, node, title, highest_severity (among the centres' latest sitreps),
    centres, timeline, warnings, counts, last_activity (when this node last stored a
    message on it, rejected ones included).
    """
    mine = [i for i in items if i.incident == incident]
    picture = sorted((i for i in mine if i.in_picture), key=_order)
    reports: dict[str, list[ThreadItem]] = defaultdict(list)
    for item in picture:
        if item.is_report:
            reports[_sender(item, me)].append(item)
    centres = [_centre_entry(c, reports[c]) for c in sorted(reports)]
    warnings = [w for c in sorted(reports) for w in centre_warnings(c, reports[c])]
    by_type: dict[str, int] = defaultdict(int)
    for item in picture:
        by_type[item.type] += 1
    last = max((i.recorded_at for i in mine), default=None)
    return {
        "incident": incident, "node": me, "title": _title(picture),
        "highest_severity": _highest(c["severity"] for c in centres),
        "centres": centres,
        "timeline": [_timeline_entry(i, me) for i in picture],
        "warnings": warnings,
        "counts": {
            "messages": len(picture),
            "sent": sum(i.direction == "out" for i in picture),
            "received": sum(i.direction == "in" for i in picture),
            "rejected": len(mine) - len(picture),
            "by_type": dict(sorted(by_type.items())),
            "centres": len({_sender(i, me) for i in picture}),
            "warnings": len(warnings),
        },
        "last_activity": _t(last),
    }


def summarise_incidents(items: Iterable[ThreadItem], me: str) -> list[dict[str, Any]]:
    """One row per incident, most recent activity first, for the incident index.

    ``last_activity`` is when this node last stored a message on it (rejected ones too).
    """
    grouped: dict[str, list[ThreadItem]] = defaultdict(list)
    for item in items:
        grouped[item.incident].append(item)
    rows = []
    for incident, group in grouped.items():
        thread = build_thread(incident, group, me)
        counts = thread["counts"]
        rows.append({
            "incident": incident, "title": thread["title"],
            "centres": sorted({_sender(i, me) for i in group if i.in_picture}),
            "messages": counts["messages"], "rejected": counts["rejected"],
            "last_activity": thread["last_activity"], "warnings": counts["warnings"],
            "highest_severity": thread["highest_severity"],
            "actual_messages": sum(1 for i in group if i.in_picture and i.mode == "actual"),
        })
    rows.sort(key=lambda r: r["incident"])
    rows.sort(key=lambda r: r["last_activity"] or "", reverse=True)
    return rows


# ---------------------------------------------------------------------------------------
# CSV for after-action evaluation
# ---------------------------------------------------------------------------------------


class ThreadSource(Protocol):
    """What :func:`incident_thread` reads (a part of ``ports.IncidentStore``)."""

    async def thread_items(self, incident: str | None) -> list[ThreadItem]:
        """Every non-receipt message on ``incident``."""
        ...

    async def summary(self, incident: str) -> IncidentSummary | None:
        """The index row of ``incident``."""
        ...


async def incident_thread(store: ThreadSource, incident: str, me: str) -> dict[str, Any] | None:
    """The thread of ``incident`` (:func:`build_thread`) with ``archived``: how many of
    its messages the index counted that retention has moved to archive files. None when
    the incident is unknown."""
    items = await store.thread_items(incident)
    summary = await store.summary(incident)
    if not items and summary is None:
        return None
    thread = build_thread(incident, items, me)
    thread["archived"] = max(0, summary.messages - len(items)) if summary is not None else 0
    return thread


def timeline_csv(thread: dict[str, Any]) -> str:
    """The timeline of a :func:`build_thread` result as CSV ("who knew what, when").

    One row per message, plus one per recipient of each message we sent (event
    ``sent``, with that recipient's state and times). A received message's row has
    event ``received``, this node as recipient, our state, reception time as
    ``delivered_at`` and our acknowledgement. ``to`` lists centres separated by spaces.
    """
    incident = thread["incident"]
    lines: list[list[Any]] = []
    for e in thread["timeline"]:
        to = " ".join(e["to"]) if isinstance(e["to"], list) else e["to"]
        head = [incident, e["id"], e["type"], e["from"], to, e["report_number"],
                e["purpose"], e["created"]]
        if e["direction"] == "out":
            rows = [[*head, "sent", None, None, None, None, None, None]]
            rows.extend([*head, "sent", r["centre"], r["state"], r["sent_at"],
                         r["delivered_at"], r["acknowledged_at"], None]
                        for r in e["recipients"])
        else:
            rows = [[*head, "received", thread.get("node"), e["state"], None,
                     e["received_at"], e["acknowledged_at"], e["acknowledged_by"]]]
        lines.extend(rows)
    return to_csv(CSV_COLUMNS, lines)
