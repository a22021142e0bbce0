"""The signed envelope of protocol v1 (pure).

Wire object (``SignedMessage``)::

    {"envelope": {"v": 1, "id": ..., "type": ..., "from": ..., "to": [...],
                  "created": ..., "expires": ..., "mode": ..., "tlp": ...,
                  "priority": ..., "incident": ..., "attachments": [...], "body": {...}},
     "signature": {"alg": "Ed25519", "kid": ..., "value": <base64url>}}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.protocol.attachments import NO_ATTACHMENTS, AttachmentRefs
from gateway.protocol.types import (
    CentreId,
    FrozenModel,
    GroupName,
    IncidentId,
    KeyId,
    MessageId,
    Mode,
    Priority,
    Tlp,
    UtcTime,
)

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAX_LIFETIME = timedelta(days=7)
CLOCK_SKEW = timedelta(minutes=5)
#: Receivers remember (sender, id) at least this long; longer than any message can live.
DEDUP_WINDOW = MAX_LIFETIME + 2 * CLOCK_SKEW
MAX_WIRE_BYTES = 512 * 1024
MAX_RECIPIENTS = 64

MESSAGE_TYPE_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"


def _header_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """A receipt's schema has no ``attachments`` (the model refuses them, §19.2)."""
    kinds = get_args(model.model_fields["type"].annotation)
    if kinds and set(kinds) <= NO_ATTACHMENTS:
        schema["properties"].pop("attachments", None)


class EnvelopeHeader(FrozenModel):
    """Every envelope field but the body; shared by all message types."""

    model_config = ConfigDict(json_schema_extra=_header_schema)

    v: Literal[1] = Field(description="Protocol major version")
    id: MessageId = Field(description="UUID chosen by the sender, lower-case")
    type: Annotated[str, Field(pattern=MESSAGE_TYPE_PATTERN)]
    from_: CentreId = Field(alias="from", description="Sending centre id")
    to: tuple[CentreId, ...] = Field(min_length=1, max_length=MAX_RECIPIENTS,
                                     json_schema_extra={"uniqueItems": True})
    created: UtcTime
    expires: UtcTime
    mode: Mode
    tlp: Tlp
    priority: Priority
    incident: IncidentId | None = Field(default=None, description="Incident reference")
    releasable: tuple[GroupName, ...] | None = Field(
        default=None, max_length=16, json_schema_extra={"uniqueItems": True},
        description="Groups the sender has cleared the content for (e.g. eu); absent, null "
        "or [] = none")
    attachments: AttachmentRefs | None = Field(
        default=None, description="Files whose bytes follow in chunk messages (optional "
        "feature, §19); absent or null = none. Not on a receipt or a chunk")

    @field_validator("to", "releasable")
    @classmethod
    def _distinct(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("entries must be distinct")
        return value

    @model_validator(mode="after")
    def _lifetime(self) -> EnvelopeHeader:
        if self.expires <= self.created:
            raise ValueError("expires must be after created")
        if self.expires - self.created > MAX_LIFETIME:
            raise ValueError(f"a message may live at most {MAX_LIFETIME.days} days")
        if self.from_ in self.to:
            raise ValueError("a centre does not send to itself")
        if self.attachments is not None and self.type in NO_ATTACHMENTS:
            raise ValueError(f"a {self.type} carries no attachments")
        return self


class Envelope(EnvelopeHeader):
    """An envelope whose body has not been interpreted yet (any type)."""

    body: dict[str, Any]


class Signature(FrozenModel):
    """Detached Ed25519 signature over the domain-separated canonical envelope."""

    alg: Literal["Ed25519"]
    kid: KeyId
    value: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{86}$", description="base64url, 64 bytes")]


class SignedMessage(FrozenModel):
    """The AMQP payload: an envelope and its signature."""

    envelope: Envelope
    signature: Signature
