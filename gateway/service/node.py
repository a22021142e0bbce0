"""What the web layer may use of a running node: one narrow interface, declared here so
that ``gateway.web`` depends on the service layer only (never on ``gateway.app`` or an
adapter). :class:`gateway.app.Node` implements it; tests hand the web layer fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Protocol

from gateway.config import Settings
from gateway.metrics import Metrics
from gateway.protocol.keys import KeyRing, SigningKey
from gateway.protocol.peerhealth import PeerHealth
from gateway.service.acknowledge import Acknowledger
from gateway.service.commcheck import CommChecks
from gateway.service.exercise import Exercises
from gateway.service.fallback import Fallbacks
from gateway.service.ports import Clock, Ledger
from gateway.service.submit import Submitter


class LinkState(Protocol):
    """How one AMQP link stands (a peer's inbox, or our own)."""

    @property
    def connected(self) -> bool:
        """Whether it is up now."""
        ...

    @property
    def secure(self) -> bool:
        """Whether it runs over TLS."""
        ...

    @property
    def tls_problem(self) -> str | None:
        """The reason of the last TLS failure (expired, untrusted, ...), None once it works."""
        ...

    @property
    def last_error(self) -> str | None:
        """Why the last attempt failed (no secrets), None when up."""
        ...


class PeerLinkState(LinkState, Protocol):
    """A link to a peer's broker."""

    @property
    def failed(self) -> bool:
        """Whether the last attempt to reach the peer's broker failed."""
        ...


class InboxState(LinkState, Protocol):
    """The link to our own broker, where the inbox is consumed."""

    @property
    def dead_letters(self) -> int:
        """Poison messages in the dead-letter queue."""
        ...


class NodeApi(Protocol):
    """A running node as the HTTP API and the console see it."""

    @property
    def me(self) -> str:
        """Our centre id."""
        ...

    @property
    def clock(self) -> Clock:
        """The node's clock."""
        ...

    @property
    def settings(self) -> Settings:
        """The settings in force (they change on a reload)."""
        ...

    @property
    def key(self) -> SigningKey:
        """Our current signing key."""
        ...

    @property
    def ring(self) -> KeyRing:
        """The peers' pinned keys."""
        ...

    @property
    def ledger(self) -> Ledger:
        """The node's stores."""
        ...

    @property
    def metrics(self) -> Metrics:
        """The node's Prometheus metrics."""
        ...

    @property
    def submitter(self) -> Submitter:
        """Signs and queues messages from centre systems and operators."""
        ...

    @property
    def acknowledger(self) -> Acknowledger:
        """Duty officers' acknowledgements."""
        ...

    @property
    def commchecks(self) -> CommChecks:
        """Communication tests."""
        ...

    @property
    def fallbacks(self) -> Fallbacks:
        """The fallback leg of communication tests."""
        ...

    @property
    def exercises(self) -> Exercises:
        """Exercises on the live federation."""
        ...

    def peer_links(self) -> Mapping[str, PeerLinkState]:
        """The link to every configured peer's broker, by peer id."""
        ...

    def unreachable(self) -> Mapping[str, PeerHealth]:
        """The peers the dispatcher backs off now (their link failed), by peer id."""
        ...

    @property
    def inbox_link(self) -> InboxState:
        """The link to our own broker."""
        ...

    def subscribe_reload(self, callback: Callable[[Settings], None]) -> None:
        """Call ``callback`` with the new settings after each reload of the configuration."""
        ...

    async def rotate_key(self, overlap: timedelta) -> dict[str, str]:
        """Make, announce and switch to a new signing key (see ``POST /v1/keys/rotate``)."""
        ...

    async def revoke_peer_key(self, peer: str, kid: str) -> None:
        """Stop accepting ``kid`` from ``peer`` at once."""
        ...

    async def publish_directory(self, *, only_if_changed: bool = False) -> str | None:
        """Send our contact points to every active peer; returns the message id."""
        ...

    async def checkpoint(self, *, force: bool = False) -> bytes | None:
        """Sign and keep the audit chain's head now."""
        ...

    async def evidence(self, message_id: str) -> bytes:
        """The signed evidence bundle of one message (raises NotFound)."""
        ...
