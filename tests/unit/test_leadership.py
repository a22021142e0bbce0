"""Which instance runs the periodic jobs (gateway.service.leader), on a real ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.service.leader import LEASE_SECONDS, Leadership


class _Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


async def test_one_instance_holds_the_jobs_and_another_takes_over_when_it_dies(
        tmp_path: Path) -> None:
    """The first instance holds the lease; a second waits; when the first stops renewing
    (killed) the second takes it after the lease ran out and is told so once; the first,
    back, does not hold it; a clean release hands it over at the next try."""
    clock = _Clock()
    ledger = SqliteLedger(tmp_path / "l.db")
    await ledger.open()
    taken: list[str] = []

    async def took() -> None:
        taken.append("two")

    try:
        one = Leadership(leases=ledger.leases, clock=clock, holder="one")
        two = Leadership(leases=ledger.leases, clock=clock, holder="two", on_acquired=took)
        assert await one.try_acquire()
        assert one.held
        assert not await two.try_acquire()
        assert not two.held
        clock.at += timedelta(seconds=LEASE_SECONDS / 2)
        assert not await two.try_acquire()
        clock.at += timedelta(seconds=LEASE_SECONDS)  # one stopped renewing
        assert not one.held  # by its own clock too: never past its last renewal
        assert await two.try_acquire()
        assert await two.try_acquire()  # renewed: told only once
        assert taken == ["two"]
        assert not await one.try_acquire()
        await two.release()
        assert not two.held
        assert await one.try_acquire()
    finally:
        await ledger.close()
