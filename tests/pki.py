"""Certificates for tests: a CA and the certificates it issues, with any validity.

deploy/broker-tls.sh makes the real ones with openssl; tests also need what that script
will not make on purpose (an expired certificate, one for the wrong host), so they make
them here with cryptography. ECDSA P-256, like the script.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "crisisgw-tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, in PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        """The certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    def write(self, cert: Path, key: Path, owner: str | None = None) -> None:
        """Write both (the key 0600), replacing what is there; ``owner`` (e.g. rabbitmq)
        gets the files when that user exists."""
        for path, data, mode in ((cert, self.cert_pem, 0o644), (key, self.key_pem, 0o600)):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            tmp.chmod(mode)
            if owner is not None:
                import pwd  # noqa: PLC0415 - POSIX only, tests run as root

                try:
                    entry = pwd.getpwnam(owner)
                except KeyError:
                    pass
                else:
                    os.chown(tmp, entry.pw_uid, entry.pw_gid)
            tmp.replace(path)


@dataclass(frozen=True)
class Authority:
    """A CA that issues broker and client certificates."""

    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def make(cls, name: str) -> Authority:
        """A new self-signed CA, valid for ten years."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(_name(f"{name} CA"))
                .issuer_name(_name(f"{name} CA")).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(name=name, key=key, cert=cert)

    @property
    def pem(self) -> str:
        """The CA certificate (the trust anchor)."""
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def issue(self, common: str, hosts: tuple[str, ...] = (), *, client: bool = False,
              not_before: datetime | None = None, not_after: datetime | None = None,
              key: ec.EllipticCurvePrivateKey | None = None) -> Issued:
        """A server certificate for ``hosts`` (DNS names or IP addresses), or a client
        certificate with CN ``common``; valid from a day ago for a year by default."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (x509.CertificateBuilder().subject_name(_name(common))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before or now - timedelta(days=1))
                   .not_valid_after(not_after or now + timedelta(days=365))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.CLIENT_AUTH if client
                        else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(cert_pem=cert.public_bytes(serialization.Encoding.PEM),
                      key_pem=_pem_key(key))
