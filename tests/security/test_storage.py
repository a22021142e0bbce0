"""A peer cannot fill our disk or our broker (finding 5): security events are stored
within a daily quota per publisher (then counted), the broker refuses oversized
messages, and a peer's user may open only a few connections."""

from __future__ import annotations

import asyncio
import os
import uuid

import aio_pika
import aiormq
import pytest

from gateway.adapters.stores.security import SECURITY_PAYLOAD_BYTES, SECURITY_ROWS_PER_DAY
from tests.integration.harness import Federation, amqp_connect, wait_until

pytestmark = pytest.mark.broker
TARGET, PEER = "BE-NCCN", "DE-NW"


def _ledger_bytes(fed: Federation) -> int:
    data = fed.nodes[TARGET].settings.node.data_dir
    return sum(f.stat().st_size for f in data.iterdir() if f.name.startswith("ledger"))


async def _flood(fed: Federation, bodies: list[bytes]) -> None:
    peer = fed.nodes[PEER].settings.peer(TARGET)
    assert peer is not None
    conn = await amqp_connect(peer.inbox_url.get_secret_value())
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange("crisisgw.inbox", ensure=False)
        user = peer.inbox_url.get_secret_value().split("://", 1)[1].split(":", 1)[0]
        from urllib.parse import unquote  # noqa: PLC0415

        for body in bodies:
            await ex.publish(aio_pika.Message(body, user_id=unquote(user),
                                              message_id=uuid.uuid4().hex),
                             routing_key="garbage")
    finally:
        await conn.close()


async def test_garbage_fills_neither_the_ledger_nor_the_audit_log(
        federation: Federation) -> None:
    """1,200 garbage payloads (20 of them 256 KiB) from one peer: at most the quota of
    payload bytes and of rows is stored; the rest is counted per reason; the ledger grows
    by a few megabytes, not by the ~25 MB of the payloads."""
    await federation.wait_ready()
    before = _ledger_bytes(federation)
    bodies = [os.urandom(256 * 1024) for _ in range(20)]
    bodies += [b"not json %d" % i for i in range(SECURITY_ROWS_PER_DAY + 180)]
    await _flood(federation, bodies)

    async def all_seen() -> bool:
        _, events = await federation.api(TARGET, "GET", "/v1/security-events?limit=1")
        counted = sum(s["count"] for s in events["suppressed"] if s["reason"] == "not_ijson")
        return counted >= 150
    await wait_until(all_seen, 120, "the flood counted at BE-NCCN")
    _, events = await federation.api(TARGET, "GET", "/v1/security-events?limit=1")
    mine = [s for s in events["suppressed"] if PEER in s["publisher"]]
    assert mine, events["suppressed"]
    assert all(s["last_sha256"] for s in mine)
    grown = _ledger_bytes(federation) - before
    print(f"\nledger grew {grown} bytes for {len(bodies)} garbage payloads "
          f"({sum(map(len, bodies))} bytes)")
    assert grown < SECURITY_PAYLOAD_BYTES + 8 * 1024 * 1024, f"the ledger grew {grown} bytes"
    _, audit = await federation.api(TARGET, "GET", "/v1/audit?kind=security.suppressed")
    assert audit["items"], "the start of suppression is in the audit log"


async def test_the_broker_refuses_oversized_messages_and_extra_connections(
        federation: Federation) -> None:
    """A 1 MiB publish is refused by the broker itself; a peer's fifth connection too."""
    await federation.wait_ready()
    with pytest.raises((aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException,
                        ConnectionError)):
        await asyncio.wait_for(_flood(federation, [b"x" * (1024 * 1024)]), 20)
    peer = federation.nodes[PEER].settings.peer(TARGET)
    assert peer is not None
    url = peer.inbox_url.get_secret_value()
    conns = []
    refused = 0
    try:
        for _ in range(6):
            try:
                conns.append(await amqp_connect(url))
            except (aiormq.exceptions.AMQPError, ConnectionError):
                refused += 1  # the broker closes the connection in answer to Open
    finally:
        for conn in conns:
            await conn.close()
    assert refused >= 2  # DE-NW's own node holds one; 4 is the cap
