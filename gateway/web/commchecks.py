"""The API of communication tests: start one, report on it, its history, the
federation's scorecard, and the return of a fallback code a peer e-mailed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from gateway.errors import InvalidBody, InvalidRequest, NotFound
from gateway.protocol.commcheck import FallbackConfirmation
from gateway.service.commcheck import history_csv, history_html, report
from gateway.service.node import NodeApi
from gateway.service.ports import OutgoingView
from gateway.service.scorecard import scorecard, scorecard_csv
from gateway.web.requests import (
    CLIENT,
    MAX_LIMIT,
    NODE,
    after_cursor,
    filters_of,
    message_id_of,
    page_of,
    read_json,
)
from gateway.web.shapes import message_json, receipt_json


async def reports(node: NodeApi, checks: list[OutgoingView], wait: float | None = None
                  ) -> list[dict[str, Any]]:
    """The report of each test in ``checks`` (each a ``commcheck`` message of ours)."""
    legs = await node.ledger.commchecks.fallbacks([m.id for m in checks])
    seconds = node.settings.commcheck.wait_seconds if wait is None else wait
    out = []
    for stored in checks:
        view = message_json(stored)
        view["receipts"] = [receipt_json(r) for r in
                            await node.ledger.receipts.for_message(stored.id)]
        out.append(report(view, node.clock.now(), wait=timedelta(seconds=seconds),
                          fallback=legs.get(stored.id)))
    return out


async def check_report(node: NodeApi, check_id: str, wait: float | None = None
                       ) -> dict[str, Any]:
    """The report of one test; :class:`NotFound` for any other id."""
    stored = await node.ledger.outbox.get(check_id)
    if stored is None or stored.type != "commcheck":
        raise NotFound("Not found", f"no communication test {check_id}")
    return (await reports(node, [stored], wait))[0]


async def history(node: NodeApi, limit: int, after: tuple[str, ...] | None = None
                  ) -> tuple[list[dict[str, Any]], list[tuple[str, ...]]]:
    """Reports of the latest communication tests, newest first, and their cursors."""
    checks = await node.ledger.outbox.list({"type": "commcheck"}, limit, after)
    return await reports(node, checks), [m.cursor for m in checks]


async def post_commcheck(request: web.Request) -> web.Response:
    """POST /v1/commchecks: send a communication test to every active peer."""
    node = request.app[NODE]
    check_id = await node.commchecks.start(request[CLIENT])
    return web.json_response({"id": check_id, "status": f"/v1/commchecks/{check_id}"},
                             status=202)


async def get_commcheck(request: web.Request) -> web.Response:
    """GET /v1/commchecks/{id}?wait=SECONDS: the per-peer report of one test."""
    node = request.app[NODE]
    try:
        wait = float(request.query["wait"]) if "wait" in request.query else None
    except ValueError as exc:
        raise InvalidRequest("Bad wait", "wait is a number of seconds") from exc
    return web.json_response(await check_report(node, message_id_of(request), wait))


async def list_commchecks(request: web.Request) -> web.Response:
    """GET /v1/commchecks?limit=&after=: the history of communication tests, newest
    first."""
    _, limit = filters_of(request, (), paged=True)
    found, cursors = await history(request.app[NODE], limit, after_cursor(request, 2))
    return page_of(found, cursors, limit)


async def commchecks_csv(request: web.Request) -> web.Response:
    """GET /v1/commchecks/history.csv: one line per test and peer."""
    found, _ = await history(request.app[NODE], MAX_LIMIT)
    return web.Response(text=history_csv(found), content_type="text/csv", charset="utf-8")


async def commchecks_html(request: web.Request) -> web.Response:
    """GET /v1/commchecks/report.html: tables and a chart per peer over the quarters."""
    node = request.app[NODE]
    found, _ = await history(node, MAX_LIMIT)
    return web.Response(text=history_html(found, node.me), content_type="text/html",
                        charset="utf-8")


async def get_scorecard(request: web.Request) -> web.Response:
    """GET /v1/commchecks/scorecard: per quarter and centre, the receipt and
    acknowledgement times and the fallback's outcome."""
    found, _ = await history(request.app[NODE], MAX_LIMIT)
    return web.json_response({"items": scorecard(found)})


async def get_scorecard_csv(request: web.Request) -> web.Response:
    """GET /v1/commchecks/scorecard.csv."""
    found, _ = await history(request.app[NODE], MAX_LIMIT)
    return web.Response(text=scorecard_csv(scorecard(found)), content_type="text/csv",
                        charset="utf-8")


async def post_fallback(request: web.Request) -> web.Response:
    """POST /v1/commchecks/fallback {"from", "check_id", "code", "by"}: return the code
    a peer e-mailed for its test; 202 with the ``fallback`` message's id."""
    node = request.app[NODE]
    data, _ = await read_json(request)
    if not isinstance(data, dict) or not isinstance(data.get("from"), str):
        raise InvalidBody("Invalid body", "'from' names the centre that sent the test",
                          [{"loc": ["from"], "msg": "required"}])
    unknown = sorted(set(data) - {"from", "check_id", "code", "by"})
    if unknown:
        raise InvalidBody("Invalid body", f"unknown members: {unknown}",
                          [{"loc": [u], "msg": "unknown member"} for u in unknown])
    body = FallbackConfirmation.model_validate(
        {"check_id": data.get("check_id"), "code": data.get("code"),
         "confirmed_by": data.get("by") or request[CLIENT]})
    message_id = await node.fallbacks.return_code(data["from"], body.check_id, body.code,
                                                  body.confirmed_by)
    return web.json_response({"id": message_id, "status": f"/v1/messages/{message_id}"},
                             status=202)


ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("POST", "/v1/commchecks", post_commcheck),
    ("POST", "/v1/commchecks/fallback", post_fallback),
    ("GET", "/v1/commchecks", list_commchecks),
    ("GET", "/v1/commchecks/history.csv", commchecks_csv),
    ("GET", "/v1/commchecks/report.html", commchecks_html),
    ("GET", "/v1/commchecks/scorecard", get_scorecard),
    ("GET", "/v1/commchecks/scorecard.csv", get_scorecard_csv),
    ("GET", "/v1/commchecks/{id}", get_commcheck),
)
#: The exports the console's Communication tests page links to (its session, no token).
CONSOLE_EXPORTS: tuple[tuple[str, Any], ...] = (
    ("/console/exports/commchecks.html", commchecks_html),
    ("/console/exports/commchecks.csv", commchecks_csv),
    ("/console/exports/scorecard.csv", get_scorecard_csv),
)
