"""The fallback leg of communication tests: codes, their judgement, the e-mail, the
per-test report and the federation's scorecard (pure), and the sender's service on an
in-memory store."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.errors import RejectedMessage
from gateway.protocol.commcheck import (
    ALPHABET,
    MAX_ATTEMPTS,
    VALID_FOR,
    CodeSent,
    FallbackConfirmation,
    code_digest,
    fallback_mail,
    judge,
    new_code,
    normalize,
)
from gateway.protocol.directory import ContactPoint
from gateway.service.commcheck import fallback_outcome, history_csv, report
from gateway.service.fallback import Fallbacks
from gateway.service.scorecard import fallback_share, scorecard, scorecard_csv, trend_svg
from tests.unit.fake_node import make_settings

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
CHECK = "5f0e3c1a-8d2b-4c7e-9f10-2a3b4c5d6e7f"


def test_a_code_is_ten_characters_of_crockford_base32_in_two_groups() -> None:
    """Every byte value maps into the alphabet; the code reads as XXXXX-XXXXX."""
    code = new_code(bytes(range(246, 256)))
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", code)
    assert set(code.replace("-", "")) <= set(ALPHABET)
    with pytest.raises(ValueError, match="random bytes"):
        new_code(b"short")


def test_codes_compare_without_case_spaces_hyphens_or_look_alike_letters() -> None:
    """What a duty officer types from a phone call or a printout still matches."""
    assert normalize(" 7kq2m - xd94r ") == "7KQ2MXD94R"
    assert normalize("1OIL") == "1011"
    digest = code_digest(CHECK, "NL-NCC", "10ABC-DEFGH")
    assert code_digest(CHECK, "NL-NCC", "loabc defgh") == digest


def test_a_digest_binds_the_code_to_its_test_and_its_peer() -> None:
    """A code cannot be replayed for another test or by another centre."""
    digest = code_digest(CHECK, "NL-NCC", "7KQ2M-XD94R")
    assert code_digest(str(uuid.uuid4()), "NL-NCC", "7KQ2M-XD94R") != digest
    assert code_digest(CHECK, "LU-HCPN", "7KQ2M-XD94R") != digest
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def _sent(code: str = "7KQ2M-XD94R", peer: str = "NL-NCC") -> CodeSent:
    return CodeSent(peer=peer, digest=code_digest(CHECK, peer, code), sent_at=T0)


def test_judge_takes_the_right_code_and_says_why_it_refuses_any_other() -> None:
    """Right code: taken; unknown test, wrong, late, too many tries: each its reason."""
    ok = {"wrong_before": 0, "confirmed": False, "now": T0 + timedelta(hours=1)}
    assert judge(_sent(), "7kq2m xd94r", CHECK, **ok) is None
    assert judge(None, "7KQ2M-XD94R", CHECK, **ok) == (
        "no fallback code was sent to this centre for that test")
    assert judge(_sent(), "7KQ2M-XD94S", CHECK, **ok) == "the code does not match"
    late = {**ok, "now": T0 + VALID_FOR + timedelta(seconds=1)}
    assert judge(_sent(), "7KQ2M-XD94R", CHECK, **late) == "the code has expired"
    tried = {**ok, "wrong_before": MAX_ATTEMPTS}
    assert judge(_sent(), "7KQ2M-XD94R", CHECK, **tried) == (
        f"too many wrong codes for this test ({MAX_ATTEMPTS})")
    assert judge(_sent(), "anything", CHECK, **{**ok, "confirmed": True}) is None


def test_the_mail_carries_the_code_and_the_link_to_the_peers_console() -> None:
    """Subject and text name the sender and the code; the link pre-fills the form."""
    subject, text = fallback_mail(check_id=CHECK, sender="BE-NCCN", peer="NL-NCC",
                                  code="7KQ2M-XD94R",
                                  console_url="https://nl-ncc.example/console/")
    assert subject == "Communication test from BE-NCCN: confirm code 7KQ2M-XD94R"
    assert ("https://nl-ncc.example/console/fallback?from=BE-NCCN&check="
            f"{CHECK}&code=7KQ2M-XD94R") in text
    assert "    7KQ2M-XD94R\n" in text
    _, plain = fallback_mail(check_id=CHECK, sender="BE-NCCN", peer="NL-NCC",
                             code="7KQ2M-XD94R", console_url=None)
    assert "Communication tests page" in plain


def test_a_confirmation_body_is_validated_at_the_edge() -> None:
    """Only a test id, a code of the documented characters and a name pass."""
    FallbackConfirmation(check_id=CHECK, code="7KQ2M-XD94R", confirmed_by="duty")
    for bad in ({"code": "<script>"}, {"code": "abc"}, {"check_id": "x"},
                {"confirmed_by": ""}, {"extra": 1}):
        with pytest.raises(ValidationError):
            FallbackConfirmation.model_validate(
                {"check_id": CHECK, "code": "7KQ2M-XD94R", "confirmed_by": "d", **bad})


def _view(started: str, recipients: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": CHECK, "created": started, "receipts": [],
            "envelope": {"body": {"requested_by": "schedule"}}, "recipients": recipients}


def _recipient(centre: str, state: str, *, delivered: str | None = None,
               acked: str | None = None) -> dict[str, Any]:
    return {"centre": centre, "state": state, "reason": None, "last_error": None,
            "delivered_at": delivered, "acknowledged_at": acked}


def test_a_report_gives_each_peer_its_fallback_leg() -> None:
    """Confirmed (with the time since the test), sent, refused, failed, or none."""
    view = _view("2026-12-01T03:00:00.000Z", [
        _recipient("NL-NCC", "acknowledged", delivered="2026-12-01T03:00:00.020Z",
                   acked="2026-12-01T03:04:00.000Z"),
        _recipient("LU-HCPN", "delivered", delivered="2026-12-01T03:00:00.030Z"),
        _recipient("DE-NW", "delivered", delivered="2026-12-01T03:00:00.040Z"),
        _recipient("FR-COGIC", "delivered", delivered="2026-12-01T03:00:00.050Z")])
    legs = {"NL-NCC": {"contact": "NL duty", "sent_at": "2026-12-01T03:00:01.000Z",
                       "confirmed_at": "2026-12-01T03:07:30.000Z", "confirmed_by": "anna",
                       "wrong": 1},
            "LU-HCPN": {"contact": "LU duty", "sent_at": "2026-12-01T03:00:01.000Z",
                        "wrong": 0},
            "DE-NW": {"contact": "DE duty", "sent_at": "2026-12-01T03:00:01.000Z",
                      "wrong": 2, "last_refusal": "fallback code refused: the code does not match"},
            "FR-COGIC": {"contact": None, "error": "no [escalation.email] configured",
                         "wrong": 0}}
    rep = report(view, T0 + timedelta(hours=1), fallback=legs)
    peers = {p["peer"]: p for p in rep["peers"]}
    assert peers["NL-NCC"]["fallback"] == "confirmed"
    assert peers["NL-NCC"]["fallback_after_s"] == 450.0
    assert peers["NL-NCC"]["fallback_by"] == "anna"
    assert peers["LU-HCPN"]["fallback"] == "sent"
    assert peers["DE-NW"]["fallback"] == "refused"
    assert "does not match" in peers["DE-NW"]["fallback_error"]
    assert peers["FR-COGIC"]["fallback"] == "failed"
    assert peers["FR-COGIC"]["fallback_error"] == "no [escalation.email] configured"
    assert fallback_outcome(None) == "none"
    lines = list(csv.reader(io.StringIO(history_csv([rep]))))
    assert lines[0][-3:] == ["fallback", "fallback_after_s", "fallback_contact"]
    assert ["confirmed", "450.0", "NL duty"] in [line[-3:] for line in lines]


def _rep(quarter_start: str, peers: list[dict[str, Any]]) -> dict[str, Any]:
    month = int(quarter_start[5:7])
    return {"id": str(uuid.uuid4()), "started": quarter_start,
            "quarter": f"{quarter_start[:4]}-Q{(month - 1) // 3 + 1}", "peers": peers}


def _leg(peer: str, rt: float | None, ack: float | None, fallback: str = "none",
         after: float | None = None) -> dict[str, Any]:
    return {"peer": peer, "reached": rt is not None, "round_trip_s": rt,
            "confirmed_after_s": ack, "fallback": fallback, "fallback_after_s": after,
            "pending": False}


def test_the_scorecard_has_a_row_per_quarter_and_centre_with_medians() -> None:
    """Medians over a quarter's tests; the fallback counts only tests that sent a code;
    a peer still pending is left out until its answer is due."""
    reports = [
        _rep("2026-10-02T03:00:00.000Z", [_leg("NL-NCC", 0.02, 240, "confirmed", 450),
                                          _leg("LU-HCPN", None, None, "failed")]),
        _rep("2026-11-02T03:00:00.000Z", [_leg("NL-NCC", 0.04, 120, "sent"),
                                          {**_leg("LU-HCPN", None, None), "pending": True}]),
        _rep("2026-12-02T03:00:00.000Z", [_leg("NL-NCC", 0.03, None)]),
        _rep("2026-07-01T03:00:00.000Z", [_leg("NL-NCC", 0.5, 900, "confirmed", 60)]),
    ]
    rows = {(r["quarter"], r["centre"]): r for r in scorecard(reports)}
    nl = rows[("2026-Q4", "NL-NCC")]
    assert (nl["tests"], nl["reached"], nl["receipt_median_s"]) == (3, 3, 0.03)
    assert (nl["acknowledged"], nl["ack_median_s"]) == (2, 180.0)
    assert (nl["fallback_sent"], nl["fallback_worked"], nl["fallback_median_s"]) == (2, 1, 450.0)
    assert fallback_share(nl) == 50.0
    lu = rows[("2026-Q4", "LU-HCPN")]
    assert (lu["tests"], lu["reached"], lu["receipt_median_s"]) == (1, 0, None)
    assert (lu["fallback_sent"], lu["fallback_worked"]) == (1, 0)
    assert scorecard(reports)[0]["quarter"] == "2026-Q3", "oldest first"
    lines = list(csv.reader(io.StringIO(scorecard_csv(scorecard(reports)))))
    assert lines[0] == ["quarter", "centre", "tests", "reached", "receipt_median_s",
                        "acknowledged", "ack_median_s", "fallback_sent", "fallback_worked",
                        "fallback_median_s"]
    assert ["2026-Q4", "NL-NCC", "3", "3", "0.03", "2", "180.0", "2", "1", "450.0"] in lines


def test_a_trend_chart_is_plain_svg_with_a_line_per_centre_and_escaped_text() -> None:
    """No script, no style; a line joins quarters with values; names are escaped."""
    reports = [_rep("2026-07-01T03:00:00.000Z", [_leg("NL-NCC", 0.5, 9),
                                                 _leg("<b>X</b>", 0.1, 3)]),
               _rep("2026-10-01T03:00:00.000Z", [_leg("NL-NCC", 0.2, 5),
                                                 _leg("<b>X</b>", None, None)])]
    svg = trend_svg(scorecard(reports), "receipt_median_s", title="Receipt", unit="s")
    assert svg.count("<polyline") == 1, "NL-NCC has two points; X one (no line)"
    assert "<b>X</b>" not in svg
    assert "&lt;b&gt;X&lt;/b&gt;" in svg
    assert "<script" not in svg
    assert "style=" not in svg
    assert "2026-Q3" in svg
    assert "2026-Q4" in svg
    share = trend_svg(scorecard(reports), "fallback_share", title="Fallback", unit="%",
                      top=100.0)
    assert "<circle" not in share, "no code was sent: no point"


class _Store:
    """The fallback events in memory, judged as the audit-log store judges them."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, str], CodeSent] = {}
        self.failed: list[tuple[str, str, str]] = []
        self.returned_: list[tuple[str, str, str, str | None]] = []

    async def code_sent(self, check_id: str, peer: str, *, contact: str, address: str,
                        digest: str, at: datetime) -> None:
        self.sent[(check_id, peer)] = CodeSent(peer=peer, digest=digest, sent_at=at)

    async def code_failed(self, check_id: str, peer: str, *, contact: str | None,
                          error: str, at: datetime) -> None:
        self.failed.append((check_id, peer, error))

    async def returned(self, check_id: str, peer: str, *, message_id: str, by: str,
                       refused: str | None, at: datetime) -> None:
        self.returned_.append((check_id, peer, message_id, refused))

    async def state(self, check_id: str, peer: str) -> tuple[CodeSent | None, int, bool]:
        mine = [r for r in self.returned_ if r[:2] == (check_id, peer)]
        return (self.sent.get((check_id, peer)), len({r[2] for r in mine if r[3]}),
                any(r[3] is None for r in mine))

    async def fallbacks(self, check_ids: Any) -> dict[str, dict[str, dict[str, Any]]]:
        return {}


class _Directory:
    async def all(self) -> dict[str, Any]:
        entry = ContactPoint.model_validate({
            "field": "civil-protection", "name": "NL duty officer", "phone": "+31 70 1",
            "email": "duty@nl.example", "languages": ["nl"], "available_24_7": True,
            "confirmed": "2026-11-30"})

        class Stored:
            entries = (entry,)
        return {"NL-NCC": Stored()}


class _Mail:
    def __init__(self) -> None:
        self.mails: list[tuple[str, str, str]] = []

    async def send(self, address: str, subject: str, text: str) -> str | None:
        self.mails.append((address, subject, text))
        return None


async def test_the_sender_mails_a_code_keeps_its_digest_and_takes_it_back_once() -> None:
    """The code goes to the peer's contact, only its digest is kept; a wrong code is
    refused (policy) and counted, the right one taken, a repeat changes nothing; a peer
    without an e-mail contact is recorded as not sent."""
    settings = make_settings()
    settings = settings.model_copy(update={"escalation": settings.escalation.model_copy(
        update={"email": _email_section()})})
    store, mail = _Store(), _Mail()
    fallbacks = Fallbacks(me="BE-NCCN", settings=lambda: settings, store=store,
                          directory=_Directory(), inbox=None,  # type: ignore[arg-type]
                          submitter=None, email=lambda _s: mail,  # type: ignore[arg-type]
                          clock=lambda: T0, random=lambda n: bytes(range(n)))
    await fallbacks.send_codes(CHECK, ("NL-NCC", "LU-HCPN"))
    assert [m[0] for m in mail.mails] == ["duty@nl.example"]
    code = new_code(bytes(range(10)))
    assert code in mail.mails[0][1]
    assert store.sent[(CHECK, "NL-NCC")].digest == code_digest(CHECK, "NL-NCC", code)
    assert store.failed == [(CHECK, "LU-HCPN",
                             "no contact point with an e-mail address in its directory")]

    def body(c: str) -> FallbackConfirmation:
        return FallbackConfirmation(check_id=CHECK, code=c, confirmed_by="anna")

    with pytest.raises(RejectedMessage) as refused:
        await fallbacks.judge("NL-NCC", "m1", body("00000-00000"))
    assert (refused.value.reason, refused.value.detail) == (
        "policy", "fallback code refused: the code does not match")
    with pytest.raises(RejectedMessage):
        await fallbacks.judge("LU-HCPN", "m2", body(code))  # the code went to NL-NCC
    await fallbacks.judge("NL-NCC", "m3", body(code.lower()))
    await fallbacks.judge("NL-NCC", "m4", body("00000-00000"))  # already confirmed
    assert [(r[1], r[3] is None) for r in store.returned_] == [
        ("NL-NCC", False), ("LU-HCPN", False), ("NL-NCC", True)]


def _email_section() -> Any:
    from gateway.config_escalation import EmailSection  # noqa: PLC0415

    return EmailSection(host="127.0.0.1", port=2525, sender="gw@be.example")
