"""The fallback leg of a communication test (:mod:`gateway.protocol.commcheck`).

Sender side: with each test, a one-time code is e-mailed to every peer's contact point
(24/7 ones first) through ``[escalation.email]``; only its digest is kept. A peer's
``fallback`` message returning the right code proves that its duty officers got the
e-mail; a wrong, late or unknown code is answered ``rejected`` (``policy``).

Receiving side: a duty officer enters the code a peer e-mailed in the console; the node
returns it to that peer, in test mode, through the normal signed and receipted path.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime

import structlog

from gateway.config import Settings
from gateway.config_escalation import EmailSection
from gateway.errors import GatewayError, NotFound, RejectedMessage
from gateway.protocol import reasons
from gateway.protocol.commcheck import (
    CODE_LENGTH,
    FALLBACK_TYPE,
    FallbackConfirmation,
    code_digest,
    fallback_mail,
    judge,
    new_code,
)
from gateway.protocol.escalation import contacts_for
from gateway.protocol.messages import FallbackEnvelope
from gateway.protocol.types import Mode, Priority, Tlp
from gateway.service.escalation import EmailChannel
from gateway.service.ports import DirectoryStore, InboxStore
from gateway.service.ports_jobs import CommCheckStore
from gateway.service.submit import Submitter

log = structlog.get_logger(__name__)


class Fallbacks:
    """Sends the codes of our tests, judges the codes peers return, and returns the
    codes our duty officers enter."""

    def __init__(self, *, me: str, settings: Callable[[], Settings], store: CommCheckStore,
                 directory: DirectoryStore, inbox: InboxStore, submitter: Submitter,
                 email: Callable[[EmailSection], EmailChannel],
                 clock: Callable[[], datetime],
                 random: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._me, self._settings, self._store = me, settings, store
        self._directory, self._inbox, self._submitter = directory, inbox, submitter
        self._make_email, self._now, self._random = email, clock, random
        self._tasks: set[asyncio.Task[None]] = set()

    def start_sending(self, check_id: str, peers: Iterable[str]) -> None:
        """Send the codes of test ``check_id`` in the background (the test's 2xx does not
        wait for SMTP); each outcome is kept in the audit log."""
        task = asyncio.create_task(self.send_codes(check_id, tuple(peers)),
                                   name=f"fallback-codes-{check_id[:8]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send_codes(self, check_id: str, peers: tuple[str, ...]) -> None:
        """E-mail one code per peer, concurrently."""
        directory = await self._directory.all()
        await asyncio.gather(*(self._send(check_id, p, directory.get(p)) for p in peers))

    async def _send(self, check_id: str, peer: str, stored: object) -> None:
        entries = getattr(stored, "entries", ())
        contact = next((c for c in contacts_for(entries, None) if c.email), None)
        email = self._settings().escalation.email
        error: str | None
        if contact is None or contact.email is None:
            error = "no contact point with an e-mail address in its directory"
        elif email is None:
            error = "no [escalation.email] configured"
        else:
            code = new_code(self._random(CODE_LENGTH))
            console = self._settings().escalation.peer(peer)
            subject, text = fallback_mail(check_id=check_id, sender=self._me, peer=peer,
                                          code=code,
                                          console_url=console.console_url if console else None)
            error = await self._make_email(email).send(contact.email, subject, text)
            if error is None:
                try:
                    await self._store.code_sent(
                        check_id, peer, contact=contact.name, address=contact.email,
                        digest=code_digest(check_id, peer, code), at=self._now())
                except GatewayError as exc:
                    log.error("fallback_code_not_recorded", check_id=check_id, peer=peer,
                              error=str(exc))
                    return
                log.info("fallback_code_sent", check_id=check_id, peer=peer,
                         contact=contact.name)
                return
        log.warning("fallback_code_not_sent", check_id=check_id, peer=peer, error=error)
        try:
            await self._store.code_failed(check_id, peer,
                                          contact=contact.name if contact else None,
                                          error=error, at=self._now())
        except GatewayError as exc:
            log.error("fallback_code_not_recorded", check_id=check_id, peer=peer,
                      error=str(exc))

    async def judge(self, sender: str, message_id: str, body: FallbackConfirmation) -> None:
        """Take a code ``sender`` returned in message ``message_id``, or raise
        :class:`RejectedMessage` (``policy``) saying why not; either way it is kept."""
        sent, wrong, confirmed = await self._store.state(body.check_id, sender)
        now = self._now()
        why = judge(sent, body.code, body.check_id, wrong_before=wrong,
                    confirmed=confirmed, now=now)
        if why is None and confirmed:
            return  # a repeat of a taken code: nothing new to keep
        await self._store.returned(body.check_id, sender, message_id=message_id,
                                   by=body.confirmed_by, refused=why, at=now)
        if why is not None:
            raise RejectedMessage(reasons.POLICY, f"fallback code refused: {why}")
        log.info("fallback_confirmed", check_id=body.check_id, peer=sender)

    async def return_code(self, sender: str, check_id: str, code: str, by: str) -> str:
        """Return ``code`` to ``sender``, for its test ``check_id`` that is in our inbox;
        the id of the ``fallback`` message. Raises :class:`NotFound` for another id."""
        entry = await self._inbox.get(sender, check_id)
        if entry is None or entry.type != "commcheck":
            raise NotFound("Not found", f"no communication test {check_id} from {sender}")
        body = FallbackConfirmation(check_id=check_id, code=code, confirmed_by=by)
        message_id, _ = await self._submitter.submit_body(
            msg_type=FALLBACK_TYPE, model=FallbackEnvelope, body=body,
            body_json=body.model_dump(mode="json"), to=(sender,), tlp=Tlp.CLEAR,
            priority=Priority.ROUTINE, mode=Mode.TEST, incident=None, expires=None,
            idempotency=None)
        return message_id
