"""``[escalation]``: who is told, by which channel and when, that a flash or urgent
message of ours waits for a recipient's acknowledgement (:mod:`gateway.protocol.escalation`).

Example::

    [escalation]
    every_seconds = 10

    [escalation.steps]          # seconds after the acknowledgement deadline
    flash = [{ after = 0, channel = "email" }, { after = 300, channel = "webhook" }]
    urgent = [{ after = 0, channel = "email" }]

    [escalation.email]          # SMTP with STARTTLS
    host = "smtp.centre.example"
    port = 587
    sender = "crisisgw@centre.example"
    username = "crisisgw"
    password_file = "/etc/crisisgw/smtp-password"

    [escalation.webhook]        # the SMS/voice gateway
    url = "https://sms.centre.example/v1/page"
    token_file = "/etc/crisisgw/sms-token"

    [[escalation.peers]]        # per peer: its console, and its exercise contacts
    id = "NL-NCC"
    console_url = "https://nl-ncc.example/console"
    notices = true              # NL-NCC's node takes "escalation" messages
    exercise_contacts = [{ name = "Exercise desk", email = "oefening@nl.example",
                           phone = "+31 70 000 0000" }]
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.protocol.escalation import Channel, Contact, Step


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepEntry(_Section):
    """One step: ``after`` seconds after the deadline, over ``channel``."""

    after: float = Field(ge=0, le=7 * 86400)
    channel: Channel


class EmailSection(_Section):
    """The SMTP server escalation e-mails go through (STARTTLS unless told otherwise)."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    sender: Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$")]
    username: str | None = None
    password_file: Path | None = None
    #: STARTTLS on a plain port (587); ``false`` only for a local relay on loopback.
    starttls: bool = True
    #: The CA that signed the server's certificate (default: the system's CAs).
    ca_file: Path | None = None
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> EmailSection:
        if not self.starttls and self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("starttls = false is allowed only for a relay on loopback")
        return self


class WebhookSection(_Section):
    """The SMS/voice gateway: a POST of JSON to ``url`` per call, with a bearer token."""

    url: Annotated[str, Field(pattern=r"^https?://")]
    token_file: Path | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class ExerciseContact(_Section):
    """Someone an exercise or test message escalates to (never real traffic)."""

    name: str = Field(min_length=1, max_length=200)
    email: Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$")] | None = None
    phone: Annotated[str, Field(pattern=r"^\+?[0-9 ()./-]{3,32}$")] | None = None


class EscalationPeer(_Section):
    """What we hold for one peer: its console's address (linked from the notices) and
    the contacts its exercise traffic escalates to."""

    id: str
    console_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    #: Tell the peer of each step with an ``escalation`` message (PROTOCOL.md §6.6):
    #: only for a peer known to take that type (others answer ``unsupported_type``).
    notices: bool = False
    exercise_contacts: tuple[ExerciseContact, ...] = Field(default=(), max_length=50)


class EscalationSection(_Section):
    """Escalation of unacknowledged flash and urgent messages; off without steps."""

    every_seconds: float = Field(default=10.0, gt=0, le=3600)
    #: Per priority, the steps in time order.
    steps: dict[str, tuple[StepEntry, ...]] = Field(default_factory=dict)
    email: EmailSection | None = None
    webhook: WebhookSection | None = None
    peers: tuple[EscalationPeer, ...] = ()

    @field_validator("steps")
    @classmethod
    def _known_priorities_in_order(cls, steps: dict[str, tuple[StepEntry, ...]]
                                   ) -> dict[str, tuple[StepEntry, ...]]:
        for priority, entries in steps.items():
            if priority not in ("flash", "urgent"):
                raise ValueError(f"escalation steps are for flash and urgent, not {priority!r}")
            times = [e.after for e in entries]
            if times != sorted(times):
                raise ValueError(f"the {priority} steps must be in time order")
        return steps

    @model_validator(mode="after")
    def _channels_configured(self) -> EscalationSection:
        used = {e.channel for entries in self.steps.values() for e in entries}
        missing = sorted(c.value for c in used - self.channels())
        if missing:
            raise ValueError(f"escalation steps use {', '.join(missing)} but "
                             f"[escalation.{missing[0]}] is not configured")
        return self

    def plan(self, priority: str) -> tuple[Step, ...]:
        """The steps for ``priority`` (none: it never escalates)."""
        return tuple(Step(after=timedelta(seconds=e.after), channel=e.channel)
                     for e in self.steps.get(priority, ()))

    def peer(self, centre: str) -> EscalationPeer | None:
        """What we hold for ``centre``, if anything."""
        return next((p for p in self.peers if p.id == centre), None)

    def exercise_contacts(self, centre: str) -> tuple[Contact, ...]:
        """The contacts exercise and test traffic to ``centre`` escalates to."""
        peer = self.peer(centre)
        return () if peer is None else tuple(
            Contact(name=c.name, email=c.email, phone=c.phone, available_24_7=True)
            for c in peer.exercise_contacts)

    def channels(self) -> frozenset[Channel]:
        """The channels configured."""
        return frozenset(c for c, section in ((Channel.EMAIL, self.email),
                                              (Channel.WEBHOOK, self.webhook)) if section)
