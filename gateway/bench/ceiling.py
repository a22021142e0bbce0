"""The ceiling: what plain aio-pika does on the same broker, with the same guarantees.

Persistent, mandatory publishes with publisher confirms into a quorum queue, at most
``window`` unconfirmed at a time (the gateway's window per peer), consumed with a
manual ack per message (the gateway's prefetch). Nothing else: no signing, no ledger,
no receipts. The gateway's throughput is reported as a fraction of this.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aio_pika

QUEUE = "crisisgw.bench-ceiling"


async def run(url: str, *, messages: int, payload_bytes: int, window: int = 256,
              prefetch: int = 256) -> dict[str, Any]:
    """Publish and consume ``messages`` payloads of ``payload_bytes``; msg/s end to end.

    ``url`` must allow declaring and using an exchange and a queue named
    ``crisisgw.bench-ceiling`` (a node's own broker user does); both are deleted afterwards.
    """
    payload = os.urandom(payload_bytes)
    conn = await aio_pika.connect(url)
    try:
        pub = await conn.channel(publisher_confirms=True, on_return_raises=True)
        sub = await conn.channel()
        await sub.set_qos(prefetch_count=prefetch)
        queue = await sub.declare_queue(QUEUE, durable=True,
                                        arguments={"x-queue-type": "quorum"})
        await queue.purge()
        # through an exchange of ours: a node's user may not write to the default exchange
        exchange = await pub.declare_exchange(QUEUE, aio_pika.ExchangeType.DIRECT,
                                              auto_delete=True)
        await queue.bind(exchange, routing_key=QUEUE)
        received = 0
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= messages:
                done.set()

        tag = await queue.consume(on_message)
        slots = asyncio.Semaphore(window)

        async def publish(i: int) -> None:
            try:
                await exchange.publish(
                    aio_pika.Message(payload, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                     message_id=str(i), type="sitrep"),
                    routing_key=QUEUE, mandatory=True, timeout=30)
            finally:
                slots.release()

        started = time.perf_counter()
        tasks = []
        for i in range(messages):
            await slots.acquire()
            tasks.append(asyncio.create_task(publish(i)))
        await asyncio.gather(*tasks)
        confirmed = time.perf_counter() - started
        await asyncio.wait_for(done.wait(), timeout=120)
        elapsed = time.perf_counter() - started
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await conn.close()
    return {"messages": messages, "payload_bytes": payload_bytes, "window": window,
            "confirmed_s": round(confirmed, 3), "elapsed_s": round(elapsed, 3),
            "msg_per_s": round(messages / elapsed, 1)}
