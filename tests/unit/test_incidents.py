"""Incident threads (pure): latest report per centre, timeline, gap warnings, index, CSV."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.service.incidents import (
    CSV_COLUMNS,
    MAX_LISTED,
    DeliveryRecord,
    ThreadItem,
    body_fields,
    build_thread,
    summarise_incidents,
    timeline_csv,
)

ME, BE, DE, LU = "NL-NCC", "BE-NCCN", "DE-NW", "LU-HCPN"
INC = "EU-2026-0042"
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
_ids = itertools.count(1)


def _id() -> str:
    return f"00000000-0000-4000-8000-{next(_ids):012d}"


def report(centre: str, number: int, *, at: int | None = None, purpose: str | None = None,
           supersedes: int | None = None, severity: str = "moderate",
           incident: str = INC, **changes: Any) -> ThreadItem:
    """A sitrep from ``centre`` (ours when centre is ME), created ``at`` minutes after T0."""
    created = T0 + (number * 10 if at is None else at) * MIN
    out = centre == ME
    fields: dict[str, Any] = {
        "direction": "out" if out else "in", "id": _id(), "sender": centre,
        "incident": incident, "type": "sitrep", "created": created,
        "recorded_at": created + timedelta(seconds=3),
        "to": (BE, DE) if out else (ME,), "priority": "routine", "tlp": "GREEN",
        "mode": "actual", "state": None if out else "delivered",
        "title": "Storm surge", "report_number": number, "purpose": purpose,
        "supersedes": supersedes, "severity": severity,
        "summary": (("en", f"{centre} report {number}"),), "phase": "response",
    }
    fields.update(changes)
    return ThreadItem(**fields)


def kinds(thread: dict[str, Any]) -> list[tuple[str, str, list[int]]]:
    """(kind, centre, report numbers) of every warning."""
    return [(w["kind"], w["centre"], w["report_numbers"]) for w in thread["warnings"]]


# ---------------------------------------------------------------------------------------
# Latest report per centre
# ---------------------------------------------------------------------------------------


def test_latest_report_from_every_centre() -> None:
    """Each centre (ours included) shows its highest-numbered sitrep with all its fields."""
    be3 = report(BE, 3, severity="severe", purpose="update", phase="recovery",
                 summary=(("nl", "Dijk hersteld"), ("fr", "Digue réparée")))
    de2 = report(DE, 2, at=5, severity="minor")  # created before DE 1: number decides
    nl2 = report(ME, 2, purpose="update", severity="extreme")
    items = [report(BE, 1, purpose="initial"), be3, report(BE, 2), report(DE, 1, at=50), de2,
             report(ME, 1), nl2]
    thread = build_thread(INC, items, ME)
    assert [c["centre"] for c in thread["centres"]] == [BE, DE, ME]
    by_centre = {c["centre"]: c for c in thread["centres"]}
    assert by_centre[BE] == {
        "centre": BE, "message_id": be3.id, "report_number": 3, "purpose": "update",
        "severity": "severe", "summary": {"nl": "Dijk hersteld", "fr": "Digue réparée"},
        "created": "2026-11-27T08:30:00.000Z", "phase": "recovery", "title": "Storm surge",
        "mode": "actual", "reports": 3,
    }
    assert by_centre[DE]["message_id"] == de2.id
    assert by_centre[ME]["message_id"] == nl2.id
    assert thread["highest_severity"] == "extreme"
    assert thread["counts"]["centres"] == 3


def test_latest_report_tie_goes_to_later_created() -> None:
    """Two messages with the same report number: the later created one is the latest."""
    early, late = report(BE, 2, at=20), report(BE, 2, at=25, severity="severe")
    thread = build_thread(INC, [late, early, report(BE, 1)], ME)
    assert thread["centres"][0]["message_id"] == late.id


def test_our_messages_use_our_centre_id() -> None:
    """An outgoing item is attributed to ``me`` whatever its sender field says."""
    thread = build_thread(INC, [report(ME, 1, sender="")], ME)
    assert thread["centres"][0]["centre"] == ME
    assert thread["timeline"][0]["from"] == ME


def test_rejected_messages_are_counted_not_pictured() -> None:
    """A received message we rejected is left out of centres, timeline and warnings."""
    bad = report(BE, 5, state="rejected", reason="schema_invalid", severity="extreme")
    thread = build_thread(INC, [report(BE, 1), bad], ME)
    assert thread["centres"][0]["report_number"] == 1
    assert [e["id"] for e in thread["timeline"]] == [thread["centres"][0]["message_id"]]
    assert thread["warnings"] == []
    assert thread["counts"]["rejected"] == 1
    assert thread["counts"]["messages"] == 1
    assert thread["highest_severity"] == "moderate"


def test_other_incidents_are_ignored_and_title_is_latest() -> None:
    """Only the asked incident counts; the title is the latest one a sitrep gave."""
    items = [report(BE, 1, title="Flooding"), report(BE, 2, title="Flooding Meuse"),
             report(DE, 1, incident="OTHER-1", title="Elsewhere")]
    thread = build_thread(INC, items, ME)
    assert thread["title"] == "Flooding Meuse"
    assert thread["counts"]["messages"] == 2
    assert build_thread("NONE", items, ME)["counts"]["messages"] == 0


# ---------------------------------------------------------------------------------------
# Timeline
# ---------------------------------------------------------------------------------------


def test_timeline_is_ordered_by_created_with_who_knew_what_when() -> None:
    """Messages are ordered by created; ours list recipients, received ones our ack."""
    acked = report(BE, 1, at=30, state="acknowledged", acknowledged_at=T0 + 40 * MIN,
                   acknowledged_by="Duty officer")
    ours = report(ME, 1, at=10, deliveries=(
        DeliveryRecord(DE, "sent", sent_at=T0 + 11 * MIN),
        DeliveryRecord(BE, "acknowledged", sent_at=T0 + 11 * MIN,
                       delivered_at=T0 + 12 * MIN, acknowledged_at=T0 + 20 * MIN),
    ))
    alert = ThreadItem(direction="in", id=_id(), sender=DE, incident=INC, type="alert",
                       created=T0 + 20 * MIN, recorded_at=T0 + 21 * MIN, to=(ME, BE),
                       state="delivered", title="Evacuate Zone A", severity="severe")
    thread = build_thread(INC, [acked, alert, ours], ME)
    timeline = thread["timeline"]
    assert [e["id"] for e in timeline] == [ours.id, alert.id, acked.id]
    first, second, third = timeline
    assert first["direction"] == "out"
    assert first["from"] == ME
    assert first["to"] == [BE, DE]
    assert first["submitted_at"] == "2026-11-27T08:10:03.000Z"
    assert first["received_at"] is None
    assert first["recipients"] == [
        {"centre": BE, "state": "acknowledged", "sent_at": "2026-11-27T08:11:00.000Z",
         "delivered_at": "2026-11-27T08:12:00.000Z",
         "acknowledged_at": "2026-11-27T08:20:00.000Z", "rejected_at": None,
         "expired_at": None, "reason": None},
        {"centre": DE, "state": "sent", "sent_at": "2026-11-27T08:11:00.000Z",
         "delivered_at": None, "acknowledged_at": None, "rejected_at": None,
         "expired_at": None, "reason": None},
    ]
    assert (second["type"], second["title"], second["report_number"]) == (
        "alert", "Evacuate Zone A", None)
    assert third["received_at"] == "2026-11-27T08:30:03.000Z"
    assert (third["state"], third["acknowledged_at"], third["acknowledged_by"]) == (
        "acknowledged", "2026-11-27T08:40:00.000Z", "Duty officer")
    assert thread["counts"] == {
        "messages": 3, "sent": 1, "received": 2, "rejected": 0,
        "by_type": {"alert": 1, "sitrep": 2}, "centres": 3, "warnings": 0}
    # Alerts do not make a centre "report": DE has no sitrep here.
    assert [c["centre"] for c in thread["centres"]] == [BE, ME]


def test_timeline_ties_on_created_fall_back_to_recorded_time() -> None:
    """Messages created at the same instant are ordered by when this node stored them."""
    a = report(BE, 1, at=10, recorded_at=T0 + 15 * MIN)
    b = report(DE, 1, at=10, recorded_at=T0 + 12 * MIN)
    assert [e["id"] for e in build_thread(INC, [a, b], ME)["timeline"]] == [b.id, a.id]


# ---------------------------------------------------------------------------------------
# Gap warnings
# ---------------------------------------------------------------------------------------


def test_clean_series_gives_no_warnings() -> None:
    """Reports 1, 2, 3 (initial, update superseding 1, final) from each centre: no warning."""
    items = [r for c in (BE, DE, ME) for r in (
        report(c, 1, purpose="initial"), report(c, 2, purpose="update", supersedes=1),
        report(c, 3, purpose="final"))]
    thread = build_thread(INC, items, ME)
    assert thread["warnings"] == []
    assert thread["counts"]["warnings"] == 0


def test_missing_report_names_centre_and_number() -> None:
    """BE reports 1, 2, 4: report 3 from BE is missing; DE's clean series is not flagged."""
    be4 = report(BE, 4)
    items = [report(BE, 1), report(BE, 2), be4, report(DE, 1), report(DE, 2)]
    thread = build_thread(INC, items, ME)
    assert kinds(thread) == [("missing_report", BE, [3])]
    assert "BE-NCCN" in thread["warnings"][0]["detail"]
    assert "3" in thread["warnings"][0]["detail"]


def test_missing_reports_before_the_first_received() -> None:
    """A centre first heard at report 3 is missing 1 and 2 (we never got them)."""
    thread = build_thread(INC, [report(DE, 3), report(DE, 5)], ME)
    assert kinds(thread) == [("missing_report", DE, [1, 2, 4])]


def test_huge_gap_is_listed_only_up_to_the_cap() -> None:
    """A jump to report 2**31 lists at most MAX_LISTED numbers but states the total."""
    thread = build_thread(INC, [report(BE, 1), report(BE, 2**31, at=20)], ME)
    (warning,) = thread["warnings"]
    assert warning["report_numbers"] == list(range(2, 2 + MAX_LISTED))
    assert str(2**31 - 2) in warning["detail"]


def test_superseded_unknown() -> None:
    """Report 8 superseding report 7, never received, is flagged with number 7."""
    r8 = report(BE, 8, supersedes=7)
    items = [report(BE, n) for n in range(1, 7)] + [r8]
    thread = build_thread(INC, items, ME)
    assert ("superseded_unknown", BE, [7]) in kinds(thread)
    (warning,) = [w for w in thread["warnings"] if w["kind"] == "superseded_unknown"]
    assert warning["message_ids"] == [r8.id]
    assert {k for k, _, _ in kinds(thread)} == {"superseded_unknown", "missing_report"}


def test_superseding_a_known_report_is_fine() -> None:
    """Superseding a report that did arrive is not a warning."""
    thread = build_thread(INC, [report(DE, 1), report(DE, 2, supersedes=1)], ME)
    assert thread["warnings"] == []


@pytest.mark.parametrize(
    ("after", "numbers"),
    [({"number": 3}, [3]), ({"number": 1, "at": 90}, [1])],
    ids=["higher-number", "created-later"],
)
def test_update_after_final(after: dict[str, Any], numbers: list[int]) -> None:
    """A report with a higher number, or created later, than the final report is flagged."""
    late = report(BE, after["number"], at=after.get("at"), purpose="update")
    items = [report(BE, 1, purpose="initial"), report(BE, 2, purpose="final"), late]
    if after["number"] == 1:  # the late report re-uses number 1: drop the original
        items = items[1:]
    thread = build_thread(INC, items, ME)
    after_final = [w for w in thread["warnings"] if w["kind"] == "update_after_final"]
    assert [(w["centre"], w["report_numbers"], w["message_ids"]) for w in after_final] == [
        (BE, numbers, [late.id])]


def test_second_final_is_an_update_after_final() -> None:
    """Of two final reports the later one is flagged, with every report after the first."""
    items = [report(ME, 1, purpose="final"), report(ME, 2, purpose="final")]
    assert kinds(build_thread(INC, items, ME)) == [("update_after_final", ME, [2])]


def test_duplicate_number() -> None:
    """Two different messages with the same report number from one centre are flagged."""
    a, b = report(DE, 2, at=20), report(DE, 2, at=21)
    thread = build_thread(INC, [report(DE, 1), a, b], ME)
    assert kinds(thread) == [("duplicate_number", DE, [2])]
    assert thread["warnings"][0]["message_ids"] == [a.id, b.id]


def test_warnings_are_per_centre() -> None:
    """The same report numbers from different centres are not duplicates or gaps."""
    items = [report(BE, 1), report(DE, 1), report(ME, 1), report(BE, 2), report(DE, 2)]
    assert build_thread(INC, items, ME)["warnings"] == []


# ---------------------------------------------------------------------------------------
# Body extraction
# ---------------------------------------------------------------------------------------


def test_body_fields_of_a_sitrep() -> None:
    """A sitrep body yields title, phase, number, purpose, supersedes, severity, summary."""
    body = {"incident": {"id": INC, "title": "Storm", "phase": "response"},
            "report_number": 4, "purpose": "update", "supersedes": 3, "severity": "severe",
            "summary": {"en": "Surge", "de": "Flut"}}
    assert body_fields("sitrep", body) == {
        "title": "Storm", "phase": "response", "report_number": 4, "purpose": "update",
        "supersedes": 3, "severity": "severe", "summary": (("en", "Surge"), ("de", "Flut"))}


@pytest.mark.parametrize("body", [
    None, [], "x", {"incident": "x", "report_number": True, "purpose": 3, "severity": ["a"],
                    "summary": ["en"], "supersedes": -1},
    {"report_number": "2", "purpose": "later", "severity": "bad", "summary": {"en": 5}},
])
def test_body_fields_never_trust_a_sitrep_body(body: Any) -> None:
    """Odd or missing sitrep values become None (bool or string numbers included)."""
    fields = body_fields("sitrep", body)
    assert all(v in (None, ()) for v in fields.values())


@pytest.mark.parametrize(("body", "title", "severity"), [
    ({"identifier": "X-1", "infos": [{"headline": "Leave now", "severity": "Extreme"},
                                      {"severity": "minor"}]}, "Leave now", "extreme"),
    ({"identifier": "X-1", "infos": [{"severity": "Moderate"}]}, "X-1", "moderate"),
    ({"identifier": "X-1", "infos": "nope"}, "X-1", None),
    ({"infos": [{"headline": 5}], "identifier": ["x"]}, None, None),
], ids=["headline", "identifier", "bad-infos", "nothing-usable"])
def test_body_fields_of_other_types(body: dict[str, Any], title: str | None,
                                    severity: str | None) -> None:
    """An alert's title is infos[0].headline, else identifier; severity is the highest."""
    assert body_fields("alert", body) == {"title": title, "severity": severity}


# ---------------------------------------------------------------------------------------
# Index
# ---------------------------------------------------------------------------------------


def test_summarise_incidents() -> None:
    """One row per incident, most recent first, with centres, counts, highest severity
    and how many messages are actual (B-2 is an exercise, A-1 has one exercise report)."""
    items = [
        report(BE, 1, incident="A-1", title="Flood A", severity="minor"),
        report(BE, 3, incident="A-1", title="Flood A", severity="severe"),
        report(ME, 1, incident="A-1", severity="moderate"),
        report(ME, 2, incident="A-1", mode="exercise"),
        report(DE, 1, incident="B-2", at=200, title="Fire B", mode="exercise"),
        report(LU, 1, incident="C-3", at=300, state="rejected"),
    ]
    rows = summarise_incidents(items, ME)
    assert rows == [
        {"incident": "C-3", "title": None, "centres": [], "messages": 0, "rejected": 1,
         "last_activity": "2026-11-27T13:00:03.000Z", "warnings": 0,
         "highest_severity": None, "actual_messages": 0},
        {"incident": "B-2", "title": "Fire B", "centres": [DE], "messages": 1, "rejected": 0,
         "last_activity": "2026-11-27T11:20:03.000Z", "warnings": 0,
         "highest_severity": "moderate", "actual_messages": 0},
        {"incident": "A-1", "title": "Flood A", "centres": [BE, ME], "messages": 4,
         "rejected": 0, "last_activity": "2026-11-27T08:30:03.000Z", "warnings": 1,
         "highest_severity": "severe", "actual_messages": 3},
    ]


def test_summarise_nothing() -> None:
    """No items, no rows."""
    assert summarise_incidents([], ME) == []


# ---------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_timeline_csv_rows() -> None:
    """Header, one row per message and one per recipient of ours, in timeline order."""
    ours = report(ME, 1, at=10, deliveries=(
        DeliveryRecord(BE, "acknowledged", sent_at=T0 + 11 * MIN, delivered_at=T0 + 12 * MIN,
                       acknowledged_at=T0 + 20 * MIN),
        DeliveryRecord(DE, "queued"),
    ))
    theirs = report(BE, 1, at=30, state="acknowledged", acknowledged_at=T0 + 40 * MIN,
                    acknowledged_by="Duty officer", to=(ME, DE))
    text = timeline_csv(build_thread(INC, [theirs, ours], ME))
    assert text.splitlines()[0] == ",".join(f'"{c}"' for c in CSV_COLUMNS)
    assert text.endswith("\r\n")
    rows = _rows(text)
    assert [(r["message_id"], r["event"], r["recipient"]) for r in rows] == [
        (ours.id, "sent", ""), (ours.id, "sent", BE), (ours.id, "sent", DE),
        (theirs.id, "received", ME)]
    assert rows[0] == {
        "incident": INC, "message_id": ours.id, "type": "sitrep", "from": ME,
        "to": f"{BE} {DE}", "report_number": "1", "purpose": "", "created":
        "2026-11-27T08:10:00.000Z", "event": "sent", "recipient": "", "state": "",
        "sent_at": "", "delivered_at": "", "acknowledged_at": "", "acknowledged_by": ""}
    assert (rows[1]["state"], rows[1]["sent_at"], rows[1]["delivered_at"],
            rows[1]["acknowledged_at"]) == (
        "acknowledged", "2026-11-27T08:11:00.000Z", "2026-11-27T08:12:00.000Z",
        "2026-11-27T08:20:00.000Z")
    assert (rows[2]["state"], rows[2]["sent_at"]) == ("queued", "")
    assert rows[3] == {
        "incident": INC, "message_id": theirs.id, "type": "sitrep", "from": BE,
        "to": f"{ME} {DE}", "report_number": "1", "purpose": "",
        "created": "2026-11-27T08:30:00.000Z", "event": "received", "recipient": ME,
        "state": "acknowledged", "sent_at": "", "delivered_at": "2026-11-27T08:30:03.000Z",
        "acknowledged_at": "2026-11-27T08:40:00.000Z", "acknowledged_by": "Duty officer"}


def test_timeline_csv_of_an_empty_thread_is_just_the_header() -> None:
    """A thread with no messages gives the header row only."""
    assert timeline_csv(build_thread(INC, [], ME)) == ",".join(
        f'"{c}"' for c in CSV_COLUMNS) + "\r\n"


@pytest.mark.parametrize("evil", [
    "=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1)", "\t=1", "\r=1",
])
def test_timeline_csv_defuses_formulas(evil: str) -> None:
    """A cell starting with = + - @ tab or CR is prefixed with a quote; the rest survives."""
    item = report(BE, 1, state="acknowledged", acknowledged_by=evil)
    (row,) = _rows(timeline_csv(build_thread(INC, [item], ME)))
    assert row["acknowledged_by"] == "'" + evil


def test_timeline_csv_quotes_separators_and_newlines() -> None:
    """Commas, quotes and newlines in a value are quoted and read back intact."""
    by = 'Smith, J. "Duty"\nnight shift'
    item = report(BE, 1, state="acknowledged", acknowledged_by=by)
    (row,) = _rows(timeline_csv(build_thread(INC, [item], ME)))
    assert row["acknowledged_by"] == by
