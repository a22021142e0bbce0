"""The second channel of an escalation: e-mail over SMTP with STARTTLS (aiosmtplib) and
an SMS/voice gateway behind a small HTTP webhook.

Both send one notice to one address and return None when it was taken, or a short
reason when not; they never raise for a failure of the channel, so that one dead
channel cannot stop the other steps. Passwords and tokens are read from their files at
each send (a rotated secret is taken without a restart) and never logged.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import aiohttp
import aiosmtplib

from gateway.config_escalation import EmailSection, WebhookSection


def _secret(path: Path | None) -> str | None:
    return None if path is None else path.read_text(encoding="utf-8").strip()


class EmailNotifier:
    """Send notices through the configured SMTP server."""

    def __init__(self, section: EmailSection) -> None:
        self._s = section

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=None if self._s.ca_file is None else str(self._s.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    async def send(self, address: str, subject: str, text: str) -> str | None:
        """Mail ``text`` to ``address``; None once the server accepted it."""
        s = self._s
        message = EmailMessage()
        message["From"] = s.sender
        message["To"] = address
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=s.sender.rsplit("@", 1)[1])
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text)
        try:
            password = _secret(s.password_file)
            await aiosmtplib.send(
                message, hostname=s.host, port=s.port, start_tls=s.starttls,
                use_tls=False, tls_context=self._tls() if s.starttls else None,
                username=s.username, password=password, timeout=s.timeout_seconds)
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        return None


class WebhookNotifier:
    """Call the SMS/voice gateway: ``POST url`` with a JSON body and a bearer token."""

    def __init__(self, section: WebhookSection) -> None:
        self._s = section

    async def send(self, payload: dict[str, object]) -> str | None:
        """Post ``payload``; None once the gateway answered 2xx."""
        s = self._s
        headers = {"User-Agent": "crisisgw-escalation"}
        try:
            token = _secret(s.token_file)
            if token:
                headers["Authorization"] = f"Bearer {token}"
            timeout = aiohttp.ClientTimeout(total=s.timeout_seconds)
            async with aiohttp.ClientSession(timeout=timeout) as http, \
                    http.post(s.url, json=payload, headers=headers) as resp:
                if resp.status // 100 != 2:
                    return f"HTTP {resp.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        return None
