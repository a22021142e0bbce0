"""Faults of a centre that runs as several instances (README, High availability).

BE-NCCN runs as two instances over one PostgreSQL ledger (a server of this module's own,
so that restarting it disturbs no other test), behind one API address; NL-NCC is one
node on SQLite. Sitreps flow both ways while one fault strikes; the counts table holds
both directions (accepted, delivered, lost = 0, duplicated = 0), and after each case
``crisisgw audit verify`` finds BE-NCCN's audit chain intact.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.faults.load import submit_load, tally
from tests.faults.report import FaultCounts, record
from tests.integration.ha import HaCentre
from tests.integration.harness import Federation, wait_until
from tests.pg import Postgres, PrivateServer

pytestmark = pytest.mark.broker
BE, NL = "BE-NCCN", "NL-NCC"
LOAD = 40
#: Redeliveries and re-claims of what a killed instance held take up to its lease.
SETTLE = 150.0
OVERRIDES = {"delivery": {"publish_timeout_seconds": 3.0}}


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    pg = PrivateServer()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory, server: PrivateServer) -> Iterator[HaCentre]:
    postgres = Postgres(server.admin_url)
    fed = Federation.create(tmp_path_factory.mktemp("ha"), overrides=OVERRIDES,
                            postgres=postgres, on_postgres=(BE,))
    centre = HaCentre(fed, BE, count=2, pg_proxies=True)
    try:
        fed.start(NL)
        centre.start()
        yield centre
    finally:
        centre.close()
        fed.destroy()
        postgres.drop()


async def _ready(ha: HaCentre) -> None:
    """Every instance that runs answers /readyz 200, and NL-NCC too."""
    await ha.fed.wait_ready()

    async def ready() -> bool:
        for inst in ha.instances:
            if not inst.alive():
                continue
            status, _ = await ha.fed.api(BE, "GET", "/readyz", port=inst.port)
            if status != 200:
                return False
        return True
    await wait_until(ready, 60, "BE-NCCN's instances ready")


def _chain_intact(ha: HaCentre) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "-c",
                           str(ha.instances[0].config)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit chain intact" in done.stdout


async def _case(ha: HaCentre, row: int, fault: str, incident: str,
                strike: Callable[[], Awaitable[None]], *, at: float = 1.0) -> FaultCounts:
    """Load both ways; ``strike`` ``at`` seconds in; tally both directions as one row."""
    fed = ha.fed

    async def later() -> None:
        await asyncio.sleep(at)
        await strike()

    (out_ids, out_refused), (in_ids, in_refused), _ = await asyncio.gather(
        submit_load(fed, BE, [NL], LOAD, f"{incident}-OUT", pause=0.05),
        submit_load(fed, NL, [BE], LOAD, f"{incident}-IN", pause=0.05),
        later())
    out = await tally(fed, row, fault, BE, out_ids, [NL], f"{incident}-OUT",
                      timeout=SETTLE, refused=out_refused)
    into = await tally(fed, row, fault, NL, in_ids, [BE], f"{incident}-IN",
                       timeout=SETTLE, refused=in_refused)
    both = FaultCounts(row, fault, accepted=out.accepted + into.accepted,
                       delivered=out.delivered + into.delivered,
                       duplicated=out.duplicated + into.duplicated, lost=out.lost + into.lost,
                       rejected=Counter(out.rejected) + Counter(into.rejected))
    assert both.delivered > 0
    return record(both)


async def _restore(ha: HaCentre) -> None:
    """Every instance running and ready again (for the next case)."""
    for inst in ha.instances:
        if inst.pg_proxy is not None:
            inst.pg_proxy.forward()
    ha.start()
    await _ready(ha)


async def _holder(ha: HaCentre) -> int:
    async def known() -> bool:
        return ha.holder() is not None
    await wait_until(known, 30, "the instance holding the jobs' lease")
    found = ha.holder()
    assert found is not None
    return found


async def test_kill_9_of_one_instance_mid_stream(ha: HaCentre) -> None:
    """The other instance goes on; what the dead one held is redelivered or re-claimed."""
    await _ready(ha)
    victim = 1 - await _holder(ha)

    async def strike() -> None:
        await asyncio.to_thread(ha.stop, victim, kill=True)

    await _case(ha, 101, "HA: kill -9 of one instance mid-stream", "HA-KILL", strike)
    _chain_intact(ha)
    await _restore(ha)


async def test_kill_9_of_the_instance_holding_the_jobs_lease(ha: HaCentre) -> None:
    """The periodic jobs move to the other instance within the lease."""
    await _ready(ha)
    victim = await _holder(ha)

    async def strike() -> None:
        await asyncio.to_thread(ha.stop, victim, kill=True)

    await _case(ha, 102, "HA: kill -9 of the jobs' lease holder", "HA-LEADER", strike)

    async def moved() -> bool:
        return ha.holder() == 1 - victim
    await wait_until(moved, 30, "the other instance taking the jobs' lease")
    _chain_intact(ha)
    await _restore(ha)


async def test_postgresql_restart_mid_stream(ha: HaCentre, server: PrivateServer) -> None:
    """Every connection of both instances is dropped; they reconnect and go on."""
    await _ready(ha)
    async def strike() -> None:
        await asyncio.to_thread(server.restart)

    await _case(ha, 103, "HA: PostgreSQL restart mid-stream", "HA-PGRESTART", strike)
    _chain_intact(ha)
    await _restore(ha)


async def test_one_instance_cut_off_from_postgresql(ha: HaCentre) -> None:
    """One instance's route to PostgreSQL goes silent for 12 s; the other goes on, the
    cut-off one fails its writes (nothing half-done) and recovers."""
    await _ready(ha)
    cut = ha.instances[0].pg_proxy
    assert cut is not None

    async def strike() -> None:
        cut.pause()
        await asyncio.sleep(12)
        cut.reset()  # the silent connections end; new ones go through
        cut.forward()

    await _case(ha, 104, "HA: one instance cut off from PostgreSQL", "HA-PGCUT", strike)
    text = ha.instances[0].log.read_text()
    assert '"ledger_unavailable"' in text or '"ingest_waiting_for_ledger"' in text  # it bit
    _chain_intact(ha)
    await _restore(ha)


async def test_rolling_restart_of_every_instance_under_load(ha: HaCentre) -> None:
    """SIGTERM, start, ready: one instance after the other, while sitreps flow."""
    await _ready(ha)

    async def strike() -> None:
        for index in range(ha.count):
            await asyncio.to_thread(ha.stop, index)
            ha.start(index)
            await _ready(ha)

    await _case(ha, 105, "HA: rolling restart of every instance", "HA-ROLL", strike,
                at=0.5)
    _chain_intact(ha)
