"""Fuzzing the receipt handler: ingest.Receiver.handle on receipts for a message NL-NCC
really sent (real SQLite ledger), valid, with wrong fields (re-signed), bit-flipped,
changed after signing, reordered, or signed in the message context. Every receipt gives an
outcome label; only a well-formed receipt from a recipient, quoting the exact id and
digest, is applied, and delivery states stay ones a receipt can set."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.errors import MalformedInput
from gateway.protocol import reasons
from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.keys import b64url_encode
from gateway.protocol.receipts import Receipt, ReceiptState, receipt_envelope
from gateway.protocol.signing import DOMAIN_PREFIX, open_signed, seal
from gateway.protocol.types import Mode, Priority, format_time
from gateway.service.directory import Directory
from gateway.service.ingest import Receiver
from gateway.service.ports import OutgoingMessage
from gateway.service.submit import outgoing
from tests.fuzz.common import (
    BE,
    KEYS,
    LU,
    ME,
    NOW,
    RING,
    SITREP_BODY,
    byte_mutation,
    changed_json,
    fuzz_settings,
    peer,
    record,
    shuffle_keys,
)

RECEIPT_STATES = {"delivered", "acknowledged", "rejected"}


@dataclass
class _Clock:
    def now(self) -> datetime:
        return NOW + timedelta(minutes=5)


@dataclass
class Sender:
    """NL-NCC after sending one sitrep to BE-NCCN and LU-HCPN."""

    runner: asyncio.Runner
    ledger: SqliteLedger
    receiver: Receiver
    ours: OutgoingMessage


@pytest.fixture(scope="module")
def sender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sender]:
    """A receiver over a real ledger holding one sitrep sent to BE-NCCN and LU-HCPN."""
    with asyncio.Runner() as runner:
        ledger = SqliteLedger(Path(tmp_path_factory.mktemp("fuzz-receipts")) / "ledger.db")
        runner.run(ledger.open())
        directory = Directory(ME, (peer(BE), peer(LU)))
        receiver = Receiver(me=ME, key=KEYS[ME], ring=lambda: RING, directory=lambda: directory,
                            ledger=ledger, clock=_Clock(), fanout=None,
                            on_receipt_queued=lambda: None)
        ours = outgoing({
            "v": 1, "id": str(uuid.uuid4()), "type": "sitrep", "from": ME, "to": [BE, LU],
            "created": format_time(NOW), "expires": format_time(NOW + timedelta(days=1)),
            "mode": "actual", "tlp": "GREEN", "priority": "routine", "body": SITREP_BODY,
        }, KEYS[ME], (BE, LU))
        runner.run(ledger.outbox.submit(ours, None, NOW))
        try:
            yield Sender(runner, ledger, receiver, ours)
        finally:
            runner.run(ledger.close())


def _receipt(ours: OutgoingMessage, issuer: str, state: str, reason: str | None,
             detail: str | None, by: str | None) -> dict[str, Any]:
    return receipt_envelope(
        receipt_id=uuid.uuid4(), issuer=issuer, sender=ME, message_id=ours.id,
        digest=ours.digest, state=ReceiptState(state), now=NOW + timedelta(minutes=1),
        mode=Mode.ACTUAL, priority=Priority.ROUTINE, reason=reason, detail=detail, by=by)


def _sign_as_message(env: dict[str, Any], issuer: str) -> bytes:
    """A receipt envelope signed in the *message* context (domain separation must refuse)."""
    sig = KEYS[issuer].private.sign(DOMAIN_PREFIX + b"message\n" + canonical_bytes(env))
    return canonical_bytes({"envelope": env, "signature": {
        "alg": "Ed25519", "kid": KEYS[issuer].kid, "value": b64url_encode(sig)}})


@st.composite
def receipt_payload(draw: st.DrawFn, ours: OutgoingMessage) -> tuple[str, str, bytes]:
    """(how it was made, issuer, wire bytes) for one receipt about ``ours`` or about nothing."""
    issuer = draw(st.sampled_from([BE, BE, LU]))
    state = draw(st.sampled_from(sorted(RECEIPT_STATES)))
    reason = draw(st.sampled_from(sorted(reasons.RECEIPTED))) if state == "rejected" else None
    env = _receipt(ours, issuer, state, reason,
                   draw(st.none() | st.text(max_size=600)), draw(st.none() | st.text(max_size=40)))
    kind = draw(st.sampled_from(["valid", "changed", "changed", "bit-flip", "unsigned-change",
                                 "reordered", "message-context", "other-message"]))
    if kind == "changed":
        changed = draw(changed_json(env))
        if not isinstance(changed.get("from"), str):
            changed["from"] = issuer
        try:
            return kind, issuer, seal(changed, KEYS[issuer]).wire
        except (MalformedInput, KeyError, TypeError):
            return "unsignable", issuer, b"{}"
    if kind == "other-message":
        env["body"]["message_id"] = str(uuid.uuid4())
        if draw(st.booleans()):
            env["body"]["message_id"] = ours.id
            env["body"]["message_sha256"] = "0" * 64
        return kind, issuer, seal(env, KEYS[issuer]).wire
    if kind == "message-context":
        return kind, issuer, _sign_as_message(env, issuer)
    wire = seal(env, KEYS[issuer]).wire
    if kind == "bit-flip":
        return kind, issuer, draw(byte_mutation(wire))
    if kind == "unsigned-change":
        obj = json.loads(wire)
        obj["envelope"] = draw(changed_json(env))
        return kind, issuer, json.dumps(obj).encode()
    if kind == "reordered":
        obj = shuffle_keys(json.loads(wire), random.Random(draw(st.integers(0, 2**32))))
        return kind, issuer, json.dumps(obj, indent=draw(st.none() | st.integers(0, 2))).encode()
    return kind, issuer, wire


def _applicable(wire: bytes, ours: OutgoingMessage) -> bool:
    """Whether ``wire`` is a receipt the ledger may apply: verified, schema-valid, for our
    message with its exact digest, from one of its recipients."""
    try:
        verified = open_signed(wire, RING)
        body = Receipt.model_validate(verified.envelope["body"])
    except Exception:  # noqa: BLE001 - any refusal means "not applicable"
        return False
    return (verified.envelope.get("type") == "receipt" and body.message_id == ours.id
            and body.message_sha256 == ours.digest and verified.sender in ours.recipients)


@fuzz_settings(ci=2500)
@given(data=st.data())
def test_every_receipt_gets_an_outcome_and_only_genuine_ones_apply(
    sender: Sender, data: st.DataObject,
) -> None:
    """Receipts, genuine or fuzzed, give a labelled outcome and never raise; applied or
    duplicate only for a verified receipt quoting our message's id and digest; the
    deliveries stay in states a receipt can set."""
    kind, issuer, wire = data.draw(receipt_payload(sender.ours))
    amqp_user = data.draw(st.sampled_from([f"{issuer}@{ME}", f"{issuer}@{ME}", f"{LU}@{ME}",
                                           None]))
    label = sender.runner.run(sender.receiver.handle(wire, amqp_user))
    assert label.startswith(("receipt_", "security_", "new_")), label
    if label.startswith("security_"):
        assert label.removeprefix("security_") in reasons.ALL
    if label in ("receipt_applied", "receipt_duplicate"):
        assert _applicable(wire, sender.ours), f"{kind} receipt was applied"
    if kind in ("valid", "reordered") and amqp_user == f"{issuer}@{ME}":
        assert label in ("receipt_applied", "receipt_duplicate"), label
    if kind == "message-context":
        assert label == "security_bad_signature", label
    view = sender.runner.run(sender.ledger.outbox.get(sender.ours.id))
    assert view is not None
    for recipient in view.recipients:
        assert recipient.state in RECEIPT_STATES | {"queued"}, recipient
    record("receipts", f"{kind}:{label}")
