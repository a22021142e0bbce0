"""Console access control: argon2 passwords, server-side sessions, CSRF, login limits.

Sessions live in memory (a restart logs everyone out, which is acceptable for a wall
screen and keeps no session secret on disk). The session cookie is HttpOnly,
SameSite=Strict and scoped to /console; every POST carries the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.config import OperatorEntry

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
    """One logged-in operator."""

    name: str
    role: str
    csrf: str
    expires: float
    lang: str = "en"


@dataclass
class Sessions:
    """Server-side session store keyed by an unguessable token."""

    lifetime: float
    _items: dict[str, Session] = field(default_factory=dict)

    def create(self, name: str, role: str, lang: str) -> tuple[str, Session]:
        """Start a session; returns (cookie token, session)."""
        token = secrets.token_urlsafe(32)
        session = Session(name=name, role=role, csrf=secrets.token_urlsafe(32),
                          expires=time.monotonic() + self.lifetime, lang=lang)
        self._items[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session for ``token``, if any."""
        if not token:
            return None
        session = self._items.get(token)
        if session is None or session.expires < time.monotonic():
            self._items.pop(token, None)
            return None
        return session

    def drop(self, token: str | None) -> None:
        """End a session."""
        if token:
            self._items.pop(token, None)


def csrf_ok(expected: str, given: str | None) -> bool:
    """Constant-time comparison of CSRF tokens."""
    return bool(given) and hmac.compare_digest(expected, given or "")


@dataclass
class LoginLimiter:
    """After ``per_minute`` failed attempts for one (client address, user name) within a
    minute, further attempts are refused until the oldest failure is a minute old."""

    per_minute: int
    _failures: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def _window(self, remote: str, name: str) -> deque[float]:
        window = self._failures.setdefault((remote, name.lower()), deque())
        now = time.monotonic()
        while window and window[0] < now - 60:
            window.popleft()
        return window

    def allow(self, remote: str, name: str) -> bool:
        """Whether an attempt may be checked now."""
        return len(self._window(remote, name)) < self.per_minute

    def failed(self, remote: str, name: str) -> None:
        """Count a failed attempt."""
        self._window(remote, name).append(time.monotonic())

    def succeeded(self, remote: str, name: str) -> None:
        """Forget the failures of a client that logged in."""
        self._failures.pop((remote, name.lower()), None)


class Operators:
    """The operator accounts of the configuration."""

    def __init__(self, entries: tuple[OperatorEntry, ...]) -> None:
        self._entries = {e.name: e for e in entries}

    async def verify(self, name: str, password: str) -> OperatorEntry | None:
        """The account if the password matches (argon2 runs off the event loop)."""
        entry = self._entries.get(name)
        stored = entry.password_hash.get_secret_value() if entry else _DUMMY_HASH
        try:
            await asyncio.to_thread(_HASHER.verify, stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return entry
