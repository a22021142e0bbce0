"""Contact points between centres: keeping each peer's list when it sends one,
"field:<field>" addressing from them, and sending ours when it changed.

Each centre is authoritative for its own entries only (see protocol.directory).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.protocol.directory import DIRECTORY_TYPE, DirectoryUpdate
from gateway.protocol.messages import DirectoryEnvelope
from gateway.protocol.types import Mode, Priority, Tlp
from gateway.service.ports import Clock, Ledger
from gateway.service.records import signed_parts
from gateway.service.submit import Submitter

log = structlog.get_logger("crisisgw.directory")


class ContactSync:
    """Stores peers' contact lists, derives field addressing, publishes ours."""

    def __init__(self, *, ledger: Ledger, clock: Clock, submitter: Callable[[], Submitter],
                 settings: Callable[[], Settings],
                 on_fields: Callable[[dict[str, list[str]]], None]) -> None:
        self._ledger, self._clock, self._submitter = ledger, clock, submitter
        self._settings, self._on_fields = settings, on_fields

    async def store(self, sender: str, envelope: DirectoryEnvelope) -> None:
        """Keep a peer's contact points (it is authoritative for its own only)."""
        entries = envelope.body.entries
        if await self._ledger.directory.store(sender, envelope.id, envelope.created, entries,
                                              self._clock.now()):
            await self.refresh()
            log.info("directory_updated", peer=sender, entries=len(entries))

    async def refresh(self) -> None:
        """Rebuild "field:<field>" addressing from the stored directories."""
        fields: dict[str, list[str]] = {}
        for centre, stored in sorted((await self._ledger.directory.all()).items()):
            for entry in stored.entries:
                members = fields.setdefault(entry.field.value, [])
                if centre not in members:
                    members.append(centre)
        self._on_fields(fields)

    async def publish(self, *, only_if_changed: bool = False) -> str | None:
        """Send our contact points to every active peer; returns the message id (None
        when nothing was sent: no peer, or ``only_if_changed`` and no change)."""
        settings = self._settings()
        update = DirectoryUpdate(entries=settings.directory)
        body = update.model_dump(mode="json")
        if only_if_changed:
            last = await self._ledger.outbox.list({"type": "directory"}, 1)
            if (last and signed_parts(last[0].wire)[0]["body"] == body) or \
                    (not last and not update.entries):
                return None
        to = tuple(p.id for p in settings.peers if not p.suspended)
        if not to:
            return None
        message_id, _ = await self._submitter().submit_body(
            msg_type=DIRECTORY_TYPE, model=DirectoryEnvelope, body=update, body_json=body,
            to=to, tlp=Tlp.AMBER, priority=Priority.ROUTINE, mode=Mode.ACTUAL, incident=None,
            expires=None, idempotency=None, releasable=tuple(settings.policy.release_groups))
        log.info("directory_published", message_id=message_id, entries=len(update.entries))
        return message_id

    async def after_reload(self, *, publish: bool = True) -> None:
        """At start and after each reload: addressing, then (with ``publish``: on the
        instance that runs the periodic jobs) our list if it changed."""
        try:
            await self.refresh()
            if publish:
                await self.publish(only_if_changed=True)
        except GatewayError as exc:
            log.error("directory_publish_failed", error=str(exc))
