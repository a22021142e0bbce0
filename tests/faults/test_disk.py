"""The gateway's disk fills up (FAULTS.md row 12).

BE-NCCN's data directory is a small tmpfs of its own (we run as root); a test file
fills it to the last byte. Submissions must then be refused with a clear 507
problem+json (nothing half-stored), the node must stay up, and once the file is
removed it must accept and deliver again, losing nothing that it had accepted.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faults.load import sitrep, tally
from tests.faults.report import record
from tests.faults.test_crash import check_ledger, start
from tests.integration.harness import Federation

pytestmark = pytest.mark.broker

SENDER, RECIPIENT = "BE-NCCN", "NL-NCC"
TMPFS_SIZE = "16m"


def _mount_tmpfs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700",
                           "tmpfs", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): row 12 not run")


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def diskfed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """BE-NCCN on a 16 MiB tmpfs data directory, and NL-NCC."""
    fed = Federation.create(tmp_path_factory.mktemp("disk"),
                            overrides={"delivery": {"publish_timeout_seconds": 2.0,
                                                    "retry_cap_seconds": 5.0}})
    data = fed.nodes[SENDER].settings.node.data_dir
    try:
        _mount_tmpfs(data)
        fed.start(SENDER, RECIPIENT)
        yield fed
    finally:
        fed.destroy()
        _umount(data)


def fill(path: Path) -> int:
    """Write ``path`` until the file system says ENOSPC; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


async def post(fed: Federation, body: dict[str, Any]
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST /v1/sitreps; (status, JSON answer, headers)."""
    node = fed.nodes[SENDER]
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{node.port}/v1/sitreps", json=body,
            headers={"Authorization": f"Bearer {node.token}"},
            timeout=aiohttp.ClientTimeout(total=30)) as resp:
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


async def test_disk_full_gives_507_then_recovers_without_loss(diskfed: Federation) -> None:
    """Row 12: with the data disk full, submissions get 507 problem+json with Retry-After
    and leave no row; the node stays up and, once space returns, accepts again; every
    message accepted before, during and after is delivered once."""
    fed = diskfed
    await fed.wait_ready()
    incident = "DISK-12"
    ids: list[str] = []
    refused: Counter[str] = Counter()
    number = 0

    async def submit() -> tuple[int, dict[str, Any], dict[str, str]]:
        nonlocal number
        number += 1
        status, answer, headers = await post(fed, sitrep(incident, number, [RECIPIENT]))
        if status == 202:
            ids.append(answer["id"])
        else:
            refused[f"{status} {answer.get('title')}"] += 1
        return status, answer, headers

    for _ in range(10):
        assert (await submit())[0] == 202
    filler = fed.nodes[SENDER].settings.node.data_dir / "filler"
    try:
        assert fill(filler) > 0
        # SQLite may still have room in pages it already owns: submit until refused.
        for _ in range(400):
            status, answer, headers = await submit()
            if status != 202:
                break
        assert status == 507, (status, answer)
        assert answer["status"] == 507
        assert answer["title"] == "Insufficient storage"
        assert headers["Content-Type"].startswith("application/problem+json")
        assert int(headers["Retry-After"]) > 0
        for _ in range(5):
            assert (await submit())[0] in (202, 507)
        proc = fed.nodes[SENDER].proc
        assert proc is not None
        assert proc.poll() is None, "the node died of a full disk"
        assert (await fed.api(SENDER, "GET", "/healthz"))[0] == 200
        await asyncio.sleep(2)  # the dispatcher and the inbox consumer hit the full disk too
    finally:
        filler.unlink()
    for _ in range(10):
        assert (await submit())[0] == 202, "no recovery once space returned"
    counts = await tally(fed, 12, "disk full (tmpfs filled): 507, then recovery", SENDER,
                         ids, [RECIPIENT], incident, refused=refused)
    record(counts)
    assert counts.delivered == len(ids)
    assert set(refused) == {"507 Insufficient storage"}
    _, listed = await fed.api(SENDER, "GET", f"/v1/messages?incident={incident}&limit=1000")
    assert sorted(m["id"] for m in listed["items"]) == sorted(ids), "a refused row was stored"
    log = fed.nodes[SENDER].log.read_text(errors="replace")
    assert "dead_letters_present" not in log, "a full disk dead-lettered incoming receipts"
    fed.stop(SENDER)
    check_ledger(fed.nodes[SENDER].settings)
    await start(fed, SENDER)
