"""Prometheus metrics of one node, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class _LedgerQueries(Collector):
    """The ledger's own read and write counts, read at scrape time."""

    def __init__(self, counts: Callable[[], tuple[int, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        reads, writes = self._counts()
        family = CounterMetricFamily("crisisgw_ledger_queries",
                                     "Ledger reads and writes run since start", labels=["kind"])
        family.add_metric(["read"], reads)
        family.add_metric(["write"], writes)
        yield family


class Metrics:
    """Counters and gauges exposed at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.submitted = Counter("crisisgw_submitted_total", "Messages accepted by the API",
                                 ["type"], registry=r)
        self.publishes = Counter("crisisgw_publish_total", "Publish attempts by outcome",
                                 ["peer", "type", "outcome"], registry=r)
        self.ingested = Counter("crisisgw_ingested_total", "Incoming payloads by outcome",
                                ["kind", "outcome"], registry=r)
        self.security = Counter("crisisgw_security_events_total",
                                "Refused unauthenticated or forged input", ["reason"], registry=r)
        self.deliveries = Gauge("crisisgw_deliveries", "Deliveries by state", ["state"],
                                registry=r)
        self.backlog = Gauge("crisisgw_backlog", "Undelivered messages per peer", ["peer"],
                             registry=r)
        self.peer_up = Gauge("crisisgw_peer_link_up", "1 when the link to a peer's broker is up",
                             ["peer"], registry=r)
        self.dead_letters = Gauge("crisisgw_dead_letters",
                                  "Messages in our dead-letter queue (poison input)", registry=r)
        self.overdue = Gauge("crisisgw_overdue_acknowledgements",
                             "Messages past their acknowledgement deadline",
                             ["direction"], registry=r)
        self.tls_failures = Counter("crisisgw_tls_failures_total",
                                    "Failed TLS handshakes with a broker, by link and reason",
                                    ["link", "reason"], registry=r)
        self.tls_problem = Gauge("crisisgw_link_tls_problem",
                                 "1 while a link's last TLS handshake failed, with the reason",
                                 ["link", "reason"], registry=r)
        self.link_tls = Gauge("crisisgw_link_tls", "1 when a link runs over TLS (amqps)",
                              ["link"], registry=r)
        self.inbox_up = Gauge("crisisgw_inbox_consumer_up", "1 when our inbox consumer runs",
                              registry=r)
        self.escalations = Counter("crisisgw_escalations_total",
                                   "Escalation steps taken, by peer, channel and outcome",
                                   ["peer", "channel", "outcome"], registry=r)

    def watch_ledger(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Expose ``counts()`` (reads, writes) as ``crisisgw_ledger_queries_total``."""
        self.registry.register(_LedgerQueries(counts))
