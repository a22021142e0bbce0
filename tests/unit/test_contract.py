"""docs/PROTOCOL.md and schemas/ say the same thing as the code, and need nothing else.

A foreign team builds from the document and the schemas alone: so the document cites no
file of the implementation or its tests, its examples validate against the schemas and
the models, and the schemas refuse what the prose refuses.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from gateway.protocol import reasons
from gateway.protocol.card import (
    Card,
    CardKey,
    Contact,
    Credentials,
    Inbox,
    open_card,
    sign_card,
)
from gateway.protocol.keys import SigningKey, fingerprint, public_key_text
from gateway.protocol.messages import CommCheckEnvelope, SitrepEnvelope
from gateway.protocol.receipts import Receipt
from gateway.protocol.tlsanchor import TlsAnchor

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
#: RFC 8032 section 7.1 TEST 3, the key of the §15.1 example card.
TEST3 = bytes.fromhex("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7")


def _schema(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def _example(name: str) -> str:
    match = re.search(rf"<!-- example: {name} -->\n```json\n(.+?)\n```", DOC, re.S)
    assert match is not None, f"docs/PROTOCOL.md has no example {name}"
    return match.group(1)


def test_the_document_cites_no_file_of_the_implementation() -> None:
    """Everything the contract refers to is in docs/ or schemas/."""
    cited = set(re.findall(r"`((?:tests|gateway)/[^`]+)`", DOC))
    assert cited == set(), cited
    for path in re.findall(r"`((?:docs|schemas)/[^`*]+\.(?:json|md))`", DOC):
        assert (ROOT / path).exists(), path


def test_the_example_card_is_what_a_node_signs_and_validates() -> None:
    """§15.1's card: the schema accepts it, it opens (self-signature of RFC 8032 TEST 3),
    a node signs exactly these bytes for these inputs, and the fingerprint in the text is
    its key's."""
    text = _example("identity-card")
    _schema("identity-card").validate(json.loads(text))
    card = open_card(text.encode())
    key = SigningKey(kid="FR-COGIC.test", private=Ed25519PrivateKey.from_private_bytes(TEST3))
    pin = hashlib.sha256(b"example broker SubjectPublicKeyInfo").hexdigest()
    again = Card(centre="FR-COGIC", name="COGIC", country="FR",
                 keys=(CardKey(kid=key.kid, public_key=public_key_text(key.public())),),
                 inbox=Inbox(host="broker.cogic.example", port=5671, vhost="crisisgw-fr-cogic",
                             tls=TlsAnchor(spki_sha256=(pin,))),
                 contacts=(Contact(role="duty officer", phone="+33 1 00 00 00 00"),),
                 issued=datetime(2026, 11, 27, 10, 0, tzinfo=UTC))
    assert card == again
    assert sign_card(again, key).decode() == text
    assert f"`{fingerprint(key.public())}` for the example below" in DOC


def test_the_example_credentials_validate() -> None:
    """§15.2's credentials: the schema and the model accept them."""
    raw = json.loads(_example("credentials"))
    _schema("credentials").validate(raw)
    assert Credentials.model_validate(raw).user == "BE-NCCN@FR-COGIC"


@pytest.mark.parametrize("change", [
    {"user": "NL-NCC@FR-COGIC"}, {"user": "BE-NCCN"}, {"url": "http://x/"},
    {"client_certificate": "PEM"}, {"extra": 1},
])
def test_credentials_that_break_the_rules_are_refused(change: dict[str, Any]) -> None:
    """A user that is not <PEER>@<ISSUER>, a non-AMQP URL, half a client certificate or an
    unknown member: the model refuses them (and the schema where it can say so)."""
    raw = {**json.loads(_example("credentials")), **change}
    with pytest.raises(ValidationError):
        Credentials.model_validate(raw)
    if set(change) & {"url", "extra"} or change.get("user") == "BE-NCCN":
        assert not _schema("credentials").is_valid(raw)


def _sitrep_envelope(**changes: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "v": 1, "id": "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "type": "sitrep",
        "from": "BE-NCCN", "to": ["NL-NCC"], "created": "2026-11-27T10:00:00.000Z",
        "expires": "2026-11-28T10:00:00.000Z", "mode": "actual", "tlp": "GREEN",
        "priority": "routine",
        "body": {"incident": {"id": "BE-2026-0001", "title": "t"}, "report_number": 1,
                 "severity": "severe", "summary": {"en": "x"}}}
    env.update(changes)
    return env


@pytest.mark.parametrize(("changes", "valid"), [
    ({}, True),
    ({"to": ["NL-NCC", "NL-NCC"]}, False),
    ({"releasable": []}, True),
    ({"releasable": None}, True),
    ({"releasable": ["eu", "eu"]}, False),
])
def test_envelope_rules_are_in_the_schema_and_the_model(changes: dict[str, Any],
                                                        valid: bool) -> None:
    """Distinct recipients and release groups; [] and null mean no release group."""
    env = _sitrep_envelope(**changes)
    assert _schema("sitrep-envelope").is_valid(env) is valid
    if valid:
        SitrepEnvelope.model_validate(env)
    else:
        with pytest.raises(ValidationError):
            SitrepEnvelope.model_validate(env)


@pytest.mark.parametrize(("body", "valid"), [
    ({"state": "delivered"}, True),
    ({"state": "rejected", "reason": "stale"}, True),
    ({"state": "rejected"}, False),
    ({"state": "rejected", "reason": "made_up"}, False),
    ({"state": "rejected", "reason": "bad_signature"}, False),  # security codes are not sent
    ({"state": "delivered", "reason": "stale"}, False),
])
def test_the_receipt_reason_rule_is_in_the_schema(body: dict[str, Any], valid: bool) -> None:
    """§7.2: reason required for rejected (an answered code of §7.5), absent otherwise."""
    receipt = {"message_id": "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
               "message_sha256": "0" * 64, "at": "2026-11-27T10:00:00.000Z", **body}
    assert _schema("receipt").is_valid(receipt) is valid
    if valid:
        Receipt.model_validate(receipt)
    else:
        with pytest.raises(ValidationError):
            Receipt.model_validate(receipt)


@pytest.mark.parametrize(("mode", "valid"), [("test", True), ("actual", False),
                                             ("exercise", False)])
def test_a_communication_test_is_in_test_mode_in_the_schema(mode: str, valid: bool) -> None:
    """§3.3b: a commcheck envelope's mode is "test"."""
    env = _sitrep_envelope(type="commcheck", mode=mode, body={"requested_by": "schedule"})
    assert _schema("commcheck-envelope").is_valid(env) is valid
    if valid:
        CommCheckEnvelope.model_validate(env)
    else:
        with pytest.raises(ValidationError):
            CommCheckEnvelope.model_validate(env)


def test_alert_strings_must_be_xml_characters_in_the_schema() -> None:
    """§3.3a: every string of an alert consists of XML 1.0 characters."""
    from gateway.formats.cap import parse_cap  # noqa: PLC0415
    from gateway.protocol.alert import alert_json  # noqa: PLC0415

    alert = alert_json(parse_cap((ROOT / "tests/assets/cap/oasis-appendix-a1.xml").read_bytes()))
    validator = _schema("alert")
    assert validator.is_valid(alert)
    for bad in ("\x01", "\x0b", "\ufffe"):
        broken = {**alert, "note": f"a{bad}b"}
        assert not validator.is_valid(broken), repr(bad)
    assert validator.is_valid({**alert, "note": "tab\tnew line\ncr\r é €"})


def test_the_reason_code_schema_lists_the_documented_codes() -> None:
    """schemas/reason-code.schema.json: every code of §7.5, with its outcome."""
    schema = json.loads((ROOT / "schemas" / "reason-code.schema.json").read_text())
    listed = {c["const"]: c["x-outcome"] for c in schema["oneOf"]}
    assert listed == {c: "answered" if c in reasons.RECEIPTED else "security"
                      for c in reasons.ALL}
    for code in listed:
        assert f"| `{code}` |" in DOC
