"""Exercises (pure parts): scenarios checked at the edge, the fold of a run's events,
which injects are due (with pauses and speed), a replay's scenario, and the
after-action report from a run's facts."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import InvalidBody
from gateway.protocol.exercise import MAX_TRIES, RETRY_AFTER, Event, Status, complete, due, fold
from gateway.service.exercise_scenario import parse_scenario, replayed, submission
from gateway.web.exercise_report import kpis, report, report_csv, report_html

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
SCENARIO = (ROOT / "deploy" / "exercises" / "meuse-flood.toml").read_text(encoding="utf-8")


def _run(*events: tuple[str, float, dict[str, Any]]) -> Any:
    return fold("r1", [Event("started", T0, {"name": "x", "speed": 60.0}),
                       *(Event(k, T0 + timedelta(seconds=s), d) for k, s, d in events)])


def test_the_shipped_scenario_has_twelve_injects_from_three_centres() -> None:
    """deploy/exercises/meuse-flood.toml validates: sitreps and CAP alerts, 3 senders."""
    scenario = parse_scenario(SCENARIO)
    assert len(scenario.injects) == 12
    assert scenario.centres() == ["BE-NCCN", "NL-NCC", "LU-HCPN"]
    assert {i.kind for i in scenario.injects} == {"sitrep", "alert"}


def test_every_inject_is_exercise_traffic_whatever_the_scenario_says() -> None:
    """A sitrep goes in exercise mode; a CAP alert's status becomes Exercise."""
    scenario = parse_scenario(SCENARIO.replace('status = "Exercise"', 'status = "Actual"'))
    for inject in scenario.injects:
        sub = submission(inject)
        assert sub.mode is not None
        assert sub.mode.value == "exercise"
        if inject.kind == "alert":
            assert sub.alert.status.value == "Exercise"  # type: ignore[union-attr]


def test_a_bad_scenario_is_refused_naming_the_inject_and_the_field() -> None:
    """Not TOML, an inject with two bodies, or a sitrep without a summary: each a 422
    that says where."""
    with pytest.raises(InvalidBody, match="not TOML"):
        parse_scenario("name = ")
    broken = SCENARIO.replace('report_number = 2, severity = "severe", summary = { en = '
                              '"Liège discharge 2,450 m³/s, peak in 9 hours." }',
                              'report_number = 2, severity = "severe"')
    with pytest.raises(InvalidBody) as refused:
        parse_scenario(broken)
    assert "inject 5 (minute 40)" in refused.value.detail
    assert any(e["loc"][:2] == ["inject", 5] and "summary" in e["loc"]
               for e in refused.value.errors)
    with pytest.raises(InvalidBody):
        parse_scenario('name = "x"\n[[inject]]\nminute = 1\nfrom = "BE-NCCN"\nto = ["NL-NCC"]\n')


def test_injects_fall_due_by_scenario_minute_at_the_runs_speed() -> None:
    """At speed 60, minute 10 comes after 10 s of play; sent ones are not due again."""
    scenario = parse_scenario(SCENARIO)
    run = _run()
    assert due(run, scenario, T0) == [0]
    assert due(run, scenario, T0 + timedelta(seconds=15)) == [0, 1, 2]
    run = _run(("inject_sent", 1, {"index": 0, "from": "BE-NCCN", "message_id": "m0"}))
    assert due(run, scenario, T0 + timedelta(seconds=15)) == [1, 2]
    assert run.sent[0].message_id == "m0"


def test_paused_time_does_not_count_and_a_stopped_run_sends_nothing() -> None:
    """A 100 s pause shifts every later inject by 100 s; after stop, nothing is due."""
    scenario = parse_scenario(SCENARIO)
    run = _run(("paused", 5, {}), ("resumed", 105, {}))
    assert run.status is Status.RUNNING
    assert abs(run.minute(T0 + timedelta(seconds=115)) - 15.0) < 1e-9
    assert due(run, scenario, T0 + timedelta(seconds=114)) == [0, 1]
    paused = _run(("paused", 5, {}))
    assert paused.status is Status.PAUSED
    assert due(paused, scenario, T0 + timedelta(hours=5)) == []
    assert paused.minute(T0 + timedelta(hours=5)) == 5.0
    stopped = _run(("stopped", 30, {}), ("inject_sent", 31, {"index": 0, "from": "x",
                                                             "message_id": "late"}))
    assert stopped.status is Status.STOPPED
    assert stopped.sent == {}, "events after the end are ignored"
    assert due(stopped, scenario, T0 + timedelta(hours=5)) == []


def test_a_failed_inject_is_retried_then_given_up() -> None:
    """Retried after RETRY_AFTER, at most MAX_TRIES times; given up counts as done."""
    scenario = parse_scenario(SCENARIO)
    fails = [("inject_failed", float(i), {"index": 0, "error": "down"})
             for i in range(MAX_TRIES - 1)]
    run = _run(*fails)
    last = T0 + timedelta(seconds=MAX_TRIES - 2)
    assert 0 not in due(run, scenario, last + RETRY_AFTER / 2)
    assert 0 in due(run, scenario, last + RETRY_AFTER)
    run = _run(*fails, ("inject_failed", 100, {"index": 0, "error": "down"}))
    assert 0 not in due(run, scenario, T0 + timedelta(hours=1))
    sent = [("inject_sent", 1, {"index": i, "from": "x", "message_id": f"m{i}"})
            for i in range(1, 12)]
    assert complete(_run(*fails, ("inject_failed", 100, {"index": 0, "error": "x"}), *sent),
                    scenario)


def test_a_replay_keeps_texts_and_relative_times_under_an_exercise_incident() -> None:
    """Minutes from the first message; incident EX-<id>; a CAP alert gets a new
    identifier, no references, and its times move with the replay."""
    sitrep = {"incident": {"id": "BE-2026-0001", "title": "Flooding"}, "report_number": 1,
              "severity": "severe", "summary": {"en": "Water rising."}}
    alert = {"identifier": "A1", "sender": "a@b.example", "sent": "2026-11-01T10:00:00+01:00",
             "status": "Actual", "msg_type": "Update", "scope": "Public",
             "references": "a@b.example,A0,2026-11-01T09:00:00+01:00",
             "infos": [{"categories": ["Met"], "event": "Flood", "urgency": "Immediate",
                        "severity": "Severe", "certainty": "Likely",
                        "expires": "2026-11-01T18:00:00+01:00"}]}
    messages = [
        {"id": "m1", "from": "BE-NCCN", "to": ["NL-NCC"], "type": "sitrep",
         "created": "2026-11-01T08:00:00.000Z", "tlp": "GREEN", "priority": "urgent",
         "body": sitrep},
        {"id": "m2", "from": "NL-NCC", "to": ["BE-NCCN"], "type": "alert",
         "created": "2026-11-01T08:45:30.000Z", "tlp": "GREEN", "priority": "flash",
         "body": alert}]
    scenario = replayed("BE-2026-0001", 30.0, messages, "ab12")
    assert scenario.speed == 30.0
    first, second = scenario.injects
    assert (first.minute, second.minute) == (0.0, 45.5)
    assert first.sitrep is not None
    assert first.sitrep["summary"] == {"en": "Water rising."}
    assert first.sitrep["incident"]["id"] == "EX-BE-2026-0001"
    assert second.sender == "NL-NCC"
    assert second.alert is not None
    assert second.alert["identifier"] == "A1-ab12"
    assert "references" not in second.alert
    sub = submission(second, timedelta(days=35))
    assert sub.alert.sent == "2026-12-06T10:00:00+01:00"  # type: ignore[union-attr]
    assert sub.alert.infos[0].expires == "2026-12-06T18:00:00+01:00"  # type: ignore[union-attr]
    assert sub.alert.status.value == "Exercise"  # type: ignore[union-attr]


def _facts() -> dict[int, dict[str, Any]]:
    def recipient(centre: str, delivered: str | None, acked: str | None) -> dict[str, Any]:
        return {"centre": centre, "state": "acknowledged" if acked else "delivered",
                "delivered_at": delivered, "acknowledged_at": acked}
    return {0: {"view": {"recipients": [
                    recipient("NL-NCC", "2026-12-06T10:00:00.500Z", "2026-12-06T10:02:00.000Z"),
                    recipient("LU-HCPN", "2026-12-06T10:00:00.700Z", None)],
                "receipts": [{"issuer": "NL-NCC", "state": "acknowledged", "signed": {
                    "envelope": {"body": {"by": "anna <b>"}}}}]},
                "audit": [{"kind": "escalation.sent", "at": "2026-12-06T10:05:00.000Z",
                           "data": {"recipient": "LU-HCPN", "channel": "email",
                                    "contact": "LU exercise control"}}],
                "views": {"NL-NCC": [{"at": "2026-12-06T10:01:00.000Z", "actor": "anna"}],
                          "LU-HCPN": None}}}


def test_the_after_action_report_gives_each_recipients_times_and_kpis() -> None:
    """Delivered, read, acknowledged (by whom) and escalated per recipient, times from
    sending; an unread centre whose node we cannot ask is 'unknown'; a failed inject
    says why; KPIs per centre; CSV and HTML carry it all, escaped."""
    scenario = parse_scenario(SCENARIO)
    run = _run(("inject_sent", 0, {"index": 0, "from": "BE-NCCN", "message_id": "m0"}),
               *(("inject_failed", float(i), {"index": 1, "error": "NL-NCC: HTTP 503"})
                 for i in range(MAX_TRIES)))
    rep = report(run, scenario, _facts(), T0 + timedelta(minutes=10))
    first = rep["injects"][0]
    nl, lu = first["recipients"]
    assert (nl["delivered_after_s"], nl["read_after_s"], nl["acknowledged_after_s"]) == (
        0.5, 60.0, 120.0)
    assert (nl["read_by"], nl["acknowledged_by"]) == ("anna", "anna <b>")
    assert lu["read_known"] is False
    assert lu["escalations"] == [{"at": "2026-12-06T10:05:00.000Z", "channel": "email",
                                  "contact": "LU exercise control"}]
    assert rep["injects"][1]["message_id"] is None
    assert "HTTP 503" in rep["injects"][1]["error"]
    events = [(e["centre"], e["event"]) for e in rep["timeline"]]
    assert events == [("BE-NCCN", "sent"), ("NL-NCC", "delivered"), ("LU-HCPN", "delivered"),
                      ("NL-NCC", "read"), ("NL-NCC", "acknowledged"), ("BE-NCCN", "escalated")]
    by = {k["centre"]: k for k in rep["kpis"]}
    assert (by["NL-NCC"]["acknowledged"], by["NL-NCC"]["ack_median_s"]) == (1, 120.0)
    assert (by["LU-HCPN"]["escalated"], by["LU-HCPN"]["read_unknown"]) == (1, 1)
    assert (by["BE-NCCN"]["sent"], by["NL-NCC"]["not_sent"]) == (1, 4), "NL-NCC: 4 injects"
    rows = list(csv.DictReader(io.StringIO(report_csv(rep))))
    assert len(rows) == 2 + 11, "two recipients of inject 0, one line per other inject"
    assert rows[0]["acknowledged_by"] == "anna <b>"
    page = report_html(rep, "BE-NCCN")
    assert "anna &lt;b&gt;" in page
    assert "<b>anna" not in page
    assert "EXERCISE" in page
    assert kpis([]) == []
