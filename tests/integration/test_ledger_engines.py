"""Moving a demo centre from SQLite to PostgreSQL, and backups on both engines: every
message, receipt and audit entry kept, the audit chain intact (``crisisgw audit verify``)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gateway.config import load_settings, update_config
from tests.integration.harness import EXAMPLE, Federation, wait_until
from tests.pg import Postgres

pytestmark = pytest.mark.broker
BE, NL, LU = "BE-NCCN", "NL-NCC", "LU-HCPN"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def _verify(config: Path) -> tuple[int, str]:
    """``crisisgw audit verify``: the number of entries and the head it reports."""
    done = _cli("audit", "verify", "-c", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"audit chain intact: (\d+) entries.*head #\d+ (\w+)", done.stdout)
    assert found, done.stdout
    return int(found[1]), found[2]


@pytest_asyncio.fixture
async def fed(tmp_path: Path) -> AsyncIterator[Federation]:
    federation = Federation.create(tmp_path / "fed")
    federation.start()
    try:
        await federation.wait_ready()
        yield federation
    finally:
        federation.destroy()


async def _exchange(fed: Federation, title: str) -> str:
    """A sitrep from BE to every peer, delivered, and acknowledged at NL-NCC."""
    body = {**EXAMPLE, "sitrep": {**EXAMPLE["sitrep"], "summary": title}}
    status, answer = await fed.api(BE, "POST", "/v1/sitreps", body)
    assert status == 202, answer
    message_id = str(answer["id"])

    async def delivered() -> bool:
        _, view = await fed.api(BE, "GET", f"/v1/messages/{message_id}")
        return {r["state"] for r in view["recipients"]} == {"delivered"}

    await wait_until(delivered, 20, "delivered receipts")
    status, _ = await fed.api(NL, "POST", f"/v1/messages/{message_id}/ack",
                              {"by": "Duty officer"})
    assert status in {200, 202}

    async def acknowledged() -> bool:
        _, view = await fed.api(BE, "GET", f"/v1/messages/{message_id}")
        return {r["centre"]: r["state"] for r in view["recipients"]}[NL] == "acknowledged"

    await wait_until(acknowledged, 20, "the acknowledgement")
    return message_id


async def _settled(fed: Federation) -> bool:
    """Whether every message BE sent has its outcome at every recipient."""
    _, listed = await fed.api(BE, "GET", "/v1/messages?limit=200")
    for item in listed["items"]:
        _, view = await fed.api(BE, "GET", f"/v1/messages/{item['id']}")
        if any(r["state"] in {"queued", "sent"} for r in view["recipients"]):
            return False
    return True


async def _what_be_holds(fed: Federation) -> dict[str, Any]:
    """BE's outbox with each message's recipients and receipts, and its inbox."""
    _, listed = await fed.api(BE, "GET", "/v1/messages?limit=200")
    views, receipts = {}, {}
    for item in listed["items"]:
        _, view = await fed.api(BE, "GET", f"/v1/messages/{item['id']}")
        views[item["id"]] = (view["sha256"], sorted((r["centre"], r["state"])
                                                    for r in view["recipients"]))
        receipts[item["id"]] = {(r["issuer"], r["state"], r["id"]) for r in view["receipts"]}
    _, inbox = await fed.api(BE, "GET", "/v1/inbox?limit=200")
    return {"outbox": views, "receipts": receipts,
            "inbox": sorted((m["from"], m["id"]) for m in inbox["items"])}


async def test_a_centre_moved_to_postgresql_keeps_its_history_and_its_chain(
        fed: Federation, postgres: Postgres) -> None:
    """Stop BE, ``crisisgw ledger migrate`` its file into PostgreSQL, start it there: the
    same messages, receipts and audit chain, and it goes on exchanging."""
    first = await _exchange(fed, "before the move")
    status, _ = await fed.api(NL, "POST", "/v1/sitreps", {**EXAMPLE, "to": [BE]})
    assert status == 202
    await wait_until(lambda: _inbox_has(fed, NL), 20, "NL's sitrep in BE's inbox")
    await wait_until(lambda: _settled(fed), 20, "every outcome of BE's messages")
    before = await _what_be_holds(fed)
    fed.stop(BE)
    config = fed.nodes[BE].config
    entries, head = _verify(config)
    assert entries > 10

    url = postgres.ledger_url()
    done = _cli("ledger", "migrate", "-c", str(config), "--to", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"audit_log: {entries} rows" in done.stdout
    assert _verify(config) == (entries, head)  # now read from PostgreSQL
    again = _cli("ledger", "migrate", "--from",
                 f"sqlite:{fed.nodes[BE].settings.node.data_dir / 'ledger.sqlite3'}",
                 "--to", url)
    assert again.returncode == 2
    assert "already has rows" in again.stderr

    fed.start(BE)
    await fed.wait_ready()
    after = await _what_be_holds(fed)
    assert after["outbox"] == before["outbox"]
    assert set(before["inbox"]) <= set(after["inbox"])  # and what peers sent meanwhile
    # Every receipt is still there; a late one (a "delivered" after its "acknowledged")
    # may have come in since.
    assert all(before["receipts"][m] <= after["receipts"][m] for m in before["receipts"])
    assert sum(map(len, before["receipts"].values())) > 6
    assert first in before["outbox"]
    await _exchange(fed, "after the move")
    fed.stop(BE)
    after, _ = _verify(config)
    assert after > entries


async def _inbox_has(fed: Federation, sender: str) -> bool:
    _, inbox = await fed.api(BE, "GET", f"/v1/inbox?from={sender}")
    return bool(inbox["items"])


def _restored_config(original: Path, target: Path, ledger: dict[str, str] | None) -> Path:
    """A copy of a node's configuration whose data directory (and ledger) is elsewhere."""
    target.mkdir(parents=True)
    copy = target / "gateway.toml"
    copy.write_bytes(original.read_bytes())
    copy.chmod(0o600)

    def change(raw: dict[str, Any]) -> None:
        raw["node"]["data_dir"] = str(target / "data")
        raw["node"]["signing_key_file"] = str(load_settings(original).node.signing_key_file)
        raw.pop("ledger", None)
        if ledger is not None:
            raw["ledger"] = ledger

    update_config(copy, change)
    return copy


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_a_backup_taken_while_the_node_runs_restores_with_its_chain_intact(
        fed: Federation, postgres: Postgres, tmp_path: Path, engine: str) -> None:
    """``crisisgw ledger backup`` of a running node, ``restore`` into a new place: the
    audit chain verifies and holds every entry the node had at the backup."""
    config = fed.nodes[LU].config
    if engine == "postgresql":
        fed.stop(LU)
        url = postgres.ledger_url()
        done = _cli("ledger", "migrate", "-c", str(config), "--to", url)
        assert done.returncode == 0, done.stderr
        fed.start(LU)
        await fed.wait_ready()
    await _exchange(fed, "to back up")
    at_backup, _ = _verify(config)
    backup = tmp_path / "lu.backup"
    done = _cli("ledger", "backup", "-c", str(config), str(backup))
    assert done.returncode == 0, done.stdout + done.stderr
    assert backup.stat().st_mode & 0o077 == 0
    fed.stop(LU)
    at_stop, _ = _verify(config)

    restored_ledger = None
    if engine == "postgresql":
        restored_ledger = {"url": postgres.ledger_url_in_new_database(url)}
    restored = _restored_config(config, tmp_path / "restored", restored_ledger)
    done = _cli("ledger", "restore", "-c", str(restored), str(backup))
    assert done.returncode == 0, done.stdout + done.stderr
    entries, _ = _verify(restored)
    assert at_backup <= entries <= at_stop
