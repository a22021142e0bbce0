"""The HTTP API's handlers (gateway.web.api) against an in-memory node: no broker, no
real node, no subprocess, only the web layer and the NodeApi it is given."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from gateway.config import Settings
from gateway.errors import (
    Ambiguous,
    IdempotencyConflict,
    InvalidBody,
    LedgerError,
    NotFound,
    PolicyRefused,
    RequestRefused,
    StateConflict,
)
from gateway.protocol.keys import fingerprint
from gateway.protocol.peerhealth import PeerHealth
from gateway.protocol.sitrep import PLAIN_TEXT
from gateway.protocol.types import format_time
from gateway.service.records import AuditEntry, SecurityEventView, SuppressedCount
from gateway.service.submit import AlertSubmission, SitrepSubmission
from gateway.web.api import PUBLIC, ROUTES, build_app, required_scope
from gateway.web.problems import PROBLEM_TYPE
from gateway.web.shapes import audit_json, inbox_view, message_json, receipt_json
from tests.unit.fake_node import (
    DE,
    LU,
    ME,
    MESSAGE_ID,
    NL,
    NOW,
    FakeNode,
    auth,
    centre_key,
    inbox_entry,
    outgoing_view,
    recipient,
    serve,
    settings_dict,
    stored_receipt,
)

Client = TestClient[web.Request, web.Application]
OTHER_ID = "5e2d9c1a-3b4f-4a6e-8d7c-1f0e2d3c4b5a"
INCIDENT = "BE-2026-0001"
SITREP: dict[str, Any] = {
    "incident": {"id": INCIDENT, "title": "Flooding of the Meuse"},
    "report_number": 2, "severity": "severe", "language": "fr",
    "summary": {"fr": "Crue de la Meuse.", "nl": "Overstroming van de Maas."},
}
SITREP_SUBMISSION: dict[str, Any] = {"to": [NL, "eu"], "tlp": "AMBER", "priority": "urgent",
                                     "sitrep": SITREP}
ALERT_SUBMISSION: dict[str, Any] = {"to": [LU], "alert": {
    "identifier": "BE-2026-0001-a1", "sender": "ops@crisiscenter.be",
    "sent": "2026-11-27T10:00:00+01:00", "status": "Actual", "msg_type": "Alert",
    "scope": "Public"}}


@pytest.fixture
def node() -> FakeNode:
    """A fresh in-memory node with three peers, every link up."""
    return FakeNode()


@pytest.fixture
async def client(node: FakeNode) -> AsyncIterator[Client]:
    """An HTTP client of build_app(node)."""
    async with serve(build_app(node)) as c:
        yield c


def concrete(path: str) -> str:
    """A route's path with its parameters filled in."""
    return (path.replace("{id:.+}", INCIDENT).replace("{id}", MESSAGE_ID)
            .replace("{kid}", "k1"))


PROTECTED = [r for r in ROUTES if r[1] not in PUBLIC]


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    """The problem+json body of ``response``, checking its status and media type."""
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM_TYPE
    body: dict[str, Any] = await response.json(content_type=PROBLEM_TYPE)
    assert body["status"] == status
    return body


# -- authentication and scopes ---------------------------------------------------------


async def test_every_protected_route_answers_401_without_a_token(client: Client,
                                                                 node: FakeNode) -> None:
    """Every route of ROUTES but the public ones: no token, an unknown token or another
    scheme is 401 with a Bearer challenge, and no handler runs."""
    wrong: list[str] = []
    for method, path, _ in PROTECTED:
        for headers in ({}, {"Authorization": "Bearer not-a-configured-token"},
                        {"Authorization": "Basic ZnVsbDp4"}):
            response = await client.request(method, concrete(path), headers=headers)
            body = await response.json(content_type=None)
            if (response.status, response.content_type, body.get("title"),
                    response.headers.get("WWW-Authenticate")) != (
                    401, PROBLEM_TYPE, "Unauthorized", 'Bearer realm="crisisgw"'):
                wrong.append(f"{method} {path} {headers}: {response.status} {body}")
    assert wrong == []
    assert not node.submitter.sitreps
    assert not node.submitter.alerts
    assert node.acknowledger.calls == []
    assert node.actions == []


def test_the_public_routes_are_only_health_metrics_and_the_openapi_document() -> None:
    """Only health, readiness, metrics and the OpenAPI document are public; the 401 test
    covers every other route."""
    assert {p for _, p, _ in ROUTES} & PUBLIC == {"/healthz", "/readyz", "/metrics",
                                                  "/v1/openapi.json"}


@pytest.mark.parametrize("path", sorted(PUBLIC))
async def test_public_routes_answer_without_a_token(client: Client, path: str) -> None:
    """Health, readiness, metrics and the OpenAPI document need no token."""
    response = await client.get(path)
    assert response.status == 200, await response.text()


async def test_metrics_needs_a_read_token_when_metrics_token_is_set() -> None:
    """With [api] metrics_token = true, /metrics is protected like /v1."""
    raw = settings_dict()
    raw["api"]["metrics_token"] = True
    node = FakeNode(current=Settings.model_validate(raw))
    async with serve(build_app(node)) as client:
        await problem_of(await client.get("/metrics"), 401)
        await problem_of(await client.get("/metrics", headers=auth("no-read")), 403)
        assert (await client.get("/metrics", headers=auth())).status == 200


async def test_a_token_lacking_the_routes_scope_gets_403_naming_it(client: Client,
                                                                  node: FakeNode) -> None:
    """For every protected route, a token with every scope but the one the route needs
    is refused with 403, and the problem and the challenge name the missing scope."""
    wrong: list[str] = []
    for method, path, _ in PROTECTED:
        scope = required_scope(method, path)
        response = await client.request(method, concrete(path), headers=auth(f"no-{scope}"))
        body = await response.json(content_type=None)
        challenge = response.headers.get("WWW-Authenticate", "")
        if (response.status, body.get("detail")) != (
                403, f"this token (no-{scope}) lacks the {scope} scope") or \
                f'error="insufficient_scope", scope="{scope}"' not in challenge:
            wrong.append(f"{method} {path}: {response.status} {body} {challenge}")
    assert wrong == []
    assert not node.submitter.sitreps
    assert not node.submitter.alerts
    assert node.acknowledger.calls == []
    assert node.actions == []


async def test_with_every_scope_each_route_answers_without_a_server_error(
        client: Client) -> None:
    """Smoke test of every handler on an empty node with a full token: no 401 or 403,
    and no 5xx."""
    wrong: list[str] = []
    for method, path, _ in PROTECTED:
        response = await client.request(method, concrete(path), headers=auth())
        if response.status in (401, 403) or response.status >= 500:
            wrong.append(f"{method} {path}: {response.status} {await response.text()}")
    assert wrong == []


# -- submissions -----------------------------------------------------------------------


def submitted_count(node: FakeNode, msg_type: str) -> float:
    """crisisgw_submitted_total for one type."""
    value = node.metrics.registry.get_sample_value("crisisgw_submitted_total",
                                                   {"type": msg_type})
    return value or 0.0


async def test_a_sitrep_reaches_the_submitter_parsed_and_is_accepted_with_its_id(
        client: Client, node: FakeNode) -> None:
    """POST /v1/sitreps: the submitter gets the validated SitrepSubmission, the answer is
    202 with the id and its status URL, and the submission is counted."""
    response = await client.post("/v1/sitreps", json=SITREP_SUBMISSION, headers=auth())
    assert response.status == 202, await response.text()
    assert await response.json() == {"id": MESSAGE_ID, "status": f"/v1/messages/{MESSAGE_ID}"}
    assert response.headers["Location"] == f"/v1/messages/{MESSAGE_ID}"
    assert "Idempotent-Replayed" not in response.headers
    assert node.submitter.sitreps == [
        (SitrepSubmission.model_validate(SITREP_SUBMISSION, context=PLAIN_TEXT), None)]
    assert submitted_count(node, "sitrep") == 1


async def test_an_idempotency_key_is_bound_to_the_client_and_the_request(
        client: Client, node: FakeNode) -> None:
    """The Idempotency-Key reaches the submitter with the client and a request digest;
    a replay (created False) is 202 with Idempotent-Replayed and is not counted again."""
    node.submitter.result = (OTHER_ID, False)
    response = await client.post("/v1/sitreps", json=SITREP_SUBMISSION,
                                 headers={**auth(), "Idempotency-Key": "job-42"})
    assert response.status == 202
    assert (await response.json())["id"] == OTHER_ID
    assert response.headers["Idempotent-Replayed"] == "true"
    [(_, key)] = node.submitter.sitreps
    assert key is not None
    assert (key.client, key.key) == ("full", "job-42")
    assert re.fullmatch(r"[0-9a-f]{64}", key.request_sha256)
    assert submitted_count(node, "sitrep") == 0
    too_long = await client.post("/v1/sitreps", json=SITREP_SUBMISSION,
                                 headers={**auth(), "Idempotency-Key": "k" * 201})
    await problem_of(too_long, 400)


async def test_an_invalid_sitrep_is_422_with_its_fields_and_never_reaches_the_submitter(
        client: Client, node: FakeNode) -> None:
    """A body that fails validation is a 422 naming the fields; not JSON is 415."""
    body = await problem_of(await client.post(
        "/v1/sitreps", json={"to": [NL], "sitrep": SITREP}, headers=auth()), 422)
    assert body["title"] == "Invalid body"
    assert ["tlp"] in [e["loc"] for e in body["errors"]]
    await problem_of(await client.post("/v1/sitreps", data=b"to=NL-NCC", headers={
        **auth(), "Content-Type": "application/x-www-form-urlencoded"}), 415)
    assert node.submitter.sitreps == []


async def test_a_json_alert_reaches_the_submitter_parsed(client: Client,
                                                         node: FakeNode) -> None:
    """POST /v1/alerts with JSON: the submitter gets the AlertSubmission; 202."""
    response = await client.post("/v1/alerts", json=ALERT_SUBMISSION, headers=auth())
    assert response.status == 202, await response.text()
    assert node.submitter.alerts == [(AlertSubmission.model_validate(ALERT_SUBMISSION), None)]
    assert submitted_count(node, "alert") == 1


@pytest.mark.parametrize(("error", "status"), [
    (PolicyRefused("Release policy", "red-to-group: TLP:RED may not go to a group",
                   [{"loc": ["to"], "msg": "red-to-group", "rule": "red-to-group"}]), 422),
    (IdempotencyConflict("Idempotency conflict", "the key came with another request"), 422),
    (NotFound("Not found", "no such recipient"), 404),
    (StateConflict("Conflict", "not now"), 409),
    (Ambiguous("Ambiguous", "two of them"), 400),
    (InvalidBody("Bad field", "out of range", [{"loc": ["expires"], "msg": "range"}]), 422),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v))
async def test_a_refusal_from_the_submitter_becomes_problem_json_with_its_status(
        client: Client, node: FakeNode, error: RequestRefused, status: int) -> None:
    """The submitter's domain error keeps its title, detail and errors, with the status
    gateway.web.problems gives its class."""
    node.submitter.error = error
    body = await problem_of(await client.post("/v1/sitreps", json=SITREP_SUBMISSION,
                                              headers=auth()), status)
    assert (body["title"], body["detail"]) == (error.title, error.detail)
    assert body.get("errors", []) == error.errors
    assert submitted_count(node, "sitrep") == 0


async def test_a_communication_test_goes_to_every_active_peer(client: Client,
                                                             node: FakeNode) -> None:
    """POST /v1/commchecks runs the real CommChecks: one test to NL and LU, not to the
    suspended DE; 202 with the id."""
    response = await client.post("/v1/commchecks", headers=auth("no-admin"))
    assert response.status == 202
    assert await response.json() == {"id": MESSAGE_ID, "status": f"/v1/commchecks/{MESSAGE_ID}"}
    assert node.submitter.bodies == [("commcheck", (NL, LU))]


# -- messages and inbox ----------------------------------------------------------------


async def test_an_outgoing_message_is_shown_in_the_message_json_shape(
        client: Client, node: FakeNode) -> None:
    """GET /v1/messages/{id}: message_json of the stored view, its receipts, direction."""
    view = outgoing_view(MESSAGE_ID, recipients=(
        recipient(NL, "acknowledged", delivered_at="2026-11-27T10:00:01.000Z",
                  acknowledged_at="2026-11-27T10:03:00.000Z"),
        recipient(LU, "queued", last_error="connection refused")))
    node.ledger.outbox.add(view)
    node.ledger.receipts.by_message[MESSAGE_ID] = [stored_receipt(NL, MESSAGE_ID)]
    response = await client.get(f"/v1/messages/{MESSAGE_ID}", headers=auth("no-admin"))
    assert response.status == 200
    body = await response.json()
    expected = {**message_json(view), "direction": "out",
                "receipts": [receipt_json(stored_receipt(NL, MESSAGE_ID))]}
    assert body == json.loads(json.dumps(expected))
    assert body["envelope"]["id"] == MESSAGE_ID
    assert body["signature"]["alg"] == "Ed25519"
    assert [r["state"] for r in body["recipients"]] == ["acknowledged", "queued"]


async def test_an_incoming_message_is_shown_in_the_inbox_view_shape(
        client: Client, node: FakeNode) -> None:
    """GET /v1/messages/{id} of a message a peer sent: inbox_view with direction "in"."""
    entry = inbox_entry(OTHER_ID)
    node.ledger.inbox.add(entry)
    response = await client.get(f"/v1/messages/{OTHER_ID}", headers=auth())
    assert response.status == 200
    assert await response.json() == json.loads(json.dumps(
        {**inbox_view(entry), "direction": "in"}))


@pytest.mark.parametrize("message_id", [
    OTHER_ID, "not-a-uuid", OTHER_ID.upper(), "../../etc/passwd"])
async def test_an_unknown_or_malformed_message_id_is_404(
        client: Client, node: FakeNode, message_id: str) -> None:
    """Unknown ids and ids that are not lower-case UUIDs are 404 problems; malformed ones
    never reach the store."""
    node.ledger.outbox.add(outgoing_view(MESSAGE_ID))
    await problem_of(await client.get(f"/v1/messages/{message_id}", headers=auth()), 404)
    if message_id != OTHER_ID:
        assert ("get", (message_id,)) not in node.ledger.outbox.calls


async def test_the_inbox_lists_entries_in_the_inbox_view_shape(
        client: Client, node: FakeNode) -> None:
    """GET /v1/inbox: filters reach the store (``from`` as ``sender``), the limit is
    clamped, and each entry is shown as inbox_view."""
    nl, lu = inbox_entry(MESSAGE_ID), inbox_entry(OTHER_ID, sender=LU, priority="flash")
    node.ledger.inbox.add(nl, lu)
    response = await client.get("/v1/inbox", params={"from": NL, "limit": "5000"},
                                headers=auth())
    assert response.status == 200
    assert await response.json() == json.loads(json.dumps({"items": [inbox_view(nl)],
                                                           "next": None}))
    assert ("list", ({"sender": NL}, 1000)) in node.ledger.inbox.calls
    all_items = await (await client.get("/v1/inbox", headers=auth())).json()
    assert {i["id"] for i in all_items["items"]} == {MESSAGE_ID, OTHER_ID}


async def test_unknown_inbox_filters_and_bad_limits_are_400(client: Client) -> None:
    """A query parameter the route does not know, or a limit that is not a number."""
    body = await problem_of(await client.get("/v1/inbox", params={"colour": "red"},
                                             headers=auth()), 400)
    assert body["errors"] == [{"loc": ["query", "colour"], "msg": "unknown parameter"}]
    await problem_of(await client.get("/v1/inbox", params={"limit": "ten"},
                                      headers=auth()), 400)


async def test_acknowledging_calls_the_acknowledger_with_who_and_from_whom(
        client: Client, node: FakeNode) -> None:
    """POST /v1/messages/{id}/ack: the acknowledger gets the id, the name from the body
    (else the client), ?from= and the client as actor; the answer is the updated entry."""
    node.ledger.inbox.add(inbox_entry(MESSAGE_ID))
    response = await client.post(f"/v1/messages/{MESSAGE_ID}/ack", params={"from": NL},
                                 json={"by": "Officer Peeters"}, headers=auth("no-admin"))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["state"], body["acknowledged_by"]) == ("acknowledged", "Officer Peeters")
    assert body["acknowledged_at"] == "2026-11-27T10:00:00.000Z"
    assert body == json.loads(json.dumps(
        inbox_view(node.ledger.inbox.entries[NL, MESSAGE_ID])))
    response = await client.post(f"/v1/messages/{MESSAGE_ID}/ack", headers=auth())
    assert response.status == 200
    assert node.acknowledger.calls == [(MESSAGE_ID, "Officer Peeters", NL, "no-admin"),
                                       (MESSAGE_ID, "full", None, "full")]


@pytest.mark.parametrize(("error", "status"), [
    (NotFound("Not found", "no incoming message"), 404),
    (StateConflict("Rejected message", "it cannot be acknowledged"), 409),
    (Ambiguous("Ambiguous", "several senders used this id; pass ?from="), 400),
], ids=["NotFound", "StateConflict", "Ambiguous"])
async def test_a_refused_acknowledgement_keeps_its_status(
        client: Client, node: FakeNode, error: RequestRefused, status: int) -> None:
    """The acknowledger's NotFound, StateConflict and Ambiguous map to 404, 409, 400."""
    node.acknowledger.error = error
    body = await problem_of(await client.post(f"/v1/messages/{MESSAGE_ID}/ack",
                                              headers=auth()), status)
    assert body["detail"] == error.detail


# -- peers, readiness, metrics ---------------------------------------------------------


async def test_peers_reflect_the_link_states_and_the_backlog(client: Client,
                                                            node: FakeNode) -> None:
    """GET /v1/peers: link_up, link_tls and link_problem come from the links, backlog
    from LedgerStats; a peer without a link is down with no problem."""
    node.links[LU].down("certificate has expired", tls="expired")
    node.links[LU].secure = False
    del node.links[DE]
    node.ledger.set_backlog(LU_HCPN=3)
    response = await client.get("/v1/peers", headers=auth())
    assert response.status == 200
    body = await response.json()
    assert body["me"] == ME
    peers = {p["id"]: p for p in body["peers"]}
    assert list(peers) == [NL, LU, DE]
    state = {p: (v["link_up"], v["link_tls"], v["link_problem"], v["backlog"])
             for p, v in peers.items()}
    assert state == {
        NL: (True, True, None, 0),
        LU: (False, False, {"tls": "expired", "detail": "certificate has expired"}, 3),
        DE: (False, False, None, 0),
    }
    assert peers[DE]["suspended"] is True
    assert peers[NL]["unreachable"] is None
    assert peers[NL]["keys"] == [{"kid": centre_key(NL).kid,
                                  "fingerprint": fingerprint(centre_key(NL).public()),
                                  "not_after": "2027-06-30T00:00:00.000Z", "revoked": False}]


async def test_peers_show_a_peer_the_dispatcher_backs_off(client: Client,
                                                           node: FakeNode) -> None:
    """A peer whose link failed shows since when, how many failures, whether it was a
    refusal, and the next probe."""
    since = NOW - timedelta(minutes=3)
    node.down[LU] = PeerHealth(reachable=False, failures=7, probe_at=NOW + timedelta(
        seconds=1), since=since, refused=True, last_error="access refused")
    body = await (await client.get("/v1/peers", headers=auth())).json()
    peers = {p["id"]: p for p in body["peers"]}
    assert peers[LU]["unreachable"] == {
        "since": format_time(since), "failures": 7, "refused": True,
        "next_probe": format_time(NOW + timedelta(seconds=1))}
    assert peers[NL]["unreachable"] is None


async def test_readiness_follows_the_inbox_link_and_the_ledger(client: Client,
                                                              node: FakeNode) -> None:
    """/readyz is 200 when the inbox link is up and the ledger answers, else 503 naming
    the failed check."""
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready",
                                     "checks": {"ledger": True, "inbox": True}}
    node.inbox.connected = False
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"status": "not ready",
                                     "checks": {"ledger": True, "inbox": False}}
    node.inbox.connected = True
    node.ledger.faults["ping"] = LedgerError("database is locked")
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"] == {"ledger": False, "inbox": True}


async def test_metrics_reflect_the_links(client: Client, node: FakeNode) -> None:
    """/metrics shows which peer links are up, TLS problems and dead letters."""
    node.links[LU].down("certificate has expired", tls="expired")
    node.inbox.dead_letters = 4
    text = await (await client.get("/metrics")).text()
    assert 'crisisgw_peer_link_up{peer="NL-NCC"} 1.0' in text
    assert 'crisisgw_peer_link_up{peer="LU-HCPN"} 0.0' in text
    assert 'crisisgw_link_tls_problem{link="LU-HCPN",reason="expired"} 1.0' in text
    assert "crisisgw_dead_letters 4.0" in text


# -- security events and audit ---------------------------------------------------------


async def test_security_events_list_items_and_suppressed_counts(client: Client,
                                                                node: FakeNode) -> None:
    """GET /v1/security-events: the recent events (limit passed on) and the suppressed
    counts, each as its record's fields."""
    event = SecurityEventView(seq=7, at="2026-11-27T09:59:00.000Z", reason="bad_signature",
                              detail="signature does not verify", claimed_sender=NL,
                              claimed_id=OTHER_ID, amqp_user=f"{NL}@{ME}",
                              payload_sha256="f" * 64)
    count = SuppressedCount(publisher=f"{LU}@{ME}", day="2026-11-27", reason="malformed",
                            count=120, bytes=4096, last_at="2026-11-27T09:58:00.000Z",
                            last_sha256="a" * 64)
    node.ledger.security.events = [event]
    node.ledger.security.counts = [count]
    response = await client.get("/v1/security-events", params={"limit": "10"},
                                headers=auth())
    assert response.status == 200
    assert await response.json() == {"items": [asdict(event)], "next": None,
                                     "suppressed": [asdict(count)]}
    assert ("recent", (10,)) in node.ledger.security.calls


async def test_the_audit_log_passes_kind_and_subject_and_uses_the_audit_json_shape(
        client: Client, node: FakeNode) -> None:
    """GET /v1/audit?kind=&subject=&limit=: the filters reach the store; each entry is
    audit_json (with the action/target/detail aliases)."""
    rotated = AuditEntry(seq=2, at="2026-11-27T09:00:00.000Z", kind="key.rotated",
                         actor="node", subject=f"{ME}/k2",
                         data={"detail": "announced", "n": 1}, hash="1" * 64)
    login = AuditEntry(seq=1, at="2026-11-27T08:00:00.000Z", kind="session.login",
                       actor="duty", subject="127.0.0.1", data={}, hash="2" * 64)
    node.ledger.audit.items = [login, rotated]
    response = await client.get("/v1/audit", params={
        "kind": "key.rotated", "subject": f"{ME}/k2", "limit": "5"}, headers=auth())
    assert response.status == 200
    body = await response.json()
    assert body == {"items": [audit_json(rotated)], "next": None}
    assert body["items"][0] == {
        "seq": 2, "at": "2026-11-27T09:00:00.000Z", "kind": "key.rotated", "actor": "node",
        "subject": f"{ME}/k2", "data": {"detail": "announced", "n": 1}, "hash": "1" * 64,
        "action": "key.rotated", "target": f"{ME}/k2", "detail": "announced"}
    assert ("entries", (5, "key.rotated", f"{ME}/k2")) in node.ledger.audit.calls
    everything = await (await client.get("/v1/audit", headers=auth())).json()
    assert [i["seq"] for i in everything["items"]] == [2, 1]
    assert ("entries", (100, None, None)) in node.ledger.audit.calls


async def test_lists_page_with_the_next_cursor_until_the_last_page(
        client: Client, node: FakeNode) -> None:
    """Every list answers ``next`` while a page is full; ``after=next`` continues where
    the page ended, with no row twice and none left out; a forged cursor is 400."""
    node.ledger.inbox.add(*(inbox_entry(f"00000000-0000-4000-8000-{n:012d}",
                                        received_at=NOW + timedelta(seconds=n))
                            for n in range(7)))
    node.ledger.audit.items = [
        AuditEntry(seq=n, at=format_time(NOW), kind="session.login", actor="duty",
                   subject="127.0.0.1", data={}, hash=f"{n:064d}") for n in range(1, 6)]
    for path, key, total in (("/v1/inbox", "id", 7), ("/v1/audit", "seq", 5)):
        seen: list[Any] = []
        params = {"limit": "3"}
        while True:
            response = await client.get(path, params=params, headers=auth())
            assert response.status == 200
            body = await response.json()
            seen += [i[key] for i in body["items"]]
            if body["next"] is None:
                break
            assert len(body["items"]) == 3
            params = {"limit": "3", "after": body["next"]}
        assert len(seen) == total == len(set(seen))
        assert seen == sorted(seen, reverse=True)
    for bad in ("x", "W10", "WyJhIl0", "A" * 700):
        response = await client.get("/v1/inbox", params={"after": bad}, headers=auth())
        assert response.status == 400, bad
        assert (await response.json())["title"] == "Bad cursor"


async def test_the_checkpoint_is_signed_now(client: Client, node: FakeNode) -> None:
    """GET /v1/audit/checkpoint asks the node for a forced checkpoint and returns it."""
    response = await client.get("/v1/audit/checkpoint", headers=auth())
    assert response.status == 200
    assert (await response.json())["envelope"] == {"type": "checkpoint"}
    assert node.actions == [("checkpoint", True)]


# -- keys and directory ----------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"overlap_days": -1}, {"overlap_days": 91}, {"overlap_days": "7"},
    {"overlap_days": True}, {"overlap_days": None}, {"overlap_days": 7, "force": True},
    [7], 7,
], ids=repr)
async def test_a_bad_overlap_is_422_and_nothing_is_rotated(
        client: Client, node: FakeNode, body: Any) -> None:
    """POST /v1/keys/rotate refuses an overlap outside 0..90 days, of the wrong type, or
    with other fields, before touching the key."""
    problem = await problem_of(await client.post("/v1/keys/rotate", json=body,
                                                 headers=auth()), 422)
    assert problem["errors"]
    assert node.actions == []
    assert node.ledger.audit.recorded == []


@pytest.mark.parametrize(("body", "overlap"), [
    ({"overlap_days": 3}, timedelta(days=3)), ({"overlap_days": 0}, timedelta(0)),
    ({"overlap_days": 1.5}, timedelta(hours=36)), ({}, timedelta(days=7)),
    (None, timedelta(days=7)),
], ids=["3", "0", "1.5", "empty-object", "no-body"])
async def test_rotation_calls_rotate_key_with_the_overlap_and_audits_it(
        client: Client, node: FakeNode, body: dict[str, Any] | None,
        overlap: timedelta) -> None:
    """A valid overlap (default 7 days) reaches node.rotate_key; the request is audited
    under the client's name and the node's answer returned."""
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    response = await client.post("/v1/keys/rotate", headers=auth(), **kwargs)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["previous_kid"] == centre_key(ME).kid
    assert node.actions == [("rotate_key", overlap)]
    assert node.ledger.audit.recorded == [
        ("full", "key.rotation_requested", answer["kid"], "", NOW)]


async def test_revoking_a_peer_key_calls_the_node_and_an_unknown_key_is_404(
        client: Client, node: FakeNode) -> None:
    """POST /v1/peers/{id}/keys/{kid}/revoke: a configured key is revoked and audited;
    the node's ConfigError for an unknown one becomes 404, not audited."""
    kid = centre_key(NL).kid
    response = await client.post(f"/v1/peers/{NL}/keys/{kid}/revoke", headers=auth())
    assert response.status == 200
    assert await response.json() == {"peer": NL, "kid": kid, "revoked": True}
    await problem_of(await client.post(f"/v1/peers/{NL}/keys/nope/revoke", headers=auth()),
                     404)
    assert node.actions == [("revoke_peer_key", (NL, kid)), ("revoke_peer_key", (NL, "nope"))]
    assert [r[1:3] for r in node.ledger.audit.recorded] == [
        ("key.revocation_requested", f"{NL}/{kid}")]


async def test_publishing_the_directory_calls_the_node(client: Client,
                                                      node: FakeNode) -> None:
    """POST /v1/directory/publish: 202 with the message id of the publication."""
    response = await client.post("/v1/directory/publish", headers=auth())
    assert response.status == 202
    assert await response.json() == {"id": MESSAGE_ID}
    assert node.actions == [("publish_directory", False)]


# -- failures --------------------------------------------------------------------------


@pytest.mark.parametrize(("disk_full", "status", "retry_after"), [
    (True, 507, "30"), (False, 503, "5")], ids=["disk-full", "other"])
async def test_a_ledger_failure_is_507_when_the_disk_is_full_else_503(
        client: Client, node: FakeNode, disk_full: bool, status: int,
        retry_after: str) -> None:
    """A LedgerError from a store: 507 Insufficient storage with Retry-After when the
    disk is full, 503 otherwise; the store's message is not shown."""
    node.ledger.faults["inbox.list"] = LedgerError("/srv/ledger.db: no space left",
                                                   disk_full=disk_full)
    response = await client.get("/v1/inbox", headers=auth())
    body = await problem_of(response, status)
    assert response.headers["Retry-After"] == retry_after
    assert "/srv/ledger.db" not in json.dumps(body)


async def test_a_ledger_failure_while_submitting_is_507(client: Client,
                                                        node: FakeNode) -> None:
    """The submitter's LedgerError(disk_full) is 507 too: the client should retry."""
    node.submitter.error = LedgerError("disk full", disk_full=True)
    response = await client.post("/v1/sitreps", json=SITREP_SUBMISSION, headers=auth())
    body = await problem_of(response, 507)
    assert body["title"] == "Insufficient storage"
    assert response.headers["Retry-After"] == "30"


async def test_an_unexpected_error_is_500_without_its_text(client: Client,
                                                           node: FakeNode) -> None:
    """Any other exception is logged and answered with a generic 500 problem: its
    message never reaches the client."""
    node.ledger.faults["audit.entries"] = RuntimeError("password=hunter2 at /srv/ledger.db")
    with capture_logs() as logs:
        response = await client.get("/v1/audit", headers=auth())
    body = await problem_of(response, 500)
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["unhandled_error"]
    assert (body["title"], body["detail"]) == ("Internal error", "the error was logged")
    text = json.dumps(body) + str(dict(response.headers))
    assert "hunter2" not in text
    assert "RuntimeError" not in text
