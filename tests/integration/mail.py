"""An SMTP server in the test process (aiosmtpd), with STARTTLS required and a
certificate for 127.0.0.1 that the node is told to trust: what the escalation and the
communication tests' fallback e-mails go through in the tests."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.demo_mail import certificate
from tests.integration.harness import free_base_port


@dataclass
class Mailbox:
    """What the SMTP server was given, and whether each session used STARTTLS."""

    mails: list[tuple[list[str], email.message.EmailMessage, bool]] = field(
        default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session,  # noqa: N802 - aiosmtpd's name
                          envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        mail = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(mail, email.message.EmailMessage)
        self.mails.append((list(envelope.rcpt_tos), mail, session.ssl is not None))
        return "250 OK"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for rcpt, m, _ in self.mails if address in rcpt]


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[Mailbox, int, Path]]:
    cert, key = certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    port = free_base_port(1)
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True)
    controller.start()
    try:
        yield mailbox, port, cert
    finally:
        controller.stop()


