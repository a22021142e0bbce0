"""Identity cards: self-signed, domain-separated, and refused when unsafe or altered."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import KeyMaterialError, MalformedInput, VerificationError
from gateway.protocol.card import Card, CardKey, Inbox, open_card, sign_card
from gateway.protocol.keys import SigningKey, b64url_encode, public_key_text

KEY = SigningKey(kid="FR-COGIC.1", private=Ed25519PrivateKey.generate())


def _card(**changes: object) -> Card:
    values: dict[str, object] = {
        "centre": "FR-COGIC", "name": "COGIC", "country": "FR",
        "keys": (CardKey(kid=KEY.kid, public_key=public_key_text(KEY.public())),),
        "inbox": Inbox(host="127.0.0.1", port=5672, vhost="crisisgw-fr-cogic"),
        "issued": datetime(2026, 11, 27, tzinfo=UTC)}
    values.update(changes)
    return Card.model_validate(values)


def test_a_signed_card_opens_to_the_same_content() -> None:
    """sign_card then open_card round-trips and checks the self-signature."""
    assert open_card(sign_card(_card(), KEY)) == _card()


@pytest.mark.parametrize(("path", "value"), [
    (("card", "name"), "Someone else"), (("card", "centre"), "FR-EVIL"),
    (("card", "inbox", "host"), "attacker.example"), (("signature", "value"), "A" * 86),
])
def test_any_change_to_a_signed_card_is_refused(path: tuple[str, ...], value: str) -> None:
    """Changing the name, centre, inbox or signature breaks the self-signature."""
    raw = json.loads(sign_card(_card(), KEY))
    target = raw
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(VerificationError):
        open_card(json.dumps(raw).encode())


def test_a_card_with_a_small_order_key_is_refused() -> None:
    """A small-order public key (identity point) is refused before any signature check."""
    raw = json.loads(sign_card(_card(), KEY))
    raw["card"]["keys"][0]["public_key"] = b64url_encode(bytes([1]) + bytes(31))
    with pytest.raises(KeyMaterialError):
        open_card(json.dumps(raw).encode())


def test_a_card_signed_by_a_key_it_does_not_list_cannot_be_made() -> None:
    """sign_card refuses a key that is not on the card."""
    other = SigningKey(kid="FR-COGIC.2", private=Ed25519PrivateKey.generate())
    with pytest.raises(KeyMaterialError):
        sign_card(_card(), other)


@pytest.mark.parametrize("data", [b"[]", b'{"card": {}}', b'{"card": {}, "signature": {}}'])
def test_malformed_cards_are_refused(data: bytes) -> None:
    """Not a {card, signature} object, or not a card: refused as malformed."""
    with pytest.raises(MalformedInput):
        open_card(data)
