"""Console access control pieces: passwords, roles, sessions, CSRF, login limits."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from gateway.config import OperatorEntry
from gateway.web.console.auth import (
    LoginLimiter,
    Operators,
    Sessions,
    csrf_ok,
    hash_password,
    role_allows,
)


@pytest.mark.parametrize(("role", "needed", "allowed"), [
    ("viewer", "viewer", True), ("viewer", "operator", False), ("viewer", "admin", False),
    ("operator", "viewer", True), ("operator", "operator", True), ("operator", "admin", False),
    ("admin", "operator", True), ("admin", "admin", True),
])
def test_roles_are_ordered_viewer_operator_admin(role: str, needed: str, allowed: bool) -> None:
    """A viewer only reads; an operator also acts; an admin may do everything."""
    assert role_allows(role, needed) is allowed


async def test_passwords_are_argon2id_and_verify_only_with_the_right_password() -> None:
    """The stored hash is argon2id; wrong passwords and unknown users get None."""
    stored = hash_password("a long passphrase")
    assert stored.startswith("$argon2id$")
    ops = Operators((OperatorEntry(name="op", role="operator",
                                   password_hash=SecretStr(stored)),))
    assert (await ops.verify("op", "a long passphrase")) is not None
    assert (await ops.verify("op", "a long passphrasE")) is None
    assert (await ops.verify("nobody", "a long passphrase")) is None


def test_sessions_expire_and_can_be_dropped() -> None:
    """A session is found by its token until it expires or is dropped."""
    sessions = Sessions(lifetime=0.05)
    token, session = sessions.create("op", "operator", "nl")
    assert sessions.get(token) is session
    assert sessions.get("other") is None
    time.sleep(0.06)
    assert sessions.get(token) is None
    live = Sessions(lifetime=60)
    token, _ = live.create("op", "operator", "en")
    live.drop(token)
    assert live.get(token) is None


def test_csrf_tokens_must_match_exactly() -> None:
    """An empty, missing or different token is refused."""
    assert csrf_ok("abc", "abc")
    assert not csrf_ok("abc", "abd")
    assert not csrf_ok("abc", "")
    assert not csrf_ok("abc", None)


def test_login_limiter_blocks_after_a_few_failures_per_minute_per_client_and_name() -> None:
    """After five failures within a minute attempts are refused; others are not affected,
    and successful logins never count."""
    limiter = LoginLimiter(per_minute=5)
    for _ in range(20):
        assert limiter.allow("client-a", "op")
        limiter.succeeded("client-a", "op")
    for _ in range(5):
        assert limiter.allow("client-a", "op")
        limiter.failed("client-a", "op")
    assert not limiter.allow("client-a", "op")
    assert not limiter.allow("client-a", "OP")
    assert limiter.allow("client-a", "other")
    assert limiter.allow("client-b", "op")
