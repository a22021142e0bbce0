"""Thirty centres, one offline (FAULTS.md row 32).

Thirty full nodes (own vhost, ledger, key and least-privilege users each) run in this
process on the real broker, as ``gateway.bench.federation`` does. The first centre
broadcasts to the other 29 while the last is offline: its node is stopped and the
sender's link to it is blackholed by a :class:`~tests.faults.proxy.ProxyThread`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.provision import delete_many
from gateway.app import Node
from gateway.bench.federation import centres
from gateway.config import load_settings
from gateway.demo import peer_user, prepare
from tests.faults.load import SETTLED, sitrep, states, tally
from tests.faults.proxy import ProxyThread
from tests.faults.report import record
from tests.faults.test_network import peer_view, route_via_proxy
from tests.integration.harness import (
    AMQP,
    LINK_PORT,
    TLS,
    Federation,
    NodeHandle,
    free_base_port,
    wait_until,
)

pytestmark = [
    pytest.mark.broker,
    # The nodes run inside pytest here, where warnings are errors: gateway/web stores
    # request state under str keys, which aiohttp 3.14 warns about (once per key).
]

N = 30
LOAD = 10
OVERRIDES: dict[str, Any] = {
    "broker": {"heartbeat": 2, "prefetch": 64},
    "delivery": {"publish_timeout_seconds": 2.0, "retry_base_seconds": 0.2,
                 "retry_cap_seconds": 2.0},
    "commcheck": {"every_days": 3650.0},
    "directory": [],
}


async def broadcast(fed: Federation, sender: str, to: list[str], inc: str,
                    first: int) -> list[str]:
    """``LOAD`` sitreps from ``sender`` to ``to`` (released to the ``eu`` group)."""
    ids = []
    for number in range(first, first + LOAD):
        status, answer = await fed.api(sender, "POST", "/v1/sitreps",
                                       sitrep(inc, number, to, releasable=["eu"]))
        assert status == 202, answer
        ids.append(answer["id"])
    return ids


async def delivered_to_all(fed: Federation, sender: str, ids: list[str], peers: list[str],
                           timeout: float) -> float:
    """Seconds until every (id, peer) pair is settled at ``sender``."""
    started = time.monotonic()

    async def done() -> bool:
        found = await states(fed, sender, ids)
        return all(found.get((i, p)) in SETTLED for i in ids for p in peers)
    await wait_until(done, timeout, f"{len(ids)} messages settled for {len(peers)} peers")
    return time.monotonic() - started


async def test_thirty_peers_one_offline_others_unaffected_backlog_drains(
        tmp_path: Path) -> None:
    """Row 32: with one of 30 centres offline, the other 28 recipients get a broadcast as
    fast as when all were online, the offline one's backlog is shown, and it drains
    when the centre is back."""
    prefix = f"t{secrets.token_hex(3)}"
    group = centres(N)
    base = free_base_port(N)
    paths = await asyncio.to_thread(prepare, tmp_path, base, AMQP, centres=group,
                                    prefix=prefix, user_prefix=f"{prefix}.",
                                    overrides=OVERRIDES, tls=TLS)
    sender, offline = group[0].id, group[-1].id
    online = [c.id for c in group[1:-1]]
    proxy = ProxyThread(LINK_PORT)
    fed = Federation(root=tmp_path, prefix=prefix)
    nodes: dict[str, Node] = {}
    try:
        for index, (cid, path) in enumerate(paths.items()):
            fed.nodes[cid] = NodeHandle(
                centre=cid, config=path, port=base + index,
                token=(path.parent / "api-token").read_text().strip(),
                settings=load_settings(path))
        route_via_proxy(fed, sender, offline, proxy.port)
        for cid, handle in fed.nodes.items():
            nodes[cid] = Node(handle.settings)
            await nodes[cid].start()

        async def connected() -> bool:
            return all(n.consumer.connected for n in nodes.values())
        await wait_until(connected, 60, "30 inbox consumers")
        inc = f"SCALE-{uuid.uuid4().hex[:6]}"
        baseline_ids = await broadcast(fed, sender, [*online, offline], inc, 1)
        baseline = await delivered_to_all(fed, sender, baseline_ids, [*online, offline], 60)

        await nodes.pop(offline).stop()
        proxy.pause()
        ids = await broadcast(fed, sender, [*online, offline], inc, 100)
        with_offline = await delivered_to_all(fed, sender, ids, online, 60)
        found = await states(fed, sender, ids)
        assert {found[(i, offline)] for i in ids} == {"queued"}
        assert (await peer_view(fed, sender, offline))["backlog"] == LOAD

        async def shown_down() -> bool:  # the heartbeat notices within its grace
            return not (await peer_view(fed, sender, offline))["link_up"]
        await wait_until(shown_down, 20, "the offline peer's link shown down")
        assert with_offline <= max(3 * baseline, baseline + 5), (baseline, with_offline)

        proxy.reset()
        proxy.resume()
        nodes[offline] = Node(load_settings(paths[offline]))
        await nodes[offline].start()
        drained = await delivered_to_all(fed, sender, ids, [offline], 60)
        counts = await tally(
            fed, 32, f"30 peers, 1 offline: {baseline:.1f}s/{with_offline:.1f}s, "
            f"drain {drained:.1f}s", sender, baseline_ids + ids, [*online, offline], inc)
        record(counts)
        assert counts.delivered == 2 * LOAD * (N - 1)
        assert (await peer_view(fed, sender, offline))["backlog"] == 0
    finally:
        for node in nodes.values():
            await node.stop()
        proxy.close()
        users = [f"{prefix}.{c.id}" for c in group]
        users += [peer_user(a.id, b.id, f"{prefix}.") for a in group for b in group
                  if a.id != b.id]
        await asyncio.to_thread(delete_many, [c.vhost(prefix) for c in group], users)
