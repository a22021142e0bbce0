"""Grows a node's ledger with real signed traffic for ``crisisgw bench scale``.

Every row is what the node itself writes, through the same store calls, in the same
transactions: each message is a real envelope sealed with its centre's key, each receipt
a real signed receipt, and the audit chain, counters and incident index are appended to
as the stores do when the node runs. What is skipped is only the transport: no AMQP
publish and no HTTP request per message. What is left is the node's own store code on
its one writer thread, about 100 statements and 3 ms of one core per pair: on two cores
a million pairs take about an hour (the rate is printed).

Per step ``i``, one pair:

* ours, A -> B: stored (``outbox.submit``), published (``on_confirmed``), B's signed
  ``delivered`` receipt applied (``receipts.apply``), and for most also B's
  ``acknowledged`` receipt;
* B's, B -> A: stored with our signed ``delivered`` receipt (``inbox.ingest``), that
  receipt published, and most acknowledged by a duty officer (``inbox.acknowledge``)
  with our signed ``acknowledged`` receipt, published.

Sitreps and CAP-like alerts, flash, urgent and routine, spread over many incidents: each
block of 20 pairs makes incidents of 10, 5, 3 and 2 pairs, with a numbered series of
reports from each side. One pair in 10 is left unacknowledged on each side (the overdue
counts a long-running node carries), and among the latest :data:`BACKLOG_WINDOW` pairs
one in 5 stays queued to B: a backlog that, as in real life, drains (the next
:func:`grow` delivers it first) rather than piles up.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from gateway.adapters.stores.ledger import StoreLedger
from gateway.protocol.delivery import on_confirmed
from gateway.protocol.keys import SigningKey
from gateway.protocol.receipts import ReceiptState, receipt_envelope
from gateway.protocol.signing import seal
from gateway.protocol.types import Mode, Priority, format_time, parse_time
from gateway.service.records import InboxEntry, IncomingReceipt, OutgoingMessage
from gateway.service.submit import outgoing

#: Pairs per incident within each block of 20 pairs.
INCIDENT_SIZES = (10, 5, 3, 2)
BACKLOG_WINDOW = 200
BACKLOG_EVERY = 5
UNACKNOWLEDGED_EVERY = 10
#: History spacing between two pairs (a million pairs span about 230 days).
STEP = timedelta(seconds=20)
PRIORITIES = ("routine", "routine", "routine", "urgent", "flash")


@dataclass(frozen=True, slots=True)
class Side:
    """A centre of the pair: its id and signing key."""

    id: str
    key: SigningKey


def incident_of(i: int) -> tuple[str, int]:
    """(incident id, report number of each side) of pair ``i``."""
    block, offset = divmod(i, sum(INCIDENT_SIZES))
    for part, size in enumerate(INCIDENT_SIZES):
        if offset < size:
            return f"EU-SCALE-{block:06d}-{part}", offset + 1
        offset -= size
    raise AssertionError(i)


def _envelope(sender: str, to: str, i: int, created: datetime, *, backlog: bool
              ) -> dict[str, Any]:
    incident, number = incident_of(i)
    life = timedelta(days=7) if backlog else timedelta(days=2)
    env: dict[str, Any] = {
        "v": 1, "id": str(uuid.uuid4()), "from": sender, "to": [to],
        "created": format_time(created), "expires": format_time(created + life),
        "mode": "actual", "tlp": "GREEN", "priority": PRIORITIES[i % len(PRIORITIES)],
        "incident": incident}
    if i % 7 == 3:
        env["type"] = "alert"
        env["body"] = {"identifier": f"{sender}-CAP-{i}", "sender": f"ops@{sender.lower()}.eu",
                       "sent": format_time(created), "status": "Actual", "msgType": "Alert",
                       "scope": "Public", "infos": [{
                           "category": ["Met"], "event": "Flood", "urgency": "Immediate",
                           "severity": "Severe", "certainty": "Likely",
                           "headline": f"Flood warning {i}", "language": "en"}]}
    else:
        env["type"] = "sitrep"
        env["body"] = {
            "incident": {"id": incident, "title": f"Flooding, area {incident[9:]}",
                         "phase": "response"},
            "report_number": number, "purpose": "initial" if number == 1 else "update",
            "severity": ("minor", "moderate", "severe")[i % 3],
            "summary": {"en": f"Situation report {number} from {sender}: water levels "
                              "stable, dykes monitored, no casualties.",
                        "fr": f"Rapport {number}: niveaux stables."}}
    return env


@dataclass(frozen=True, slots=True)
class Pair:
    """The measured node (``a``) and its peer (``b``)."""

    a: Side
    b: Side


def _receipt(issuer: Side, answered: dict[str, Any], digest: str, state: ReceiptState,
             at: datetime) -> tuple[str, bytes]:
    """(id, signed bytes) of ``issuer``'s receipt for the envelope ``answered``."""
    env = receipt_envelope(receipt_id=uuid.uuid4(), issuer=issuer.id,
                           sender=answered["from"], message_id=answered["id"], digest=digest,
                           state=state, now=at, mode=Mode.ACTUAL,
                           priority=Priority(answered["priority"]))
    return str(env["id"]), seal(env, issuer.key).wire


def _our_receipt(a: Side, answered: dict[str, Any], digest: str, state: ReceiptState,
                 at: datetime) -> OutgoingMessage:
    env = receipt_envelope(receipt_id=uuid.uuid4(), issuer=a.id, sender=answered["from"],
                           message_id=answered["id"], digest=digest, state=state, now=at,
                           mode=Mode.ACTUAL, priority=Priority(answered["priority"]))
    return outgoing(env, a.key, (answered["from"],), answers=(answered["from"], answered["id"]))


async def _ours(ledger: StoreLedger, p: Pair, i: int, created: datetime, *,
                backlog: bool) -> None:
    """Pair ``i``'s message to B; a backlog one is created ``created`` (the fill's
    present: it is what is still waiting now)."""
    env = _envelope(p.a.id, p.b.id, i, created, backlog=backlog)
    m = outgoing(env, p.a.key, (p.b.id,))
    await ledger.outbox.submit(m, None, created)
    if backlog:
        return
    await _delivered(ledger, p, env, m.digest, created, acknowledged=bool(
        i % UNACKNOWLEDGED_EVERY))


async def _delivered(ledger: StoreLedger, p: Pair, env: dict[str, Any], digest: str,
                     created: datetime, *, acknowledged: bool) -> None:
    """Our message ``env`` published, and B's receipts for it applied."""
    await ledger.outbox.transition(env["id"], p.b.id, partial(
        on_confirmed, now=created + timedelta(milliseconds=40)))
    states = [ReceiptState.DELIVERED]
    if acknowledged:
        states.append(ReceiptState.ACKNOWLEDGED)
    for n, state in enumerate(states):
        at = created + timedelta(seconds=1 + 120 * n)
        rid, wire = _receipt(p.b, env, digest, state, at)
        await ledger.receipts.apply(IncomingReceipt(
            issuer=p.b.id, id=rid, message_id=env["id"], message_sha256=digest,
            state=state.value, reason=None, at=at, wire=wire), at)


async def _drain(ledger: StoreLedger, p: Pair) -> int:
    """Deliver what an earlier :func:`grow` left queued, or the node sent since (the
    peer came back and answered)."""
    drained = 0
    for state in ("queued", "sent"):
        for _ in range(1000):
            waiting = await ledger.outbox.list({"state": state, "peer": p.b.id}, 500)
            if not waiting:
                break
            for view in waiting:
                env = json.loads(view.wire)["envelope"]
                await _delivered(ledger, p, env, view.sha256, parse_time(view.created),
                                 acknowledged=True)
            drained += len(waiting)
    return drained


async def _theirs(ledger: StoreLedger, p: Pair, i: int, created: datetime) -> None:
    env = _envelope(p.b.id, p.a.id, i, created, backlog=False)
    sealed = seal(env, p.b.key)
    received = created + timedelta(milliseconds=60)
    entry = InboxEntry(
        sender=p.b.id, id=env["id"], type=env["type"], priority=env["priority"],
        mode="actual", tlp="GREEN", incident=env["incident"], created=created,
        expires=created + timedelta(days=2), digest=sealed.digest, wire=sealed.wire,
        received_at=received, state="delivered")
    receipt = _our_receipt(p.a, env, sealed.digest, ReceiptState.DELIVERED, received)
    await ledger.inbox.ingest(entry, receipt, received)
    await ledger.outbox.transition(receipt.id, p.b.id, partial(on_confirmed, now=received))
    if i % UNACKNOWLEDGED_EVERY == 0:
        return
    acked = received + timedelta(minutes=3)
    ack = _our_receipt(p.a, env, sealed.digest, ReceiptState.ACKNOWLEDGED, acked)
    await ledger.inbox.acknowledge(p.b.id, env["id"], "duty officer", ack, acked,
                                   actor="operator")
    await ledger.outbox.transition(ack.id, p.b.id, partial(on_confirmed, now=acked))


def origin(pairs: int, now: datetime) -> datetime:
    """When pair 0 is created, for a history of ``pairs`` pairs ending a day before
    ``now``."""
    return now - timedelta(days=1) - pairs * STEP


async def grow(ledger: StoreLedger, p: Pair, pairs: range, first: datetime, *,
               now: datetime, concurrency: int = 256, step: timedelta = STEP) -> None:
    """Deliver the backlog left before, then write the pairs numbered ``pairs``; pair
    ``i`` is created at ``first + i * step`` (see :func:`origin`), ``concurrency`` pairs
    at a time (the writer groups them)."""
    await _drain(ledger, p)
    queue = iter(pairs)
    window = pairs.stop - BACKLOG_WINDOW

    async def worker() -> None:
        for i in queue:
            created = first + i * step
            backlog = i >= window and i % BACKLOG_EVERY == 0
            # The backlog is what waits now: created in the last minutes before ``now``,
            # whatever the size (at a small size the history's end is long past).
            await _ours(ledger, p, i, now - (pairs.stop - i) * timedelta(seconds=1)
                        if backlog else created, backlog=backlog)
            await _theirs(ledger, p, i, created + step / 2)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
