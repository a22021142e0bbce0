"""Node configuration: one frozen object, parsed once from TOML and passed down.

This is the only module that reads files or the environment for settings. Secrets
(AMQP passwords, API token hashes) are held as :class:`pydantic.SecretStr` so they never
appear in a repr or a log line.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from gateway.errors import ConfigError, KeyMaterialError
from gateway.protocol.directory import ContactPoint
from gateway.protocol.keys import KeyRing, PinnedKey, public_key_from_text
from gateway.protocol.types import CentreId, GroupName, KeyId, UtcTime


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodeSection(_Section):
    """Who this node is."""

    centre: CentreId
    name: str
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    data_dir: Path
    signing_key_file: Path
    signing_key_id: KeyId


class BrokerSection(_Section):
    """Our own broker: where our inbox lives and where local systems subscribe."""

    url: SecretStr
    heartbeat: int = 10
    prefetch: int = 256
    declare_topology: bool = True
    delivery_limit: int = 10


class ApiSection(_Section):
    """The HTTP API for centre systems."""

    host: str = "127.0.0.1"
    port: int = 8401
    #: SHA-256 (hex) of each accepted bearer token, with the client name it identifies.
    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    max_body_bytes: int = 256 * 1024


class KeyEntry(_Section):
    """A pinned public key of a peer."""

    kid: KeyId
    public_key: str
    not_before: UtcTime | None = None
    not_after: UtcTime | None = None
    revoked: bool = False


class PeerSection(_Section):
    """A peer centre: identity, pinned keys and how to reach its inbox."""

    id: CentreId
    name: str
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    groups: tuple[GroupName, ...] = ()
    keys: tuple[KeyEntry, ...]
    #: AMQP URL of the peer's broker with the credentials the peer issued to us.
    inbox_url: SecretStr
    #: The user name the peer publishes with on *our* broker (checked against user_id).
    granted_user: str
    suspended: bool = False
    #: Whether the peer takes part in exercises (exercise-mode traffic to and from it).
    exercise: bool = True


class DeliverySection(_Section):
    """Retry clock and windows; short values are for tests and fault drills."""

    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 300.0
    refused_delay_seconds: float = 300.0
    publish_timeout_seconds: float = 10.0
    window_per_peer: int = 256
    default_ttl_hours: float = 24.0


class OperatorEntry(_Section):
    """An operator account of the console; the password is an argon2 hash."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]
    role: Annotated[str, Field(pattern=r"^(viewer|operator|admin)$")]
    password_hash: SecretStr


class ConsoleSection(_Section):
    """The operator console: accounts, sessions and acknowledgement deadlines."""

    operators: tuple[OperatorEntry, ...] = ()
    session_hours: float = 12.0
    #: Seconds after arrival by which a message of each priority must be acknowledged.
    deadlines: dict[str, float] = Field(
        default_factory=lambda: {"flash": 300.0, "urgent": 900.0, "routine": 14400.0})
    login_attempts_per_minute: int = 5


class PolicySection(_Section):
    """Release policy (see gateway/service/policy.py); the defaults are the README's."""

    red_to_groups: bool = False
    amber_strict_to_groups: bool = False
    release_groups: tuple[GroupName, ...] = ("eu",)


class CommCheckSection(_Section):
    """Communication tests: how often the node runs one by itself."""

    every_days: float = 91.0  # quarterly
    #: How long a peer may take to answer before it is reported unreachable.
    wait_seconds: float = 120.0


class AuditSection(_Section):
    """The tamper-evident audit log: how often its head is signed (a checkpoint)."""

    checkpoint_seconds: float = Field(default=300.0, gt=0)


class Settings(_Section):
    """The whole configuration of one node."""

    node: NodeSection
    broker: BrokerSection
    api: ApiSection = ApiSection()
    delivery: DeliverySection = DeliverySection()
    peers: tuple[PeerSection, ...] = ()
    console: ConsoleSection = ConsoleSection()
    policy: PolicySection = PolicySection()
    commcheck: CommCheckSection = CommCheckSection()
    audit: AuditSection = AuditSection()
    #: Our own contact points per field of work, distributed to every peer.
    directory: tuple[ContactPoint, ...] = ()
    log_format: str = Field(default="auto", pattern=r"^(auto|json|console)$")

    @field_validator("peers")
    @classmethod
    def _distinct_peers(cls, peers: tuple[PeerSection, ...]) -> tuple[PeerSection, ...]:
        ids = [p.id for p in peers]
        if len(set(ids)) != len(ids):
            raise ValueError("peer ids must be distinct")
        return peers

    def peer(self, centre: str) -> PeerSection | None:
        """The peer with id ``centre``, if configured."""
        return next((p for p in self.peers if p.id == centre), None)

    def key_ring(self) -> KeyRing:
        """Pinned keys of every peer. Raises :class:`ConfigError` on an unsafe key."""
        entries = []
        for peer in self.peers:
            for k in peer.keys:
                try:
                    key = public_key_from_text(k.public_key)
                except KeyMaterialError as exc:
                    raise ConfigError(f"peer {peer.id} key {k.kid}: {exc}") from exc
                entries.append(
                    (peer.id, PinnedKey(kid=k.kid, key=key, not_before=k.not_before,
                                        not_after=k.not_after, revoked=k.revoked))
                )
        return KeyRing.build(entries)

    def retry_times(self) -> tuple[timedelta, timedelta, timedelta]:
        """(base, cap, refused delay) of the retry policy."""
        d = self.delivery
        return (timedelta(seconds=d.retry_base_seconds), timedelta(seconds=d.retry_cap_seconds),
                timedelta(seconds=d.refused_delay_seconds))


def redact_url(url: str) -> str:
    """An AMQP URL with its password replaced by ``***``, safe for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def update_config(path: Path, change: Callable[[dict[str, Any]], None]) -> Settings:
    """Apply ``change`` to the raw TOML of ``path`` and write it back atomically (0600),
    only if the result is a valid configuration; returns the new settings.

    Raises :class:`ConfigError` (and leaves the file untouched) when it is not.
    """
    import tomli_w  # noqa: PLC0415 - writing is rare

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    change(raw)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(tomli_w.dumps(raw), encoding="utf-8")
    tmp.chmod(0o600)
    try:
        settings = load_settings(tmp)
    except ConfigError:
        tmp.unlink()
        raise
    tmp.replace(path)
    return settings


def failpoints_from_env() -> str:
    """The failpoint spec in ``CRISISGW_FAILPOINTS`` (tests only; empty in production)."""
    return os.environ.get("CRISISGW_FAILPOINTS", "")


def load_settings(path: Path) -> Settings:
    """Parse and validate a node's TOML file; relative paths are taken from its folder.

    Raises :class:`ConfigError` naming the file and each bad field.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    base = path.parent
    node = raw.get("node", {})
    for key in ("data_dir", "signing_key_file"):
        if isinstance(node.get(key), str) and not os.path.isabs(node[key]):
            node[key] = str((base / node[key]).resolve())
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {details}") from exc
    settings.key_ring()
    return settings
