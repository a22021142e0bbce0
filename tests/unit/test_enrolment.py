"""Enrolment (docs/PROTOCOL.md §15.3): the signed card says where the inbox is and how to
trust it; the secret credentials cannot point anywhere else."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.federation import add_peer, read_card
from gateway.protocol.card import Card, CardKey, Credentials, Inbox, sign_card
from gateway.protocol.keys import SigningKey, public_key_text
from gateway.protocol.tlsanchor import TlsAnchor
from tests.pki import Authority

CA = Authority.make("enrolment")
FR = SigningKey(kid="FR-COGIC.k1", private=Ed25519PrivateKey.generate())
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps({
        "node": {"centre": "BE-NCCN", "name": "NCCN", "country": "BE", "data_dir": "data",
                 "signing_key_file": "signing.key", "signing_key_id": "BE-NCCN.k1"},
        "broker": {"url": "amqp://BE-NCCN:pw@127.0.0.1:5672/crisisgw-be-nccn"}}))
    return path


ANCHOR = TlsAnchor(ca=CA.pem)


def _card(tls: TlsAnchor | None = ANCHOR, host: str = "broker.cogic.example") -> Card:
    return Card(centre="FR-COGIC", name="COGIC", country="FR",
                keys=(CardKey(kid=FR.kid, public_key=public_key_text(FR.public())),),
                inbox=Inbox(host=host, port=5671, vhost="crisisgw-fr-cogic", tls=tls),
                issued=NOW)


def _credentials(**changes: Any) -> Credentials:
    values: dict[str, Any] = {
        "issuer": "FR-COGIC", "peer": "BE-NCCN", "user": "BE-NCCN@FR-COGIC",
        "url": "amqps://BE-NCCN%40FR-COGIC:pw@broker.cogic.example:5671/crisisgw-fr-cogic",
        "issued": NOW}
    values.update(changes)
    return Credentials.model_validate(values)


def test_the_peer_is_enrolled_with_the_cards_keys_and_tls_anchor(tmp_path: Path) -> None:
    """Keys and the TLS anchor come from the card, the URL from the credentials, and
    granted_user is the user we made for the peer on our broker."""
    settings = add_peer(_config(tmp_path), _card(), _credentials(), ("eu",))
    peer = settings.peer("FR-COGIC")
    assert peer is not None
    assert [k.kid for k in peer.keys] == [FR.kid]
    assert peer.tls is not None
    assert peer.tls.ca == CA.pem
    assert peer.granted_user == "FR-COGIC@BE-NCCN"
    assert load_settings(tmp_path / "gateway.toml").peer("FR-COGIC") == peer


def test_a_client_certificate_is_kept_in_files_beside_the_config(tmp_path: Path) -> None:
    """EXTERNAL credentials: the certificate and key are written 0600 and referenced."""
    issued = CA.issue("BE-NCCN@FR-COGIC", client=True)
    creds = _credentials(
        url="amqps://BE-NCCN%40FR-COGIC@broker.cogic.example:5671/crisisgw-fr-cogic"
            "?auth=external",
        client_certificate=issued.cert_pem.decode(), client_key=issued.key_pem.decode())
    peer = add_peer(_config(tmp_path), _card(), creds, ()).peer("FR-COGIC")
    assert peer is not None
    assert peer.tls is not None
    assert peer.tls.client_key is not None
    assert peer.tls.client_key.stat().st_mode & 0o777 == 0o600
    assert peer.tls.client_cert is not None
    assert peer.tls.client_cert.read_bytes() == issued.cert_pem


@pytest.mark.parametrize(("creds", "card", "match"), [
    ({"url": "amqps://BE-NCCN%40FR-COGIC:pw@attacker.example:5671/crisisgw-fr-cogic"},
     None, "the signed card puts"),
    ({"url": "amqps://BE-NCCN%40FR-COGIC:pw@broker.cogic.example:5671/other"}, None,
     "the signed card puts"),
    ({"issuer": "NL-NCC", "user": "BE-NCCN@NL-NCC"}, None, "issued by NL-NCC"),
    ({}, _card(tls=None), "publishes no TLS trust anchor"),
    ({"url": "amqp://BE-NCCN%40FR-COGIC:pw@broker.cogic.example:5671/crisisgw-fr-cogic"},
     None, "tls-required"),
    ({"url": "amqps://someone:pw@broker.cogic.example:5671/crisisgw-fr-cogic"}, None,
     "does not log in as"),
], ids=["other-host", "other-vhost", "other-issuer", "no-anchor", "plaintext", "other-user"])
def test_credentials_and_cards_that_do_not_agree_are_refused(
        tmp_path: Path, creds: dict[str, Any], card: Card | None, match: str) -> None:
    """The credentials must be for us, from the card's centre, for the card's inbox; an
    amqps:// link needs the card's anchor; plaintext off loopback is refused."""
    config = _config(tmp_path)
    before = config.read_text()
    with pytest.raises(ConfigError, match=match):
        add_peer(config, card or _card(), _credentials(**creds), ())
    assert config.read_text() == before


def test_plaintext_off_loopback_needs_the_explicit_flag(tmp_path: Path) -> None:
    """--allow-plaintext writes allow_plaintext = true, and only then is it accepted."""
    creds = _credentials(
        url="amqp://BE-NCCN%40FR-COGIC:pw@broker.cogic.example:5671/crisisgw-fr-cogic")
    peer = add_peer(_config(tmp_path), _card(), creds, (), allow_plaintext=True).peer("FR-COGIC")
    assert peer is not None
    assert peer.allow_plaintext


def test_the_phone_check_shows_key_and_tls_fingerprints(tmp_path: Path) -> None:
    """read_card lists what to compare by phone: each key and the broker's CA."""
    path = tmp_path / "fr.card"
    path.write_bytes(sign_card(_card(), FR))
    _, prints = read_card(path)
    assert any(p.startswith(f"key {FR.kid}: ") for p in prints)
    assert any(p.startswith("broker CA certificate (SHA-256): ") for p in prints)
