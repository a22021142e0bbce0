"""Console access control: argon2 passwords, server-side sessions, CSRF, login limits.

Sessions are kept in the ledger under the SHA-256 of their cookie token (a copy of the
ledger gives no session), so a node restart does not log anyone out, and every instance
of a node on a shared ledger knows every session: each request reads its session from
the ledger, so a login or a logout on one instance holds on all. Every request
re-checks the account: a session ends when its account is removed or its password
changed, and takes the account's current role. The session cookie is HttpOnly,
SameSite=Strict and scoped to /console; every POST carries the session's CSRF token.

Logins are throttled three ways: per client address and name, per client address
whatever the name, and per account from anywhere with a growing back-off (failures kept
in the ledger, so on every instance of the node); at most a few
argon2 checks run at once, and a flood beyond that is refused at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.config_operations import OperatorEntry
from gateway.service.ports import LoginFailureStore, SessionStore
from gateway.service.records import LoginHistory, SessionRecord

ROLES = ("viewer", "operator", "admin")
SESSION_COOKIE = "crisisgw_session"
_HASHER = PasswordHasher()
# Verifying an unknown user costs the same as a known one (no user enumeration by timing).
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` for the config file."""
    return _HASHER.hash(password)


def role_allows(role: str, needed: str) -> bool:
    """Whether ``role`` includes the rights of ``needed`` (viewer < operator < admin)."""
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass
class Session:
    """One logged-in operator; ``role`` follows the account (re-read on each request)."""

    name: str
    role: str
    csrf: str
    expires: float
    lang: str = "en"
    #: Which password the session was opened with (a tag of its hash, see password_tag).
    tag: str = ""


def token_digest(token: str) -> str:
    """What is stored of a session cookie: its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def password_tag(entry: OperatorEntry) -> str:
    """A short tag of an account's password hash: it changes when the password does."""
    return hashlib.sha256(entry.password_hash.get_secret_value().encode()).hexdigest()[:16]


@dataclass
class Sessions:
    """Server-side sessions keyed by the digest of an unguessable token, in memory and in
    a store that survives a restart."""

    lifetime: float
    store: SessionStore | None = None
    _items: dict[str, Session] = field(default_factory=dict)

    async def load(self) -> None:
        """Bring back the sessions of before a restart."""
        if self.store is None:
            return
        for digest, row in (await self.store.load(time.time())).items():
            self._items[digest] = Session(**asdict(row))

    async def create(self, name: str, role: str, lang: str, tag: str = "") -> tuple[str, Session]:
        """Start a session; returns (cookie token, session)."""
        token = secrets.token_urlsafe(32)
        session = Session(name=name, role=role, csrf=secrets.token_urlsafe(32),
                          expires=time.time() + self.lifetime, lang=lang, tag=tag)
        self._items[token_digest(token)] = session
        if self.store is not None:
            await self.store.save(token_digest(token), SessionRecord(**asdict(session)))
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session for ``token``, if any."""
        if not token:
            return None
        digest = token_digest(token)
        session = self._items.get(digest)
        if session is None or session.expires < time.time():
            self._items.pop(digest, None)
            return None
        return session

    async def drop(self, token: str | None) -> None:
        """End a session."""
        if token:
            digest = token_digest(token)
            self._items.pop(digest, None)
            if self.store is not None:
                await self.store.drop(digest)

    async def _current(self, token: str | None) -> Session | None:
        """The session as the ledger has it now (another instance may have started or
        ended it); without a store, as this process has it."""
        if self.store is None or not token:
            return self.get(token)
        digest = token_digest(token)
        row = await self.store.get(digest, time.time())
        if row is None:
            self._items.pop(digest, None)
            return None
        session = self._items.get(digest)
        if session is None or asdict(session) != asdict(row):
            session = self._items[digest] = Session(**asdict(row))
        return session

    async def set_language(self, token: str | None, session: Session, lang: str) -> None:
        """Remember the console language of a session, on every instance."""
        session.lang = lang
        if self.store is not None and token:
            await self.store.save(token_digest(token), SessionRecord(**asdict(session)))

    async def check(self, token: str | None, operators: Operators) -> Session | None:
        """The session for ``token`` if its account still exists with the same password;
        its role is the account's role now. Otherwise it is ended."""
        session = await self._current(token)
        if session is None:
            return None
        entry = operators.entry(session.name)
        if entry is None or password_tag(entry) != session.tag:
            await self.drop(token)
            return None
        session.role = entry.role
        return session


def csrf_ok(expected: str, given: str | None) -> bool:
    """Constant-time comparison of CSRF tokens."""
    return bool(given) and hmac.compare_digest(expected, given or "")


#: Failures a client address may make whatever the names, per ten minutes.
PER_ADDRESS = 30
ADDRESS_WINDOW = 600.0
#: Failures an account may have (from anywhere) before each attempt waits a back-off
#: that doubles, up to ACCOUNT_BACKOFF_MAX seconds; a successful login clears it.
ACCOUNT_FREE = 5
ACCOUNT_BACKOFF_MAX = 300.0


def login_wait(history: LoginHistory, now: float, per_minute: int) -> float:
    """Seconds before an attempt may be checked (0: now), from what the ledger holds of
    earlier failures (the three limits of :class:`LoginLimiter`)."""
    waits = [0.0]
    if len(history.pair) >= per_minute:
        waits.append(history.pair[-per_minute] + 60 - now)
    if len(history.address) >= PER_ADDRESS:
        waits.append(history.address[-PER_ADDRESS] + ADDRESS_WINDOW - now)
    if history.account_failures >= ACCOUNT_FREE:
        backoff = min(2.0 ** (history.account_failures - ACCOUNT_FREE), ACCOUNT_BACKOFF_MAX)
        waits.append(history.last_failure + backoff - now)
    return max(waits)


@dataclass
class LoginLimiter:
    """Three limits on failed logins, so that guesses spread over names or addresses are
    slowed as much as guesses from one place:

    - ``per_minute`` failures per (client address, name) within a minute;
    - :data:`PER_ADDRESS` failures per client address within ten minutes, any names;
    - per account, after :data:`ACCOUNT_FREE` failures from anywhere, each attempt waits
      1, 2, 4 ... seconds (at most :data:`ACCOUNT_BACKOFF_MAX`) after the last failure.

    The failures are kept in the ledger (``store``), so the limits hold on every
    instance of the node and across restarts.
    """

    per_minute: int
    store: LoginFailureStore
    clock: Callable[[], float] = time.time

    async def wait(self, remote: str, name: str) -> float:
        """Seconds before an attempt may be checked (0: now)."""
        now = self.clock()
        return login_wait(await self.store.history(remote, name, now), now, self.per_minute)

    async def allow(self, remote: str, name: str) -> bool:
        """Whether an attempt may be checked now."""
        return await self.wait(remote, name) <= 0

    async def failed(self, remote: str, name: str) -> None:
        """Count a failed attempt."""
        await self.store.failed(remote, name, self.clock())

    async def succeeded(self, remote: str, name: str) -> None:
        """Forget the failures of the account that logged in (the address keeps its)."""
        await self.store.succeeded(remote, name)

CONCURRENT_CHECKS = 2
WAITING_CHECKS = 8


class Busy(Exception):
    """Too many password checks are running or waiting."""


class Operators:
    """The operator accounts of the configuration."""

    def __init__(self, entries: tuple[OperatorEntry, ...]) -> None:
        self._entries = {e.name: e for e in entries}
        self._running = asyncio.Semaphore(CONCURRENT_CHECKS)
        self._waiting = 0

    def replace(self, entries: tuple[OperatorEntry, ...]) -> None:
        """Take the accounts of a reloaded configuration (the check limit stays)."""
        self._entries = {e.name: e for e in entries}

    def entry(self, name: str) -> OperatorEntry | None:
        """The account called ``name``, if it exists."""
        return self._entries.get(name)

    async def verify(self, name: str, password: str) -> OperatorEntry | None:
        """The account if the password matches (argon2 runs off the event loop, at most
        :data:`CONCURRENT_CHECKS` at a time). Raises :class:`Busy` when too many wait."""
        if self._waiting >= WAITING_CHECKS:
            raise Busy
        entry = self._entries.get(name)
        stored = entry.password_hash.get_secret_value() if entry else _DUMMY_HASH
        self._waiting += 1
        try:
            await self._running.acquire()
        finally:
            self._waiting -= 1
        try:
            await asyncio.to_thread(_HASHER.verify, stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        finally:
            self._running.release()
        return entry
