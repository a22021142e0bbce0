"""Console access control pieces: passwords, roles, sessions, CSRF, login limits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.config_operations import OperatorEntry
from gateway.service.ports import LoginFailureStore
from gateway.service.records import SessionRecord
from gateway.web.console.auth import (
    CONCURRENT_CHECKS,
    PER_ADDRESS,
    WAITING_CHECKS,
    Busy,
    LoginLimiter,
    Operators,
    Sessions,
    csrf_ok,
    hash_password,
    password_tag,
    role_allows,
    token_digest,
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


async def test_sessions_expire_and_can_be_dropped() -> None:
    """A session is found by its token until it expires or is dropped."""
    sessions = Sessions(lifetime=0.05)
    token, session = await sessions.create("op", "operator", "nl")
    assert sessions.get(token) is session
    assert sessions.get("other") is None
    time.sleep(0.06)
    assert sessions.get(token) is None
    live = Sessions(lifetime=60)
    token, _ = await live.create("op", "operator", "en")
    await live.drop(token)
    assert live.get(token) is None


class _Store:
    """A session store in memory (the ledger's are tested with the ledger)."""

    def __init__(self) -> None:
        self.rows: dict[str, SessionRecord] = {}

    async def save(self, digest: str, session: SessionRecord) -> None:
        self.rows[digest] = session

    async def drop(self, digest: str) -> None:
        self.rows.pop(digest, None)

    async def load(self, now: float) -> dict[str, SessionRecord]:
        return {d: r for d, r in self.rows.items() if r.expires >= now}


async def test_sessions_are_stored_hashed_and_come_back_after_a_restart() -> None:
    """The store holds the token's SHA-256, never the token; a new process loads them."""
    store = _Store()
    token, _ = await Sessions(lifetime=60, store=store).create("op", "operator", "en", "t1")
    assert token not in store.rows
    assert token_digest(token) in store.rows
    again = Sessions(lifetime=60, store=store)
    await again.load()
    restored = again.get(token)
    assert restored is not None
    assert (restored.name, restored.role, restored.tag) == ("op", "operator", "t1")


async def test_a_session_follows_its_account() -> None:
    """Removed account or changed password: the session ends; lowered role: it applies
    at the next request."""
    entry = OperatorEntry(name="op", role="admin", password_hash=SecretStr(hash_password("x" * 12)))
    sessions = Sessions(lifetime=60)
    token, _ = await sessions.create("op", "admin", "en", password_tag(entry))
    lowered = Operators((entry.model_copy(update={"role": "viewer"}),))
    checked = await sessions.check(token, lowered)
    assert checked is not None
    assert checked.role == "viewer"
    changed = Operators((entry.model_copy(update={
        "password_hash": SecretStr(hash_password("y" * 12))}),))
    assert await sessions.check(token, changed) is None
    assert sessions.get(token) is None
    token, _ = await sessions.create("op", "admin", "en", password_tag(entry))
    assert await sessions.check(token, Operators(())) is None


def test_csrf_tokens_must_match_exactly() -> None:
    """An empty, missing or different token is refused."""
    assert csrf_ok("abc", "abc")
    assert not csrf_ok("abc", "abd")
    assert not csrf_ok("abc", "")
    assert not csrf_ok("abc", None)


@pytest.fixture
async def logins(tmp_path: Path) -> AsyncIterator[LoginFailureStore]:
    """The failed-logins store of a real SQLite ledger."""
    ledger = SqliteLedger(tmp_path / "l.db")
    await ledger.open()
    yield ledger.logins
    await ledger.close()


async def test_login_limiter_blocks_after_a_few_failures_per_minute_per_client_and_name(
        logins: LoginFailureStore) -> None:
    """After five failures within a minute from one client for one name, it must wait;
    successful logins never count."""
    now = [1000.0]
    limiter = LoginLimiter(per_minute=5, store=logins, clock=lambda: now[0])
    for _ in range(20):
        assert await limiter.allow("client-a", "op")
        await limiter.succeeded("client-a", "op")
    for _ in range(5):
        assert await limiter.allow("client-a", "op")
        await limiter.failed("client-a", "op")
    assert not await limiter.allow("client-a", "op")
    assert not await limiter.allow("client-a", "OP")
    assert await limiter.allow("client-a", "other")
    now[0] += 61
    assert await limiter.allow("client-a", "op")


async def test_guesses_spread_over_addresses_are_slowed_per_account(
        logins: LoginFailureStore) -> None:
    """40 guesses at one account from 10 addresses: after 5 each waits a doubling
    back-off, so they take hours, not seconds; a success clears the account."""
    now = [0.0]
    limiter = LoginLimiter(per_minute=5, store=logins, clock=lambda: now[0])
    made = 0
    while made < 40:
        address = f"10.0.0.{made % 10}"
        wait = await limiter.wait(address, "op")
        now[0] += max(wait, 0.5)
        if wait <= 0:
            await limiter.failed(address, "op")
            made += 1
    assert now[0] > 2 * 3600
    await limiter.succeeded("10.0.0.1", "op")
    assert await limiter.allow("10.0.0.1", "op")


async def test_one_address_trying_many_names_is_stopped(logins: LoginFailureStore) -> None:
    """30 failures from one address within ten minutes, each for another name, block it."""
    now = [0.0]
    limiter = LoginLimiter(per_minute=5, store=logins, clock=lambda: now[0])
    for i in range(PER_ADDRESS):
        assert await limiter.allow("10.9.9.9", f"user{i}")
        await limiter.failed("10.9.9.9", f"user{i}")
        now[0] += 1
    assert not await limiter.allow("10.9.9.9", "someone-new")
    assert await limiter.allow("10.9.9.8", "someone-new")


async def test_the_limits_hold_across_two_instances_of_a_node(tmp_path: Path) -> None:
    """Failures counted through one instance's ledger connection stop the next attempt
    at the other (two ledgers over one file: the shared database of several instances)."""
    one, two = SqliteLedger(tmp_path / "l.db"), SqliteLedger(tmp_path / "l.db")
    await one.open()
    await two.open()
    try:
        now = [50.0]
        first = LoginLimiter(per_minute=5, store=one.logins, clock=lambda: now[0])
        second = LoginLimiter(per_minute=5, store=two.logins, clock=lambda: now[0])
        for _ in range(5):
            await first.failed("10.1.1.1", "op")
        assert not await second.allow("10.1.1.1", "op")
        await second.succeeded("10.1.1.1", "op")
        assert await first.allow("10.1.1.1", "op")
    finally:
        await one.close()
        await two.close()


async def test_password_checks_are_bounded_and_a_flood_is_refused() -> None:
    """At most CONCURRENT_CHECKS argon2 checks run; beyond WAITING_CHECKS more waiting,
    a login is refused at once (Busy) instead of queueing memory and CPU."""
    import asyncio  # noqa: PLC0415

    ops = Operators((OperatorEntry(name="op", role="operator",
                                   password_hash=SecretStr(hash_password("p" * 12))),))
    results = await asyncio.gather(*(ops.verify("op", "wrong") for _ in range(40)),
                                   return_exceptions=True)
    busy = [r for r in results if isinstance(r, Busy)]
    checked = [r for r in results if r is None]
    assert busy
    assert len(checked) <= CONCURRENT_CHECKS + WAITING_CHECKS
