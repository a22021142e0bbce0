"""Escalation when nobody acknowledges: the pure rules (gateway.protocol.escalation) and
the ``[escalation]`` section."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from gateway.config_escalation import EscalationSection
from gateway.protocol.directory import ContactPoint, FieldOfWork
from gateway.protocol.escalation import (
    RETRY_AFTER,
    Channel,
    Contact,
    Done,
    EscalationNotice,
    Step,
    Waiting,
    contacts_for,
    due,
    notice,
)
from gateway.protocol.messages import ENVELOPE_TYPES, EscalationEnvelope

T0 = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
DEADLINE = timedelta(minutes=5)
STEPS = (Step(timedelta(0), Channel.EMAIL), Step(timedelta(minutes=2), Channel.WEBHOOK))


def _point(name: str, field: FieldOfWork, *, always: bool, email: str | None = None
           ) -> ContactPoint:
    return ContactPoint(field=field, name=name, phone="+31 70 000 00 00",
                        email=email or f"{name.lower().replace(' ', '.')}@nl.example",
                        languages=("nl",), available_24_7=always, confirmed=date(2026, 11, 1))


DIRECTORY = (
    _point("Day desk", FieldOfWork.PUBLIC_HEALTH, always=False),
    _point("Health 24/7", FieldOfWork.PUBLIC_HEALTH, always=True),
    _point("Duty officer", FieldOfWork.CIVIL_PROTECTION, always=True),
    _point("Duty again", FieldOfWork.CIVIL_PROTECTION, always=False,
           email="Health.24/7@nl.example"),
)


def _waiting(state: str = "delivered", **kw: object) -> Waiting:
    values: dict[str, object] = {
        "message_id": "m-1", "recipient": "NL-NCC", "type": "sitrep", "priority": "flash",
        "mode": "actual", "submitted_at": T0, "state": state}
    values.update(kw)
    return Waiting(**values)  # type: ignore[arg-type]


def test_contacts_of_the_field_first_24_7_then_the_rest_once_per_address() -> None:
    health = contacts_for(DIRECTORY, FieldOfWork.PUBLIC_HEALTH)
    assert [c.name for c in health] == ["Health 24/7", "Day desk"]
    every = contacts_for(DIRECTORY, None)  # a sitrep names no field: every contact
    assert [c.name for c in every] == ["Health 24/7", "Duty officer", "Day desk"]
    # a field the centre has no contact for: every contact rather than nobody
    assert [c.name for c in contacts_for(DIRECTORY, FieldOfWork.CYBER)] == [
        c.name for c in every]
    assert contacts_for((), None) == []


def test_nothing_before_the_deadline_then_each_step_at_its_time() -> None:
    contacts = contacts_for(DIRECTORY, FieldOfWork.CIVIL_PROTECTION)
    w = _waiting()
    assert due(w, STEPS, DEADLINE, contacts=contacts, done=(),
               now=T0 + DEADLINE - timedelta(seconds=1)) == []
    at_deadline = due(w, STEPS, DEADLINE, contacts=contacts, done=(), now=T0 + DEADLINE)
    assert [(a.step, a.channel, a.address) for a in at_deadline] == [
        (0, Channel.EMAIL, c.email) for c in contacts]
    later = T0 + DEADLINE + timedelta(minutes=2)
    both = due(w, STEPS, DEADLINE, contacts=contacts, done=(), now=later)
    assert [(a.step, a.channel) for a in both] == [(0, Channel.EMAIL)] * len(contacts) + [
        (1, Channel.WEBHOOK)] * len(contacts)
    assert {a.address for a in both if a.channel is Channel.WEBHOOK} == {"+31 70 000 00 00"}


def test_a_step_sent_is_not_sent_again_a_failed_one_is_retried_later() -> None:
    contacts = [Contact(name="Duty", email="duty@nl.example", phone=None, available_24_7=True)]
    w = _waiting()
    now = T0 + DEADLINE
    sent = [Done(recipient="NL-NCC", step=0, address="duty@nl.example", ok=True, at=now)]
    assert due(w, STEPS, DEADLINE, contacts=contacts, done=sent, now=now) == []
    other_recipient = [Done(recipient="BE-NCCN", step=0, address="duty@nl.example", ok=True,
                            at=now)]
    assert len(due(w, STEPS, DEADLINE, contacts=contacts, done=other_recipient, now=now)) == 1
    failed = [Done(recipient="NL-NCC", step=0, address="duty@nl.example", ok=False, at=now)]
    assert due(w, STEPS, DEADLINE, contacts=contacts, done=failed,
               now=now + RETRY_AFTER - timedelta(seconds=1)) == []
    assert len(due(w, STEPS, DEADLINE, contacts=contacts, done=failed,
                   now=now + RETRY_AFTER)) == 1
    # a contact without a phone number is not called
    assert [a.channel for a in due(w, STEPS, DEADLINE, contacts=contacts, done=sent,
                                   now=now + timedelta(hours=1))] == []


@pytest.mark.parametrize("state", ["acknowledged", "rejected", "expired"])
def test_no_step_once_the_delivery_no_longer_waits(state: str) -> None:
    contacts = contacts_for(DIRECTORY, None)
    assert due(_waiting(state), STEPS, DEADLINE, contacts=contacts, done=(),
               now=T0 + timedelta(days=1)) == []


def test_the_notice_names_the_message_and_never_its_content() -> None:
    w = _waiting(type="alert", priority="urgent")
    subject, text = notice(w, "BE-NCCN", DEADLINE, "https://nl-ncc.example/console/",
                           exercise=False)
    assert subject == "URGENT CAP alert from BE-NCCN waits for acknowledgement"
    for named in ("m-1", "NL-NCC", "5 min"):
        assert named in text
    assert "https://nl-ncc.example/console/messages/m-1" in text
    assert "EXERCISE" not in subject + text
    drill, drill_text = notice(_waiting(), "BE-NCCN", DEADLINE, None, exercise=True)
    assert drill.startswith("[EXERCISE] FLASH sitrep")
    assert "http" not in drill_text  # no console known: no link


def test_the_section_refuses_routine_steps_out_of_order_or_without_a_channel() -> None:
    email = {"host": "127.0.0.1", "sender": "gw@be.example", "starttls": False}
    ok = EscalationSection.model_validate(
        {"steps": {"flash": [{"after": 0, "channel": "email"}]}, "email": email})
    assert ok.plan("flash") == (Step(timedelta(0), Channel.EMAIL),)
    assert ok.plan("urgent") == ()
    bad = [
        {"steps": {"routine": [{"after": 0, "channel": "email"}]}, "email": email},
        {"steps": {"flash": [{"after": 60, "channel": "email"},
                             {"after": 0, "channel": "email"}]}, "email": email},
        {"steps": {"flash": [{"after": 0, "channel": "webhook"}]}, "email": email},
        {"email": {**email, "host": "smtp.be.example"}},  # plaintext SMTP off loopback
    ]
    for raw in bad:
        with pytest.raises(ValidationError):
            EscalationSection.model_validate(raw)


def test_exercise_contacts_are_the_configured_ones_only() -> None:
    section = EscalationSection.model_validate({"peers": [
        {"id": "NL-NCC", "exercise_contacts": [{"name": "Oefenleiding",
                                                "email": "oefening@nl.example"}]}]})
    assert [c.email for c in section.exercise_contacts("NL-NCC")] == ["oefening@nl.example"]
    assert section.exercise_contacts("LU-HCPN") == ()


def test_the_notice_body_is_closed_and_bounded() -> None:
    ok = {"message_id": "0b9c8f66-3a52-4d0e-9a47-5d1f1e2c7a10", "step": 0,
          "channel": "email", "contact": "NL duty officer", "at": "2026-12-04T03:12:05.000Z"}
    notice = EscalationNotice.model_validate(ok)
    assert notice.channel is Channel.EMAIL
    assert notice.at == datetime(2026, 12, 4, 3, 12, 5, tzinfo=UTC)
    for bad in ({**ok, "channel": "pigeon"}, {**ok, "contact": "x" * 201},
                {**ok, "message_id": "not-a-uuid"}, {**ok, "step": 100},
                {**ok, "text": "the message's content"}, {**ok, "contact": ""}):
        with pytest.raises(ValidationError):
            EscalationNotice.model_validate(bad)
    envelope = ENVELOPE_TYPES["escalation"]
    assert envelope is EscalationEnvelope
