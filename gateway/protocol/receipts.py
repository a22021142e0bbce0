"""Signed delivery receipts (pure).

A receipt is an envelope of type ``receipt`` sent by the recipient of a message back to
its sender. It quotes the message id and the SHA-256 of the message's canonical
envelope bytes, so it proves which exact bytes were received.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, model_validator

from gateway.protocol import reasons
from gateway.protocol.envelope import CLOCK_SKEW, PROTOCOL_VERSION, EnvelopeHeader
from gateway.protocol.types import FrozenModel, MessageId, Mode, Priority, Sha256Hex, Tlp, UtcTime

RECEIPT_LIFETIME = timedelta(days=7)


class ReceiptState(StrEnum):
    """What the recipient says happened to the message."""

    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"


def _receipt_schema(schema: dict[str, Any]) -> None:
    """State the reason rule of §7.2 in the schema, as the model enforces it."""
    schema["properties"]["reason"] = {
        "anyOf": [{"enum": sorted(reasons.RECEIPTED)}, {"type": "null"}],
        "description": "Reason code (§7.5, answered codes); required for rejected"}
    schema["if"] = {"properties": {"state": {"const": "rejected"}}, "required": ["state"]}
    schema["then"] = {"required": ["reason"],
                      "properties": {"reason": {"enum": sorted(reasons.RECEIPTED)}}}
    schema["else"] = {"properties": {"reason": {"type": "null"}}}


class Receipt(FrozenModel):
    """The body of a ``receipt`` envelope."""

    model_config = ConfigDict(json_schema_extra=_receipt_schema)

    message_id: MessageId
    message_sha256: Sha256Hex
    state: ReceiptState
    reason: str | None = Field(default=None, description="Reason code; required for rejected")
    detail: str | None = Field(default=None, max_length=500)
    at: UtcTime
    by: str | None = Field(default=None, max_length=100, description="Acknowledging officer")

    @model_validator(mode="after")
    def _reason(self) -> Receipt:
        if self.state is ReceiptState.REJECTED:
            if self.reason not in reasons.RECEIPTED:
                raise ValueError("a rejected receipt carries a documented reason code")
        elif self.reason is not None:
            raise ValueError("only a rejected receipt carries a reason")
        return self


class ReceiptEnvelope(EnvelopeHeader):
    """An envelope of type ``receipt``."""

    type: Literal["receipt"]
    body: Receipt

    @model_validator(mode="after")
    def _at_before_created(self) -> ReceiptEnvelope:
        if self.body.at > self.created:
            raise ValueError("a receipt's at cannot be after the receipt was made (created)")
        return self


def plausible_at(at: datetime, message_created: datetime) -> bool:
    """Whether a receipt's ``at`` can be true for a message created at ``message_created``:
    not before it, give or take the clock skew between the two nodes (§7.4 step 3)."""
    return at >= message_created - CLOCK_SKEW


def receipt_envelope(
    *,
    receipt_id: UUID,
    issuer: str,
    sender: str,
    message_id: str,
    digest: str,
    state: ReceiptState,
    now: datetime,
    mode: Mode,
    priority: Priority,
    reason: str | None = None,
    detail: str | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """Build the JSON-ready envelope of a receipt from ``issuer`` to ``sender``.

    Receipts are TLP:CLEAR (they carry no content, only identifiers) and keep the
    mode and priority of the message they answer.
    """
    body = Receipt(
        message_id=message_id, message_sha256=digest, state=state, reason=reason,
        detail=detail[:500] if detail else None, at=now, by=by,
    )
    env = ReceiptEnvelope.model_validate(
        {
            "v": PROTOCOL_VERSION, "id": str(receipt_id), "type": "receipt", "from": issuer,
            "to": [sender], "created": now, "expires": now + RECEIPT_LIFETIME, "mode": mode,
            "tlp": Tlp.CLEAR, "priority": priority, "incident": None, "body": body,
        }
    )
    return env.model_dump(mode="json", by_alias=True, exclude_none=True)
