"""Which instance of a node runs its periodic jobs.

A node may run as several instances over one PostgreSQL ledger. Every instance serves
the API and the console, consumes the inbox and dispatches; the periodic jobs (signed
checkpoints, scheduled communication tests, the expiry sweep, directory publishing,
retention) run on one of them at a time: the holder of the lease ``periodic-jobs``
(:class:`gateway.service.ports.LeaseStore`). The holder renews it every
:data:`RENEW_SECONDS`; when it stops cleanly it gives the lease up, and when it dies the
lease runs out after :data:`LEASE_SECONDS` and another instance takes it. On the
embedded SQLite ledger there is one instance, which always holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from gateway.errors import GatewayError
from gateway.service.ports import Clock
from gateway.service.ports_jobs import LeaseStore

log = structlog.get_logger("crisisgw.leader")

LEASE_NAME = "periodic-jobs"
#: How long a lease lasts without renewal (how long the jobs may pause after a crash).
LEASE_SECONDS = 15.0
#: How often the holder renews it, and the others try to take it.
RENEW_SECONDS = 5.0


class Leadership:
    """This instance's part in the lease: :attr:`held` says whether to run the jobs."""

    def __init__(self, *, leases: LeaseStore, clock: Clock, holder: str,
                 on_acquired: Callable[[], Awaitable[None]] | None = None,
                 lease: float = LEASE_SECONDS, renew: float = RENEW_SECONDS) -> None:
        self._leases, self._clock, self.holder = leases, clock, holder
        self._on_acquired = on_acquired
        self._lease, self._renew = timedelta(seconds=lease), renew
        self._until: datetime | None = None

    @property
    def held(self) -> bool:
        """Whether this instance holds the lease now (by its own clock, never past the
        end of the last renewal)."""
        return self._until is not None and self._clock.now() < self._until

    async def try_acquire(self) -> bool:
        """Take or renew the lease once; a ledger failure counts as not holding it."""
        was = self.held
        now = self._clock.now()
        try:
            got = await self._leases.acquire(LEASE_NAME, self.holder, now, now + self._lease)
        except GatewayError as exc:
            got = False
            log.warning("lease_renewal_failed", error=str(exc))
        self._until = now + self._lease if got else None
        if got and not was:
            log.info("lease_acquired", lease=LEASE_NAME, holder=self.holder)
            if self._on_acquired is not None:
                await self._on_acquired()
        elif was and not got:
            log.warning("lease_lost", lease=LEASE_NAME, holder=self.holder)
        return got

    async def run(self) -> None:
        """Renew (or try to take) the lease every :data:`RENEW_SECONDS`, until cancelled."""
        while True:
            await asyncio.sleep(self._renew)
            await self.try_acquire()

    async def release(self) -> None:
        """Give the lease up (a clean stop): another instance takes it at its next try."""
        if self._until is None:
            return
        self._until = None
        with contextlib.suppress(GatewayError):
            await self._leases.release(LEASE_NAME, self.holder)
        log.info("lease_released", lease=LEASE_NAME, holder=self.holder)
