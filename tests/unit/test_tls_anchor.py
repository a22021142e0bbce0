"""Trust anchors: pins, validity and host names checked on the broker's certificate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.protocol import tlsanchor as ta
from gateway.protocol.tlsanchor import TlsAnchor, host_matches, leaf_problem, spki_sha256
from tests.pki import Authority

CA = Authority.make("anchor-tests")
NOW = datetime.now(UTC)


def _der(hosts: tuple[str, ...] = ("broker.nl.example", "127.0.0.1"), **kw: datetime) -> bytes:
    return CA.issue("broker", hosts, **kw).cert.public_bytes(Encoding.DER)


def _pin(der: bytes) -> str:
    from cryptography import x509  # noqa: PLC0415

    return spki_sha256(x509.load_der_x509_certificate(der))


def test_a_pinned_certificate_for_the_host_passes() -> None:
    """The pin, the validity and the DNS or IP name all hold: no problem."""
    der = _der()
    assert leaf_problem(der, pins=frozenset({_pin(der)}), host="broker.nl.example",
                        now=NOW) is None
    assert leaf_problem(der, pins=frozenset({_pin(der)}), host="127.0.0.1", now=NOW) is None


@pytest.mark.parametrize(("kwargs", "host", "pinned", "reason"), [
    ({}, "broker.nl.example", False, ta.UNTRUSTED),
    ({"not_before": NOW - timedelta(days=30), "not_after": NOW - timedelta(days=1)},
     "broker.nl.example", True, ta.EXPIRED),
    ({"not_before": NOW + timedelta(days=1)}, "broker.nl.example", True, ta.NOT_YET_VALID),
    ({}, "broker.be.example", True, ta.HOSTNAME_MISMATCH),
    ({}, "127.0.0.2", True, ta.HOSTNAME_MISMATCH),
], ids=["not-pinned", "expired", "not-yet-valid", "other-host", "other-ip"])
def test_each_problem_has_its_reason(kwargs: dict[str, datetime], host: str, pinned: bool,
                                     reason: str) -> None:
    """A certificate not pinned, out of its validity or for another host is refused,
    with the reason an operator sees."""
    der = _der(**kwargs)
    pins = frozenset({_pin(der) if pinned else "0" * 64})
    problem = leaf_problem(der, pins=pins, host=host, now=NOW)
    assert problem is not None
    assert problem[0] == reason


def test_no_certificate_is_untrusted() -> None:
    """A broker that shows no certificate is not trusted."""
    assert leaf_problem(None, pins=frozenset({"0" * 64}), host="x", now=NOW) == (
        ta.UNTRUSTED, "the broker presented no certificate")


@pytest.mark.parametrize(("pattern", "host", "matches"), [
    ("*.nl.example", "broker.nl.example", True),
    ("*.nl.example", "a.b.nl.example", False),
    ("*.nl.example", "nl.example", False),
    ("*.example", "nl.example", False),  # no wildcard right under a top-level label
    ("Broker.NL.example", "broker.nl.EXAMPLE", True),
    ("b*.nl.example", "broker.nl.example", False),
])
def test_host_names_match_as_rfc_6125_says(pattern: str, host: str, matches: bool) -> None:
    """Case-insensitive names; a wildcard only as the whole left-most label."""
    cert = CA.issue("x", (pattern,)).cert
    assert host_matches(cert, host) is matches


def test_the_common_name_is_never_used_as_a_host_name() -> None:
    """A certificate without subjectAltName matches no host, even its CN."""
    cert = CA.issue("broker.nl.example").cert
    assert host_matches(cert, "broker.nl.example") is False


def test_an_anchor_is_a_ca_or_pins_not_both_nor_a_leaf() -> None:
    """The card's anchor is exactly one of: CA certificates, or public-key pins; a broker
    certificate passed off as a CA is refused."""
    assert TlsAnchor(ca=CA.pem).ca == CA.pem
    assert TlsAnchor(spki_sha256=("ab" * 32,)).spki_sha256 == ("ab" * 32,)
    with pytest.raises(ValueError, match="exactly one"):
        TlsAnchor(ca=CA.pem, spki_sha256=("ab" * 32,))
    with pytest.raises(ValueError, match="exactly one"):
        TlsAnchor()
    with pytest.raises(ValueError, match="must be a CA"):
        TlsAnchor(ca=CA.issue("leaf", ("x.example",)).cert_pem.decode())
    with pytest.raises(ValueError, match="not PEM"):
        TlsAnchor(ca="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_the_ca_fingerprint_is_what_is_read_out_by_phone() -> None:
    """Eight groups of four hex digits of the CA certificate's SHA-256."""
    groups = ta.ca_fingerprint(CA.pem).split(" ")
    assert len(groups) == 8
    assert all(len(g) == 4 for g in groups)
