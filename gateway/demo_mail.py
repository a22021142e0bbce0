"""The demo federation's mailbox: an SMTP server on loopback (aiosmtpd), STARTTLS
required, with a certificate the demo nodes are told to trust. Every e-mail the nodes
send (escalations, communication tests' fallback codes) is written to
``<demo>/mail/<n>-<recipient>.eml`` and announced on the demo's output, so that the
e-mail leg can be tried without a mail server.
"""

from __future__ import annotations

import email
import email.policy
import ipaddress
import itertools
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_SAFE = re.compile(r"[^A-Za-z0-9@._-]")


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid a year (made once), and its key:
    what a local SMTP server presents and the node is told to trust."""
    cert_file, key_file = folder / "smtp.crt", folder / "smtp.key"
    if cert_file.exists() and key_file.exists():
        return cert_file, key_file
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crisisgw demo mailbox")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


class _Writer:
    """Keeps each e-mail as a file and says so."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        start = len(list(folder.glob("*.eml")))
        self._numbers = itertools.count(start + 1)

    async def handle_DATA(self, server: SMTP, session: Session,  # noqa: N802 - aiosmtpd's name
                          envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        mail = email.message_from_bytes(content, policy=email.policy.default)
        for rcpt in envelope.rcpt_tos:
            path = self._folder / f"{next(self._numbers):04d}-{_SAFE.sub('_', rcpt)[:80]}.eml"
            path.write_bytes(content)
            path.chmod(0o600)
            print(f"  mail to {rcpt}: {mail.get('Subject', '')}  ({path})", flush=True)
        return "250 OK"


class DemoMailbox:
    """The mailbox, started and stopped around the federation."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        self.ca_file, key = certificate(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, key)
        self._controller = Controller(_Writer(folder), hostname="127.0.0.1", port=port,
                                      tls_context=context, require_starttls=True)

    def start(self) -> None:
        """Listen (in a thread of its own)."""
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()
