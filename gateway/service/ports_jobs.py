"""Ports of the periodic jobs and their records: escalation steps, the fallback leg of
communication tests, exercise runs, and the lease that says which instance runs the
jobs (the :class:`gateway.service.ports.Ledger` holds one of each)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from gateway.protocol.commcheck import CodeSent
from gateway.protocol.escalation import Action, Done, EscalationNotice, Waiting
from gateway.protocol.exercise import Event


class EscalationStore(Protocol):
    """What waits for an acknowledgement, and the escalation steps already tried."""

    async def waiting(self, priorities: Sequence[str], since: datetime, until: datetime
                      ) -> list[tuple[Waiting, bytes]]:
        """Unacknowledged deliveries of our messages of ``priorities`` submitted in
        [since, until], each with its message's signed bytes."""
        ...

    async def done(self, message_ids: Sequence[str]) -> dict[str, list[Done]]:
        """The steps tried for each message."""
        ...

    async def record(self, action: Action, error: str | None, at: datetime) -> None:
        """Keep one step taken (in the audit log); ``error`` None when it was sent."""
        ...

    async def steps(self, message_id: str) -> list[dict[str, Any]]:
        """The steps taken for one message, oldest first (for the console)."""
        ...

    async def noticed(self, sender: str, notice: EscalationNotice, at: datetime) -> None:
        """Keep a peer's notice that it escalated a message it sent us."""
        ...

    async def notices(self, sender: str, message_id: str) -> list[dict[str, Any]]:
        """The notices ``sender`` sent of its escalation of ``message_id``."""
        ...


class CommCheckStore(Protocol):
    """The fallback leg of communication tests: codes sent, and codes returned."""

    async def code_sent(self, check_id: str, peer: str, *, contact: str, address: str,
                        digest: str, at: datetime) -> None:
        """Keep that a code (its digest only) went to ``peer``'s contact."""
        ...

    async def code_failed(self, check_id: str, peer: str, *, contact: str | None,
                          error: str, at: datetime) -> None:
        """Keep that no code reached ``peer``, and why."""
        ...

    async def returned(self, check_id: str, peer: str, *, message_id: str, by: str,
                       refused: str | None, at: datetime) -> None:
        """Keep a code ``peer`` returned: taken (``refused`` None) or refused."""
        ...

    async def state(self, check_id: str, peer: str) -> tuple[CodeSent | None, int, bool]:
        """The code sent to ``peer``, its count of wrong codes, whether one was taken."""
        ...

    async def fallbacks(self, check_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Per test and peer, the fallback leg (for the reports)."""
        ...


class ExerciseStore(Protocol):
    """The events of exercise runs (in the audit log)."""

    async def record(self, run_id: str, kind: str, actor: str, data: dict[str, Any],
                     at: datetime) -> None:
        """Keep one event."""
        ...

    async def events(self, run_id: str) -> list[Event]:
        """One run's events, oldest first."""
        ...

    async def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest runs, newest first."""
        ...


class LeaseStore(Protocol):
    """Who runs each periodic job among the instances of one node."""

    async def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take the lease ``name`` for ``holder`` until ``until``, or renew it if
        ``holder`` has it; False while another holder's lease runs (past ``now``)."""
        ...

    async def release(self, name: str, holder: str) -> None:
        """Give the lease up, if ``holder`` has it (a clean stop hands it over at once)."""
        ...

    async def holder(self, name: str, now: datetime) -> str | None:
        """Who holds ``name`` at ``now``, if anyone."""
        ...
