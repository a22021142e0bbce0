"""PeerLink bookkeeping that needs no broker: the link state follows its connection."""

from __future__ import annotations

from gateway.adapters.amqp import PeerLink


def make_link() -> PeerLink:
    """A link to NL-NCC that never connects."""
    return PeerLink(centre="BE-NCCN", peer="NL-NCC", url="amqp://u:p@127.0.0.1:1/v",
                    heartbeat=1, publish_timeout=1.0)


def test_link_reports_down_when_its_connection_closes() -> None:
    """A connection closed by the broker or the heartbeat turns the link down at once."""
    link = make_link()
    conn = object()
    link._conn = conn  # type: ignore[assignment]  # an aio-pika stand-in
    link.connected = True
    link._on_closed(conn, ConnectionError("missed heartbeats"))
    assert link.connected is False


def test_close_of_an_already_replaced_connection_is_ignored() -> None:
    """A late close callback of an old connection does not mark the new one down."""
    link = make_link()
    link._conn = object()  # type: ignore[assignment]  # an aio-pika stand-in
    link.connected = True
    link._on_closed(object())
    assert link.connected is True
