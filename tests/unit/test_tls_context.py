"""Client TLS contexts against real handshakes on loopback: each failure gets its reason.

A small asyncio TLS server plays the broker with whatever certificate a case needs; the
client side is the node's (gateway.adapters.tls). Nothing here needs RabbitMQ: the
broker-level cases are in tests/integration/test_tls_brokers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.adapters.tls import AnchoredContext, classify, client_context
from gateway.config import TlsSection
from gateway.errors import ConfigError
from gateway.protocol import tlsanchor as ta
from gateway.protocol.tlsanchor import spki_sha256
from tests.pki import Authority, Issued

CA = Authority.make("context-tests")
OTHER = Authority.make("someone-else")
HOSTS = ("localhost", "127.0.0.1")


class Broker:
    """A TLS server on 127.0.0.1 that records what it received after the handshake."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.port = 0


@contextlib.asynccontextmanager
async def tls_server(tmp_path: Path, issued: Issued) -> AsyncIterator[Broker]:
    """Serve TLS with ``issued``. (A refused client certificate needs RabbitMQ's alert:
    an asyncio server just resets; see tests/integration/test_tls_brokers.py.)"""
    issued.write(tmp_path / "srv.pem", tmp_path / "srv.key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    broker = Broker()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(4096):
                broker.received += data
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    broker.port = server.sockets[0].getsockname()[1]
    try:
        yield broker
    finally:
        server.close()


@contextlib.asynccontextmanager
async def raw_server(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], object],
                     ) -> AsyncIterator[int]:
    """A plain TCP server (a plaintext port, or one that never answers)."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await handler(reader, writer)  # type: ignore[misc]

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _connect(port: int, tls: TlsSection, host: str = "127.0.0.1",
                   timeout: float = 3.0) -> tuple[AnchoredContext, BaseException | None]:
    ctx = client_context(tls, host)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=host), timeout)
    except (OSError, TimeoutError) as exc:
        return ctx, exc
    writer.write(b"AMQP\x00\x00\x09\x01")
    await writer.drain()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader.read(1), 0.3)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return ctx, None


def _reason(ctx: AnchoredContext, exc: BaseException | None) -> str | None:
    assert exc is not None, "the connection should have failed"
    failure = classify(exc, ctx, "broker")
    return failure.reason if failure is not None else None


async def test_a_certificate_from_the_pinned_ca_for_the_host_connects(tmp_path: Path) -> None:
    """The right CA and host name: the handshake completes and AMQP can start."""
    async with tls_server(tmp_path, CA.issue("broker", HOSTS)) as broker:
        ctx, exc = await _connect(broker.port, TlsSection(ca=CA.pem), host="localhost")
        assert exc is None
        assert ctx.handshake_done
        ctx, exc = await _connect(broker.port, TlsSection(ca=CA.pem), host="127.0.0.1")
        assert exc is None


async def test_a_pinned_public_key_connects_without_any_ca(tmp_path: Path) -> None:
    """spki_sha256: the broker's own key is the anchor; its CA is never loaded."""
    issued = CA.issue("broker", HOSTS)
    async with tls_server(tmp_path, issued) as broker:
        ctx, exc = await _connect(broker.port, TlsSection(spki_sha256=(spki_sha256(issued.cert),)))
        assert exc is None
        assert ctx.handshake_done


@pytest.mark.parametrize(("name", "issued", "tls", "host", "reason"), [
    ("wrong CA", OTHER.issue("broker", HOSTS), TlsSection(ca=CA.pem), "localhost",
     ta.UNTRUSTED),
    ("expired", CA.issue("broker", HOSTS, not_after=datetime.now(UTC) - timedelta(days=2),
                         not_before=datetime.now(UTC) - timedelta(days=30)),
     TlsSection(ca=CA.pem), "localhost", ta.EXPIRED),
    ("not yet valid", CA.issue("broker", HOSTS, not_before=datetime.now(UTC) + timedelta(days=2)),
     TlsSection(ca=CA.pem), "localhost", ta.NOT_YET_VALID),
    ("hostname mismatch", CA.issue("broker", ("broker.nl.example",)), TlsSection(ca=CA.pem),
     "localhost", ta.HOSTNAME_MISMATCH),
    ("ip mismatch", CA.issue("broker", ("127.0.0.2",)), TlsSection(ca=CA.pem), "127.0.0.1",
     ta.HOSTNAME_MISMATCH),
], ids=lambda v: v if isinstance(v, str) else "")
async def test_ca_anchored_failures_have_their_reason(
        tmp_path: Path, name: str, issued: Issued, tls: TlsSection, host: str,
        reason: str) -> None:
    """Each way a CA-verified handshake fails is classified for the operator."""
    async with tls_server(tmp_path, issued) as broker:
        ctx, exc = await _connect(broker.port, tls, host=host)
        assert _reason(ctx, exc) == reason, name
        assert broker.received == b"", "nothing may reach a broker that fails the check"


@pytest.mark.parametrize(("name", "issued", "pin", "host", "reason"), [
    ("other key", CA.issue("broker", HOSTS), "0" * 64, "localhost", ta.UNTRUSTED),
    ("expired", CA.issue("broker", HOSTS, not_after=datetime.now(UTC) - timedelta(days=1),
                         not_before=datetime.now(UTC) - timedelta(days=30)), None, "localhost",
     ta.EXPIRED),
    ("hostname mismatch", CA.issue("broker", ("broker.nl.example",)), None, "localhost",
     ta.HOSTNAME_MISMATCH),
], ids=lambda v: v if isinstance(v, str) else "")
async def test_pinned_key_failures_stop_before_any_byte_is_sent(
        tmp_path: Path, name: str, issued: Issued, pin: str | None, host: str,
        reason: str) -> None:
    """With a pinned key the check runs inside the handshake: the client never sends the
    AMQP header (so never a password) to a broker that fails it."""
    async with tls_server(tmp_path, issued) as broker:
        tls = TlsSection(spki_sha256=(pin or spki_sha256(issued.cert),))
        ctx, exc = await _connect(broker.port, tls, host=host)
        assert _reason(ctx, exc) == reason, name
        await asyncio.sleep(0.1)
        assert broker.received == b""


async def test_a_plaintext_port_is_not_tls_and_gets_nothing(tmp_path: Path) -> None:
    """A downgrade to a plaintext AMQP port fails as not_tls; no AMQP byte is sent."""
    received = bytearray()

    async def plaintext_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.read(4096))
        writer.write(b"AMQP\x00\x00\x09\x01")  # what RabbitMQ answers to a bad header
        await writer.drain()
        writer.close()

    async with raw_server(plaintext_broker) as port:
        ctx, exc = await _connect(port, TlsSection(ca=CA.pem))
        assert _reason(ctx, exc) == ta.NOT_TLS
    assert received.startswith(b"\x16\x03"), "only a TLS ClientHello went out"
    assert b"AMQP" not in received


async def test_a_silent_broker_is_a_handshake_timeout() -> None:
    """TCP accepted, no TLS answer: handshake_timeout (retryable), not 'unreachable'."""
    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)  # the ClientHello, never answered
        await reader.read(4096)  # until the client gives up

    async with raw_server(silent) as port:
        ctx, exc = await _connect(port, TlsSection(ca=CA.pem), timeout=0.5)
        failure = classify(exc or RuntimeError(), ctx, "broker")
        assert failure is not None
        assert (failure.reason, failure.retryable) == (ta.HANDSHAKE_TIMEOUT, True)


async def test_a_closed_port_is_not_a_tls_problem() -> None:
    """Connection refused before any handshake: not classified as TLS."""
    ctx, exc = await _connect(1, TlsSection(ca=CA.pem))
    assert exc is not None
    assert classify(exc, ctx, "broker") is None


def test_missing_files_are_a_configuration_error(tmp_path: Path) -> None:
    """A ca_file or client certificate that cannot be read names the file."""
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        client_context(TlsSection(ca_file=tmp_path / "nope.pem"), "localhost")
    with pytest.raises(ConfigError, match="client certificate"):
        client_context(TlsSection(ca=CA.pem, client_cert=tmp_path / "c.pem",
                                  client_key=tmp_path / "c.key"), "localhost")


def test_contexts_refuse_old_tls_and_ignore_the_system_store() -> None:
    """TLS 1.2 at least; the only CA loaded is the anchor."""
    ctx = client_context(TlsSection(ca=CA.pem), "localhost")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.check_hostname is True
    assert [c["subject"] for c in ctx.get_ca_certs()] == [
        tuple(((k, v),) for k, v in (("organizationName", "crisisgw-tests"),
                                     ("commonName", "context-tests CA")))]
    pinned = client_context(TlsSection(spki_sha256=("ab" * 32,)), "localhost")
    assert pinned.get_ca_certs() == []
    assert isinstance(CA.cert.public_bytes(Encoding.PEM), bytes)
