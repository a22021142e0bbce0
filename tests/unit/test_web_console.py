"""The operator console's handlers (gateway.web.console) against an in-memory node:
sessions, CSRF, login, the overview and acknowledgement, and account reloads."""

from __future__ import annotations

import re
import warnings
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from gateway.errors import PolicyRefused, StateConflict
from gateway.web.api import build_app
from gateway.web.console.auth import SESSION_COOKIE, password_tag
from gateway.web.console.views import OPERATORS, SESSIONS
from tests.unit.fake_node import (
    LU,
    MESSAGE_ID,
    NL,
    OPERATOR,
    OPERATOR_PASSWORD,
    FakeNode,
    inbox_entry,
    make_settings,
    serve,
)
from tests.unit.test_incidents import DE, report

Client = TestClient[web.Request, web.Application]
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
ACK = f"/console/inbox/{NL}/{MESSAGE_ID}/ack"


@pytest.fixture
def node() -> FakeNode:
    """A node with operator ``duty`` and viewer ``watch`` (same password), links up."""
    return FakeNode(current=make_settings(operators=((OPERATOR, "operator"),
                                                     ("watch", "viewer"))))


@pytest.fixture
async def client(node: FakeNode) -> AsyncIterator[Client]:
    """An HTTP client of the whole app (API and console) on the fake node."""
    async with serve(build_app(node)) as c:
        yield c


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF_INPUT.search(html)
    assert found is not None, html
    return found.group(1)


async def login(client: Client, name: str, password: str) -> ClientResponse:
    """The login form's way: GET the page (CSRF cookie and field), POST the form."""
    page = await client.get("/console/login")
    assert page.status == 200
    return await client.post("/console/login", allow_redirects=False, data={
        "name": name, "password": password, "csrf_token": csrf_of(await page.text())})


async def open_session(client: Client, name: str = OPERATOR) -> str:
    """Log ``name`` in without the (slow, argon2) password check: a session created as the
    login handler creates it, its cookie in the client's jar. Returns its CSRF token."""
    entry = client.app[OPERATORS].entry(name)
    assert entry is not None
    token, session = await client.app[SESSIONS].create(entry.name, entry.role, "en",
                                                       password_tag(entry))
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: token},
                                             client.make_url("/console"))
    return session.csrf


def session_cookie(client: Client) -> str | None:
    """The session cookie the client would send to the console."""
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/console")).get(
        SESSION_COOKIE)
    return cookie.value if cookie else None


# -- login -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/console", "/console/", "/console/inbox",
                                  "/console/outbox", "/console/compose"])
async def test_console_pages_redirect_to_login_without_a_session(client: Client,
                                                                 path: str) -> None:
    """A GET without a session is sent to /console/login."""
    response = await client.get(path, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/console/login"


async def test_posts_and_live_events_without_a_session_are_401(client: Client,
                                                               node: FakeNode) -> None:
    """No redirect for the event stream or a POST: 401, and nothing is acknowledged."""
    assert (await client.get("/console/events", allow_redirects=False)).status == 401
    response = await client.post(ACK, data={"csrf_token": "x"}, allow_redirects=False)
    assert response.status == 401
    assert node.acknowledger.calls == []


async def test_the_right_password_opens_a_session(client: Client, node: FakeNode) -> None:
    """Login with the CSRF token of the login page and the right password: 303 to
    /console, an HttpOnly SameSite=Strict session cookie, audited; the overview opens."""
    response = await login(client, OPERATOR, OPERATOR_PASSWORD)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/console"
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/console"
    assert [(a, act) for a, act, *_ in node.ledger.audit.recorded] == [
        (OPERATOR, "session.login")]
    assert (await client.get("/console", allow_redirects=False)).status == 200


async def test_a_wrong_password_opens_no_session(client: Client, node: FakeNode) -> None:
    """A wrong password is 401 with the login page's error, sets no session cookie and
    is audited as a failed login."""
    response = await login(client, OPERATOR, "not the password")
    assert response.status == 401
    assert "Wrong name or password." in await response.text()
    assert SESSION_COOKIE not in response.cookies
    assert session_cookie(client) is None
    assert [a[:2] for a in node.ledger.audit.recorded] == [(OPERATOR, "session.login_failed")]
    assert (await client.get("/console", allow_redirects=False)).status == 302


async def test_a_login_without_the_csrf_token_is_refused_before_the_password_check(
        client: Client, node: FakeNode) -> None:
    """The login form needs the token of its page (cookie and field): 403 otherwise."""
    await client.get("/console/login")
    response = await client.post("/console/login", allow_redirects=False, data={
        "name": OPERATOR, "password": OPERATOR_PASSWORD, "csrf_token": "forged"})
    assert response.status == 403
    assert session_cookie(client) is None
    assert node.ledger.audit.recorded == []


async def test_logging_out_ends_the_session(client: Client, node: FakeNode) -> None:
    """POST /console/logout (with the CSRF token) drops the session here and in the
    store; the next page is the login again."""
    csrf = await open_session(client)
    assert len(node.ledger.sessions.rows) == 1
    response = await client.post("/console/logout", data={"csrf_token": csrf},
                                 allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/console/login"
    assert node.ledger.sessions.rows == {}
    assert (await client.get("/console", allow_redirects=False)).status == 302


# -- overview --------------------------------------------------------------------------


async def test_the_overview_shows_no_problem_when_every_link_is_up(client: Client) -> None:
    """Every peer reachable, nothing waiting: 200 with the good banner and the
    security headers."""
    await open_session(client)
    response = await client.get("/console")
    assert response.status == 200
    html = await response.text()
    assert "No problems: every peer is reachable and no delivery is stuck." in html
    assert "is unreachable" not in html
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_overview_shows_a_peer_whose_link_is_down_as_a_problem(
        client: Client, node: FakeNode) -> None:
    """A peer link that failed (TLS certificate expired) is listed among the problems
    with its reason and error, its row marked bad; a backlog and a dead inbox too."""
    node.links[LU].down("certificate has expired (valid until 2026-11-01)", tls="expired")
    node.ledger.set_backlog(LU_HCPN=4)
    node.inbox.connected = False
    await open_session(client)
    response = await client.get("/console")
    assert response.status == 200
    html = await response.text()
    assert f"Peer {LU} is unreachable" in html
    assert f"Peer {NL} is unreachable" not in html
    assert "TLS certificate expired" in html
    assert "certificate has expired (valid until 2026-11-01)" in html
    assert f"4 messages not yet delivered to {LU}" in html
    assert "Our inbox on the broker is not connected" in html
    assert "No problems" not in html
    assert html.count('class="row-bad"') == 1


# -- acknowledgement -------------------------------------------------------------------


async def test_acknowledging_from_the_console_needs_the_csrf_token(
        client: Client, node: FakeNode) -> None:
    """Without the session's CSRF token (or with another one) the POST is 403 and the
    acknowledger is not called; with it the acknowledger gets the message, the
    operator's name and the sender, it is audited, and the page goes back to the inbox."""
    node.ledger.inbox.add(inbox_entry(MESSAGE_ID))
    csrf = await open_session(client)
    for data in ({}, {"csrf_token": "not-the-token"}):
        response = await client.post(ACK, data=data, allow_redirects=False)
        assert response.status == 403
    assert node.acknowledger.calls == []
    overview = await (await client.get("/console")).text()
    assert csrf_of(overview) == csrf
    response = await client.post(ACK, data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/console/inbox"
    assert node.acknowledger.calls == [(MESSAGE_ID, OPERATOR, NL, None)]
    assert node.ledger.inbox.entries[NL, MESSAGE_ID].state == "acknowledged"
    assert node.ledger.audit.recorded[-1][:3] == (
        OPERATOR, "message.acknowledge_requested", f"{NL}/{MESSAGE_ID}")


async def test_the_csrf_token_may_come_in_a_header(client: Client, node: FakeNode) -> None:
    """The console's script sends X-CSRF-Token instead of a form field."""
    node.ledger.inbox.add(inbox_entry(MESSAGE_ID))
    csrf = await open_session(client)
    response = await client.post(ACK, headers={"X-CSRF-Token": csrf}, allow_redirects=False)
    assert response.status == 303
    assert len(node.acknowledger.calls) == 1


async def test_a_viewer_cannot_acknowledge(client: Client, node: FakeNode) -> None:
    """The operator role is needed: a viewer with a valid CSRF token gets 403."""
    node.ledger.inbox.add(inbox_entry(MESSAGE_ID))
    csrf = await open_session(client, "watch")
    response = await client.post(ACK, data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 403
    assert node.acknowledger.calls == []


async def test_a_refused_acknowledgement_is_409_and_not_audited(
        client: Client, node: FakeNode) -> None:
    """The acknowledger's refusal (a rejected message) is a 409 with its detail."""
    node.acknowledger.error = StateConflict("Rejected message", "it was rejected")
    csrf = await open_session(client)
    response = await client.post(ACK, data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 409
    assert "it was rejected" in await response.text()
    assert all(r[1] != "message.acknowledge_requested" for r in node.ledger.audit.recorded)


# -- reload ----------------------------------------------------------------------------


async def test_a_reload_changes_the_accounts_that_may_log_in(client: Client,
                                                             node: FakeNode) -> None:
    """After a reload that replaces ``duty`` by ``night``, duty's open session ends (its
    account is gone) and night can log in."""
    await open_session(client)
    assert (await client.get("/console", allow_redirects=False)).status == 200
    node.reload(make_settings(operators=(("night", "operator"),)))
    assert (await client.get("/console", allow_redirects=False)).status == 302
    assert session_cookie(client) is not None  # the cookie is still sent: the server refused it
    response = await login(client, "night", OPERATOR_PASSWORD)
    assert response.status == 303
    assert (await client.get("/console", allow_redirects=False)).status == 200


async def test_a_reload_that_lowers_a_role_applies_to_the_open_session(
        client: Client, node: FakeNode) -> None:
    """duty becomes a viewer by a reload: the open session loses the operator's actions
    at its next request."""
    node.ledger.inbox.add(inbox_entry(MESSAGE_ID))
    csrf = await open_session(client)
    assert 'id="run-commcheck"' in await (await client.get("/console")).text()
    node.reload(make_settings(operators=((OPERATOR, "viewer"),)))
    assert 'id="run-commcheck"' not in await (await client.get("/console")).text()
    response = await client.post(ACK, data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 403
    assert node.acknowledger.calls == []


# -- known bugs ------------------------------------------------------------------------


def deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    """The DeprecationWarnings among ``caught``."""
    return [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]


@pytest.mark.parametrize("action", ["login", "logout", "language"])
async def test_console_redirects_come_without_a_deprecation_warning(
        client: Client, action: str) -> None:
    """Logging in, logging out and choosing a language answer 303 without aiohttp
    deprecation warnings."""
    if action == "login":
        csrf = csrf_of(await (await client.get("/console/login")).text())
        data = {"name": OPERATOR, "password": OPERATOR_PASSWORD}
    else:
        csrf = await open_session(client)
        data = {"lang": "nl"} if action == "language" else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = await client.post(f"/console/{action}", allow_redirects=False,
                                     data={**data, "csrf_token": csrf})
    assert response.status == 303
    assert deprecations(caught) == []


async def test_a_reload_of_a_running_console_gives_no_deprecation_warning(
        client: Client, node: FakeNode) -> None:
    """Reloading the configuration of a serving node changes its accounts quietly."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node.reload(make_settings(operators=(("night", "operator"),)))
    assert deprecations(caught) == []


async def test_a_policy_refusal_is_said_in_plain_words_in_the_operators_language(
        client: Client, node: FakeNode) -> None:
    """A compose form that the release policy and the recipient rules refuse comes back
    (422) with each refusal in plain Dutch next to the recipients, naming the peer; a
    refusal the console has no words for keeps the service's own text."""
    node.fake_submitter.error = PolicyRefused("Release policy", "refused", [
        {"loc": ["to"], "msg": "exercise-participants: LU-HCPN does not take part",
         "rule": "exercise-participants", "peer": LU},
        {"loc": ["to", 1], "msg": "unknown centre: XX-NOPE", "code": "recipient_unknown",
         "name": "XX-NOPE"},
        {"loc": ["to"], "msg": "some-new-rule: said by the service", "rule": "some-new-rule"},
    ])
    csrf = await open_session(client)
    assert (await client.post("/console/language", allow_redirects=False,
                              data={"lang": "nl", "csrf_token": csrf})).status == 303
    response = await client.post("/console/compose", data={
        "csrf_token": csrf, "to": LU, "tlp": "GREEN", "priority": "routine",
        "mode": "exercise", "incident_id": "LU-2026-0001", "incident_title": "Oefening",
        "report_number": "1", "purpose": "initial", "severity": "minor", "language": "nl",
        "summary": "Oefening van de dijkbewaking.", "action": "send"})
    html = await response.text()
    assert response.status == 422, html[:2000]
    assert f"{LU} neemt niet deel aan oefeningen" in html
    assert "XX-NOPE is geen van onze partners of groepen." in html
    assert "some-new-rule: said by the service" in html
    assert "does not take part" not in html


async def test_exercise_incidents_cards_and_timeline_rows_are_marked(
        client: Client, node: FakeNode) -> None:
    """An incident whose every message is exercise traffic is marked on the exercise
    board (and absent from the real one); on its page, under the EXERCISE banner, the
    centre's card and the timeline row are marked; a real incident is not."""
    node.ledger.incidents.items = [
        report(DE, 1, incident="DRILL-1", title="Dyke drill", mode="exercise"),
        report(LU, 1, incident="REAL-1", title="Real flood", at=5)]
    await open_session(client)
    listing = await (await client.get("/console/incidents?mode=exercise")).text()
    rows = dict(re.findall(r'<tr data-row="([A-Z0-9-]+)"[^>]*class="([^"]*)"', listing))
    assert "row-exercise" in rows["DRILL-1"]
    assert "REAL-1" not in rows
    board = await (await client.get("/console/incidents/DRILL-1")).text()
    assert "banner-exercise" in board
    assert '<article class="card row-exercise">' in board
    assert board.count('class="mode-exercise"') >= 2  # the card and the timeline row
    real = await (await client.get("/console/incidents/REAL-1")).text()
    assert "mode-exercise" not in real.split("<main", 1)[1]
    assert "banner-exercise" not in real
