"""Composition root: settings -> logging -> adapters -> services -> web -> run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from gateway.adapters.amqp import TLS_RETRY, AmqpPublisher, InboxConsumer
from gateway.adapters.ledgers import open_ledger
from gateway.adapters.notify import EmailNotifier, WebhookNotifier
from gateway.adapters.remote_api import RemoteApi
from gateway.adapters.stores.archive import run_retention
from gateway.adapters.stores.keys import current_signing_key
from gateway.adapters.tls import ServerCertificate
from gateway.config import Settings, load_settings
from gateway.errors import ConfigError, GatewayError, LedgerError
from gateway.metrics import Metrics
from gateway.protocol.auditlog import sign_checkpoint
from gateway.protocol.delivery import RetryPolicy
from gateway.protocol.escalation import ESCALATION_TYPE, EscalationNotice, Waiting
from gateway.protocol.keys import (
    KeyRing,
    SigningKey,
)
from gateway.protocol.messages import EscalationEnvelope
from gateway.protocol.peerhealth import PeerHealth, ProbePolicy
from gateway.protocol.types import Mode, Priority, Tlp, parse_time
from gateway.service.acknowledge import Acknowledger
from gateway.service.audit import config_changes
from gateway.service.commcheck import CommChecks
from gateway.service.contact_sync import ContactSync
from gateway.service.directory import Directory
from gateway.service.dispatch import Dispatcher
from gateway.service.escalation import Escalator
from gateway.service.exercise import Exercises
from gateway.service.fallback import Fallbacks
from gateway.service.ingest import APPLIED_BY, Receiver
from gateway.service.keys import Keys
from gateway.service.leader import Leadership
from gateway.service.node import InboxState, PeerLinkState
from gateway.service.submit import Submitter
from gateway.web.api import build_app
from gateway.web.limits import CappedRunner

log = structlog.get_logger("crisisgw.node")
#: How often the API's certificate files are checked for a renewal (seconds).
API_CERT_CHECK = 2.0


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Current UTC time."""
        return datetime.now(UTC)


@dataclass
class Node:
    """One running gateway node and everything it is made of."""

    settings: Settings
    clock: SystemClock = field(default_factory=SystemClock)
    #: The file the settings came from; a changed file is applied without a restart.
    config_path: Path | None = None
    #: This instance's name, when several instances of the node share a PostgreSQL
    #: ledger (default: the host name); the lease on the periodic jobs names it.
    instance: str | None = None
    #: The API port of this instance, instead of the file's (several on one machine).
    api_port: int | None = None

    def __post_init__(self) -> None:
        self.settings = self._own_port(self.settings)
        s = self.settings
        self.me = s.node.centre
        key, key_file = current_signing_key(s)
        if key.kid != s.node.signing_key_id:
            log.info("signing_key_from_ledger", kid=key.kid, configured=s.node.signing_key_id)
        self.directory = Directory(self.me, s.peers)
        self.metrics = Metrics()
        self.ledger = open_ledger(s, self.clock.now)
        self.metrics.watch_ledger(self.ledger.query_counts)
        self.publisher = AmqpPublisher(centre=self.me, heartbeat=s.broker.heartbeat,
                                       publish_timeout=s.delivery.publish_timeout_seconds,
                                       on_tls_failure=self._count_tls_failure)
        base, cap, refused = s.retry_times()
        self.dispatcher = Dispatcher(
            ledger=self.ledger, publisher=self.publisher, clock=self.clock,
            policy=RetryPolicy(base=base, cap=cap, refused_delay=refused),
            window_per_peer=s.delivery.window_per_peer,
            lease=timedelta(seconds=4 * s.delivery.publish_timeout_seconds + 10),
            suspended=lambda: frozenset(p.id for p in self.settings.peers if p.suspended),
            on_outcome=lambda peer, t, o: self.metrics.publishes.labels(peer, t, o).inc(),
            probes=ProbePolicy(base=min(base, timedelta(seconds=s.delivery.probe_cap_seconds)),
                               cap=timedelta(seconds=s.delivery.probe_cap_seconds),
                               refused_delay=refused),
            sweeps=lambda: self.leadership.held)
        self.consumer = InboxConsumer(
            centre=self.me, urls=s.broker.urls(), heartbeat=s.broker.heartbeat,
            prefetch=s.broker.prefetch, declare=s.broker.declare_topology,
            delivery_limit=s.broker.delivery_limit, handler=self._handle, tls=s.broker.tls,
            on_tls_failure=self._count_tls_failure,
            tls_retry=min(TLS_RETRY, s.delivery.refused_delay_seconds))
        self.keys = Keys(me=self.me, settings=s, key=key, key_file=key_file, ledger=self.ledger,
                         clock=self.clock, submitter=lambda: self.submitter,
                         on_key=self._use_key, on_announced=self.dispatcher.wake)
        self.contacts = ContactSync(ledger=self.ledger, clock=self.clock,
                                    submitter=lambda: self.submitter,
                                    settings=lambda: self.settings, on_fields=self._use_fields)
        self.receiver = Receiver(
            me=self.me, key=key, ring=lambda: self.keys.ring, directory=lambda: self.directory,
            ledger=self.ledger, clock=self.clock, fanout=self.consumer, policy=s.policy,
            on_receipt_queued=self.dispatcher.wake, on_outcome=self._count_ingest,
            on_key_update=self.keys.pin_peer_key, on_directory=self.contacts.store,
            on_applied=lambda sender, message_id: self.acknowledger.acknowledge(
                message_id, APPLIED_BY, sender, actor="node"),
            on_fallback=lambda sender, message_id, body: self.fallbacks.judge(  # noqa: PLW0108 - made below, after the submitter it needs
                sender, message_id, body))
        self.submitter = Submitter(
            me=self.me, key=key, directory=self.directory, ledger=self.ledger,
            clock=self.clock, default_ttl=timedelta(hours=s.delivery.default_ttl_hours),
            on_submitted=self.dispatcher.wake, policy=s.policy)
        self.acknowledger = Acknowledger(me=self.me, key=key, ledger=self.ledger,
                                         clock=self.clock, on_receipt_queued=self.dispatcher.wake)
        self.fallbacks = Fallbacks(
            me=self.me, settings=lambda: self.settings, store=self.ledger.commchecks,
            directory=self.ledger.directory, inbox=self.ledger.inbox, submitter=self.submitter,
            email=EmailNotifier, clock=self.clock.now)
        self.commchecks = CommChecks(
            submitter=self.submitter, peers=lambda: self.settings.peers,
            fallbacks=self.fallbacks if s.commcheck.fallback else None)
        self.exercises = Exercises(
            me=self.me, settings=lambda: self.settings, store=self.ledger.exercises,
            submitter=self.submitter, remote=RemoteApi, clock=self.clock.now)
        self.escalator = Escalator(
            me=self.me, settings=lambda: self.settings, store=self.ledger.escalations,
            directory=self.ledger.directory, email=EmailNotifier, webhook=WebhookNotifier,
            clock=self.clock.now, tell=self._tell_escalation)
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_subscribers: list[Callable[[Settings], None]] = []
        self._runner: CappedRunner | None = None
        self.started_at = self.clock.now()
        self.leadership = Leadership(
            leases=self.ledger.leases, clock=self.clock,
            holder=f"{self.instance or socket.gethostname()}:{os.getpid()}:"
                   f"{secrets.token_hex(3)}",
            on_acquired=self._took_over_jobs)

    def _own_port(self, settings: Settings) -> Settings:
        if self.api_port is None:
            return settings
        return settings.model_copy(update={"api": settings.api.model_copy(
            update={"port": self.api_port})})

    async def _took_over_jobs(self) -> None:
        """This instance now runs the periodic jobs: publish our contact list if another
        instance stopped before it could."""
        if self._tasks:  # not at start: start() publishes after the first try
            self._tasks.append(asyncio.create_task(self.contacts.after_reload(publish=True),
                                                   name="directory-takeover"))

    async def _handle(self, body: bytes, amqp_user: str | None) -> str:
        return await self.receiver.handle(body, amqp_user)

    def _count_tls_failure(self, link: str, reason: str) -> None:
        self.metrics.tls_failures.labels(link, reason).inc()

    def _count_ingest(self, kind: str, outcome: str) -> None:
        self.metrics.ingested.labels(kind, outcome).inc()
        if kind == "security":
            self.metrics.security.labels(outcome).inc()

    # -- what the web layer uses (gateway.service.node.NodeApi) ----------------------

    def peer_links(self) -> Mapping[str, PeerLinkState]:
        """The link to every configured peer's broker."""
        return self.publisher.links

    def unreachable(self) -> Mapping[str, PeerHealth]:
        """The peers the dispatcher backs off now."""
        return {p: h for p, h in self.dispatcher.health.items() if not h.reachable}

    @property
    def inbox_link(self) -> InboxState:
        """The link to our own broker."""
        return self.consumer

    def subscribe_reload(self, callback: Callable[[Settings], None]) -> None:
        """Call ``callback`` with the new settings after every reload."""
        self._reload_subscribers.append(callback)

    async def evidence(self, message_id: str) -> bytes:
        """The signed evidence bundle of one message."""
        return await self.ledger.evidence(self.settings, message_id, self.clock.now(),
                                          self.key, self.ring)

    @property
    def key(self) -> SigningKey:
        """The key we sign with now."""
        return self.keys.key

    @property
    def ring(self) -> KeyRing:
        """The peers' keys in force: the operator's file and what the ledger learned."""
        return self.keys.ring

    def _use_key(self, key: SigningKey) -> None:
        """Sign with ``key`` from now on (after a rotation)."""
        self.submitter.reconfigure(directory=self.directory, policy=self.settings.policy,
                                   key=key)
        self.receiver.reconfigure(policy=self.settings.policy, key=key)
        self.acknowledger.use_key(key)

    async def rotate_key(self, overlap: timedelta) -> dict[str, str]:
        """See :meth:`gateway.service.keys.Keys.rotate`."""
        return (await self.keys.rotate(overlap)).as_dict()

    async def revoke_peer_key(self, peer: str, kid: str) -> None:
        """See :meth:`gateway.service.keys.Keys.revoke_peer_key`."""
        await self.keys.revoke_peer_key(peer, kid)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the ledger, start links, consumer, dispatcher and the HTTP API."""
        # The data folder holds TLP:RED texts (the embedded ledger, archives): ours only,
        # whichever engine holds the ledger.
        data = self.settings.node.data_dir
        await asyncio.to_thread(data.mkdir, mode=0o700, parents=True, exist_ok=True)
        await asyncio.to_thread(data.chmod, 0o700)
        await self.ledger.open()
        await self.leadership.try_acquire()
        await self.keys.load()
        self.publisher.configure({p.id: (p.inbox_urls(), p.tls)
                                  for p in self.settings.peers})
        self._tasks = [
            asyncio.create_task(self.consumer.run(), name="inbox-consumer"),
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(self._commcheck_schedule(), name="commcheck-schedule"),
            asyncio.create_task(self._checkpoint_schedule(), name="audit-checkpoints"),
            asyncio.create_task(self._retention_schedule(), name="retention"),
            asyncio.create_task(self._escalation_schedule(), name="escalation"),
            asyncio.create_task(self._exercise_schedule(), name="exercise"),
            asyncio.create_task(self.leadership.run(), name="jobs-lease"),
        ]
        if self.settings.ledger.url is not None:  # other instances may share the ledger
            self._tasks.append(asyncio.create_task(self.keys.follow(), name="keys-follow"))
        if self.config_path is not None:
            self._tasks.append(asyncio.create_task(self._watch_config(self.config_path),
                                                   name="config-watch"))
        self._tasks.append(asyncio.create_task(
            self.contacts.after_reload(publish=self.leadership.held), name="directory-start"))
        app = build_app(self)
        self._runner = CappedRunner(app, access_log=None,
                                    max_connections=self.settings.api.max_connections,
                                    header_seconds=self.settings.api.header_seconds)
        await self._runner.setup()
        api = self.settings.api
        https = None
        if api.tls_cert is not None and api.tls_key is not None:
            https = ServerCertificate(api.tls_cert, api.tls_key)
            self._tasks.append(asyncio.create_task(self._watch_api_certificate(https),
                                                   name="api-certificate"))
        site = web.TCPSite(self._runner, api.host, api.port,
                           ssl_context=https.context if https else None)
        await site.start()
        if https is None:
            log.warning("api_plaintext", host=api.host, port=api.port,
                        note="plain HTTP; loopback only unless [api] allow_plaintext; set "
                        "[api] tls_cert and tls_key to serve HTTPS")
        log.info("node_started", centre=self.me, api_port=api.port,
                 api="https" if https else "http", peers=[p.id for p in self.settings.peers])

    async def _watch_api_certificate(self, https: ServerCertificate) -> None:
        """Use a renewed API certificate for new connections, without a restart."""
        while True:
            await asyncio.sleep(API_CERT_CHECK)
            try:
                # On the loop's own thread: a handshake (which runs there) never sees the
                # context between its new certificate and its new key.
                if https.refresh():
                    log.info("api_certificate_renewed")
            except ConfigError as exc:
                log.error("api_certificate_refused", error=str(exc))

    async def _watch_config(self, path: Path) -> None:
        """Apply peer, key, policy and console changes when the file changes."""
        last = (await asyncio.to_thread(path.stat)).st_mtime_ns
        while True:
            await asyncio.sleep(1.0)
            try:
                now = (await asyncio.to_thread(path.stat)).st_mtime_ns
            except OSError:
                continue
            if now == last:
                continue
            last = now
            try:
                self.apply_settings(await asyncio.to_thread(load_settings, path))
            except GatewayError as exc:
                log.error("config_reload_refused", error=str(exc))

    def apply_settings(self, new: Settings) -> None:
        """Swap in new settings: peers, pinned keys, groups, policy, accounts, deadlines.

        The node's identity, broker and API address need a restart; a change to them is
        logged and ignored.
        """
        old = self.settings
        new = self._own_port(new)
        if (new.node, new.broker, new.api.host, new.api.port) != (
                old.node, old.broker, old.api.host, old.api.port):
            log.warning("config_change_needs_restart", sections="node, broker, api address")
        new = new.model_copy(update={"node": old.node, "broker": old.broker})
        new.key_ring()  # refuses an unsafe key before anything changes
        self.settings = new
        self.keys.reconfigure(new)
        self.directory = Directory(self.me, new.peers)
        self.submitter.reconfigure(directory=self.directory, policy=new.policy)
        self.receiver.reconfigure(policy=new.policy)
        self.publisher.configure({p.id: (p.inbox_urls(), p.tls)
                                  for p in new.peers})
        for callback in self._reload_subscribers:
            callback(new)
        log.info("config_reloaded", peers=[p.id for p in new.peers])
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._audit_changes(config_changes(old, new))))
        self._tasks.append(loop.create_task(
            self.contacts.after_reload(publish=self.leadership.held)))

    async def _audit_changes(self, changes: list[tuple[str, str, str]]) -> None:
        """Record peer and key changes of a reload in the audit log."""
        try:
            for action, target, detail in changes:
                await self.ledger.audit.record("config", action, target, detail,
                                               self.clock.now())
        except GatewayError as exc:
            log.error("audit_append_failed", error=str(exc))

    def sign_checkpoint(self, seq: int, head: str) -> bytes:
        """Our signature over the audit chain's head (see protocol.auditlog)."""
        return sign_checkpoint(self.me, seq, head, self.clock.now(), self.key)

    async def checkpoint(self, *, force: bool = False) -> bytes | None:
        """Sign and keep the audit chain's head now (None if unchanged, unless ``force``)."""
        wire = await self.ledger.audit.checkpoint(self.sign_checkpoint, force=force)
        if wire is not None:
            log.info("audit_checkpoint", bytes=len(wire))
        return wire

    async def _checkpoint_schedule(self) -> None:
        """Sign the chain head every ``audit.checkpoint_seconds`` while it grows."""
        while True:
            await asyncio.sleep(self.settings.audit.checkpoint_seconds)
            if not self.leadership.held:
                continue
            try:
                await self.checkpoint()
            except GatewayError as exc:
                log.error("audit_checkpoint_failed", error=str(exc))

    async def _tell_escalation(self, waiting: Waiting, notice: EscalationNotice) -> None:
        """Send the recipient an ``escalation`` message about a step we took: routine (the
        message that waits raised the alarm already), in that message's mode (an
        exercise's notices stay in the exercise)."""
        await self.submitter.submit_body(
            msg_type=ESCALATION_TYPE, model=EscalationEnvelope, body=notice,
            body_json=notice.model_dump(mode="json"), to=(waiting.recipient,),
            tlp=Tlp.AMBER, priority=Priority.ROUTINE, mode=Mode(waiting.mode),
            incident=None, expires=None, idempotency=None,
            releasable=tuple(self.settings.policy.release_groups))

    async def _escalation_schedule(self) -> None:
        """Take the escalation steps that are due, every ``escalation.every_seconds``, on
        the instance that holds the periodic jobs."""
        while True:
            await asyncio.sleep(self.settings.escalation.every_seconds)
            if not self.leadership.held:
                continue
            try:
                for action, error in await self.escalator.run_once():
                    self.metrics.escalations.labels(
                        action.recipient, action.channel.value,
                        "sent" if error is None else "failed").inc()
            except GatewayError as exc:
                log.error("escalation_failed", error=str(exc))
            except Exception:  # a bug must not end the escalations of every later message
                log.exception("escalation_failed")

    async def _exercise_schedule(self) -> None:
        """Play the injects of running exercises that fell due, every
        ``exercise.every_seconds``, on the instance that holds the periodic jobs."""
        while True:
            await asyncio.sleep(self.settings.exercise.every_seconds)
            if not self.leadership.held:
                continue
            try:
                await self.exercises.run_once()
            except GatewayError as exc:
                log.error("exercise_failed", error=str(exc))
            except Exception:  # a bug must not end every later exercise
                log.exception("exercise_failed")

    async def _retention_schedule(self) -> None:
        """Move settled months older than ``retention.keep_days`` into archive files, at
        start and then every ``retention.check_seconds``. A pass runs as its own process
        (``crisisgw archive run``: compressing and verifying must not hold this event
        loop), on its own connection in short transactions."""
        while True:
            if self.settings.retention.keep_days is not None and self.leadership.held:
                try:
                    report = await self._retention_pass()
                    if report.get("files") or report.get("freed_bytes") or \
                            report.get("forgotten"):
                        log.info("retention_pass", **report)
                except GatewayError as exc:
                    log.error("retention_failed", error=str(exc))
            await asyncio.sleep(self.settings.retention.check_seconds)

    async def _retention_pass(self) -> dict[str, Any]:
        if self.config_path is None:  # embedded without a file: in a thread
            return (await asyncio.to_thread(run_retention, self.settings,
                                            self.clock.now())).as_json()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "archive", "run", "-c", str(self.config_path),
            "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:
            proc.terminate()  # safe: an interrupted pass resumes where it stopped
            raise
        if proc.returncode != 0:
            raise LedgerError(f"crisisgw archive run exited with {proc.returncode}: "
                              f"{err.decode(errors='replace')[-500:]}")
        report: dict[str, Any] = json.loads(out)
        return report

    def _use_fields(self, fields: dict[str, list[str]]) -> None:
        """Address "field:<field>" groups as the peers' contact lists say."""
        self.directory = Directory(self.me, self.settings.peers, fields)
        self.submitter.reconfigure(directory=self.directory, policy=self.settings.policy)

    async def publish_directory(self, *, only_if_changed: bool = False) -> str | None:
        """See :meth:`gateway.service.contact_sync.ContactSync.publish`."""
        return await self.contacts.publish(only_if_changed=only_if_changed)

    async def _commcheck_schedule(self) -> None:
        """Run a communication test when the last one (or, before the first, the start
        of this node) is older than ``every_days``."""
        every = timedelta(days=self.settings.commcheck.every_days)
        while True:
            try:
                last = await self.ledger.outbox.list({"type": "commcheck"}, 1)
                since = parse_time(last[0].created) if last else self.started_at
                if self.clock.now() - since >= every and self.leadership.held:
                    check_id = await self.commchecks.start("schedule")
                    log.info("commcheck_scheduled", check_id=check_id)
            except GatewayError as exc:
                log.error("commcheck_schedule_failed", error=str(exc))
            await asyncio.sleep(3600)

    async def stop(self) -> None:
        """Stop taking work, let in-flight publishes finish, flush the ledger."""
        if self._runner is not None:
            await self._runner.cleanup()
        await self.consumer.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.dispatcher.stop()
        await self.publisher.close()
        await self.leadership.release()
        try:
            await self.checkpoint()
        except GatewayError as exc:
            log.error("audit_checkpoint_failed", error=str(exc))
        await self.ledger.close()
        log.info("node_stopped", centre=self.me)

    async def run_until_signalled(self) -> None:
        """Run until SIGINT or SIGTERM, then stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()
