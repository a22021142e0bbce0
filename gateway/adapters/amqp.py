"""RabbitMQ transport with aio-pika: peer publishers, the inbox consumer, local fanout.

Connections are plain (not "robust"): each link supervises its own reconnection, so
a publish during an outage fails fast with :class:`PublishUnknown` and the dispatcher
retries it later with the identical bytes; the consumer is re-created after every
reconnect (delivery tags of an old channel are never acked: the broker redelivers and
ingestion is idempotent). Every publish attempt carries a unique AMQP ``message_id``
(aiormq matches returns by it); the protocol id travels in a header.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)

from gateway import __version__
from gateway.adapters.tls import AnchoredContext, classify, client_context
from gateway.config import TlsSection, redact_url
from gateway.errors import (
    ConfigError,
    LedgerError,
    PublishRefused,
    PublishUnknown,
    TlsFailure,
    TransportError,
)

log = structlog.get_logger("crisisgw.amqp")

INBOX_EXCHANGE = "crisisgw.inbox"
INBOX_QUEUE = "crisisgw.inbox"
DEAD_EXCHANGE = "crisisgw.dead"
DEAD_QUEUE = "crisisgw.dead"
LOCAL_EXCHANGE = "crisisgw.local"
CONTENT_TYPE = "application/vnd.crisisgw.signed+json"
HEADER_ID = "x-crisisgw-id"
HEADER_FROM = "x-crisisgw-from"
HEADER_VERSION = "x-crisisgw-v"
CONNECT_TIMEOUT = 5.0
DEAD_LETTER_CHECK = 15.0
DEAD_LETTER_SETTLE = 0.5
DISK_FULL_RETRY_MAX = 30.0
#: Longest wait between tries while the ledger's database cannot be reached (it is
#: usually back within seconds: a restart, a fail-over to the standby).
LEDGER_RETRY_MAX = 5.0
RECONNECT_MIN, RECONNECT_MAX = 0.5, 10.0
#: A certificate problem does not fix itself in seconds: retry our broker this often.
TLS_RETRY = 30.0
#: After a failed connect, publishes fail at once for this long (seconds).
FAIL_FAST = 0.25
#: How often a connected consumer checks whether its certificate files were renewed.
RENEWAL_CHECK = 2.0
#: Local republishes in flight at most; beyond it one is skipped, logged and counted.
LOCAL_INFLIGHT_MAX = 256
#: What aio-pika, aiormq and the socket layer raise when a broker or the network fails:
#: the one list of errors this module translates into ours.
AMQP_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError, OSError, RuntimeError, TimeoutError)
AMQP_OR_CANCELLED: tuple[type[BaseException], ...] = (*AMQP_ERRORS, asyncio.CancelledError)
#: The library's errors and ours (already translated) together.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (TransportError, *AMQP_ERRORS)


class AttemptIds:
    """Unique AMQP message ids for publish attempts: a random per-process prefix and a
    counter (uuid4 per publish costs a getrandom syscall; uniqueness is all we need)."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:16]
        self._count = itertools.count()

    def next(self) -> str:
        """A new id."""
        return f"{self._prefix}-{next(self._count):x}"


ATTEMPT_IDS = AttemptIds()


def with_heartbeat(url: str, heartbeat: int) -> str:
    """The URL with a heartbeat query parameter unless it already has one."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("heartbeat", str(heartbeat))
    return urlunsplit(parts._replace(query=urlencode(query)))


def url_user(url: str) -> str:
    """The (unquoted) user name in an AMQP URL."""
    return unquote(urlsplit(url).username or "guest")


def _client_properties(centre: str, role: str) -> dict[str, Any]:
    return {"connection_name": f"crisisgw {centre} {role}", "product": f"crisisgw/{__version__}"}


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"


async def _connect(url: str, centre: str, role: str,
                   tls: TlsSection | None = None) -> AbstractConnection:
    """Open a connection; over ``amqps://`` with a context anchored in ``tls`` only.

    Raises :class:`TlsFailure` (with its reason) when the TLS handshake fails,
    :class:`PublishRefused` when the broker refuses us, else :class:`PublishUnknown`.
    """
    ctx: AnchoredContext | None = None
    if urlsplit(url).scheme == "amqps":
        if tls is None:  # config validation prevents this; never fall back to the system store
            raise TlsFailure("untrusted", f"{_where(url)}: no trust anchor configured")
        try:
            ctx = client_context(tls, urlsplit(url).hostname or "")
        except ConfigError as exc:
            raise TlsFailure("untrusted", str(exc)) from exc
    try:
        return await aio_pika.connect(url, timeout=CONNECT_TIMEOUT, ssl_context=ctx,
                                      client_properties=_client_properties(centre, role))
    except AMQP_ERRORS as exc:
        failure = classify(exc, ctx, _where(url))
        if failure is not None:
            raise failure from exc
        if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
            raise PublishRefused(f"authentication refused: {exc}", retryable=False) from exc
        # aiormq reports the broker's Connection.Close in answer to Connection.Open (530
        # NOT_ALLOWED: no permission on the vhost, or no such vhost) as an invalid frame.
        if isinstance(exc, aiormq.exceptions.InvalidFrameError) \
                and "Connection.Close" in str(exc):
            raise PublishRefused(f"access to the vhost refused at {redact_url(url)}",
                                 retryable=False) from exc
        raise PublishUnknown(f"cannot connect to {redact_url(url)}: {exc!r}") from exc


def tls_files_stamp(tls: TlsSection | None) -> tuple[tuple[str, int, int], ...]:
    """Name, mtime and size of the certificate files a link reads: when they change (a
    renewal), the link reconnects to use them."""
    if tls is None:
        return ()
    stamp = []
    for path in (tls.ca_file, tls.client_cert, tls.client_key):
        if path is None:
            continue
        try:
            st = path.stat()
        except OSError:
            stamp.append((str(path), -1, -1))
        else:
            stamp.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(stamp)


async def _connect_any(urls: tuple[str, ...], first: int, centre: str, role: str,
                       tls: TlsSection | None = None) -> tuple[AbstractConnection, int]:
    """Connect to the first of ``urls`` that answers, from index ``first`` round: the
    nodes of one broker cluster. Returns the connection and the index it was made to;
    raises the error of the last address tried (see :func:`_connect`)."""
    error: TransportError | None = None
    for step in range(len(urls)):
        index = (first + step) % len(urls)
        try:
            return await _connect(urls[index], centre, role, tls), index
        except TransportError as exc:
            if len(urls) > 1:
                log.warning("broker_address_failed", where=_where(urls[index]),
                            role=role, error=str(exc)[:200])
            error = exc
    assert error is not None
    raise error


class PeerLink:
    """One connection and confirming channel to one peer's broker (to one node of its
    cluster, the next when that one fails)."""

    def __init__(self, *, centre: str, peer: str, urls: tuple[str, ...], heartbeat: int,
                 publish_timeout: float, tls: TlsSection | None = None,
                 on_tls_failure: Callable[[str, str], None] | None = None) -> None:
        self.centre, self.peer = centre, peer
        url = urls[0]
        self._urls = tuple(with_heartbeat(u, heartbeat) for u in urls)
        self._at = 0
        self._user = url_user(url)
        self._timeout = publish_timeout
        self._tls = tls
        self._stamp = tls_files_stamp(tls)
        self._on_tls_failure = on_tls_failure or (lambda _peer, _reason: None)
        #: Whether the link runs over TLS (amqps://).
        self.secure = urlsplit(url).scheme == "amqps"
        #: The reason of the last TLS failure (expired, untrusted, ...), None once it works.
        self.tls_problem: str | None = None
        self._conn: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()
        self._failed_at = 0.0
        self._last_error: TransportError | None = None
        self.connected = False

    @property
    def failed(self) -> bool:
        """Whether the last attempt to reach the peer's broker failed."""
        return self._last_error is not None

    @property
    def last_error(self) -> str | None:
        """Why the last attempt failed (no secrets: URLs are redacted), None when up."""
        return None if self._last_error is None else str(self._last_error)[:300]

    async def _renewed(self) -> None:
        """Reconnect when the certificate files changed since the connection was made."""
        stamp = tls_files_stamp(self._tls)
        if stamp != self._stamp:
            self._stamp = stamp
            if self._conn is not None:
                log.info("peer_link_certificates_renewed", peer=self.peer)
                await self._drop()

    async def _ensure(self) -> AbstractExchange:
        if self._tls is not None:
            await self._renewed()
        if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
            return self._exchange
        async with self._lock:
            if self._exchange is not None and self._channel is not None \
                    and not self._channel.is_closed:
                return self._exchange
            # After a failure, fail fast for a moment instead of piling up connects
            # (publishes in flight when it failed; the dispatcher then probes one at a time).
            if self._last_error is not None and time.monotonic() - self._failed_at < FAIL_FAST:
                raise self._last_error
            await self._reset()
            try:
                if self._conn is None or self._conn.is_closed:
                    self._conn, self._at = await _connect_any(
                        self._urls, self._at, self.centre, f"to {self.peer}", self._tls)
                    self._conn.close_callbacks.add(self._on_closed)
                self._channel = await self._conn.channel(publisher_confirms=True,
                                                         on_return_raises=True)
                self._exchange = await self._channel.get_exchange(INBOX_EXCHANGE, ensure=False)
            except TlsFailure as exc:
                await self._drop()
                self._failed_at, self._last_error, self.connected = time.monotonic(), exc, False
                self.tls_problem = exc.reason
                log.error("peer_link_tls_failed", peer=self.peer, reason=exc.reason,
                          error=str(exc)[:300])
                self._on_tls_failure(self.peer, exc.reason)
                raise
            except TransportError as exc:
                await self._drop()
                self._failed_at, self._last_error, self.connected = time.monotonic(), exc, False
                raise
            except AMQP_ERRORS as exc:
                await self._drop()
                err = PublishUnknown(f"channel to {self.peer}: {exc!r}")
                self._failed_at, self._last_error, self.connected = time.monotonic(), err, False
                raise err from exc
            self._last_error, self.connected, self.tls_problem = None, True, None
            log.info("peer_link_up", peer=self.peer, tls=self.secure)
            return self._exchange

    def _on_closed(self, conn: object, exc: BaseException | None = None) -> None:
        """The connection ended (broker closed it, or the heartbeat found it silent): report
        the link down now, not at the next publish, so an idle link never shows as up."""
        if conn is self._conn and self.connected:
            self.connected = False
            log.warning("peer_link_lost", peer=self.peer, error=repr(exc)[:200])

    async def _reset(self) -> None:
        """Forget the channel (it is re-opened on the next publish)."""
        self._exchange = None
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()
        self._channel = None
        if self._conn is not None and self._conn.is_closed:
            self._conn = None

    async def _drop(self) -> None:
        """Forget the channel and the connection: the next publish reconnects."""
        await self._reset()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def publish(self, wire: bytes, *, message_id: str, msg_type: str) -> None:
        """Publish persistently with mandatory routing and wait for the confirm."""
        exchange = await self._ensure()
        message = aio_pika.Message(
            wire, content_type=CONTENT_TYPE, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=ATTEMPT_IDS.next(), type=msg_type, user_id=self._user,
            app_id=f"crisisgw/{__version__}",
            headers={HEADER_ID: message_id, HEADER_FROM: self.centre, HEADER_VERSION: 1},
        )
        try:
            await exchange.publish(message, routing_key=f"{msg_type}.{self.centre}",
                                   mandatory=True, timeout=self._timeout)
        except aiormq.exceptions.PublishError as exc:
            raise PublishRefused(f"unroutable at {self.peer}: no inbox queue bound",
                                 retryable=True) from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishRefused(f"nacked by {self.peer}'s broker (inbox full?)",
                                 retryable=True) from exc
        except aiormq.exceptions.ChannelAccessRefused as exc:
            await self._reset()
            raise PublishRefused(f"access refused by {self.peer}'s broker: {exc}",
                                 retryable=False) from exc
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            await self._reset()
            raise PublishRefused(f"inbox exchange missing at {self.peer}", retryable=True) from exc
        except TimeoutError as exc:
            raise PublishUnknown(f"no confirm from {self.peer} within {self._timeout}s") from exc
        except AMQP_OR_CANCELLED as exc:
            if isinstance(exc, asyncio.CancelledError) and asyncio.current_task() is not None \
                    and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            await self._drop()
            self.connected = False
            raise PublishUnknown(f"connection to {self.peer} lost: {exc!r}") from exc

    async def close(self) -> None:
        """Close the connection."""
        self.connected = False
        await self._reset()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None
        self.connected = False


class AmqpPublisher:
    """Publishes to every peer through its own :class:`PeerLink`."""

    def __init__(self, *, centre: str, heartbeat: int, publish_timeout: float,
                 on_tls_failure: Callable[[str, str], None] | None = None) -> None:
        self._centre, self._heartbeat, self._timeout = centre, heartbeat, publish_timeout
        self._on_tls_failure = on_tls_failure
        self.links: dict[str, PeerLink] = {}
        self._targets: dict[str, tuple[tuple[str, ...], TlsSection | None]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def configure(self, peers: dict[str, tuple[tuple[str, ...], TlsSection | None]]) -> None:
        """Set each peer's inbox URLs and TLS settings; a link whose URLs or TLS settings
        changed is replaced (and reconnects on its next publish), and the link of a peer
        no longer listed is closed: nothing more is published to it."""
        for peer in [p for p in self.links if p not in peers]:
            self._close_later(self.links.pop(peer))
            self._targets.pop(peer, None)
            log.info("peer_link_removed", peer=peer)
        for peer, target in peers.items():
            if self._targets.get(peer) != target:
                old = self.links.pop(peer, None)
                if old is not None:
                    self._close_later(old)
                urls, tls = target
                self.links[peer] = PeerLink(centre=self._centre, peer=peer, urls=urls,
                                            heartbeat=self._heartbeat,
                                            publish_timeout=self._timeout, tls=tls,
                                            on_tls_failure=self._on_tls_failure)
                self._targets[peer] = target

    def _close_later(self, link: PeerLink) -> None:
        task = asyncio.get_running_loop().create_task(link.close())
        self._closing.add(task)  # a strong reference until it is done
        task.add_done_callback(self._closing.discard)

    async def publish(self, peer: str, wire: bytes, *, message_id: str, msg_type: str) -> None:
        """See :class:`service.ports.Publisher`."""
        link = self.links.get(peer)
        if link is None:
            raise PublishRefused(f"no inbox configured for {peer}", retryable=False)
        await link.publish(wire, message_id=message_id, msg_type=msg_type)

    async def close(self) -> None:
        """Close every link."""
        await asyncio.gather(*(link.close() for link in self.links.values()))


async def declare_topology(channel: AbstractChannel, *, delivery_limit: int) -> None:
    """Declare our inbox, dead-letter and local exchanges and queues (idempotent)."""
    inbox = await channel.declare_exchange(INBOX_EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                           durable=True)
    dead = await channel.declare_exchange(DEAD_EXCHANGE, aio_pika.ExchangeType.FANOUT,
                                          durable=True)
    await channel.declare_exchange(LOCAL_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    dead_q = await channel.declare_queue(DEAD_QUEUE, durable=True,
                                         arguments={"x-queue-type": "quorum"})
    await dead_q.bind(dead, routing_key="#")
    queue = await channel.declare_queue(INBOX_QUEUE, durable=True, arguments={
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DEAD_EXCHANGE,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-max-length": 1_000_000,
    })
    await queue.bind(inbox, routing_key="#")


Handler = Callable[[bytes, str | None], Awaitable[str]]


class InboxConsumer:
    """Consumes our inbox queue; acks each delivery only after the handler returned.

    Also owns the channel used to republish verified messages on the local exchange.
    """

    def __init__(self, *, centre: str, urls: tuple[str, ...], heartbeat: int, prefetch: int,
                 declare: bool, delivery_limit: int, handler: Handler,
                 tls: TlsSection | None = None,
                 on_tls_failure: Callable[[str, str], None] | None = None,
                 tls_retry: float = TLS_RETRY) -> None:
        url = urls[0]
        self._centre = centre
        self._urls = tuple(with_heartbeat(u, heartbeat) for u in urls)
        #: The address of the cluster node connected to (or tried first next time).
        self._at = 0
        self._tls_retry = tls_retry
        self._prefetch, self._declare, self._limit = prefetch, declare, delivery_limit
        self._handler = handler
        self._tls = tls
        self._on_tls_failure = on_tls_failure or (lambda _where, _reason: None)
        #: Whether our own broker is reached over TLS.
        self.secure = urlsplit(url).scheme == "amqps"
        #: The reason of the last TLS failure towards our broker, None once connected.
        self.tls_problem: str | None = None
        self.last_error: str | None = None
        self._conn: AbstractConnection | None = None
        self._local: AbstractExchange | None = None
        self._consumer_tag: str | None = None
        self._republishing: set[asyncio.Task[None]] = set()
        #: Local republishes skipped because :data:`LOCAL_INFLIGHT_MAX` were in flight.
        self.republish_skipped = 0
        self.connected = False
        self.dead_letters = 0
        self._recheck = asyncio.Event()
        self._stopping = False

    async def run(self) -> None:
        """Connect, consume, and reconnect with backoff until cancelled. A TLS failure
        (expired, untrusted, ...) is logged with its reason and retried slowly."""
        delay = RECONNECT_MIN
        while not self._stopping:
            try:
                stamp = tls_files_stamp(self._tls)
                closed, channel = await self._start()
                delay = RECONNECT_MIN
                self.tls_problem = self.last_error = None
                log.info("inbox_consumer_up", url=redact_url(self._urls[self._at]),
                         tls=self.secure)
                watch = asyncio.create_task(self._watch_dead_letters(channel))
                try:
                    await self._until_closed_or_renewed(closed, stamp)
                finally:
                    watch.cancel()
                log.warning("inbox_connection_lost")
            except TlsFailure as exc:
                self.tls_problem, self.last_error = exc.reason, str(exc)[:300]
                log.error("inbox_tls_failed", reason=exc.reason, error=str(exc)[:300],
                          retry_in=self._tls_retry)
                self._on_tls_failure("inbox", exc.reason)
                delay = max(delay, self._tls_retry)
            except TRANSPORT_ERRORS as exc:
                self.last_error = repr(exc)[:300]
                log.warning("inbox_connect_failed", error=repr(exc)[:300], retry_in=delay)
            self.connected = False
            self._local = None
            await self._close_conn()
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._tls_retry if self.tls_problem else RECONNECT_MAX)

    async def _until_closed_or_renewed(self, closed: asyncio.Event,
                                       stamp: tuple[tuple[str, int, int], ...]) -> None:
        """Wait for the connection to end; end it when our certificate files are renewed,
        so that the next connection presents the new ones."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RENEWAL_CHECK):  # not wait_for: see dispatch.run
                    await closed.wait()
                return
            if self._tls is not None and tls_files_stamp(self._tls) != stamp:
                log.info("inbox_certificates_renewed")
                return

    async def _watch_dead_letters(self, channel: AbstractChannel) -> None:
        """Count dead-lettered (poison) messages so operators are alerted, never silent."""
        while True:
            try:
                declared = await channel.declare_queue(DEAD_QUEUE, passive=True)
            except AMQP_ERRORS as exc:
                log.warning("dead_letter_check_failed", error=repr(exc)[:200])
                return
            count = declared.declaration_result.message_count or 0
            if count and count != self.dead_letters:
                log.error("dead_letters_present", count=count, queue=DEAD_QUEUE)
            self.dead_letters = count
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DEAD_LETTER_CHECK):  # not wait_for: see dispatch.run
                    await self._recheck.wait()
            if self._recheck.is_set():  # a delivery hit its limit: it is being dead-lettered
                self._recheck.clear()
                await asyncio.sleep(DEAD_LETTER_SETTLE)

    async def _start(self) -> tuple[asyncio.Event, AbstractChannel]:
        conn, self._at = await _connect_any(self._urls, self._at, self._centre, "inbox",
                                            self._tls)
        self._conn = conn
        closed = asyncio.Event()
        conn.close_callbacks.add(lambda *_args: closed.set())
        channel = await conn.channel()
        channel.close_callbacks.add(lambda *_args: closed.set())
        if self._declare:
            await declare_topology(channel, delivery_limit=self._limit)
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await channel.get_queue(INBOX_QUEUE, ensure=False)
        local_channel = await conn.channel(publisher_confirms=True)
        local_channel.close_callbacks.add(lambda *_args: closed.set())
        self._local = await local_channel.get_exchange(LOCAL_EXCHANGE, ensure=False)
        self._consumer_tag = await queue.consume(self._on_message)
        self.connected = True
        return closed, channel

    async def _handle_holding(self, message: AbstractIncomingMessage) -> None:
        """Run the handler; while our disk is full or the ledger's database cannot be
        reached, hold the delivery and try again.

        Neither is the message's fault: a nack would count towards the delivery limit and
        dead-letter the message within milliseconds.
        """
        delay = 0.5
        while True:
            try:
                await self._handler(message.body, message.user_id)
            except LedgerError as exc:
                if not exc.transient or self._stopping:
                    raise
                log.error("ingest_waiting_for_disk" if exc.disk_full else
                          "ingest_waiting_for_ledger", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2,
                            DISK_FULL_RETRY_MAX if exc.disk_full else LEDGER_RETRY_MAX)
            else:
                return

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._handle_holding(message)
        except Exception as exc:  # noqa: BLE001 - any failure: let the broker redeliver
            count = (message.headers or {}).get("x-delivery-count")
            log.error("ingest_failed", error=repr(exc)[:300], delivery_count=count)
            if isinstance(count, int) and count >= self._limit:
                self._recheck.set()  # the nack below dead-letters it: alert now, not later
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        try:
            await message.ack()
        except Exception as exc:  # noqa: BLE001 - stale channel: redelivered, deduplicated
            log.warning("ack_failed", error=repr(exc)[:200])

    async def republish(self, wire: bytes, *, sender: str, msg_type: str, priority: str) -> None:
        """Republish a verified message on the local exchange (confirmed, not mandatory),
        in the background: a slow ``crisisgw.local`` never holds up ingestion or the ack
        of the inbox delivery. At most :data:`LOCAL_INFLIGHT_MAX` are in flight; beyond
        that one is skipped and logged (the message is in the ledger and the API)."""
        if self._local is None:
            log.warning("local_republish_skipped", reason="no channel")
            return
        if len(self._republishing) >= LOCAL_INFLIGHT_MAX:
            self.republish_skipped += 1
            log.warning("local_republish_skipped", reason="backlog",
                        in_flight=len(self._republishing))
            return
        task = asyncio.get_running_loop().create_task(
            self._republish(self._local, wire, sender=sender, msg_type=msg_type,
                            priority=priority))
        self._republishing.add(task)
        task.add_done_callback(self._republishing.discard)

    async def _republish(self, exchange: AbstractExchange, wire: bytes, *, sender: str,
                         msg_type: str, priority: str) -> None:
        try:
            await exchange.publish(
                aio_pika.Message(wire, content_type=CONTENT_TYPE, type=msg_type,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 message_id=ATTEMPT_IDS.next(), headers={HEADER_FROM: sender}),
                routing_key=f"{msg_type}.{sender}.{priority}", mandatory=False, timeout=10)
        except AMQP_ERRORS as exc:
            log.warning("local_republish_failed", error=repr(exc)[:200])

    async def _close_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None

    async def stop(self) -> None:
        """Stop consuming, let local republishes in flight finish (each has a timeout),
        and close."""
        self._stopping = True
        if self._republishing:
            await asyncio.wait(set(self._republishing), timeout=15)
        await self._close_conn()
