"""Known loads and their tallies for the fault tests.

A test submits ``n`` sitreps with :func:`submit_load`, injects its fault, then calls
:func:`tally`, which waits until every (message, recipient) pair is settled at the
sender and counts what each recipient's inbox holds.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from tests.faults.report import FaultCounts
from tests.integration.harness import Federation

SETTLED = frozenset({"delivered", "acknowledged", "rejected", "expired"})


def sitrep(incident: str, number: int, to: list[str], **extra: Any) -> dict[str, Any]:
    """A small valid sitrep submission."""
    return {"to": to, "tlp": "GREEN", **extra,
            "sitrep": {"incident": {"id": incident, "title": "fault test"},
                       "report_number": number, "severity": "moderate",
                       "summary": f"fault test report {number}"}}


async def submit_load(fed: Federation, sender: str, to: list[str], n: int, incident: str,
                      *, pause: float = 0.0, first: int = 1) -> tuple[list[str], Counter[str]]:
    """Submit ``n`` sitreps; returns the accepted ids and the non-2xx statuses seen."""
    ids: list[str] = []
    refused: Counter[str] = Counter()
    for number in range(first, first + n):
        status, answer = await fed.api(sender, "POST", "/v1/sitreps",
                                       sitrep(incident, number, to))
        if 200 <= status < 300:
            ids.append(answer["id"])
        else:
            title = answer.get("title", "") if isinstance(answer, dict) else str(answer)[:40]
            refused[f"{status} {title}".strip()] += 1
        if pause:
            await asyncio.sleep(pause)
    return ids, refused


async def states(fed: Federation, sender: str, ids: list[str]) -> dict[tuple[str, str], str]:
    """(message id, recipient) -> delivery state at the sender."""
    found: dict[tuple[str, str], str] = {}
    for message_id in ids:
        status, view = await fed.api(sender, "GET", f"/v1/messages/{message_id}")
        if status != 200:
            continue
        for r in view["recipients"]:
            found[(message_id, r["centre"])] = r["state"]
    return found


async def inbox_counts(fed: Federation, recipient: str, incident: str) -> Counter[str]:
    """How many inbox rows each message id has at ``recipient`` (every page)."""
    counts: Counter[str] = Counter()
    after = ""
    while True:
        status, page = await fed.api(recipient, "GET",
                                     f"/v1/inbox?incident={incident}&limit=1000{after}")
        assert status == 200, page
        counts.update(item["id"] for item in page["items"])
        if page["next"] is None:
            return counts
        after = f"&after={page['next']}"


async def tally(fed: Federation, row: int, fault: str, sender: str, ids: list[str],
                recipients: list[str], incident: str, *, timeout: float = 120.0,
                refused: Counter[str] | None = None) -> FaultCounts:
    """Wait until every pair is settled (or ``timeout``), then count.

    ``lost`` counts pairs that are not settled, plus pairs reported delivered whose
    message is missing from the recipient's inbox; ``duplicated`` counts inbox rows
    beyond the first per message.
    """
    deadline = time.monotonic() + timeout
    found: dict[tuple[str, str], str] = {}
    while time.monotonic() < deadline:
        found = await states(fed, sender, ids)
        if len(found) == len(ids) * len(recipients) and set(found.values()) <= SETTLED:
            break
        await asyncio.sleep(0.25)
    counts = FaultCounts(row, fault, accepted=len(ids))
    counts.rejected.update(refused or {})
    for message_id in ids:
        for peer in recipients:
            state = found.get((message_id, peer))
            if state in ("delivered", "acknowledged"):
                counts.delivered += 1
            elif state in ("rejected", "expired"):
                counts.rejected[state] += 1
            else:
                counts.lost += 1
    for peer in recipients:
        held = await inbox_counts(fed, peer, incident)
        counts.duplicated += sum(n - 1 for n in held.values() if n > 1)
        for message_id in ids:
            if found.get((message_id, peer)) in ("delivered", "acknowledged") and \
                    held[message_id] == 0:
                counts.lost += 1
    return counts
