"""Bad input at the HTTP API and the console (FAULTS.md rows 23, 24, 25, 28, 29, 30, 31).

Each test offers a node broken or unauthorised requests next to a valid control load,
counts the refusals by status and problem type, and checks that nothing was signed or
stored for them while the control load is delivered exactly once.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from gateway.protocol.types import format_time
from tests.faults.load import sitrep, tally
from tests.faults.report import FaultCounts, record
from tests.integration.harness import Federation

pytestmark = pytest.mark.broker

SENDER, RECIPIENT = "BE-NCCN", "NL-NCC"


def base(fed: Federation, centre: str) -> str:
    """The node's HTTP root."""
    return f"http://127.0.0.1:{fed.nodes[centre].port}"


async def raw_post(fed: Federation, path: str, data: Any, content_type: str | None,
                   token: str | None = None) -> tuple[int, Any]:
    """POST raw ``data`` (bytes or an async generator: chunked) to BE-NCCN."""
    node = fed.nodes[SENDER]
    headers = {"Authorization": f"Bearer {node.token if token is None else token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with aiohttp.ClientSession() as http, http.post(
            base(fed, SENDER) + path, data=data, headers=headers,
            timeout=aiohttp.ClientTimeout(total=30)) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


def label(status: int, answer: Any) -> str:
    """``"400 not_ijson"``: the status and the problem type's last segment."""
    if isinstance(answer, dict) and "type" in answer:
        return f"{status} {answer['type'].rsplit('/', 1)[-1]}"
    return str(status)


async def stored_since(fed: Federation, centre: str, since: str) -> list[str]:
    """Ids of messages ``centre`` stored in its outbox since ``since``."""
    status, page = await fed.api(centre, "GET", f"/v1/messages?since={since}&limit=1000")
    assert status == 200, page
    return [m["id"] for m in page["items"]]


async def control(fed: Federation, row: int, fault: str, incident: str,
                  refused: Counter[str], **extra: Any) -> FaultCounts:
    """Send one valid sitrep next to the refused ones, tally it and record the row."""
    status, answer = await fed.api(SENDER, "POST", "/v1/sitreps",
                                   sitrep(incident, 1, [RECIPIENT], **extra))
    assert status == 202, answer
    counts = await tally(fed, row, fault, SENDER, [answer["id"]], [RECIPIENT], incident,
                         refused=refused)
    record(counts)
    assert counts.delivered == 1
    return counts


def log_count(fed: Federation, centre: str, needle: str) -> int:
    """How many lines of ``centre``'s log contain ``needle``."""
    text = fed.nodes[centre].log.read_text(errors="replace")
    return sum(1 for line in text.splitlines() if needle in line)


def valid_text(incident: str) -> str:
    """A valid submission as JSON text, for editing into invalid ones."""
    return json.dumps(sitrep(incident, 1, [RECIPIENT]))


async def test_non_ijson_is_refused_before_signing(federation: Federation) -> None:
    """Row 23: duplicate keys, NaN, Infinity, integers beyond 2^53-1 and lone surrogates
    inside otherwise valid sitreps: 400 not_ijson, nothing signed or stored."""
    fed = federation
    await fed.wait_ready()
    incident = f"IN-23-{uuid.uuid4().hex[:6]}"
    text = valid_text(incident)
    cases = [
        text.replace('"tlp": "GREEN"', '"tlp": "GREEN", "tlp": "RED"'),
        text.replace('"report_number": 1', '"report_number": NaN'),
        text.replace('"report_number": 1', '"report_number": Infinity'),
        text.replace('"report_number": 1', '"report_number": -Infinity'),
        text.replace('"report_number": 1', '"report_number": 9007199254740993'),
        text.replace('"report_number": 1', '"report_number": -9007199254740993'),
        text.replace("fault test report 1", "fault test \\ud800 report"),
        text.replace("fault test report 1", "fault test \\udc00 report"),
        text.replace('"severity": "moderate"', '"severity": "moderate", "severity": "minor"'),
    ]
    since = format_time(datetime.now(UTC))
    refused: Counter[str] = Counter()
    for case in cases:
        assert case != text
        status, answer = await raw_post(fed, "/v1/sitreps", case.encode(), "application/json")
        assert status == 400, (case, answer)
        refused[label(status, answer)] += 1
    assert await stored_since(fed, SENDER, since) == []
    await control(fed, 23, "non-I-JSON bodies (dup keys, NaN, 2^53, surrogates)", incident,
                  refused)


async def _chunks(total: int) -> AsyncIterator[bytes]:
    yield b'{"x": "'
    for _ in range(total // 65536):
        yield b"a" * 65536
    yield b'"}'


async def test_oversized_body_is_413_stating_the_limit(federation: Federation) -> None:
    """Row 24: bodies above the 256 KiB limit, with and without a Content-Length, as JSON
    and as CAP XML, get 413 stating the limit; nothing is stored."""
    fed = federation
    await fed.wait_ready()
    limit = fed.nodes[SENDER].settings.api.max_body_bytes
    incident = f"IN-24-{uuid.uuid4().hex[:6]}"
    since = format_time(datetime.now(UTC))
    refused: Counter[str] = Counter()
    attempts = [
        ("/v1/sitreps", b'{"x": "' + b"a" * (limit + 1) + b'"}', "application/json"),
        ("/v1/sitreps", _chunks(4 * limit), "application/json"),
        ("/v1/alerts?to=NL-NCC", b"<alert>" + b" " * (limit + 1) + b"</alert>",
         "application/cap+xml"),
    ]
    for path, data, ctype in attempts:
        status, answer = await raw_post(fed, path, data, ctype)
        assert status == 413, answer
        assert str(limit) in answer["detail"]
        refused[label(status, answer) + (" (chunked)" if not isinstance(data, bytes) else "")] \
            += 1
    assert await stored_since(fed, SENDER, since) == []
    await control(fed, 24, "oversized bodies (413)", incident, refused)


async def test_malformed_nested_or_mistyped_bodies_get_4xx_no_crash(
        federation: Federation) -> None:
    """Row 25: deep nesting, truncated or broken JSON, invalid UTF-8, empty bodies, JSON of
    the wrong shape and wrong content types get 400/415/422; the node keeps serving."""
    fed = federation
    await fed.wait_ready()
    incident = f"IN-25-{uuid.uuid4().hex[:6]}"
    text = valid_text(incident)
    attempts: list[tuple[bytes, str | None, int]] = [
        (b"[" * 5000 + b"]" * 5000, "application/json", 400),
        (b'{"a":' * 3000 + b"1" + b"}" * 3000, "application/json", 400),
        (text[: len(text) // 2].encode(), "application/json", 400),
        (b"{not json", "application/json", 400),
        (b"\xff\xfe\x00garbage", "application/json", 400),
        (b"", "application/json", 400),
        (b"null", "application/json", 422),
        (b"[]", "application/json", 422),
        (b'"a string"', "application/json", 422),
        (text.encode(), "application/x-www-form-urlencoded", 415),
        (text.encode(), "text/plain", 415),
        (text.encode(), None, 415),
    ]
    since = format_time(datetime.now(UTC))
    crashes_before = log_count(fed, SENDER, "unhandled_error")
    refused: Counter[str] = Counter()
    for data, ctype, expected in attempts:
        status, answer = await raw_post(fed, "/v1/sitreps", data, ctype)
        assert status == expected, (data[:40], ctype, status, answer)
        assert isinstance(answer, dict)
        assert answer["status"] == status  # problem+json, not a stack trace
        refused[label(status, answer)] += 1
    assert await stored_since(fed, SENDER, since) == []
    assert (await fed.api(SENDER, "GET", "/healthz"))[0] == 200
    assert log_count(fed, SENDER, "unhandled_error") == crashes_before
    await control(fed, 25, "malformed / deeply nested JSON, wrong content type", incident,
                  refused)


async def test_unknown_recipient_or_group_is_422_naming_it(federation: Federation) -> None:
    """Row 28: unknown centres and groups, alone or next to known ones, get a 422 whose
    detail names each unknown one; nothing is stored."""
    fed = federation
    await fed.wait_ready()
    incident = f"IN-28-{uuid.uuid4().hex[:6]}"
    since = format_time(datetime.now(UTC))
    refused: Counter[str] = Counter()
    for to in (["XX-NOPE"], ["martians"], ["NL-NCC", "XX-NOPE", "martians"],
               ["benelux", "FR-COGIX"]):
        status, answer = await fed.api(SENDER, "POST", "/v1/sitreps", sitrep(incident, 1, to))
        assert status == 422, answer
        for name in to:
            if name not in ("NL-NCC", "benelux"):
                assert name in answer["detail"], (name, answer)
        refused[label(status, answer)] += 1
    assert await stored_since(fed, SENDER, since) == []
    await control(fed, 28, "unknown recipient or group (422 naming it)", incident, refused)


async def test_release_policy_refusal_names_the_rule(federation: Federation) -> None:
    """Row 29: TLP:RED and TLP:AMBER+STRICT to a group get 422 naming red-named-only and
    amber-strict-named-only; the same markings to named centres are delivered."""
    fed = federation
    await fed.wait_ready()
    incident = f"IN-29-{uuid.uuid4().hex[:6]}"
    since = format_time(datetime.now(UTC))
    refused: Counter[str] = Counter()
    for tlp, rule in (("RED", "red-named-only"), ("AMBER+STRICT", "amber-strict-named-only")):
        body = {**sitrep(incident, 1, ["benelux"]), "tlp": tlp}
        status, answer = await fed.api(SENDER, "POST", "/v1/sitreps", body)
        assert status == 422, answer
        assert rule in answer["detail"]
        assert {e["rule"] for e in answer["errors"]} == {rule}
        assert sorted(e["peer"] for e in answer["errors"]) == ["LU-HCPN", "NL-NCC"]
        refused[f"422 {rule}"] += 1
    assert await stored_since(fed, SENDER, since) == []
    counts = await control(fed, 29, "TLP:RED / AMBER+STRICT to a group (422 rule)",
                           incident, refused, tlp="RED")
    assert counts.accepted == 1


async def login(http: aiohttp.ClientSession, url: str, password: str) -> str:
    """Log in to a console as `operator`; returns the session's CSRF token."""
    async with http.get(f"{url}/console/login") as resp:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
    assert token is not None
    async with http.post(f"{url}/console/login", allow_redirects=False, data={
            "csrf_token": token.group(1), "name": "operator", "password": password}) as resp:
        assert resp.status == 303, await resp.text()
    async with http.get(f"{url}/console/inbox") as resp:
        page = await resp.text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def password(fed: Federation, centre: str) -> str:
    """The console password of `operator` at ``centre``."""
    return (fed.nodes[centre].config.parent / "operator-password").read_text().strip()


async def test_unauthorised_api_and_console_requests_do_nothing(
        federation: Federation) -> None:
    """Row 30: a missing, wrong or non-Bearer API token gets 401; console requests
    without a session are redirected or get 401; console POSTs without or with a wrong
    CSRF token get 403; no message is stored and the delivered sitrep stays unacknowledged."""
    fed = federation
    await fed.wait_ready()
    incident = f"IN-30-{uuid.uuid4().hex[:6]}"
    status, answer = await fed.api(SENDER, "POST", "/v1/sitreps",
                                   sitrep(incident, 1, [RECIPIENT]))
    assert status == 202, answer
    message_id = answer["id"]
    counts = await tally(fed, 30, "bad API token, no console session, bad CSRF", SENDER,
                         [message_id], [RECIPIENT], incident)
    since = format_time(datetime.now(UTC))
    refused: Counter[str] = Counter()
    body = sitrep(incident, 2, [RECIPIENT])
    for token, headers in (("", {}), ("wrong-token", {}),
                           (None, {"Authorization": f"Basic {fed.nodes[SENDER].token}"})):
        for method, centre, path, payload in (
                ("POST", SENDER, "/v1/sitreps", body),
                ("GET", RECIPIENT, "/v1/inbox", None),
                ("POST", RECIPIENT, f"/v1/messages/{message_id}/ack", {"by": "intruder"})):
            status, answer = await fed.api(centre, method, path, payload, headers=headers,
                                           token=token)
            assert status == 401, (method, path, answer)
            refused["401 API token"] += 1
    nl = base(fed, RECIPIENT)
    ack_path = f"/console/inbox/{SENDER}/{message_id}/ack"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        for path in ("/console", "/console/inbox", f"/console/messages/{message_id}"):
            async with http.get(nl + path, allow_redirects=False) as resp:
                assert resp.status == 302
                assert resp.headers["Location"].endswith("/console/login")
                refused["302 console, no session"] += 1
        async with http.get(nl + "/console/events") as resp:
            assert resp.status == 401
            refused["401 console events, no session"] += 1
        async with http.post(nl + ack_path, data={}, allow_redirects=False) as resp:
            assert resp.status in (401, 403)
            refused[f"{resp.status} console POST, no session"] += 1
        csrf = await login(http, nl, password(fed, RECIPIENT))
        for form in ({}, {"csrf_token": "forged"}, {"csrf_token": csrf[:-1]}):
            async with http.post(nl + ack_path, data=form, allow_redirects=False) as resp:
                assert resp.status == 403
                refused["403 console ack, bad CSRF"] += 1
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        csrf = await login(http, base(fed, SENDER), password(fed, SENDER))
        async with http.post(base(fed, SENDER) + "/console/compose", allow_redirects=False,
                             data={"csrf_token": "forged", "to": RECIPIENT, "tlp": "GREEN",
                                   "incident_id": incident, "summary": "x"}) as resp:
            assert resp.status == 403
            refused["403 console compose, bad CSRF"] += 1
    assert await stored_since(fed, SENDER, since) == []
    _, view = await fed.api(RECIPIENT, "GET", f"/v1/messages/{message_id}")
    assert view["state"] == "delivered", "an unauthorised acknowledgement took effect"
    _, view = await fed.api(SENDER, "GET", f"/v1/messages/{message_id}")
    assert [r["state"] for r in view["recipients"]] == ["delivered"]
    counts.rejected.update(refused)
    record(counts)
    assert counts.delivered == 1


async def test_long_reads_while_writing_never_see_a_locked_database(
        federation: Federation) -> None:
    """Row 31: while 150 sitreps are submitted, delivered and receipted, long reads (1000
    messages, incident timeline, directory, metrics, console pages with a session) on
    both nodes never get a 5xx, and no log says "database is locked"."""
    fed = federation
    await fed.wait_ready()
    incident = f"IN-31-{uuid.uuid4().hex[:6]}"
    n = 150
    reads: Counter[str] = Counter()
    done = asyncio.Event()

    async def write() -> tuple[list[str], Counter[str]]:
        ids: list[str] = []
        refused: Counter[str] = Counter()
        gate = asyncio.Semaphore(6)

        async def one(number: int) -> None:
            async with gate:
                status, answer = await fed.api(SENDER, "POST", "/v1/sitreps",
                                               sitrep(incident, number, [RECIPIENT]))
            if status == 202:
                ids.append(answer["id"])
            else:
                refused[label(status, answer)] += 1

        await asyncio.gather(*(one(i) for i in range(1, n + 1)))
        return ids, refused

    api_paths = {
        SENDER: ["/v1/messages?limit=1000", f"/v1/incidents/{incident}/timeline.json",
                 "/v1/incidents", "/v1/directory", "/v1/directory.html", "/metrics",
                 "/v1/peers", "/v1/commchecks/report.html"],
        RECIPIENT: ["/v1/inbox?limit=1000", "/v1/incidents", "/metrics",
                    f"/v1/incidents/{incident}"],
    }
    console_paths = ["/console", "/console/outbox", "/console/inbox", "/console/incidents",
                     f"/console/incidents/{incident}", "/console/directory"]

    async def read(centre: str) -> None:
        url = base(fed, centre)
        auth = {"Authorization": f"Bearer {fed.nodes[centre].token}"}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await login(http, url, password(fed, centre))
            while not done.is_set():
                for path in [*api_paths[centre], *console_paths]:
                    async with http.get(url + path, headers=auth,
                                        timeout=aiohttp.ClientTimeout(total=60)) as resp:
                        await resp.read()
                        assert resp.status < 500, (centre, path, resp.status)
                        # the incident may not exist yet on the first rounds
                        assert resp.status in (200, 404), (centre, path, resp.status)
                        reads[f"{resp.status} read"] += 1

    before = {(c, t): log_count(fed, c, t) for c in (SENDER, RECIPIENT)
              for t in ("database is locked", "unhandled_error")}
    # Readers run through the submissions and on until every receipt is in (the
    # dispatcher's and the inbox consumer's writes).
    readers = asyncio.gather(read(SENDER), read(SENDER), read(RECIPIENT), read(RECIPIENT))
    try:
        ids, refused = await write()
        assert refused == Counter()
        counts = await tally(fed, 31, "long reads while writing", SENDER, ids, [RECIPIENT],
                             incident)
    finally:
        done.set()
        await readers
    counts.fault = f"long reads while writing: {sum(reads.values())} reads, none 5xx"
    after = {key: log_count(fed, *key) for key in before}
    assert after == before, "a reader or writer logged a locked database or a crash"
    record(counts)
    assert counts.delivered == n
