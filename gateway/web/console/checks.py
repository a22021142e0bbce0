"""The console's Communication tests page: the federation's scorecard over the quarters
(charts and CSV), our latest tests with each peer's three legs, and the tests peers
sent us, where a duty officer confirms the one-time code a peer e-mailed."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from gateway.errors import NotFound
from gateway.protocol.types import UUID_PATTERN
from gateway.service.scorecard import fallback_share, scorecard, trend_svg
from gateway.web.commchecks import history
from gateway.web.console import i18n
from gateway.web.console.views import NODE_KEY, _audit, _ctx, _require
from gateway.web.shapes import inbox_view, message_json, receipt_json

#: Tests of ours the page reports on (the scorecard reads the whole history).
RECENT = 5
#: Tests from peers listed for a code.
INCOMING = 20
_CENTRE = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,31}$")


async def _returned(node: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """The codes we returned, by (peer, test): the latest attempt's state and reason."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for stored in reversed(await node.ledger.outbox.list({"type": "fallback"}, 100)):
        view = message_json(stored)
        check = view["envelope"].get("body", {}).get("check_id")
        for r in view["recipients"]:
            out[(r["centre"], str(check))] = {**r, "at": view["created"], "id": stored.id}
    for r in out.values():
        if r["state"] == "rejected":  # the why is in the peer's signed receipt
            for receipt in await node.ledger.receipts.for_message(r["id"]):
                body = receipt_json(receipt)["signed"]["envelope"].get("body", {})
                r["detail"] = body.get("detail") if isinstance(body, dict) else None
    return out


@aiohttp_jinja2.template("commchecks.html")
async def commchecks_page(request: web.Request) -> dict[str, Any]:
    """GET /console/commchecks: the scorecard, our tests, and the codes to confirm."""
    _require(request, "viewer")
    node = request.app[NODE_KEY]
    reports, _ = await history(node, 1000)
    rows = scorecard(reports)
    charts = [
        trend_svg(rows, "receipt_median_s", title=i18n._("Time to technical receipt"),
                  unit="s"),
        trend_svg(rows, "ack_median_s", title=i18n._("Time to human acknowledgement"),
                  unit="s"),
        trend_svg(rows, "fallback_share", title=i18n._("Fallback code confirmed"), unit="%",
                  top=100.0),
    ]
    returned = await _returned(node)
    incoming = []
    for entry in await node.ledger.inbox.list({"type": "commcheck"}, INCOMING):
        view = inbox_view(entry)
        incoming.append({**view, "returned": returned.get((view["from"], view["id"]))})
    prefill = {k: request.query.get(k, "")[:64] for k in ("from", "check", "code")}
    return _ctx(request, "commchecks", rows=[{**r, "fallback_share": fallback_share(r)}
                                             for r in reversed(rows)],
                charts=charts, recent=reports[:RECENT], incoming=incoming, prefill=prefill)


async def fallback_link(request: web.Request) -> web.StreamResponse:
    """GET /console/fallback?from=&check=&code=: the link of a fallback e-mail, to the
    page whose form it fills (confirming takes a click: a GET changes nothing)."""
    _require(request, "viewer")
    query = {k: request.query.get(k, "")[:64] for k in ("from", "check", "code")}
    raise web.HTTPSeeOther(f"/console/commchecks?{urlencode(query)}#fallback")


async def confirm_code(request: web.Request) -> web.StreamResponse:
    """POST /console/fallback: return the code a peer e-mailed for its test."""
    session = _require(request, "operator")
    node = request.app[NODE_KEY]
    form = await request.post()
    sender, check = str(form.get("from", "")), str(form.get("check", ""))
    code = str(form.get("code", "")).strip()
    if not _CENTRE.fullmatch(sender) or not re.fullmatch(UUID_PATTERN, check):
        raise web.HTTPBadRequest(text="choose a communication test")
    if not re.fullmatch(r"[0-9A-Za-z -]{4,32}", code):
        raise web.HTTPBadRequest(text="the code has 10 letters and digits")
    try:
        await node.fallbacks.return_code(sender, check, code, session.name)
    except NotFound as exc:
        raise web.HTTPNotFound(text=exc.detail) from exc
    await _audit(request, "commcheck.code_returned", check, f"to {sender}")
    raise web.HTTPSeeOther("/console/commchecks#fallback")
