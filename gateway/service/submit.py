"""Submission: validate, address, seal and store a message in the outbox (one commit)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from gateway import failpoints
from gateway.config_operations import PolicySection
from gateway.errors import PolicyRefused
from gateway.protocol.alert import (
    Alert,
    alert_json,
    default_priority,
    default_tlp,
    mode_for_status,
)
from gateway.protocol.envelope import MAX_LIFETIME, PROTOCOL_VERSION, EnvelopeHeader
from gateway.protocol.keys import SigningKey
from gateway.protocol.messages import AlertEnvelope, SitrepEnvelope
from gateway.protocol.signing import seal
from gateway.protocol.sitrep import Sitrep, sitrep_json
from gateway.protocol.types import (
    FrozenModel,
    GroupName,
    IncidentId,
    Mode,
    Priority,
    Tlp,
    UtcTime,
    parse_time,
)
from gateway.service.directory import Directory
from gateway.service.policy import check_outgoing
from gateway.service.ports import Clock, IdempotencyKey, Ledger, OutgoingMessage


class SitrepSubmission(FrozenModel):
    """What a centre system POSTs to ``/v1/sitreps``."""

    to: tuple[str, ...] = Field(min_length=1, max_length=64,
                                description="Centre ids and group names")
    tlp: Tlp
    priority: Priority = Priority.ROUTINE
    mode: Mode = Mode.ACTUAL
    incident: IncidentId | None = Field(
        default=None, description="Incident reference; defaults to sitrep.incident.id")
    expires: UtcTime | None = Field(default=None, description="Defaults to the node's TTL")
    releasable: tuple[GroupName, ...] = Field(
        default=(), description="Groups the content is cleared for, e.g. [\"eu\"]")
    sitrep: Sitrep


class AlertSubmission(FrozenModel):
    """What a centre system POSTs to ``/v1/alerts`` as JSON (CAP XML maps onto it).

    Unset routing fields are derived from the alert: ``mode`` from its status, ``tlp``
    from its scope, ``priority`` from urgency and severity, ``incident`` from its
    ``incidents`` (first entry) or its identifier.
    """

    to: tuple[str, ...] = Field(min_length=1, max_length=64,
                                description="Centre ids and group names")
    tlp: Tlp | None = None
    priority: Priority | None = None
    mode: Mode | None = None
    incident: IncidentId | None = None
    expires: UtcTime | None = None
    releasable: tuple[GroupName, ...] = ()
    alert: Alert


def alert_incident(alert: Alert) -> str:
    """The incident reference of an alert: its first ``incidents`` entry, else its
    identifier, reduced to the characters an incident id allows."""
    candidates = (alert.incidents or "").split() or [alert.identifier]
    cleaned = re.sub(r"[^A-Za-z0-9._:/-]", "-", candidates[0]).lstrip("._:/-")
    return (cleaned or "CAP")[:64]


def outgoing(envelope: dict[str, Any], key: SigningKey, recipients: tuple[str, ...],
             answers: tuple[str, str] | None = None) -> OutgoingMessage:
    """Seal a JSON-ready envelope into an outbox record."""
    sealed = seal(envelope, key)
    return OutgoingMessage(
        id=envelope["id"], type=envelope["type"],
        created=parse_time(envelope["created"]), expires=parse_time(envelope["expires"]),
        priority=envelope["priority"], mode=envelope["mode"], tlp=envelope["tlp"],
        incident=envelope.get("incident"), digest=sealed.digest, wire=sealed.wire,
        recipients=recipients, answers=answers,
    )


def _to_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class Submitter:
    """Turns validated submissions into durable, signed outbox messages."""

    def __init__(self, *, me: str, key: SigningKey, directory: Directory, ledger: Ledger,
                 clock: Clock, default_ttl: timedelta, on_submitted: Callable[[], None],
                 policy: PolicySection | None = None) -> None:
        self._me, self._key, self._directory = me, key, directory
        self._policy = policy or PolicySection()
        self._ledger, self._clock, self._ttl = ledger, clock, default_ttl
        self._on_submitted = on_submitted

    def reconfigure(self, *, directory: Directory, policy: PolicySection,
                    key: SigningKey | None = None) -> None:
        """Use a new peer directory and release policy (configuration reloaded), or a
        new signing key (rotated)."""
        self._directory, self._policy = directory, policy
        if key is not None:
            self._key = key

    async def submit_sitrep(
        self, sub: SitrepSubmission, idempotency: IdempotencyKey | None = None
    ) -> tuple[str, bool]:
        """Store the sitrep for every recipient; returns (id, created).

        Raises :class:`PolicyRefused` for unknown recipients or a bad expiry.
        The message is durable when this returns.
        """
        return await self.submit_body(
            msg_type="sitrep", model=SitrepEnvelope, body=sub.sitrep,
            body_json=sitrep_json(sub.sitrep), to=sub.to, tlp=sub.tlp, priority=sub.priority,
            mode=sub.mode, incident=sub.incident or sub.sitrep.incident.id,
            expires=sub.expires, releasable=sub.releasable, idempotency=idempotency)

    async def submit_alert(
        self, sub: AlertSubmission, idempotency: IdempotencyKey | None = None
    ) -> tuple[str, bool]:
        """Store a CAP alert for every recipient; see :meth:`submit_sitrep`.

        Raises :class:`PolicyRefused` for a Draft alert, or a ``mode`` that
        contradicts the alert's status.
        """
        try:
            mode = mode_for_status(sub.alert.status)
        except ValueError as exc:
            raise PolicyRefused("Draft alert", str(exc),
                                  [{"loc": ["alert", "status"], "msg": str(exc)}]) from exc
        if sub.mode is not None and sub.mode != mode:
            raise PolicyRefused("Mode contradicts status",
                f"CAP status {sub.alert.status} means mode {mode}, not {sub.mode}",
                [{"loc": ["mode"], "msg": "contradicts alert.status"}])
        return await self.submit_body(
            msg_type="alert", model=AlertEnvelope, body=sub.alert,
            body_json=alert_json(sub.alert), to=sub.to, tlp=sub.tlp or default_tlp(sub.alert),
            priority=sub.priority or default_priority(sub.alert), mode=mode,
            incident=sub.incident or alert_incident(sub.alert), expires=sub.expires,
            releasable=sub.releasable, idempotency=idempotency)

    async def submit_body(
        self, *, msg_type: str, model: type[EnvelopeHeader], body: BaseModel,
        body_json: dict[str, Any], to: tuple[str, ...], tlp: Tlp, priority: Priority,
        mode: Mode, incident: str | None, expires: datetime | None,
        idempotency: IdempotencyKey | None, releasable: tuple[str, ...] = (),
    ) -> tuple[str, bool]:
        """Address, seal and store any message type; see :meth:`submit_sitrep`.

        Raises :class:`PolicyRefused` naming the rule when the release policy
        refuses a recipient.
        """
        message, now = self.seal_body(
            msg_type=msg_type, model=model, body=body, body_json=body_json, to=to, tlp=tlp,
            priority=priority, mode=mode, incident=incident, expires=expires,
            releasable=releasable)
        failpoints.hit("submit.before_commit")
        result = await self._ledger.outbox.submit(message, idempotency, now)
        self._on_submitted()
        return result

    def seal_body(
        self, *, msg_type: str, model: type[EnvelopeHeader], body: BaseModel,
        body_json: dict[str, Any], to: tuple[str, ...], tlp: Tlp, priority: Priority,
        mode: Mode, incident: str | None, expires: datetime | None,
        releasable: tuple[str, ...] = (),
    ) -> tuple[OutgoingMessage, datetime]:
        """Address and seal a message without storing it; returns it with the time it
        was made. For a caller that stores it with other changes, in one transaction
        (a key rotation). Raises :class:`PolicyRefused` like :meth:`submit_body`."""
        routes = self._directory.resolve_routes(to)
        violations = check_outgoing(self._policy, self._directory.peers, routes,
                                    tlp=Tlp(tlp).value, mode=Mode(mode).value,
                                    releasable=releasable)
        if violations:
            raise PolicyRefused(
                "Release policy", "; ".join(f"{v.rule}: {v.detail}" for v in violations),
                [{"loc": ["to"], "msg": f"{v.rule}: {v.detail}", "rule": v.rule,
                  "peer": v.peer} for v in violations])
        recipients = tuple(routes)
        now = _to_ms(self._clock.now())  # the wire carries milliseconds: decide on what is sent
        expiry = _to_ms(expires or now + self._ttl)
        if expiry <= now or expiry - now > MAX_LIFETIME:
            raise PolicyRefused("Invalid expiry", f"expires must be in the future and within "
                f"{MAX_LIFETIME.days} days", [{"loc": ["expires"], "msg": "out of range",
                                               "code": "expiry_out_of_range",
                                               "days": MAX_LIFETIME.days}])
        # Validate the whole envelope as a receiver will: never sign what peers refuse.
        envelope = model.model_validate({
            "v": PROTOCOL_VERSION, "id": str(uuid.uuid4()), "type": msg_type, "from": self._me,
            "to": list(recipients), "created": now, "expires": expiry, "mode": mode,
            "tlp": tlp, "priority": priority, "incident": incident,
            "releasable": list(releasable) or None, "body": body,
        })
        wire_env = envelope.model_dump(mode="json", by_alias=True, exclude={"body"},
                                       exclude_none=True)
        wire_env["body"] = body_json
        return outgoing(wire_env, self._key, recipients), now
