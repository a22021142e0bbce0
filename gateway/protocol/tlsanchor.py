"""TLS trust anchors of a centre's broker, and the checks made with them (pure).

A centre publishes in its identity card how its broker's certificate is to be trusted
(docs/PROTOCOL.md §9.1, §15.1), in one of two ways:

- ``ca``: the PEM certificate(s) of the CA that issued the broker certificate; the TLS
  library verifies the chain against these certificates only, and the host name;
- ``spki_sha256``: the SHA-256 of the broker certificate's SubjectPublicKeyInfo (DER),
  lower-case hex; :func:`leaf_problem` checks the certificate the broker presents
  against it, with its validity period and the host name.

The system CA store is never used: a certificate that chains to a public CA but not to
the anchor is refused. ``now`` is passed in; nothing here reads a clock or a file.
"""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime
from typing import Annotated, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, model_validator

from gateway.protocol.types import SHA256_HEX_PATTERN, FrozenModel

MAX_PINS = 8
MAX_CA_PEM = 32 * 1024

# Reasons a TLS link fails, shown to operators and counted in /metrics.
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
UNTRUSTED = "untrusted"
HOSTNAME_MISMATCH = "hostname_mismatch"
HANDSHAKE_TIMEOUT = "handshake_timeout"
HANDSHAKE_FAILED = "handshake_failed"
NOT_TLS = "not_tls"
CLIENT_CERT_REFUSED = "client_certificate_refused"
REASONS = (EXPIRED, NOT_YET_VALID, UNTRUSTED, HOSTNAME_MISMATCH, HANDSHAKE_TIMEOUT,
           HANDSHAKE_FAILED, NOT_TLS, CLIENT_CERT_REFUSED)

SpkiPin = Annotated[str, StringConstraints(pattern=SHA256_HEX_PATTERN)]


def load_ca_pem(text: str) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; ``ValueError`` unless it holds at least one CA."""
    if len(text) > MAX_CA_PEM:
        raise ValueError(f"a CA bundle is at most {MAX_CA_PEM} characters")
    try:
        certs = x509.load_pem_x509_certificates(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not PEM certificates: {exc}") from exc
    for cert in certs:
        try:
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound as exc:
            raise ValueError("a trust anchor certificate must be a CA (basicConstraints)") from exc
        if not basic.ca:
            raise ValueError("a trust anchor certificate must be a CA, not a broker certificate")
    return certs


def _checked_ca(value: str) -> str:
    load_ca_pem(value)
    return value


#: PEM text holding one or more CA certificates (checked when parsed).
CaPem = Annotated[str, AfterValidator(_checked_ca)]


def _anchor_schema(schema: dict[str, Any]) -> None:
    """Exactly one of the two members, each without null (what the model enforces)."""
    props = schema["properties"]
    props["ca"] = {"type": "string", "maxLength": MAX_CA_PEM,
                   "description": props["ca"].get("description", "")}
    pins = next(s for s in props["spki_sha256"]["anyOf"] if s.get("type") == "array")
    props["spki_sha256"] = {**pins, "uniqueItems": True,
                            "description": props["spki_sha256"].get("description", "")}
    schema["oneOf"] = [{"required": ["ca"]}, {"required": ["spki_sha256"]}]


class TlsAnchor(FrozenModel):
    """How to trust a centre's broker certificate: its CA, or pins of its public key."""

    model_config = ConfigDict(json_schema_extra=_anchor_schema)

    ca: CaPem | None = Field(default=None, max_length=MAX_CA_PEM,
                             description="PEM certificate(s) of the broker's CA")
    spki_sha256: tuple[SpkiPin, ...] | None = Field(
        default=None, min_length=1, max_length=MAX_PINS,
        description="SHA-256 (hex) of the broker certificate's SubjectPublicKeyInfo; "
        "several while the broker changes its key")

    @model_validator(mode="after")
    def _one(self) -> TlsAnchor:
        if (self.ca is None) == (self.spki_sha256 is None):
            raise ValueError("a TLS anchor is either ca or spki_sha256 (exactly one)")
        if self.spki_sha256 is not None and len(set(self.spki_sha256)) != len(self.spki_sha256):
            raise ValueError("pins must be distinct")
        return self


def spki_sha256(cert: x509.Certificate) -> str:
    """SHA-256 (hex) of the certificate's SubjectPublicKeyInfo in DER."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def ca_fingerprint(pem: str) -> str:
    """SHA-256 (hex, grouped by four) of the first CA certificate, to compare by phone."""
    digest = hashlib.sha256(load_ca_pem(pem)[0].public_bytes(Encoding.DER)).hexdigest()
    return " ".join(digest[i:i + 4] for i in range(0, 32, 4))


def _dns_matches(pattern: str, host: str) -> bool:
    """RFC 6125: exact, case-insensitive; a wildcard only as the whole left-most label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        rest = pattern[2:]
        head, _, tail = host.partition(".")
        return bool(head) and "*" not in rest and rest.count(".") >= 1 and tail == rest
    return "*" not in pattern and pattern == host


def host_matches(cert: x509.Certificate, host: str) -> bool:
    """Whether ``host`` (a DNS name or an IP address) is among the certificate's SANs.

    The subject's common name is never used (RFC 6125 §6.4.4, as browsers do).
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return any(_dns_matches(name, host) for name in san.get_values_for_type(x509.DNSName))
    return ip in san.get_values_for_type(x509.IPAddress)


def leaf_problem(der: bytes | None, *, pins: frozenset[str], host: str,
                 now: datetime) -> tuple[str, str] | None:
    """Check the broker's certificate against pinned public keys, its validity at ``now``
    and ``host``; None when it holds, else ``(reason, detail)`` (reasons above)."""
    if not der:
        return UNTRUSTED, "the broker presented no certificate"
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        return UNTRUSTED, f"unreadable broker certificate: {exc}"
    pin = spki_sha256(cert)
    checks = (
        (pin not in pins, UNTRUSTED, f"broker key {pin[:16]}... is not pinned"),
        (now < cert.not_valid_before_utc, NOT_YET_VALID,
         f"certificate valid from {cert.not_valid_before_utc.isoformat()}"),
        (now > cert.not_valid_after_utc, EXPIRED,
         f"certificate expired {cert.not_valid_after_utc.isoformat()}"),
        (not host_matches(cert, host), HOSTNAME_MISMATCH, f"certificate is not for {host}"),
    )
    return next(((reason, detail) for failed, reason, detail in checks if failed), None)


def expires_at(der: bytes) -> datetime:
    """The end of a DER certificate's validity (UTC)."""
    return x509.load_der_x509_certificate(der).not_valid_after_utc.astimezone(UTC)
