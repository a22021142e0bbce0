"""Liveness, readiness and the Prometheus metrics of a node (the ledger-backed gauges
refreshed in the background, never per scrape)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.service.node import NodeApi
from gateway.web.console.views import overdue_counts
from gateway.web.requests import NODE

log = structlog.get_logger("crisisgw.api")


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the ledger answers and our inbox consumer is connected."""
    node = request.app[NODE]
    checks = {"ledger": True, "inbox": node.inbox_link.connected}
    try:
        await node.ledger.ping()
    except Exception:  # noqa: BLE001 - any ledger failure means not ready
        checks["ledger"] = False
    ok = all(checks.values())
    return web.json_response({"status": "ready" if ok else "not ready", "checks": checks},
                             status=200 if ok else 503)


def _tls_metrics(node: NodeApi) -> None:
    """Which links run over TLS, and which have a TLS problem now (with its reason)."""
    node.metrics.tls_problem.clear()
    links: list[tuple[str, bool, str | None]] = [
        ("inbox", node.inbox_link.secure, node.inbox_link.tls_problem)]
    links += [(peer, link.secure, link.tls_problem) for peer, link in node.peer_links().items()]
    for name, secure, reason in links:
        node.metrics.link_tls.labels(name).set(1 if secure else 0)
        if reason is not None:
            node.metrics.tls_problem.labels(name, reason).set(1)


#: The ledger-backed gauges are refreshed this often, never per scrape.
METRICS_REFRESH = 5.0
METRICS_TASK: web.AppKey[asyncio.Task[None]] = web.AppKey("metrics_task")


async def refresh_metrics(node: NodeApi) -> None:
    """Recompute the gauges that need the ledger (delivery states, backlog, overdue)."""
    stats = await node.ledger.stats()
    for state, n in stats.deliveries.items():
        node.metrics.deliveries.labels(state).set(n)
    for p in node.settings.peers:
        backlog = stats.backlog.get(p.id)
        node.metrics.backlog.labels(p.id).set(backlog.count if backlog else 0)
    incoming, outgoing = await overdue_counts(node)
    node.metrics.overdue.labels("incoming").set(incoming)
    node.metrics.overdue.labels("outgoing").set(outgoing)


async def _metrics_loop(node: NodeApi) -> None:
    while True:
        try:
            await refresh_metrics(node)
        except Exception as exc:  # noqa: BLE001 - a failed refresh must not end the loop
            log.warning("metrics_refresh_failed", error=repr(exc)[:300])
        await asyncio.sleep(METRICS_REFRESH)


async def start_metrics(app: web.Application) -> None:
    """Start refreshing the gauges (on the app's start-up)."""
    app[METRICS_TASK] = asyncio.create_task(_metrics_loop(app[NODE]), name="metrics-refresh")


async def stop_metrics(app: web.Application) -> None:
    """Stop refreshing them (on the app's clean-up)."""
    task = app.get(METRICS_TASK)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics: in-memory state and the gauges refreshed in the background, so
    a scrape (or a flood of them) never touches the ledger."""
    node = request.app[NODE]
    for p in node.settings.peers:
        link = node.peer_links().get(p.id)
        node.metrics.peer_up.labels(p.id).set(1 if link and link.connected else 0)
    _tls_metrics(node)
    node.metrics.inbox_up.set(1 if node.inbox_link.connected else 0)
    node.metrics.dead_letters.set(node.inbox_link.dead_letters)
    body = generate_latest(node.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics),
)
