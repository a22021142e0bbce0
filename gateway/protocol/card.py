"""Identity cards: what a centre publishes about itself to join a federation (pure).

A card is signed by the centre with its own (first listed) key, under its own domain
("identity-card"), so a card signature can never pass as a message or receipt
signature. The self-signature proves possession of the key; whether the key really
belongs to that centre is settled out of band, by comparing the fingerprint by phone.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from pydantic import Field, ValidationError, model_validator

from gateway.errors import KeyMaterialError, MalformedInput, VerificationError
from gateway.protocol import ijson
from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.keys import (
    SigningKey,
    b64url_decode,
    b64url_encode,
    public_key_from_text,
    public_key_text,
)
from gateway.protocol.signing import DOMAIN_PREFIX
from gateway.protocol.tlsanchor import TlsAnchor
from gateway.protocol.types import CENTRE_ID_PATTERN, CentreId, FrozenModel, KeyId, UtcTime

CARD_CONTEXT = b"identity-card"


class CardKey(FrozenModel):
    """A signing key with its validity."""

    kid: KeyId
    public_key: str
    not_before: UtcTime | None = None
    not_after: UtcTime | None = None


class Inbox(FrozenModel):
    """Where the centre's inbox is, and how to trust its broker's TLS certificate
    (credentials travel separately, out of band)."""

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    vhost: str = Field(min_length=1, max_length=255)
    exchange: Literal["crisisgw.inbox"] = "crisisgw.inbox"
    tls: TlsAnchor | None = Field(
        default=None, description="Trust anchor of the broker's TLS certificate; absent "
        "only for a broker reached without TLS (a lab on one machine)")


class Contact(FrozenModel):
    """A contact point of the centre."""

    role: str = Field(max_length=100)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=200)


class Card(FrozenModel):
    """The content of an identity card."""

    centre: CentreId
    name: str = Field(min_length=1, max_length=200)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    keys: tuple[CardKey, ...] = Field(min_length=1, max_length=8)
    inbox: Inbox
    protocol_versions: tuple[int, ...] = (1,)
    contacts: tuple[Contact, ...] = Field(default=(), max_length=32)
    issued: UtcTime


class CardSignature(FrozenModel):
    """The self-signature of a card."""

    alg: Literal["Ed25519"]
    kid: KeyId
    value: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{86}$")]


class SignedCard(FrozenModel):
    """An identity card as exchanged: the card and its self-signature."""

    card: Card
    signature: CardSignature


_CENTRE = CENTRE_ID_PATTERN.strip("^$")
#: ``<PEER>@<OWNER>``, optionally prefixed (``<prefix>.``) where federations share a broker.
BROKER_USER_PATTERN = rf"^([a-z0-9][a-z0-9-]{{0,31}}\.)?{_CENTRE}@{_CENTRE}$"


class Credentials(FrozenModel):
    """What a centre hands a peer, out of band, so that the peer can publish into its
    inbox: the broker user it created for that peer, and how to log in (a password in
    ``url``, or a client certificate for RabbitMQ's EXTERNAL mechanism). Secret."""

    issuer: CentreId = Field(description="The centre whose broker this is")
    peer: CentreId = Field(description="The centre that publishes with these credentials")
    user: Annotated[str, Field(pattern=BROKER_USER_PATTERN,
                               description="<PEER>@<ISSUER>, optionally prefixed")]
    url: Annotated[str, Field(pattern=r"^amqps?://", max_length=2048,
                              description="AMQP URL with the user (and password)")]
    issued: UtcTime
    client_certificate: str | None = Field(
        default=None, max_length=32 * 1024,
        description="PEM client certificate (CN = user) for the EXTERNAL mechanism")
    client_key: str | None = Field(default=None, max_length=32 * 1024,
                                   description="PEM private key of client_certificate")

    @model_validator(mode="after")
    def _consistent(self) -> Credentials:
        if not self.user.endswith(f"{self.peer}@{self.issuer}"):
            raise ValueError(f"user must be {self.peer}@{self.issuer} (optionally prefixed)")
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError("client_certificate and client_key go together")
        return self


def _signing_input(card: dict[str, Any]) -> bytes:
    return DOMAIN_PREFIX + CARD_CONTEXT + b"\n" + canonical_bytes(card)


def sign_card(card: Card, key: SigningKey) -> bytes:
    """The signed card as canonical JSON bytes; ``key`` must be one of the card's keys."""
    body = card.model_dump(mode="json", exclude_none=True)
    if key.kid not in {k.kid for k in card.keys} or \
            public_key_text(key.public()) not in {k.public_key for k in card.keys}:
        raise KeyMaterialError("the card must list the key that signs it")
    signature = b64url_encode(key.private.sign(_signing_input(body)))
    return canonical_bytes({"card": body, "signature": {"alg": "Ed25519", "kid": key.kid,
                                                        "value": signature}})


def open_card(data: bytes) -> Card:
    """Parse and verify a signed card against the key it names.

    Raises :class:`MalformedInput` (not a card), :class:`KeyMaterialError` (a malformed
    or small-order key) or :class:`VerificationError` (the self-signature fails).
    """
    raw = ijson.loads(data)
    if not isinstance(raw, dict) or set(raw) != {"card", "signature"} \
            or not isinstance(raw["card"], dict) or not isinstance(raw["signature"], dict):
        raise MalformedInput("malformed", "expected {card, signature}")
    try:
        card = Card.model_validate(raw["card"])
    except ValidationError as exc:
        raise MalformedInput("schema_invalid", f"not an identity card: {exc}") from exc
    keys = {k.kid: public_key_from_text(k.public_key) for k in card.keys}
    signature = raw["signature"]
    kid = signature.get("kid")
    if signature.get("alg") != "Ed25519" or kid not in keys:
        raise VerificationError("unknown_key", "the card is not signed by one of its keys")
    try:
        keys[kid].verify(b64url_decode(str(signature.get("value"))),
                         _signing_input(raw["card"]))
    except (InvalidSignature, ValueError) as exc:
        raise VerificationError("bad_signature", "the card's self-signature fails") from exc
    return card
