"""Submission of sitreps: gateway.service.submit.Submitter with the real SQLite ledger."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.config import KeyEntry, PeerSection, TlsSection
from gateway.errors import PolicyRefused
from gateway.protocol.envelope import MAX_LIFETIME
from gateway.protocol.keys import KeyRing, PinnedKey, SigningKey, default_key_id, public_key_text
from gateway.protocol.messages import admit
from gateway.protocol.signing import open_signed
from gateway.protocol.sitrep import Sitrep, sitrep_json
from gateway.protocol.types import format_time
from gateway.service.directory import Directory
from gateway.service.ports import IdempotencyKey
from gateway.service.submit import SitrepSubmission, Submitter

ME, NL, LU, DE = "BE-NCCN", "NL-NCC", "LU-HCPN", "DE-NW"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TTL = timedelta(hours=24)


def _key(centre: str) -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(centre.encode()).digest())
    return SigningKey(kid=default_key_id(centre, private.public_key()), private=private)


KEYS = {c: _key(c) for c in (ME, NL, LU, DE)}
ME_RING = KeyRing.build([(ME, PinnedKey(kid=KEYS[ME].kid, key=KEYS[ME].public()))])

SITREP: dict[str, Any] = {
    "incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
    "report_number": 2,
    "severity": "severe",
    "language": "fr",
    "summary": {"fr": "Crue de la Meuse.", "nl": "Overstroming van de Maas."},
}


@dataclass
class FixedClock:
    """A clock that says whatever time the test sets."""

    at: datetime = NOW

    def now(self) -> datetime:
        """The set time."""
        return self.at


@dataclass
class Node:
    """A submitter under test with its ledger, clock and callback count."""

    submitter: Submitter
    ledger: SqliteLedger
    clock: FixedClock
    submitted: list[None]


def _peer(centre: str, groups: tuple[str, ...]) -> PeerSection:
    return PeerSection(
        id=centre, name=centre, country=centre[:2], groups=groups,
        keys=(KeyEntry(kid=KEYS[centre].kid, public_key=public_key_text(KEYS[centre].public())),),
        inbox_url=f"amqps://{ME}:pw@{centre.lower()}.example/", granted_user=f"{centre}@{ME}",
        tls=TlsSection(spki_sha256=("ab" * 32,)),
    )


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory of BE-NCCN submitters (NL, LU in 'benelux'; DE in 'rhine') on fresh ledgers."""
    ledgers: list[SqliteLedger] = []

    async def make(now: datetime = NOW) -> Node:
        ledger = SqliteLedger(tmp_path / f"l{len(ledgers)}.db")
        await ledger.open()
        ledgers.append(ledger)
        directory = Directory(ME, [_peer(NL, ("benelux",)), _peer(LU, ("benelux",)),
                                   _peer(DE, ("rhine",))])
        clock = FixedClock(now)
        submitted: list[None] = []
        submitter = Submitter(me=ME, key=KEYS[ME], directory=directory, ledger=ledger,
                              clock=clock, default_ttl=TTL,
                              on_submitted=lambda: submitted.append(None))
        return Node(submitter, ledger, clock, submitted)

    yield make
    for ledger in ledgers:
        await ledger.close()


@pytest.fixture
def make_submission() -> Callable[..., SitrepSubmission]:
    """Factory of SitrepSubmissions to the 'benelux' group, TLP:GREEN, with overrides."""

    def make(**changes: Any) -> SitrepSubmission:
        data: dict[str, Any] = {"to": ["benelux"], "tlp": "GREEN", "sitrep": SITREP}
        data.update(changes)
        return SitrepSubmission.model_validate(data)

    return make


async def _wire_envelope(node: Node, message_id: str) -> dict[str, Any]:
    [due, *_] = [d for d in await node.ledger.outbox.due(node.clock.at, 100, set())
                 if d.message_id == message_id]
    verified = open_signed(due.wire, ME_RING)
    assert verified.sender == ME
    return verified.envelope


async def test_submit_sitrep_stores_signed_message(
    make_node: Callable[..., Any], make_submission: Callable[..., SitrepSubmission]
) -> None:
    """submit_sitrep seals the envelope with defaults, stores it and calls on_submitted."""
    node = await make_node()
    message_id, created = await node.submitter.submit_sitrep(make_submission())
    assert created is True
    env = await _wire_envelope(node, message_id)
    assert env == {
        "v": 1, "id": message_id, "type": "sitrep", "from": ME, "to": [NL, LU],
        "created": format_time(NOW), "expires": format_time(NOW + TTL),
        "mode": "actual", "tlp": "GREEN", "priority": "routine", "incident": "BE-2026-0001",
        "body": sitrep_json(Sitrep.model_validate(SITREP)),
    }
    assert env["body"]["summary"] == SITREP["summary"]
    assert node.submitted == [None]
    view = await node.ledger.outbox.get(message_id)
    assert view is not None
    assert [r.centre for r in view.recipients] == [LU, NL]
    assert {r.state for r in view.recipients} == {"queued"}


async def test_submitted_message_is_admitted_by_recipient(
    make_node: Callable[..., Any], make_submission: Callable[..., SitrepSubmission]
) -> None:
    """The stored wire passes the receiver's admission checks at each recipient."""
    node = await make_node()
    message_id, _ = await node.submitter.submit_sitrep(make_submission(to=["benelux", DE]))
    for d in await node.ledger.outbox.due(NOW, 100, set()):
        assert admit(open_signed(d.wire, ME_RING), d.recipient, NOW).envelope.id == message_id


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"to": [DE, "benelux"]}, {"to": [DE, NL, LU]}),
        ({"to": [LU, "benelux"]}, {"to": [LU, NL]}),
        ({"incident": "EU-2026-42"}, {"incident": "EU-2026-42"}),
        ({"mode": "exercise", "priority": "flash"}, {"mode": "exercise", "priority": "flash"}),
        ({"tlp": "AMBER+STRICT", "to": [NL]}, {"tlp": "AMBER+STRICT", "to": [NL]}),
        ({"expires": "2026-11-30T10:00:00.000Z"}, {"expires": "2026-11-30T10:00:00.000Z"}),
        ({"expires": "2026-11-27T12:00:00+01:00"}, {"expires": "2026-11-27T11:00:00.000Z"}),
        ({"expires": format_time(NOW + MAX_LIFETIME)},
         {"expires": format_time(NOW + MAX_LIFETIME)}),
    ],
    ids=["centre-and-group", "group-overlap", "incident", "mode-priority", "tlp", "expires",
         "expires-offset", "expires-max"],
)
async def test_submission_fields_reach_the_envelope(
    make_node: Callable[..., Any], make_submission: Callable[..., SitrepSubmission],
    changes: dict[str, Any], fields: dict[str, Any],
) -> None:
    """Explicit recipients, incident, mode, priority, TLP and expiry are carried as given."""
    node = await make_node()
    message_id, _ = await node.submitter.submit_sitrep(make_submission(**changes))
    env = await _wire_envelope(node, message_id)
    assert {k: env[k] for k in fields} == fields


@pytest.mark.parametrize(
    "expires",
    [NOW - timedelta(days=1), NOW, NOW + MAX_LIFETIME + timedelta(milliseconds=1),
     NOW + timedelta(days=30)],
    ids=["past", "now", "just-beyond-7-days", "30-days"],
)
async def test_bad_expiry_is_422(
    make_node: Callable[..., Any], make_submission: Callable[..., SitrepSubmission],
    expires: datetime,
) -> None:
    """An expiry not in the future, or more than 7 days ahead, is refused; nothing stored."""
    node = await make_node()
    with pytest.raises(PolicyRefused) as info:
        await node.submitter.submit_sitrep(make_submission(expires=format_time(expires)))
    assert info.value.errors == [{"loc": ["expires"], "msg": "out of range",
                                  "code": "expiry_out_of_range", "days": 7}]
    assert node.submitted == []
    assert await node.ledger.outbox.list({}, 10) == []


@pytest.mark.parametrize("ttl", [timedelta(0), MAX_LIFETIME + timedelta(seconds=1)])
async def test_bad_default_ttl_is_422(
    tmp_path: Path, make_submission: Callable[..., SitrepSubmission], ttl: timedelta
) -> None:
    """A node TTL of zero or beyond 7 days cannot produce a valid default expiry."""
    ledger = SqliteLedger(tmp_path / "ttl.db")
    await ledger.open()
    try:
        submitter = Submitter(me=ME, key=KEYS[ME], directory=Directory(ME, [_peer(NL, ())]),
                              ledger=ledger, clock=FixedClock(), default_ttl=ttl,
                              on_submitted=lambda: None)
        with pytest.raises(PolicyRefused):
            await submitter.submit_sitrep(make_submission(to=[NL]))
    finally:
        await ledger.close()


@pytest.mark.parametrize(
    ("to", "named"),
    [([NL, "XX-NOPE"], "XX-NOPE"), (["nordics"], "nordics"), ([ME], ME)],
)
async def test_unknown_recipient_is_422(
    make_node: Callable[..., Any], make_submission: Callable[..., SitrepSubmission],
    to: list[str], named: str,
) -> None:
    """An unknown centre or group, or our own centre, is refused naming it; nothing stored."""
    node = await make_node()
    with pytest.raises(PolicyRefused) as info:
        await node.submitter.submit_sitrep(make_submission(to=to))
    assert named in info.value.detail
    assert node.submitted == []
    assert await node.ledger.outbox.list({}, 10) == []


async def test_idempotent_resubmission_returns_same_id(
    make_node: Callable[..., Any], make_submission: Callable[..., SitrepSubmission]
) -> None:
    """The same Idempotency-Key and request returns the first id with created False."""
    node = await make_node()
    key = IdempotencyKey(client="ops", key="abc", request_sha256="12" * 32)
    first = await node.submitter.submit_sitrep(make_submission(), key)
    node.clock.at = NOW + timedelta(seconds=5)
    second = await node.submitter.submit_sitrep(make_submission(), key)
    assert second == (first[0], False)
    assert len(await node.ledger.outbox.list({}, 10)) == 1


async def test_sub_millisecond_expiry_never_produces_unadmittable_wire(
    make_node: Callable[..., Any], make_submission: Callable[..., SitrepSubmission]
) -> None:
    """An accepted submission always yields a wire its recipient admits."""
    now = NOW + timedelta(microseconds=400)
    node = await make_node(now)
    expires = "2026-11-27T10:00:00.000900Z"
    try:
        message_id, _ = await node.submitter.submit_sitrep(make_submission(expires=expires))
    except PolicyRefused:
        return
    [due, *_] = await node.ledger.outbox.due(now, 10, set())
    assert due.message_id == message_id
    admit(open_signed(due.wire, ME_RING), due.recipient, now)
