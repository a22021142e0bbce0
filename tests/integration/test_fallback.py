"""Communication tests that test the fallback, on real nodes and the real broker: with a
test, BE-NCCN e-mails each peer's contact point a one-time code (a real SMTP server in
this process, STARTTLS); NL-NCC's duty officer follows the e-mail's link into NL-NCC's
console and confirms it, and BE-NCCN records the fallback as working; LU-HCPN returns a
wrong code and its console shows the refusal; the scorecard (JSON, CSV, the console's
trend page) shows both; the code itself is in no log and no audit entry."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio

from gateway.config import update_config
from tests.integration.harness import Federation, console_page, wait_until
from tests.integration.mail import Mailbox, smtp

__all__ = ["smtp"]  # the fixture, used by name
pytestmark = pytest.mark.broker
BE, NL, LU = "BE-NCCN", "NL-NCC", "LU-HCPN"
#: The demo directory's 24/7 contact of each centre (gateway/demo.py).
NL_CONTACT, LU_CONTACT = "communication@nlncc.example", "communication@luhcpn.example"
CODE = re.compile(r"^    ([0-9A-Z]{5}-[0-9A-Z]{5})\r?$", re.M)


@dataclass
class Checking:
    fed: Federation
    mailbox: Mailbox


@pytest_asyncio.fixture
async def checking(tmp_path: Path, smtp: tuple[Mailbox, int, Path]) -> AsyncIterator[Checking]:
    """BE-NCCN (with an SMTP relay) and its peers NL-NCC and LU-HCPN, running."""
    mailbox, smtp_port, ca = smtp
    fed = Federation.create(tmp_path / "fed")

    def be(raw: dict[str, Any]) -> None:
        raw["commcheck"] = {"wait_seconds": 20}
        raw["escalation"] = {
            "email": {"host": "127.0.0.1", "port": smtp_port, "sender": "crisisgw@be.example",
                      "ca_file": str(ca)},
            "peers": [{"id": NL, "console_url":
                       f"http://127.0.0.1:{fed.nodes[NL].port}/console"}]}

    update_config(fed.nodes[BE].config, be)
    try:
        fed.start(BE, NL, LU)
        await fed.wait_ready()
        yield Checking(fed=fed, mailbox=mailbox)
    finally:
        fed.destroy()


async def _login(http: aiohttp.ClientSession, fed: Federation, centre: str) -> str:
    """Log in to ``centre``'s console; its base URL."""
    node = fed.nodes[centre]
    base = f"http://127.0.0.1:{node.port}"
    password = (node.config.parent / "operator-password").read_text().strip()
    async with http.get(f"{base}/console/login") as resp:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
    assert token is not None
    async with http.post(f"{base}/console/login", allow_redirects=False, data={
            "csrf_token": token.group(1), "name": "operator", "password": password}) as resp:
        assert resp.status == 303
    return base


async def test_the_fallback_code_goes_by_email_and_comes_back_through_the_console(
        checking: Checking) -> None:
    """A right code through NL-NCC's console link confirms the fallback, a wrong one from
    LU-HCPN is refused with why, the scorecard shows both, and no log holds a code."""
    fed, mailbox = checking.fed, checking.mailbox

    async def knows_peers() -> bool:
        _, directory = await fed.api(BE, "GET", "/v1/directory")
        held = {r.get("email") for r in directory.get("items", ())}
        return {NL_CONTACT, LU_CONTACT} <= held
    await wait_until(knows_peers, 30, "BE-NCCN holding its peers' contact points")

    status, started = await fed.api(BE, "POST", "/v1/commchecks", {})
    assert status == 202, started
    check = started["id"]

    async def mailed() -> bool:
        return bool(mailbox.to(NL_CONTACT)) and bool(mailbox.to(LU_CONTACT))
    await wait_until(mailed, 20, "the codes e-mailed to both peers' contact points")
    assert all(tls for _, _, tls in mailbox.mails), "sent without STARTTLS"
    nl_mail, lu_mail = mailbox.to(NL_CONTACT)[0], mailbox.to(LU_CONTACT)[0]
    nl_match, lu_match = CODE.search(nl_mail.get_content()), CODE.search(lu_mail.get_content())
    assert nl_match is not None
    assert lu_match is not None
    nl_code, lu_code = nl_match.group(1), lu_match.group(1)
    assert nl_code != lu_code
    assert nl_mail["Subject"] == f"Communication test from {BE}: confirm code {nl_code}"
    link = re.search(r"http://\S+/console/fallback\?\S+", nl_mail.get_content())
    assert link is not None, "NL-NCC's console is linked"
    assert "/console/fallback" not in lu_mail.get_content(), "no console address for LU"

    # NL-NCC: the duty officer acknowledges the test and follows the link into its console
    status, _ = await fed.api(NL, "POST", f"/v1/messages/{check}/ack?from={BE}",
                              {"by": "NL duty officer"})
    assert status == 200
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        base = await _login(http, fed, NL)
        url = urlsplit(link.group(0))
        async with http.get(f"{base}{url.path}?{url.query}") as resp:
            assert resp.status == 200
            page = await resp.text()
        row = re.search(rf'<tr data-test="{BE}\|{check}".*?</tr>', page, re.S)
        assert row is not None, "the test from BE-NCCN is listed"
        assert f'value="{nl_code}"' in row.group(0), "the link filled the form in"
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', row.group(0))
        assert csrf is not None
        async with http.post(f"{base}/console/fallback", allow_redirects=False, data={
                "csrf_token": csrf.group(1), "from": BE, "check": check,
                "code": nl_code.lower().replace("-", " ")}) as resp:
            assert resp.status == 303, await resp.text()

    # LU-HCPN's centre system returns a wrong code through the API
    status, wrong = await fed.api(LU, "POST", "/v1/commchecks/fallback",
                                  {"from": BE, "check_id": check, "code": "00000-00000",
                                   "by": "LU duty officer"})
    assert status == 202, wrong
    status, _ = await fed.api(LU, "POST", "/v1/commchecks/fallback",
                                    {"from": NL, "check_id": check, "code": lu_code})
    assert status == 404, "no such test from NL-NCC at LU-HCPN"

    async def judged() -> bool:
        _, rep = await fed.api(BE, "GET", f"/v1/commchecks/{check}")
        peers = {p["peer"]: p for p in rep["peers"]}
        return peers[NL]["fallback"] == "confirmed" and peers[LU]["fallback"] == "refused"
    await wait_until(judged, 20, "BE-NCCN judging both returned codes")
    _, rep = await fed.api(BE, "GET", f"/v1/commchecks/{check}")
    peers = {p["peer"]: p for p in rep["peers"]}
    assert peers[NL]["fallback_by"] == "operator"
    assert peers[NL]["fallback_after_s"] > 0
    assert peers[NL]["confirmed_by"] == "NL duty officer", "the human leg too"
    assert peers[NL]["fallback_contact"] == "NL-NCC press and communication desk"
    assert peers[LU]["fallback_error"] == "the code does not match"

    # LU-HCPN sees why: its fallback message was answered rejected (policy)
    async def answered() -> bool:
        _, view = await fed.api(LU, "GET", f"/v1/messages/{wrong['id']}")
        return view["recipients"][0]["state"] == "rejected"
    await wait_until(answered, 15, "BE-NCCN's rejected receipt at LU-HCPN")
    _, view = await fed.api(LU, "GET", f"/v1/messages/{wrong['id']}")
    assert view["recipients"][0]["reason"] == "policy"
    lu_page = await console_page(fed, LU, "/console/commchecks")
    assert "the code does not match" in lu_page

    # the scorecard: JSON, CSV and the trend page with its charts
    _, card = await fed.api(BE, "GET", "/v1/commchecks/scorecard")
    rows = {r["centre"]: r for r in card["items"]}
    assert (rows[NL]["fallback_sent"], rows[NL]["fallback_worked"]) == (1, 1)
    assert (rows[LU]["fallback_sent"], rows[LU]["fallback_worked"]) == (1, 0)
    assert rows[NL]["ack_median_s"] is not None
    assert rows[NL]["receipt_median_s"] is not None
    _, text = await fed.api(BE, "GET", "/v1/commchecks/scorecard.csv")
    lines = list(csv.DictReader(io.StringIO(str(text))))
    assert {(r["centre"], r["fallback_worked"]) for r in lines} >= {(NL, "1"), (LU, "0")}
    page = await console_page(fed, BE, "/console/commchecks")
    assert page.count("<svg") == 3, "receipt, acknowledgement and fallback charts"
    nl_row = re.search(rf'<tr data-score="[0-9]{{4}}-Q[1-4]\|{NL}".*?</tr>', page, re.S)
    assert nl_row is not None
    assert "<td data-fallback>1/1</td>" in nl_row.group(0)
    assert re.search(rf'<tr data-peer="{NL}">.*?data-fallback="confirmed"', page, re.S)
    _, history = await fed.api(BE, "GET", "/v1/commchecks/history.csv")
    assert "confirmed" in str(history)

    # the codes are nowhere but in the e-mails: not in the audit log, not in any log
    _, audit = await fed.api(BE, "GET", f"/v1/audit?subject={check}&limit=100")
    kinds = [e["kind"] for e in audit["items"]]
    assert kinds.count("commcheck.fallback_sent") == 2
    assert "commcheck.fallback_confirmed" in kinds
    assert "commcheck.fallback_refused" in kinds
    for code in (nl_code, lu_code):
        assert code not in str(audit)
        for centre in (BE, NL, LU):
            logged = fed.nodes[centre].log.read_text(errors="replace")
            assert code not in logged
            assert code.replace("-", "") not in logged
