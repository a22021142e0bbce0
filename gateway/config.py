"""Node configuration: one frozen object, parsed once from TOML and passed down.

This is the only module that reads files or the environment for settings. Secrets
(AMQP passwords, API token hashes) are held as :class:`pydantic.SecretStr` so they never
appear in a repr or a log line.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import tempfile
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.config_escalation import EscalationSection
from gateway.config_exercise import ExerciseSection
from gateway.config_operations import (
    AuditSection,
    CommCheckSection,
    ConsoleSection,
    DeliverySection,
    LedgerSection,
    PolicySection,
    RetentionSection,
)
from gateway.config_templates import CentreTemplates
from gateway.errors import ConfigError, KeyMaterialError
from gateway.protocol.directory import ContactPoint
from gateway.protocol.keys import KeyRing, PinnedKey, public_key_from_text
from gateway.protocol.tlsanchor import MAX_PINS, CaPem, SpkiPin, TlsAnchor
from gateway.protocol.types import CentreId, GroupName, KeyId, UtcTime

#: URL query parameters that would configure TLS behind the trust anchor's back.
_URL_TLS_PARAMS = frozenset({"cafile", "capath", "cadata", "keyfile", "certfile",
                             "no_verify_ssl"})


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
    #: What happens to the private key a rotation replaces: ``archive`` (moved to
    #: ``retired-keys/`` beside it, which the node never reads) or ``delete``.
    retired_keys: Annotated[str, Field(pattern=r"^(archive|delete)$")] = "archive"


class TlsSection(_Section):
    """How to trust a broker's certificate, and the client certificate we show it.

    The anchor is the broker's CA (``ca`` as PEM text, or ``ca_file``) or the SHA-256 of
    its certificate's public key (``spki_sha256``), never the system CA store. Files are
    read at every connection, so renewed certificates are used without a restart.
    """

    ca: CaPem | None = None
    ca_file: Path | None = None
    spki_sha256: tuple[SpkiPin, ...] = Field(default=(), max_length=MAX_PINS)
    #: Client certificate and key for RabbitMQ's EXTERNAL mechanism (URL ``?auth=external``).
    client_cert: Path | None = None
    client_key: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TlsSection:
        anchors = sum((self.ca is not None, self.ca_file is not None, bool(self.spki_sha256)))
        if anchors > 1:
            raise ValueError("give one trust anchor: ca, ca_file or spki_sha256")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        return self

    @property
    def has_anchor(self) -> bool:
        """Whether a trust anchor is configured."""
        return self.ca is not None or self.ca_file is not None or bool(self.spki_sha256)

    def anchor(self) -> TlsAnchor | None:
        """The anchor as published in an identity card (reads ``ca_file``)."""
        if self.spki_sha256:
            return TlsAnchor(spki_sha256=self.spki_sha256)
        ca = self.ca
        if ca is None and self.ca_file is not None:
            try:
                ca = self.ca_file.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{self.ca_file}: {exc}") from exc
        return None if ca is None else TlsAnchor(ca=ca)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (no name is resolved)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_link(url: str, tls: TlsSection | None, allow_plaintext: bool, what: str) -> None:
    """Refuse an AMQP link that would not be verified TLS (rule ``tls-required``).

    Plaintext ``amqp://`` is allowed only to a loopback address, or with an explicit
    ``allow_plaintext = true``; ``amqps://`` needs a trust anchor. Raises ``ValueError``
    naming ``what`` (e.g. "peer NL-NCC") and the rule.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"{what}: the URL scheme must be amqps:// (or amqp:// on loopback)")
    params = {k.lower() for k, _ in parse_qsl(parts.query)}
    if params & _URL_TLS_PARAMS:
        raise ValueError(f"{what}: TLS settings ({', '.join(sorted(params & _URL_TLS_PARAMS))}) "
                         "belong in its tls table, not in the URL")
    if parts.scheme == "amqp":
        if not is_loopback(host) and not allow_plaintext:
            raise ValueError(
                f"{what}: plaintext amqp:// to {host} is refused because it is not a loopback "
                "address (rule tls-required): use amqps:// with the trust anchor from the "
                "centre's identity card, or set allow_plaintext = true in this entry")
        if tls is not None and tls.client_cert is not None:
            raise ValueError(f"{what}: a client certificate needs amqps://")
        return
    if tls is None or not tls.has_anchor:
        raise ValueError(f"{what}: amqps:// needs a trust anchor (tls.ca, tls.ca_file or "
                         "tls.spki_sha256); the system CA store is never used")
    external = dict(parse_qsl(parts.query)).get("auth", "plain").lower() == "external"
    if external and tls.client_cert is None:
        raise ValueError(f"{what}: auth=external needs tls.client_cert and tls.client_key")


class BrokerSection(_Section):
    """Our own broker: where our inbox lives and where local systems subscribe."""

    url: SecretStr
    #: The other nodes of our broker cluster, tried in turn when ``url`` cannot be
    #: reached (the inbox is a quorum queue replicated on them).
    failover_urls: tuple[SecretStr, ...] = Field(default=(), max_length=8)
    heartbeat: int = 10
    prefetch: int = 256
    declare_topology: bool = True
    delivery_limit: int = 10
    tls: TlsSection | None = None
    allow_plaintext: bool = False
    #: Host and port of the inbox as peers reach it, when the URL's are internal.
    advertised_host: str | None = None
    advertised_port: int | None = Field(default=None, ge=1, le=65535)

    @model_validator(mode="after")
    def _tls_required(self) -> BrokerSection:
        for url in (self.url, *self.failover_urls):
            check_link(url.get_secret_value(), self.tls, self.allow_plaintext, "[broker]")
        return self

    def urls(self) -> tuple[str, ...]:
        """Every address of our broker, the first one first."""
        return tuple(u.get_secret_value() for u in (self.url, *self.failover_urls))


#: What an API token may do. ``read``: every GET; ``submit``: sitreps, alerts and
#: communication tests; ``acknowledge``: acknowledge incoming messages; ``admin``: rotate
#: our key, revoke a peer's key, publish the directory.
SCOPES = ("read", "submit", "acknowledge", "admin")
#: The scopes of a token written as a bare hash (older configurations): never ``admin``.
DEFAULT_SCOPES = frozenset({"read", "submit", "acknowledge"})

Scope = Annotated[str, Field(pattern=r"^(read|submit|acknowledge|admin)$")]


class TokenEntry(_Section):
    """An API client's token (its SHA-256, hex) and what it may do."""

    sha256: SecretStr
    scopes: tuple[Scope, ...] = Field(min_length=1)


class ApiSection(_Section):
    """The HTTP API for centre systems."""

    host: str = "127.0.0.1"
    port: int = 8401
    #: Per client name: the SHA-256 (hex) of its bearer token, as a bare string (scopes
    #: read, submit, acknowledge) or as ``{sha256 = "...", scopes = [...]}``.
    tokens: dict[str, SecretStr | TokenEntry] = Field(default_factory=dict)
    #: Whether /metrics needs a token with the ``read`` scope (else it is public, for a
    #: scraper on the same host).
    metrics_token: bool = False
    #: A client must send its request head within this many seconds of connecting (or of
    #: our last answer), and a request body within ``body_seconds``.
    header_seconds: float = Field(default=15.0, gt=0)
    body_seconds: float = Field(default=30.0, gt=0)
    #: Open HTTP connections at most; beyond it a new connection is closed at once.
    max_connections: int = Field(default=512, ge=8)
    max_body_bytes: int = 256 * 1024
    #: Serve HTTPS with this certificate chain and key (PEM files, re-read when renewed).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
    allow_plaintext: bool = False

    @model_validator(mode="after")
    def _https(self) -> ApiSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_cert is None and not is_loopback(self.host) and not self.allow_plaintext:
            raise ValueError(
                f"plain HTTP on {self.host} is refused (rule tls-required): set tls_cert and "
                "tls_key, or allow_plaintext = true behind a TLS-terminating proxy")
        return self

    @property
    def https(self) -> bool:
        """Whether the node serves HTTPS itself."""
        return self.tls_cert is not None

    def token_hashes(self) -> list[tuple[str, str, frozenset[str]]]:
        """(client, SHA-256 hex, scopes) of every token."""
        out = []
        for client, entry in self.tokens.items():
            if isinstance(entry, TokenEntry):
                out.append((client, entry.sha256.get_secret_value(), frozenset(entry.scopes)))
            else:
                out.append((client, entry.get_secret_value(), DEFAULT_SCOPES))
        return out


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
    #: The same inbox through the other nodes of the peer's broker cluster, tried in
    #: turn when ``inbox_url`` cannot be reached (same credentials, same trust anchor).
    inbox_failover_urls: tuple[SecretStr, ...] = Field(default=(), max_length=8)
    #: The user name the peer publishes with on *our* broker (checked against user_id).
    granted_user: str
    suspended: bool = False
    #: Whether the peer takes part in exercises (exercise-mode traffic to and from it).
    exercise: bool = True
    #: How to verify the peer's broker (the anchor from its identity card).
    tls: TlsSection | None = None
    #: Allow plaintext amqp:// to a non-loopback address (never between real centres).
    allow_plaintext: bool = False

    @model_validator(mode="after")
    def _tls_required(self) -> PeerSection:
        for url in (self.inbox_url, *self.inbox_failover_urls):
            check_link(url.get_secret_value(), self.tls, self.allow_plaintext,
                       f"peer {self.id}")
        return self

    def inbox_urls(self) -> tuple[str, ...]:
        """Every address of the peer's inbox, the first one first."""
        return tuple(u.get_secret_value() for u in (self.inbox_url, *self.inbox_failover_urls))


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
    exercise: ExerciseSection = ExerciseSection()
    audit: AuditSection = AuditSection()
    retention: RetentionSection = RetentionSection()
    ledger: LedgerSection = LedgerSection()
    escalation: EscalationSection = EscalationSection()
    #: The centre's own message templates (besides the built-in ones).
    templates: CentreTemplates = ()
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
    """Apply ``change`` to the raw TOML of ``path`` and write it back; returns the new
    settings. For explicit operator commands only (the running node never writes the
    file). One writer at a time (an exclusive lock on ``.<name>.lock``); the new text
    goes to a fresh temporary file, is checked as a configuration, fsynced, and then
    replaces the file atomically (0600).

    Raises :class:`ConfigError` (and leaves the file untouched) when it is not valid.
    """
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        change(raw)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(tomli_w.dumps(raw))
                fh.flush()
                os.fsync(fh.fileno())
            tmp.chmod(0o600)
            settings = load_settings(tmp)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return settings


def failpoints_from_env() -> str:
    """The failpoint spec in ``CRISISGW_FAILPOINTS`` (tests only; empty in production)."""
    return os.environ.get("CRISISGW_FAILPOINTS", "")


_TLS_FILES = ("ca_file", "client_cert", "client_key")


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the file names of a raw configuration absolute, relative to its folder."""
    def fix(table: Any, keys: tuple[str, ...]) -> None:
        if isinstance(table, dict):
            for key in keys:
                if isinstance(table.get(key), str) and not os.path.isabs(table[key]):
                    table[key] = str((base / table[key]).resolve())

    fix(raw.get("node"), ("data_dir", "signing_key_file"))
    fix(raw.get("ledger"), ("password_file",))
    fix(raw.get("api"), ("tls_cert", "tls_key"))
    escalation = raw.get("escalation")
    if isinstance(escalation, dict):
        fix(escalation.get("email"), ("password_file", "ca_file"))
        fix(escalation.get("webhook"), ("token_file",))
    broker = raw.get("broker")
    if isinstance(broker, dict):
        fix(broker.get("tls"), _TLS_FILES)
    for peer in raw.get("peers", []) if isinstance(raw.get("peers"), list) else []:
        if isinstance(peer, dict):
            fix(peer.get("tls"), _TLS_FILES)


def load_settings(path: Path) -> Settings:
    """Parse and validate a node's TOML file; relative paths are taken from its folder.

    Raises :class:`ConfigError` naming the file and each bad field.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    _resolve_paths(raw, path.parent)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {details}") from exc
    settings.key_ring()
    return settings
