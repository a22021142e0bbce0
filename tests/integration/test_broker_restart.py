"""Survival of a broker restart mid-stream: nothing accepted is lost, nothing doubled."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from tests.integration.harness import EXAMPLE, Federation, wait_until

pytestmark = pytest.mark.broker
PEERS = ("NL-NCC", "LU-HCPN", "DE-NW")
LOAD = 40


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=120,
                   stdout=subprocess.DEVNULL)


async def test_broker_restart_mid_stream_loses_and_duplicates_nothing(
        federation: Federation) -> None:
    """`rabbitmqctl stop_app`/`start_app` while sitreps flow: all delivered exactly once."""
    await federation.wait_ready()
    ids: list[str] = []

    async def submit_load() -> None:
        for n in range(LOAD):
            body = {**EXAMPLE, "sitrep": {**EXAMPLE["sitrep"], "report_number": n + 1,
                                          "incident": {"id": "BE-RESTART", "title": "restart"}}}
            status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps", body)
            assert status == 202, answer
            ids.append(answer["id"])
            await asyncio.sleep(0.05)

    load = asyncio.create_task(submit_load())
    await asyncio.sleep(0.4)
    try:
        await asyncio.to_thread(_ctl, "stop_app")
        await asyncio.sleep(3)
    finally:
        await asyncio.to_thread(_ctl, "start_app")
        await asyncio.to_thread(_ctl, "await_startup")
    await load
    assert len(ids) == LOAD

    async def all_delivered() -> bool:
        status, page = await federation.api("BE-NCCN", "GET",
                                            "/v1/messages?incident=BE-RESTART&limit=1000")
        if status != 200:
            return False
        states = [r["state"] for m in page["items"] for r in m["recipients"]]
        return len(states) == LOAD * len(PEERS) and set(states) == {"delivered"}

    await wait_until(all_delivered, 120, "every message delivered after the restart")
    for centre in PEERS:
        status, inbox = await federation.api(centre, "GET",
                                             "/v1/inbox?incident=BE-RESTART&limit=1000")
        assert status == 200
        got = [m["id"] for m in inbox["items"]]
        assert sorted(got) == sorted(ids), f"{centre}: lost or duplicated"
    await federation.wait_ready(timeout=60)
