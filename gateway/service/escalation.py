"""Escalation over a second channel when nobody acknowledges (:mod:`gateway.protocol.escalation`).

Every ``[escalation] every_seconds``, on the instance holding the periodic jobs' lease,
the escalator reads our flash and urgent messages that a recipient has not acknowledged
within the window in which a step can fall due, works out the steps due now, sends them
(e-mail, webhook) and keeps each in the audit log, sent or failed. A delivery
acknowledged, refused or expired leaves the window of what waits, so its steps stop.
A crash between a send and its record sends that step again at the next pass: a contact
may get a notice twice, never none.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from gateway.config import Settings
from gateway.config_escalation import EmailSection, WebhookSection
from gateway.errors import GatewayError
from gateway.protocol.directory import FieldOfWork
from gateway.protocol.escalation import (
    CAP_FIELDS,
    Action,
    Channel,
    Contact,
    EscalationNotice,
    Waiting,
    contacts_for,
    due,
    notice,
)
from gateway.service.ports import DirectoryStore
from gateway.service.ports_jobs import EscalationStore

log = structlog.get_logger(__name__)
#: After its last step, a delivery is still looked at this long (failed steps retried).
AFTER_LAST = timedelta(hours=1)


class EmailChannel(Protocol):
    """Sends one e-mail; None when taken, else why not."""

    async def send(self, address: str, subject: str, text: str) -> str | None:
        """Mail ``text`` to ``address``."""
        ...


class WebhookChannel(Protocol):
    """Calls the SMS/voice gateway once; None when taken, else why not."""

    async def send(self, payload: dict[str, object]) -> str | None:
        """Post ``payload``."""
        ...


def field_of(w: Waiting, wire: bytes) -> FieldOfWork | None:
    """The field of work of a message: a CAP alert's first category that names one
    (sitreps carry none: they escalate to every contact of the centre)."""
    if w.type != "alert":
        return None
    try:
        body = json.loads(wire)["envelope"]["body"]
        for info in body.get("info", ()):
            for category in info.get("categories", ()):
                if category in CAP_FIELDS:
                    return CAP_FIELDS[category]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None


class Escalator:
    """Takes the escalation steps that are due."""

    def __init__(self, *, me: str, settings: Callable[[], Settings], store: EscalationStore,
                 directory: DirectoryStore,
                 email: Callable[[EmailSection], EmailChannel],
                 webhook: Callable[[WebhookSection], WebhookChannel],
                 clock: Callable[[], datetime],
                 tell: Callable[[Waiting, EscalationNotice], Awaitable[None]] | None = None
                 ) -> None:
        """``email`` and ``webhook`` make a channel of the current configuration's section
        (taken anew at each pass, so a reloaded configuration applies at once)."""
        self._me, self._settings, self._store = me, settings, store
        self._directory, self._make_email, self._make_webhook = directory, email, webhook
        self._now = clock
        self._tell = tell

    def _window(self, s: Settings, priorities: list[str]) -> tuple[timedelta, timedelta]:
        """(shortest deadline, longest deadline + last step + AFTER_LAST)."""
        deadlines = [timedelta(seconds=s.console.deadlines.get(p, 14400.0)) for p in priorities]
        last = [d + s.escalation.plan(p)[-1].after + AFTER_LAST
                for p, d in zip(priorities, deadlines, strict=True)]
        return min(deadlines), max(last)

    async def run_once(self) -> list[tuple[Action, str | None]]:
        """One pass: the steps taken now, each with None or why it failed."""
        s = self._settings()
        esc = s.escalation
        priorities = [p for p in ("flash", "urgent") if esc.plan(p)]
        if not priorities:
            return []
        now = self._now()
        first, horizon = self._window(s, priorities)
        waiting = await self._store.waiting(priorities, now - horizon, now - first)
        if not waiting:
            return []
        done = await self._store.done([w.message_id for w, _ in waiting])
        directory = await self._directory.all()
        taken = []
        for w, wire in waiting:
            deadline = timedelta(seconds=s.console.deadlines.get(w.priority, 14400.0))
            exercise = w.mode != "actual"
            contacts: list[Contact] | tuple[Contact, ...]
            if exercise:  # never a real contact for exercise or test traffic
                contacts = esc.exercise_contacts(w.recipient)
            else:
                stored = directory.get(w.recipient)
                contacts = contacts_for(stored.entries if stored else (), field_of(w, wire))
            actions = due(w, esc.plan(w.priority), deadline, contacts=contacts,
                          done=done.get(w.message_id, ()), now=now)
            for action in actions:
                error = await self._send(action, w, deadline, exercise=exercise)
                try:
                    await self._store.record(action, error, self._now())
                except GatewayError as exc:
                    log.error("escalation_not_recorded", message_id=w.message_id,
                              error=str(exc))
                    continue
                log.info("escalation_step", message_id=w.message_id, recipient=w.recipient,
                         step=action.step, channel=action.channel.value,
                         contact=action.contact.name, ok=error is None, error=error)
                taken.append((action, error))
                if error is None:
                    await self._notice(w, action)
        return taken

    async def _notice(self, w: Waiting, action: Action) -> None:
        """Tell the recipient's node of a step taken, if it takes such notices."""
        peer = self._settings().escalation.peer(w.recipient)
        if self._tell is None or peer is None or not peer.notices:
            return
        try:
            await self._tell(w, EscalationNotice(
                message_id=w.message_id, step=action.step, channel=action.channel,
                contact=action.contact.name[:200], at=self._now()))
        except GatewayError as exc:
            log.warning("escalation_notice_failed", message_id=w.message_id,
                        recipient=w.recipient, error=str(exc))

    async def _send(self, action: Action, w: Waiting, deadline: timedelta, *,
                    exercise: bool) -> str | None:
        peer = self._settings().escalation.peer(w.recipient)
        subject, text = notice(w, self._me, deadline, peer.console_url if peer else None,
                               exercise=exercise)
        esc = self._settings().escalation
        if action.channel is Channel.EMAIL:
            if esc.email is None:
                return "no [escalation.email] configured"
            return await self._make_email(esc.email).send(action.address, subject, text)
        if esc.webhook is None:
            return "no [escalation.webhook] configured"
        payload: dict[str, Any] = {
            "to": action.address, "name": action.contact.name, "text": subject,
            "message_id": w.message_id, "priority": w.priority, "sender": self._me,
            "recipient": w.recipient, "exercise": exercise}
        return await self._make_webhook(esc.webhook).send(payload)

