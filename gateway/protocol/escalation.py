"""Escalation when nobody acknowledges (pure): which steps are due, to whom, saying what.

A flash or urgent message of ours that a recipient has not acknowledged by its deadline
(``[console] deadlines``, counted from submission) escalates step by step, each step a
delay after the deadline and a channel (e-mail or the SMS/voice webhook). A step goes to
the recipient centre's contact points from its directory, those of the message's field
of work when it has contacts for it (else all its contacts), 24/7 ones first; exercise
and test traffic goes only to the exercise contacts we hold for that centre. Steps stop
as soon as the delivery leaves the unacknowledged states.

The notice names the message (id, type, priority, sender, when) and links to the
recipient's console; it never carries the message's title, text or areas, whatever its
TLP: only the fact that something waits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import Field

from gateway.protocol.directory import ContactPoint, FieldOfWork
from gateway.protocol.types import FrozenModel, MessageId, UtcTime, format_time

#: The message type that tells a recipient a sender escalated (PROTOCOL.md §6.6).
ESCALATION_TYPE = "escalation"

#: Delivery states in which a message still waits for the recipient's acknowledgement.
WAITING = frozenset({"queued", "sent", "delivered"})
#: A failed step is tried again after this long.
RETRY_AFTER = timedelta(seconds=60)

#: CAP categories and the field of work whose contacts an alert escalates to.
CAP_FIELDS: Mapping[str, FieldOfWork] = {
    "Health": FieldOfWork.PUBLIC_HEALTH,
    "CBRNE": FieldOfWork.NUCLEAR_RADIOLOGICAL,
    "Security": FieldOfWork.PUBLIC_ORDER_SECURITY,
    "Infra": FieldOfWork.CRITICAL_INFRASTRUCTURE,
    "Geo": FieldOfWork.CIVIL_PROTECTION, "Met": FieldOfWork.CIVIL_PROTECTION,
    "Safety": FieldOfWork.CIVIL_PROTECTION, "Rescue": FieldOfWork.CIVIL_PROTECTION,
    "Fire": FieldOfWork.CIVIL_PROTECTION, "Env": FieldOfWork.CIVIL_PROTECTION,
    "Transport": FieldOfWork.CRITICAL_INFRASTRUCTURE,
}


class Channel(StrEnum):
    """How a step reaches a contact."""

    EMAIL = "email"
    WEBHOOK = "webhook"


class EscalationNotice(FrozenModel):
    """Body of an ``escalation`` message: the sender took a step for one of its messages
    that the recipient has not acknowledged (nothing of that message's content)."""

    message_id: MessageId = Field(description="The message that waits")
    step: int = Field(ge=0, le=99, description="Which step of the sender's plan (0 first)")
    channel: Channel
    contact: str = Field(min_length=1, max_length=200,
                         description="Whom the step reached: a contact point's name")
    at: UtcTime = Field(description="When the step went out")


@dataclass(frozen=True, slots=True)
class Step:
    """One step: ``after`` the deadline, over ``channel``."""

    after: timedelta
    channel: Channel


@dataclass(frozen=True, slots=True)
class Contact:
    """Whom a step reaches: a directory contact point or an exercise contact."""

    name: str
    email: str | None
    phone: str | None
    available_24_7: bool


@dataclass(frozen=True, slots=True)
class Waiting:
    """One of our messages not yet acknowledged by one recipient."""

    message_id: str
    recipient: str
    type: str
    priority: str
    mode: str
    submitted_at: datetime
    state: str
    field: FieldOfWork | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """A step already tried for one delivery and one address."""

    recipient: str
    step: int
    address: str
    ok: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class Action:
    """A step to take now: send ``channel`` to ``contact`` at ``address``."""

    message_id: str
    recipient: str
    step: int
    channel: Channel
    contact: Contact
    address: str


def contacts_for(entries: Sequence[ContactPoint], field: FieldOfWork | None
                 ) -> list[Contact]:
    """A centre's contacts for a message of ``field``: that field's when it has any (else
    all), 24/7 ones first, then in their directory order; one per e-mail address."""
    chosen = [e for e in entries if field is not None and e.field == field] or list(entries)
    chosen.sort(key=lambda e: not e.available_24_7)  # stable: the directory's order within
    seen: set[str] = set()
    out = []
    for e in chosen:
        if e.email.lower() in seen:
            continue
        seen.add(e.email.lower())
        out.append(Contact(name=e.name, email=e.email, phone=e.phone,
                           available_24_7=e.available_24_7))
    return out


def address_of(contact: Contact, channel: Channel) -> str | None:
    """Where ``channel`` reaches ``contact`` (None: it cannot)."""
    return contact.email if channel is Channel.EMAIL else contact.phone


def due(w: Waiting, steps: Sequence[Step], deadline: timedelta, *,
        contacts: Sequence[Contact], done: Iterable[Done], now: datetime) -> list[Action]:
    """The actions due now for ``w``: each step whose time has come, to each contact it
    can reach, unless already sent there (or tried and failed less than
    :data:`RETRY_AFTER` ago). Nothing once the delivery no longer waits."""
    if w.state not in WAITING:
        return []
    sent: set[tuple[int, str]] = set()
    failed: dict[tuple[int, str], datetime] = {}
    for d in done:
        if d.recipient != w.recipient:
            continue
        key = (d.step, d.address)
        if d.ok:
            sent.add(key)
        else:
            failed[key] = max(d.at, failed.get(key, d.at))
    actions = []
    start = w.submitted_at + deadline
    for index, step in enumerate(steps):
        if now < start + step.after:
            break  # steps are kept in time order
        for contact in contacts:
            address = address_of(contact, step.channel)
            if address is None or (index, address) in sent:
                continue
            last = failed.get((index, address))
            if last is not None and now - last < RETRY_AFTER:
                continue
            actions.append(Action(message_id=w.message_id, recipient=w.recipient, step=index,
                                  channel=step.channel, contact=contact, address=address))
    return actions


def notice(w: Waiting, sender: str, deadline: timedelta, console_url: str | None,
           *, exercise: bool) -> tuple[str, str]:
    """Subject and text of the notice for ``w``: the fact that it waits, no content."""
    tag = "[EXERCISE] " if exercise else ""
    kind = "CAP alert" if w.type == "alert" else w.type
    subject = (f"{tag}{w.priority.upper()} {kind} from {sender} waits for acknowledgement")
    seconds = int(deadline.total_seconds())
    within = f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"
    lines = [
        f"{tag}A {w.priority} {kind} from {sender} to {w.recipient} has not been "
        f"acknowledged within {within}.",
        "",
        f"Message: {w.message_id}",
        f"Sent: {format_time(w.submitted_at)}",
        f"State at {w.recipient}: {w.state}",
    ]
    if console_url:
        lines += ["", f"Open it: {console_url.rstrip('/')}/messages/{w.message_id}"]
    lines += ["", "This notice carries no content of the message. Please acknowledge it "
              "in the console."]
    return subject, "\n".join(lines)
