"""Escalation over a second channel, on real nodes and the real broker: a flash left
unacknowledged past its deadline reaches the recipient's 24/7 contacts by e-mail (a real
SMTP server in this process, STARTTLS with a certificate the node verifies) and, a step
later, by the SMS/voice webhook (a local HTTP receiver); each step is in the sender's
audit log; an acknowledgement stops the next steps; an exercise message reaches only the
exercise contacts."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from gateway.config import update_config
from gateway.protocol.types import format_time
from tests.integration.harness import (
    EXAMPLE,
    Federation,
    console_page,
    envelope,
    free_base_port,
    sealed,
    wait_until,
)
from tests.integration.mail import Mailbox, smtp

__all__ = ["smtp"]  # the fixture, used by name

pytestmark = pytest.mark.broker
BE, NL = "BE-NCCN", "NL-NCC"
#: NL-NCC's directory as BE-NCCN learns it: a day-time desk before a 24/7 one.
NL_DIRECTORY = [
    {"field": "civil-protection", "name": "NL day desk", "phone": "+31 70 000 00 01",
     "email": "day@nlncc.example", "languages": ["nl"], "available_24_7": False,
     "confirmed": "2026-11-30"},
    {"field": "civil-protection", "name": "NL duty officer", "phone": "+31 70 000 00 02",
     "email": "duty@nlncc.example", "languages": ["nl", "en"], "available_24_7": True,
     "confirmed": "2026-11-30"},
]
EXERCISE_CONTACT = {"name": "NL exercise control", "email": "oefening@nlncc.example",
                    "phone": "+31 70 000 00 09"}


@dataclass
class Pager:
    """What the webhook was called with."""

    calls: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((await request.json(), request.headers.get("Authorization", "")))
        return web.json_response({"queued": True})


@dataclass
class Escalating:
    fed: Federation
    mailbox: Mailbox
    pager: Pager


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def escalating(request: pytest.FixtureRequest, tmp_path: Path,
                     smtp: tuple[Mailbox, int, Path]) -> AsyncIterator[Escalating]:
    """BE-NCCN escalating (its ledger on each engine) to NL-NCC, both running."""
    mailbox, smtp_port, ca = smtp
    pager = Pager()
    app = web.Application()
    app.router.add_post("/page", pager.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_base_port(1)
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    token = tmp_path / "sms-token"
    token.write_text("sms-secret\n")
    if request.param == "postgresql":
        fed = Federation.create(tmp_path / "fed", postgres=request.getfixturevalue("postgres"),
                                on_postgres=(BE,))
    else:
        fed = Federation.create(tmp_path / "fed")

    def be(raw: dict[str, Any]) -> None:
        raw["console"] = {**raw.get("console", {}),
                          "deadlines": {"flash": 2, "urgent": 900, "routine": 14400}}
        raw["escalation"] = {
            "every_seconds": 0.5,
            "steps": {"flash": [{"after": 0, "channel": "email"},
                                {"after": 4, "channel": "webhook"}]},
            "email": {"host": "127.0.0.1", "port": smtp_port, "sender": "crisisgw@be.example",
                      "ca_file": str(ca)},
            "webhook": {"url": f"http://127.0.0.1:{hook_port}/page",
                        "token_file": str(token)},
            "peers": [{"id": NL, "console_url": "https://nl-ncc.example/console",
                       "exercise_contacts": [EXERCISE_CONTACT], "notices": True}]}

    def nl(raw: dict[str, Any]) -> None:
        raw["directory"] = NL_DIRECTORY

    update_config(fed.nodes[BE].config, be)
    update_config(fed.nodes[NL].config, nl)
    try:
        fed.start(BE, NL)
        await fed.wait_ready()
        yield Escalating(fed=fed, mailbox=mailbox, pager=pager)
    finally:
        fed.destroy()
        await runner.cleanup()


async def _flash(fed: Federation, **extra: Any) -> str:
    status, answer = await fed.api(BE, "POST", "/v1/sitreps",
                                   {**EXAMPLE, "to": [NL], "priority": "flash", **extra})
    assert status == 202, answer
    return str(answer["id"])


async def _steps(fed: Federation, message_id: str) -> list[dict[str, Any]]:
    status, page = await fed.api(BE, "GET", f"/v1/audit?subject={message_id}&limit=100")
    assert status == 200, page
    return [e["data"] for e in page["items"] if e["kind"] == "escalation.sent"]


async def test_an_unacknowledged_flash_escalates_by_email_then_webhook_until_acknowledged(
        escalating: Escalating) -> None:
    fed, mailbox, pager = escalating.fed, escalating.mailbox, escalating.pager

    async def knows_nl() -> bool:
        _, directory = await fed.api(BE, "GET", "/v1/directory")
        return any(r.get("centre") == NL and r.get("email") == "duty@nlncc.example"
                   for r in directory.get("items", ()))
    await wait_until(knows_nl, 30, "BE-NCCN holding NL-NCC's contact points")

    left = await _flash(fed)  # nobody acknowledges this one
    stopped = await _flash(fed)  # acknowledged once its first step went
    drill = await _flash(fed, mode="exercise")
    submitted = asyncio.get_running_loop().time()

    async def first_mails() -> bool:
        return all(any(i in m["Subject"] + m.get_content() for m in mailbox.to(
            "duty@nlncc.example")) for i in (left, stopped))
    await wait_until(first_mails, 20, "the first step's e-mails to the 24/7 contact")
    assert asyncio.get_running_loop().time() - submitted < 2 + 5, "within the delay"
    for rcpt, _, tls in mailbox.mails:
        assert tls, f"{rcpt}: sent without STARTTLS"
    mail = next(m for m in mailbox.to("duty@nlncc.example") if left in m.get_content())
    assert mail["Subject"] == "FLASH sitrep from BE-NCCN waits for acknowledgement"
    assert mail["From"] == "crisisgw@be.example"
    text = mail.get_content()
    assert f"https://nl-ncc.example/console/messages/{left}" in text
    for content in ("Liège", "Meuse", "rising"):
        assert content not in text, "no content of the message"
    # the 24/7 contact went first, the day desk too, in that order
    order = [rcpt[0] for rcpt, m, _ in mailbox.mails if left in m.get_content()]
    assert order[:2] == ["duty@nlncc.example", "day@nlncc.example"]

    status, _ = await fed.api(NL, "POST", f"/v1/messages/{stopped}/ack?from={BE}",
                              {"by": "duty officer"})
    assert status == 200

    async def acknowledged() -> bool:
        _, view = await fed.api(BE, "GET", f"/v1/messages/{stopped}")
        return {r["state"] for r in view["recipients"]} == {"acknowledged"}
    await wait_until(acknowledged, 10, "the acknowledgement back at BE-NCCN")

    async def paged() -> bool:
        return any(call["message_id"] == left for call, _ in pager.calls)
    await wait_until(paged, 20, "the webhook step for the message nobody acknowledged")
    call, auth = next((c, a) for c, a in pager.calls if c["message_id"] == left)
    assert auth == "Bearer sms-secret"
    assert call["to"] == "+31 70 000 00 02"
    assert (call["priority"], call["sender"], call["recipient"]) == ("flash", BE, NL)
    assert call["exercise"] is False
    await asyncio.sleep(2)  # a few more passes: the acknowledged one stays where it was
    assert not any(c["message_id"] == stopped for c, _ in pager.calls)

    steps = await _steps(fed, left)
    assert sorted((s["step"], s["channel"], s["address"]) for s in steps) == [
        (0, "email", "day@nlncc.example"), (0, "email", "duty@nlncc.example"),
        (1, "webhook", "+31 70 000 00 01"), (1, "webhook", "+31 70 000 00 02")]
    assert [s["channel"] for s in await _steps(fed, stopped)] == ["email", "email"]
    _, metrics = await fed.api(BE, "GET", "/metrics")
    sent = re.search(r'^crisisgw_escalations_total\{channel="email",outcome="sent",'
                     r'peer="NL-NCC"\} (\S+)$', str(metrics), re.M)
    assert sent is not None, "no escalation counter on /metrics"
    assert float(sent.group(1)) >= 4  # 2 contacts for each of 2 flashes, the drill's 1
    page = await console_page(fed, BE, f"/console/messages/{left}")
    assert "escalated to NL duty officer by e-mail at" in page
    assert "escalated to NL duty officer by SMS/voice at" in page

    # NL-NCC was told of each step, in an "escalation" message its node applied itself
    async def told() -> bool:
        page = await console_page(fed, NL, f"/console/messages/{left}")
        return "BE-NCCN</b>: escalated to NL duty officer by SMS/voice at" in page
    await wait_until(told, 15, "NL-NCC's console showing BE-NCCN's escalation")
    page = await console_page(fed, NL, f"/console/messages/{left}")
    assert "BE-NCCN</b>: escalated to NL duty officer by e-mail at" in page
    _, notices = await fed.api(BE, "GET", "/v1/messages?type=escalation&limit=50")
    assert len(notices["items"]) >= 5  # 2 + 2 steps of one message, 2 of the other, ...
    _, inbox = await fed.api(NL, "GET", "/v1/inbox?type=escalation&limit=50")
    assert {m["state"] for m in inbox["items"]} == {"acknowledged"}, "applied, not waiting"

    # the exercise message: the exercise contact only, marked as such
    drill_mails = [(rcpt, m) for rcpt, m, _ in mailbox.mails if drill in m.get_content()]
    assert drill_mails, "the exercise message escalated"
    assert {r for rcpt, _ in drill_mails for r in rcpt} == {"oefening@nlncc.example"}
    assert all(m["Subject"].startswith("[EXERCISE] ") for _, m in drill_mails)
    assert {c["to"] for c, _ in pager.calls if c["message_id"] == drill} <= {
        "+31 70 000 00 09"}


async def test_a_notice_about_a_message_never_sent_is_refused(escalating: Escalating) -> None:
    """An escalation notice must be about a message its sender sent us: one about any
    other id is answered rejected (schema_invalid) and leaves nothing on a message page."""
    fed = escalating.fed
    forged = envelope(BE, [NL], type="escalation", incident=None, body={
        "message_id": str(uuid.uuid4()), "step": 0, "channel": "email",
        "contact": "<script>x</script>", "at": format_time(datetime.now(UTC))})
    forged.pop("incident")
    await fed.inject(NL, BE, sealed(forged, fed.nodes[BE].key()))

    async def refused() -> bool:
        _, inbox = await fed.api(NL, "GET", "/v1/inbox?type=escalation&limit=50")
        return any(m["id"] == forged["id"] for m in inbox.get("items", ()))
    await wait_until(refused, 15, "the forged notice answered")
    _, inbox = await fed.api(NL, "GET", "/v1/inbox?type=escalation&limit=50")
    entry = next(m for m in inbox["items"] if m["id"] == forged["id"])
    assert (entry["state"], entry["reason"]) == ("rejected", "schema_invalid")
    assert "from BE-NCCN here" in entry["detail"]
