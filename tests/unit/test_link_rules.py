"""Configuration rules for links: TLS unless on loopback, and never without an anchor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config import ApiSection, BrokerSection, PeerSection, TlsSection, is_loopback
from tests.pki import Authority

KEY = {"kid": "NL-NCC.k1", "public_key": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
PIN = {"spki_sha256": ("ab" * 32,)}


def _peer(url: str, **extra: Any) -> PeerSection:
    return PeerSection.model_validate({
        "id": "NL-NCC", "name": "NCC", "country": "NL", "keys": [KEY], "inbox_url": url,
        "granted_user": "NL-NCC@BE-NCCN", **extra})


def test_plaintext_to_a_remote_broker_is_refused_naming_peer_and_rule() -> None:
    """amqp:// to a non-loopback host: refused, the error names the peer and the rule."""
    with pytest.raises(ValidationError) as refused:
        _peer("amqp://BE-NCCN%40NL-NCC:pw@broker.nl.example:5672/crisisgw-nl-ncc")
    text = str(refused.value)
    assert "peer NL-NCC" in text
    assert "tls-required" in text
    assert "broker.nl.example" in text


def test_plaintext_is_allowed_on_loopback_or_when_the_entry_says_so() -> None:
    """Loopback needs nothing; a remote host needs allow_plaintext = true, said explicitly."""
    assert _peer("amqp://u:p@127.0.0.1:5672/v").allow_plaintext is False
    assert _peer("amqp://u:p@localhost/v").inbox_url
    assert _peer("amqp://u:p@[::1]:5672/v").inbox_url
    assert _peer("amqp://u:p@broker.nl.example/v", allow_plaintext=True).allow_plaintext


def test_amqps_needs_a_trust_anchor_and_never_the_system_store() -> None:
    """An amqps:// URL without ca, ca_file or spki_sha256 is refused."""
    with pytest.raises(ValidationError, match="trust anchor"):
        _peer("amqps://u:p@broker.nl.example/v")
    with pytest.raises(ValidationError, match="trust anchor"):
        _peer("amqps://u:p@broker.nl.example/v", tls={})
    assert _peer("amqps://u:p@broker.nl.example/v", tls=PIN).tls is not None


def test_tls_options_in_the_url_are_refused() -> None:
    """no_verify_ssl or cafile in the URL would bypass the anchor: refused."""
    for query in ("no_verify_ssl=1", "cafile=/etc/ssl/certs/ca-certificates.crt"):
        with pytest.raises(ValidationError, match="belong in its tls table"):
            _peer(f"amqps://u:p@broker.nl.example/v?{query}", tls=PIN)


def test_external_login_needs_a_client_certificate(tmp_path: Path) -> None:
    """?auth=external without tls.client_cert is refused; with both files it is fine."""
    with pytest.raises(ValidationError, match="client_cert"):
        _peer("amqps://BE-NCCN%40NL-NCC@broker.nl.example/v?auth=external", tls=PIN)
    tls = {**PIN, "client_cert": str(tmp_path / "c.pem"), "client_key": str(tmp_path / "c.key")}
    assert _peer("amqps://BE-NCCN%40NL-NCC@broker.nl.example/v?auth=external", tls=tls).tls


def test_tls_settings_are_checked_for_consistency() -> None:
    """One anchor only; client certificate and key together; a CA must parse."""
    with pytest.raises(ValidationError, match="one trust anchor"):
        TlsSection(ca=Authority.make("a").pem, spki_sha256=("ab" * 32,))
    with pytest.raises(ValidationError, match="go together"):
        TlsSection(spki_sha256=("ab" * 32,), client_cert=Path("c.pem"))
    with pytest.raises(ValidationError, match="not PEM"):
        TlsSection(ca="not a certificate")


def test_our_own_broker_follows_the_same_rule() -> None:
    """[broker] url: plaintext off loopback is refused too."""
    with pytest.raises(ValidationError, match=r"\[broker\].*tls-required"):
        BrokerSection.model_validate({"url": "amqp://BE-NCCN:pw@broker.be.example/v"})
    assert BrokerSection.model_validate({"url": "amqp://BE-NCCN:pw@127.0.0.1/v"})


def test_the_api_binds_plain_http_only_to_loopback(tmp_path: Path) -> None:
    """[api]: plain HTTP on 0.0.0.0 is refused unless allow_plaintext; HTTPS is fine."""
    assert ApiSection(host="127.0.0.1").https is False
    with pytest.raises(ValidationError, match="tls-required"):
        ApiSection(host="0.0.0.0")
    assert ApiSection(host="0.0.0.0", allow_plaintext=True)
    assert ApiSection(host="0.0.0.0", tls_cert=tmp_path / "c", tls_key=tmp_path / "k").https


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("10.0.0.1", False), ("localhost.evil", False),
    ("broker.example", False), ("0.0.0.0", False),
])
def test_only_literal_loopback_counts(host: str, loopback: bool) -> None:
    """No name is resolved: only localhost and loopback addresses are loopback."""
    assert is_loopback(host) is loopback
