"""The sections of the configuration about running the node: delivery, the console,
the release policy, communication tests, the audit log, retention and the ledger
(re-exported by :mod:`gateway.config`, whose :class:`Settings` holds them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from gateway.errors import ConfigError
from gateway.protocol.types import GroupName


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeliverySection(_Section):
    """Retry clock and windows; short values are for tests and fault drills."""

    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 300.0
    refused_delay_seconds: float = 300.0
    #: An unreachable peer is probed at most this long apart (one delivery per probe),
    #: so its return is noticed within it.
    probe_cap_seconds: Annotated[float, Field(gt=0, le=300)] = 1.0
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
    #: A peer whose messages stay ``sent`` (in its broker, no receipt) this long is
    #: flagged on the overview as not answering, whatever its broker link says.
    silent_seconds: float = Field(default=120.0, gt=0)


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
    #: With each test, e-mail every peer's contact point a one-time code to confirm in
    #: its console (the alternative means); through ``[escalation.email]``.
    fallback: bool = True


class AuditSection(_Section):
    """The tamper-evident audit log: how often its head is signed (a checkpoint)."""

    checkpoint_seconds: float = Field(default=300.0, gt=0)


class RetentionSection(_Section):
    """How long settled history stays in the hot ledger before it moves to signed
    monthly archive files (gateway/adapters/stores/archive.py). Unset: kept forever."""

    #: Days a settled month is kept after it ended (the ids of messages archived inside
    #: the dedup window are remembered until it ends, PROTOCOL.md §6).
    keep_days: int | None = Field(default=None, ge=1)
    #: How often the node looks for a month to archive.
    check_seconds: float = Field(default=3600.0, gt=0)
    #: Where the archive files go (default: ``archive/`` in the data directory).
    directory: Path | None = None


class LedgerSection(_Section):
    """Where the ledger is. Without ``url``: the embedded SQLite file ``ledger.sqlite3``
    in the data directory (one instance). With ``url = "postgresql://..."``: a PostgreSQL
    database that several instances of this node share (README, High availability)."""

    #: A libpq URL (``postgresql://user@host:5432/db``); its password is better kept in
    #: ``password_file`` than here.
    url: SecretStr | None = None
    #: A file holding the database password (one line, mode 0600), for ``url``.
    password_file: Path | None = None
    #: Reader connections of this instance.
    readers: int = Field(default=2, ge=1, le=32)

    @field_validator("url")
    @classmethod
    def _postgresql(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and urlsplit(url.get_secret_value()).scheme not in {
                "postgresql", "postgres"}:
            raise ValueError("a ledger url is postgresql://user@host:port/database")
        return url

    @model_validator(mode="after")
    def _password_needs_url(self) -> LedgerSection:
        if self.password_file is not None and self.url is None:
            raise ValueError("password_file is for a PostgreSQL url")
        return self

    def postgres_url(self) -> str | None:
        """The URL to connect with, the password from ``password_file`` put in; None for
        the embedded SQLite ledger. Raises :class:`ConfigError`."""
        if self.url is None:
            return None
        url = self.url.get_secret_value()
        if self.password_file is None:
            return url
        try:
            password = self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"ledger.password_file: {exc}") from exc
        parts = urlsplit(url)
        user, _, host = parts.netloc.rpartition("@")
        user = user.partition(":")[0]
        netloc = f"{user}:{quote(password, safe='')}@{host}" if user else (
            f":{quote(password, safe='')}@{host}")
        return urlunsplit(parts._replace(netloc=netloc))

    def shown(self) -> str:
        """Where the ledger is, for logs and messages (never the password)."""
        if self.url is None:
            return "sqlite"
        parts = urlsplit(self.url.get_secret_value())
        hosts = parts.netloc.rpartition("@")[2] or "localhost"  # "h1:5432,h2:5432" too
        return f"postgresql://{hosts}{parts.path}"
