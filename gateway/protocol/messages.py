"""Typed message envelopes and admission of verified input (pure).

:func:`admit` is the second half of reception: after :func:`signing.open_signed` has
proved who sent the bytes, it checks version, type, schema, addressing, key validity
and freshness, each failure with a documented reason code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, ValidationError, model_validator

from gateway.errors import RejectedMessage
from gateway.protocol import reasons
from gateway.protocol.alert import Alert
from gateway.protocol.commcheck import CommCheck, FallbackConfirmation
from gateway.protocol.directory import DirectoryUpdate
from gateway.protocol.envelope import (
    CLOCK_SKEW,
    DEDUP_WINDOW,
    SUPPORTED_VERSIONS,
    EnvelopeHeader,
)
from gateway.protocol.escalation import EscalationNotice
from gateway.protocol.keyupdate import KeyUpdate
from gateway.protocol.receipts import ReceiptEnvelope
from gateway.protocol.signing import Verified, key_problem
from gateway.protocol.sitrep import Sitrep
from gateway.protocol.types import UUID_PATTERN, Mode

_UUID_RE = re.compile(UUID_PATTERN)


class SitrepEnvelope(EnvelopeHeader):
    """An envelope of type ``sitrep``."""

    type: Literal["sitrep"]
    body: Sitrep


class AlertEnvelope(EnvelopeHeader):
    """An envelope of type ``alert``: a CAP 1.2 alert carried as JSON."""

    type: Literal["alert"]
    body: Alert


def _test_mode_schema(schema: dict[str, Any], cls: type) -> None:
    what: str = getattr(cls, "WHAT", "")
    schema["properties"].update(
        mode={"const": "test", "description": f"{what.capitalize()} is sent in test mode"})


class _TestModeEnvelope(EnvelopeHeader):
    """An envelope whose type is only ever sent in ``test`` mode."""

    model_config = ConfigDict(json_schema_extra=_test_mode_schema)
    #: What the type is, for the schema and the refusal ("a communication test").
    WHAT: ClassVar[str] = "this message"

    @model_validator(mode="after")
    def _test_mode(self) -> _TestModeEnvelope:
        if self.mode is not Mode.TEST:
            raise ValueError(f"{self.WHAT} is sent in test mode")
        return self


class CommCheckEnvelope(_TestModeEnvelope):
    """An envelope of type ``commcheck``: always in ``test`` mode."""

    WHAT: ClassVar[str] = "a communication test"
    type: Literal["commcheck"]
    body: CommCheck


class FallbackEnvelope(_TestModeEnvelope):
    """An envelope of type ``fallback``: a communication test's one-time code returned
    to the test's sender; always in ``test`` mode."""

    WHAT: ClassVar[str] = "a fallback confirmation"
    type: Literal["fallback"]
    body: FallbackConfirmation


class KeyUpdateEnvelope(EnvelopeHeader):
    """An envelope of type ``key-update``."""

    type: Literal["key-update"]
    body: KeyUpdate


class DirectoryEnvelope(EnvelopeHeader):
    """An envelope of type ``directory``."""

    type: Literal["directory"]
    body: DirectoryUpdate


class EscalationEnvelope(EnvelopeHeader):
    """An envelope of type ``escalation``: the sender escalated one of its messages."""

    type: Literal["escalation"]
    body: EscalationNotice


TypedEnvelope = (SitrepEnvelope | AlertEnvelope | CommCheckEnvelope | KeyUpdateEnvelope
                 | DirectoryEnvelope | EscalationEnvelope | FallbackEnvelope
                 | ReceiptEnvelope)
ENVELOPE_TYPES: dict[str, type[TypedEnvelope]] = {
    "sitrep": SitrepEnvelope,
    "alert": AlertEnvelope,
    "commcheck": CommCheckEnvelope,
    "key-update": KeyUpdateEnvelope,
    "directory": DirectoryEnvelope,
    "escalation": EscalationEnvelope,
    "fallback": FallbackEnvelope,
    "receipt": ReceiptEnvelope,
}


def describe_validation(exc: ValidationError, limit: int = 10) -> str:
    """A short, stable description of pydantic errors: ``loc: message; ...``."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A verified message that passed every admission check."""

    envelope: TypedEnvelope
    verified: Verified


def receiptable(verified: Verified) -> bool:
    """Whether a rejected receipt can be addressed for this verified input.

    A receipt quotes the message id, so the id must at least be a well-formed UUID.
    """
    value = verified.envelope.get("id")
    return isinstance(value, str) and _UUID_RE.fullmatch(value) is not None


def admit(verified: Verified, me: str, now: datetime, *, attachments: bool = False
          ) -> Admitted:
    """Check a verified envelope for ``me`` at time ``now``.

    Raises :class:`RejectedMessage` with one of ``unsupported_version``,
    ``unsupported_type``, ``schema_invalid``, ``not_addressed``, ``key_not_valid``,
    ``stale``, ``future_dated``, ``expired``. Unless the caller takes ``attachments``
    (PROTOCOL.md §19), a message that references some is ``schema_invalid``.
    """
    raw = verified.envelope
    version = raw.get("v")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:  # bool is not a version
        raise RejectedMessage(reasons.UNSUPPORTED_VERSION,
                              f"version {str(raw.get('v'))[:10]} not in {SUPPORTED_VERSIONS}")
    model = ENVELOPE_TYPES.get(raw["type"])
    if model is None:
        raise RejectedMessage(reasons.UNSUPPORTED_TYPE, f"type {raw['type'][:32]!r} is unknown")
    try:
        envelope: TypedEnvelope = model.model_validate(raw)
    except ValidationError as exc:
        raise RejectedMessage(reasons.SCHEMA_INVALID, describe_validation(exc)) from exc
    if envelope.attachments and not attachments:
        # §19 is specified, not yet implemented by the node: a node without the feature answers
        # schema_invalid (§13), so that nothing is ever "delivered" without its files.
        raise RejectedMessage(reasons.SCHEMA_INVALID,
                              "this node does not take attachments yet (PROTOCOL.md §19)")
    if me not in envelope.to:
        raise RejectedMessage(reasons.NOT_ADDRESSED, f"{me} is not among the recipients")
    key = key_problem(verified)
    if key is not None:
        raise RejectedMessage(*key)
    if envelope.created < now - DEDUP_WINDOW:
        raise RejectedMessage(reasons.STALE, "created before the dedup window")
    if envelope.created > now + CLOCK_SKEW:
        raise RejectedMessage(reasons.FUTURE, "created beyond the clock-skew tolerance")
    if envelope.expires < now - CLOCK_SKEW:
        raise RejectedMessage(reasons.EXPIRED, "expired")
    return Admitted(envelope=envelope, verified=verified)
