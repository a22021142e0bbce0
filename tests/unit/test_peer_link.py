"""PeerLink behaviour that needs no broker: link state and how connect failures are classed."""

from __future__ import annotations

import aio_pika
import aiormq
import pytest

from gateway.adapters.amqp import PeerLink
from gateway.errors import PublishRefused, PublishUnknown


def make_link() -> PeerLink:
    """A link to NL-NCC that never connects."""
    return PeerLink(centre="BE-NCCN", peer="NL-NCC", urls=("amqp://u:p@127.0.0.1:1/v",),
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


async def test_vhost_refused_at_open_is_a_permanent_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker closing the connection in answer to Connection.Open (no permission on
    the vhost) is a non-retryable refusal, not an unknown outcome."""
    async def refuse(*_args: object, **_kwargs: object) -> None:
        raise aiormq.exceptions.InvalidFrameError(
            "Expected one of ['Connection.OpenOk'], got <Connection.Close object at 0x1>")
    monkeypatch.setattr(aio_pika, "connect", refuse)
    with pytest.raises(PublishRefused) as caught:
        await make_link().publish(b"{}", message_id="m", msg_type="sitrep")
    assert caught.value.retryable is False
    assert "vhost refused" in str(caught.value)


async def test_other_invalid_frames_at_connect_stay_unknown(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Any other protocol surprise while connecting is an unknown outcome (retried soon)."""
    async def garble(*_args: object, **_kwargs: object) -> None:
        raise aiormq.exceptions.InvalidFrameError("garbage")
    monkeypatch.setattr(aio_pika, "connect", garble)
    with pytest.raises(PublishUnknown):
        await make_link().publish(b"{}", message_id="m", msg_type="sitrep")
