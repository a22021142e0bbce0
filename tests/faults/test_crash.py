"""Gateway crashes at exact steps (FAULTS.md rows 9, 10, 11).

A node is started with ``CRISISGW_FAILPOINTS`` armed, dies with SIGKILL at the named
step, and is restarted without it. Clients resubmit what got no 2xx with the same
``Idempotency-Key``; every accepted message must reach its recipient exactly once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.adapters.stores import audit as sqlite_audit
from gateway.adapters.stores import offline
from gateway.config import Settings
from gateway.protocol.auditlog import verify_chain
from tests.faults.load import sitrep, states, tally
from tests.faults.report import record
from tests.integration.harness import Federation, wait_until

pytestmark = pytest.mark.broker

SENDER, RECIPIENT = "BE-NCCN", "NL-NCC"
#: Lease of a claimed delivery = 4 x publish timeout + 10 s: keep the restart wait short.
OVERRIDES = {"delivery": {"publish_timeout_seconds": 2.0, "retry_cap_seconds": 5.0}}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def crashfed(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """BE-NCCN and NL-NCC of a federation of their own (BE-NCCN gets killed); BE-NCCN's
    ledger on each engine in turn."""
    postgres = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    fed = Federation.create(tmp_path_factory.mktemp("crash"), overrides=OVERRIDES,
                            postgres=postgres,
                            on_postgres=(SENDER,) if postgres is not None else ())
    fed.start(SENDER, RECIPIENT)
    try:
        yield fed
    finally:
        fed.destroy()


async def post_keyed(fed: Federation, centre: str, bodies: dict[str, dict[str, Any]],
                     ) -> dict[str, tuple[int, str | None, bool]]:
    """POST every body concurrently with its Idempotency-Key; key -> (status, id, replayed).

    A request that gets no answer (the node died) has status 0.
    """
    node = fed.nodes[centre]
    url = f"http://127.0.0.1:{node.port}/v1/sitreps"
    auth = {"Authorization": f"Bearer {node.token}"}

    async def one(http: aiohttp.ClientSession, key: str,
                  body: dict[str, Any]) -> tuple[int, str | None, bool]:
        try:
            async with http.post(url, json=body, headers={**auth, "Idempotency-Key": key},
                                 timeout=aiohttp.ClientTimeout(total=30)) as resp:
                answer = await resp.json(content_type=None)
                replayed = resp.headers.get("Idempotent-Replayed") == "true"
                ok = 200 <= resp.status < 300
                return resp.status, answer["id"] if ok else None, replayed
        except (aiohttp.ClientError, TimeoutError):
            return 0, None, False

    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as http:
        answers = await asyncio.gather(*(one(http, k, b) for k, b in bodies.items()))
    return dict(zip(bodies, answers, strict=True))


def keyed_load(incident: str, n: int) -> dict[str, dict[str, Any]]:
    """``n`` sitreps for NL-NCC, each under a fresh Idempotency-Key."""
    return {f"{incident}-{i}-{uuid.uuid4().hex[:8]}": sitrep(incident, i, [RECIPIENT])
            for i in range(1, n + 1)}


async def wait_killed(fed: Federation, centre: str, timeout: float = 60) -> None:
    """Wait until the node died of SIGKILL (its failpoint fired)."""
    proc = fed.nodes[centre].proc
    assert proc is not None

    async def dead() -> bool:
        return proc.poll() is not None

    await wait_until(dead, timeout, f"{centre} to die at its failpoint")
    assert proc.returncode == -signal.SIGKILL, f"{centre} exited with {proc.returncode}"


async def start(fed: Federation, centre: str, env: dict[str, str] | None = None) -> None:
    """Start ``centre`` and wait until it is ready (failing if it did not come up)."""
    fed.start(centre, env=env)
    await fed.wait_ready()
    proc = fed.nodes[centre].proc
    assert proc is not None
    assert proc.poll() is None, f"{centre} did not start; see {fed.nodes[centre].log}"


async def restart_armed(fed: Federation, centre: str, spec: str) -> None:
    """Stop ``centre`` cleanly and start it again with the failpoints in ``spec``."""
    fed.stop(centre)
    await start(fed, centre, {"CRISISGW_FAILPOINTS": spec})


async def settle(fed: Federation) -> None:
    """Wait until no started node has anything queued or unanswered for a running peer."""
    running = {c for c, n in fed.nodes.items() if n.proc is not None and n.proc.poll() is None}

    async def idle() -> bool:
        for centre in running:
            status, peers = await fed.api(centre, "GET", "/v1/peers")
            if status != 200 or any(p["backlog"] for p in peers["peers"] if p["id"] in running):
                return False
        return True

    await wait_until(idle, 60, "an idle federation")


Answers = dict[str, tuple[int, str | None, bool]]


async def resubmit(fed: Federation, bodies: dict[str, dict[str, Any]],
                   first: Answers) -> tuple[list[str], Counter[str]]:
    """After the restart: resend every request that got no 2xx, then all of them once
    more; returns the message ids (one per key) and what the first attempts got."""
    missing = {k: b for k, b in bodies.items() if first[k][1] is None}
    again = await post_keyed(fed, SENDER, missing)
    assert all(a[1] for a in again.values()), f"retries refused: {again}"
    replay = await post_keyed(fed, SENDER, bodies)
    ids: dict[str, str] = {k: a[1] for k, a in {**first, **again}.items() if a[1]}
    assert {k: a[1] for k, a in replay.items()} == ids, "a key gave two different ids"
    assert all(a[2] for a in replay.values()), "the third attempt was not a replay"
    first_outcomes: Counter[str] = Counter()
    for key, (status, _, _) in first.items():
        if not 200 <= status < 300:
            got = "no answer" if status == 0 else str(status)
            retry = "replayed" if again[key][2] else "created"
            first_outcomes[f"{got}, keyed retry {retry}"] += 1
    return sorted(ids.values()), first_outcomes


def duplicates_seen(log: Path, ids: list[str]) -> int:
    """How often the receiver's log says it took one of ``ids`` again (deduplicated)."""
    wanted, seen = set(ids), 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "message_ingested" and \
                event.get("outcome") == "duplicate" and event.get("message_id") in wanted:
            seen += 1
    return seen


async def test_kill_after_publish_before_sent_is_republished_and_deduplicated(
        crashfed: Federation) -> None:
    """Row 9: killed after the broker confirmed a publish but before "sent" was recorded,
    the node republishes on restart and NL-NCC stores each message once."""
    fed = crashfed
    await fed.wait_ready()
    await settle(fed)
    # NL-NCC is stopped: its queue takes the publishes, but no receipt can settle them
    # before BE-NCCN's lease runs out, so the unrecorded publish is really resent.
    fed.stop(RECIPIENT)
    await restart_armed(fed, SENDER, "dispatch.after_publish@8")
    incident = f"CRASH-9-{uuid.uuid4().hex[:6]}"
    bodies = keyed_load(incident, 30)
    first: dict[str, tuple[int, str | None, bool]] = {}
    for key, body in bodies.items():  # one by one: the dispatcher publishes in between
        first.update(await post_keyed(fed, SENDER, {key: body}))
        await asyncio.sleep(0.05)
    await wait_killed(fed, SENDER)
    await start(fed, SENDER)
    ids, first_outcomes = await resubmit(fed, bodies, first)

    async def all_sent() -> bool:
        found = await states(fed, SENDER, ids)
        return len(found) == len(ids) and set(found.values()) == {"sent"}

    await wait_until(all_sent, 60, "every delivery confirmed by NL-NCC's broker")
    await start(fed, RECIPIENT)
    async def deduplicated() -> bool:  # the copy may come in just after the original
        return duplicates_seen(fed.nodes[RECIPIENT].log, ids) >= 1

    await wait_until(deduplicated, 30, "NL-NCC taking the republished copy as a duplicate")
    dedup = duplicates_seen(fed.nodes[RECIPIENT].log, ids)
    counts = await tally(fed, 9, f"{_engine(fed)}kill -9 after publish, before 'sent' "
                         f"({dedup} dedup)",
                         SENDER, ids, [RECIPIENT], incident, refused=first_outcomes)
    record(counts)
    assert counts.delivered == len(bodies)


async def test_kill_before_outbox_commit_then_retry_with_same_key(
        crashfed: Federation) -> None:
    """Row 10: killed before the outbox commit, the client got no 2xx; retrying with the
    same Idempotency-Key yields one message per key, delivered once."""
    fed = crashfed
    await fed.wait_ready()
    await restart_armed(fed, SENDER, "submit.before_commit@6")
    incident = f"CRASH-10-{uuid.uuid4().hex[:6]}"
    bodies = keyed_load(incident, 12)
    first = await post_keyed(fed, SENDER, bodies)
    await wait_killed(fed, SENDER)
    assert any(s == 0 for s, _, _ in first.values()), "no request lost its answer"
    await start(fed, SENDER)
    ids, first_outcomes = await resubmit(fed, bodies, first)
    assert len(ids) == len(bodies)
    _, listed = await fed.api(SENDER, "GET", f"/v1/messages?incident={incident}&limit=1000")
    assert sorted(m["id"] for m in listed["items"]) == ids
    counts = await tally(fed, 10, f"{_engine(fed)}kill -9 before the outbox commit; keyed "
                         "retry", SENDER,
                         ids, [RECIPIENT], incident, refused=first_outcomes)
    record(counts)
    assert counts.delivered == len(bodies)


def _engine(fed: Federation) -> str:
    """"PostgreSQL: " when the sender's ledger is there (for the counts table)."""
    return "PostgreSQL: " if offline.is_postgres(fed.nodes[SENDER].settings) else ""


def check_ledger(settings: Settings) -> dict[str, int]:
    """Open a dead node's ledger: integrity (SQLite's check; PostgreSQL enforces its
    constraints itself), nothing half-written, and an intact audit chain with one
    ``message.submitted`` entry per stored message."""
    if not offline.is_postgres(settings):
        with closing(sqlite3.connect(offline.ledger_path(settings))) as lite:
            assert lite.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert lite.execute("PRAGMA foreign_key_check").fetchall() == []
    with offline.connect(settings) as conn:
        no_delivery = conn.execute(
            "SELECT COUNT(*) FROM outbox o WHERE NOT EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.message_id = o.id)").fetchone()[0]
        orphan_keys = conn.execute(
            "SELECT COUNT(*) FROM idempotency i WHERE NOT EXISTS "
            "(SELECT 1 FROM outbox o WHERE o.id = i.message_id)").fetchone()[0]
        orphan_deliveries = conn.execute(
            "SELECT COUNT(*) FROM deliveries d WHERE NOT EXISTS "
            "(SELECT 1 FROM outbox o WHERE o.id = d.message_id)").fetchone()[0]
        per_message = dict(conn.execute(
            "SELECT message_id, COUNT(*) FROM deliveries GROUP BY message_id").fetchall())
        wrong_count = sum(
            1 for row in conn.execute("SELECT id, wire FROM outbox WHERE type = 'sitrep'")
            if len(json.loads(bytes(row[1]))["envelope"]["to"]) != per_message.get(row[0], 0))
        stored = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        assert (no_delivery, orphan_keys, orphan_deliveries, wrong_count) == (0, 0, 0, 0)
        chain = verify_chain(sqlite_audit.rows(conn))
        submitted = conn.execute("SELECT COUNT(*) FROM audit_log WHERE kind = "
                                 "'message.submitted'").fetchone()[0]
        messages = conn.execute("SELECT COUNT(*) FROM outbox WHERE type != 'receipt'"
                                ).fetchone()[0]
    assert chain.ok, f"audit chain broken at {chain.broken_at}: {chain.problem}"
    assert submitted == messages, "every stored message has its audit entry, and no more"
    return {"outbox": stored}


async def test_kill_inside_commit_batch_leaves_a_sound_ledger(crashfed: Federation) -> None:
    """Row 11: killed in the writer's commit loop (writes done, COMMIT not), the ledger
    passes integrity_check, no outbox row lacks its deliveries, and keyed retries
    deliver every message once."""
    fed = crashfed
    await fed.wait_ready()
    await restart_armed(fed, SENDER, "db.in_commit@90")
    incident = f"CRASH-11-{uuid.uuid4().hex[:6]}"
    bodies = keyed_load(incident, 150)
    started = time.monotonic()
    first = await post_keyed(fed, SENDER, bodies)
    await wait_killed(fed, SENDER)
    assert time.monotonic() - started < 60
    answered = sum(1 for _, i, _ in first.values() if i)
    assert answered < len(bodies), "the failpoint fired after the load"
    check_ledger(fed.nodes[SENDER].settings)
    await start(fed, SENDER)
    ids, first_outcomes = await resubmit(fed, bodies, first)
    counts = await tally(fed, 11, f"{_engine(fed)}kill -9 inside a commit batch (integrity "
                         "ok)", SENDER,
                         ids, [RECIPIENT], incident, refused=first_outcomes)
    record(counts)
    assert counts.delivered == len(bodies)
    fed.stop(SENDER)
    check_ledger(fed.nodes[SENDER].settings)
    await start(fed, SENDER)


def test_failpoint_names_are_documented() -> None:
    """Every failpoint these tests arm is listed in gateway/failpoints.py's docstring."""
    from gateway import failpoints  # noqa: PLC0415 - only this test needs it

    doc = failpoints.__doc__ or ""
    for name in ("submit.before_commit", "dispatch.after_publish", "db.in_commit",
                 "db.after_commit"):
        assert f"``{name}``" in doc


def _kid(fed: Federation, centre: str) -> str:
    """The key ``crisisgw keys show`` says the node signs with."""
    done = subprocess.run([sys.executable, "-m", "gateway", "keys", "show", "-c",
                           str(fed.nodes[centre].config)], capture_output=True, text=True,
                          timeout=60, check=True)
    return str(json.loads(done.stdout)["kid"])


@pytest.mark.parametrize(("failpoint", "rotated"), [("rotate.after_key_file", False),
                                                     ("rotate.after_commit", True)])
async def test_killed_in_the_middle_of_a_rotation_the_node_restarts_on_a_consistent_key(
        crashfed: Federation, failpoint: str, rotated: bool) -> None:
    """kill -9 during a key rotation: killed once the new key file is written, BE-NCCN
    restarts on its old key and announced nothing; killed once the ledger made the new
    key current (before the node used it), it restarts on the new key and its key-update
    reaches NL-NCC. Either way its next sitrep verifies at NL-NCC and is delivered, and
    gateway.toml was never written."""
    fed = crashfed
    await restart_armed(fed, SENDER, failpoint)
    before = _kid(fed, SENDER)
    toml = fed.nodes[SENDER].config.read_bytes()
    status, _ = await fed.api(SENDER, "POST", "/v1/keys/rotate", {"overlap_days": 1})
    assert status == 0  # no answer: the node died at its failpoint
    await wait_killed(fed, SENDER)
    await start(fed, SENDER)
    after = _kid(fed, SENDER)
    assert (after != before) is rotated
    assert fed.nodes[SENDER].config.read_bytes() == toml
    if rotated:
        async def pinned() -> bool:
            _, peers = await fed.api(RECIPIENT, "GET", "/v1/peers")
            keys = {k["kid"] for p in peers["peers"] if p["id"] == SENDER for k in p["keys"]}
            return after in keys
        await wait_until(pinned, 30, "NL-NCC pinning the key announced before the crash")
    status, answer = await fed.api(SENDER, "POST", "/v1/sitreps",
                                   sitrep(f"ROT-{failpoint}", 1, [RECIPIENT]))
    assert status == 202, answer

    async def delivered() -> bool:
        _, view = await fed.api(SENDER, "GET", f"/v1/messages/{answer['id']}")
        return bool(view["recipients"][0]["state"] == "delivered")
    await wait_until(delivered, 30, "the next sitrep delivered, signed with the key in use")
    _, view = await fed.api(SENDER, "GET", f"/v1/messages/{answer['id']}")
    assert view["signature"]["kid"] == after
