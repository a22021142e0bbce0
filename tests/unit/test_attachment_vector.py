"""The attachments test vector of docs/PROTOCOL.md §19.10, recomputed from the text.

The file is rebuilt from the formula the document states (byte i is i mod 251), the
message and the first chunk from the envelopes it shows (the chunk's ``DATA``
placeholder filled in), and every hash, length, signature and prefix the section quotes
is compared with what the code computes, the signatures also with the independent RFC
8032 signer of test_protocol_vector. Then NL-NCC's side: both wires open with the pinned
key, the message is admitted, each chunk fits it, and the three chunks reassemble into
the declared SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime
from typing import Any

import pytest

from gateway.protocol.attachments import (
    CHUNK_SIZE,
    Assembly,
    ChunkBody,
    Outcome,
    chunk_body,
    chunk_envelope,
    chunk_problem,
    chunks_of,
    joined_sha256,
    plan,
)
from gateway.protocol.canonical import canonical_bytes, sha256_hex
from gateway.protocol.envelope import Envelope
from gateway.protocol.keys import KeyRing, PinnedKey, b64url_encode
from gateway.protocol.messages import SitrepEnvelope, admit
from gateway.protocol.signing import open_signed, seal, signing_input
from gateway.protocol.sitrep import sitrep_json
from tests.unit.test_protocol_vector import (
    DOC_PATH,
    RFC8032_TEST1_SECRET,
    SENDER_KEY,
    reference_sign,
)

RECEIVER = "NL-NCC"


@pytest.fixture(scope="module")
def section() -> str:
    """The text of §19.10."""
    doc = DOC_PATH.read_text(encoding="utf-8")
    start = doc.index("\n### 19.10 Test vector")
    end = doc.find("\n## ", start + 1)
    return doc[start:] if end < 0 else doc[start:end]


def _halves(section: str) -> tuple[str, str]:
    message, _, chunk = section.partition("**The first chunk**")
    assert chunk, "§19.10 has no first chunk"
    return message, chunk


def _cells(text: str, first: str) -> list[str]:
    """The cells of the one table row whose first cell is ``first``."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {first} |")]
    assert len(rows) == 1, f"expected one row {first!r}, found {len(rows)}"
    return [cell.strip() for cell in rows[0].strip().strip("|").split("|")]


def _quoted(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _example(text: str, name: str) -> dict[str, Any]:
    match = re.search(rf"<!-- example: {name} -->\n```json\n(.+?)\n```", text, re.S)
    assert match is not None, f"§19.10 has no example {name}"
    value: dict[str, Any] = json.loads(match.group(1))
    return value


def _canonical_line(text: str) -> str:
    blocks = re.findall(r"\n```\n(\{.+?\})\n```", text, re.S)
    assert len(blocks) == 1, "expected one canonical envelope"
    return blocks[0]


def _file(section: str) -> bytes:
    assert "byte `i` (0-based) is `i mod 251`" in section
    size = re.search(r"\*\*The file\*\* has (\d+) bytes", section)
    assert size is not None
    return bytes(i % 251 for i in range(int(size.group(1))))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _message(section: str) -> dict[str, Any]:
    """The message envelope as a node builds it from the example's content."""
    shown = _example(_halves(section)[0], "attachment-message")
    model = SitrepEnvelope.model_validate(shown)
    wire = model.model_dump(mode="json", by_alias=True, exclude={"body"}, exclude_none=True)
    wire["body"] = sitrep_json(model.body)
    assert wire == shown
    return wire


def _chunk(section: str, message: dict[str, Any], index: int, chunk_id: str) -> dict[str, Any]:
    data = _file(section)
    part = chunks_of(data)[index][1]
    body = chunk_body(message["id"], hashlib.sha256(data).hexdigest(), index, part)
    return chunk_envelope(message, body, chunk_id=chunk_id, created=_time(message["created"]))


def _ring() -> KeyRing:
    return KeyRing.build([("BE-NCCN", PinnedKey(kid="BE-NCCN.test", key=SENDER_KEY.public()))])


def test_the_file_and_its_chunks_are_as_stated(section: str) -> None:
    """The file's SHA-256, and each chunk's span, length, SHA-256 and base64 length/start."""
    data = _file(section)
    assert len(data) == 400000
    assert f"Its SHA-256 is\n`{hashlib.sha256(data).hexdigest()}`" in section
    p = plan(len(data))
    assert p.count == 3
    for index, part in chunks_of(data):
        cells = _cells(section, str(index))
        start, stop = p.span(index)
        text = base64.b64encode(part).decode()
        assert cells[1] == f"{start} \u2013 {stop - 1}"
        assert int(cells[2]) == len(part) == p.length(index)
        assert _quoted(cells[3]) == [hashlib.sha256(part).hexdigest()]
        assert int(cells[4]) == len(text)
        assert text.startswith(_quoted(cells[5])[0])
    assert CHUNK_SIZE == 196608


def test_the_message_is_signed_as_stated(section: str) -> None:
    """Canonical envelope, signing input, digest, signature and wire of the message."""
    text = _halves(section)[0]
    envelope = _message(section)
    canon = canonical_bytes(envelope)
    assert canon.decode() == _canonical_line(text)
    assert f"Canonical envelope — {len(canon)} bytes of UTF-8" in text
    sealed = seal(envelope, SENDER_KEY)
    signature = json.loads(sealed.wire)["signature"]["value"]
    prefix = signing_input(b"", b"message")
    assert _quoted(_cells(text, "SHA-256 of the signing input")[1]) == [
        sha256_hex(prefix + canon)]
    assert _quoted(_cells(text, "digest = SHA-256(JCS(envelope))")[1]) == [sealed.digest]
    assert _quoted(_cells(text, "signature (base64url)")[1]) == [signature]
    assert _cells(text, "wire bytes (JCS of the `SignedMessage`)")[1] == (
        f"{len(sealed.wire)} bytes, SHA-256 `{sha256_hex(sealed.wire)}`")
    _, independent = reference_sign(bytes.fromhex(RFC8032_TEST1_SECRET), prefix + canon)
    assert b64url_encode(independent) == signature
    assert f"`message_sha256` = `{sealed.digest}`" in section


def test_the_first_chunk_is_signed_as_stated(section: str) -> None:
    """The chunk example (DATA filled in) is built by the code and signs as stated."""
    text = _halves(section)[1]
    message = _message(section)
    shown = _example(text, "attachment-chunk")
    envelope = _chunk(section, message, 0, shown["id"])
    data = envelope["body"]["data"]
    assert shown["body"]["data"] == "DATA"
    assert {**shown, "body": {**shown["body"], "data": data}} == envelope
    canon = canonical_bytes(envelope)
    assert canon == _canonical_line(text).replace("DATA", data).encode()
    assert f"canonical envelope ({len(canon)} bytes)" in text
    sealed = seal(envelope, SENDER_KEY)
    signature = json.loads(sealed.wire)["signature"]["value"]
    prefix = signing_input(b"", b"message")
    assert _quoted(_cells(text, "signing input")[1])[0] == prefix.hex()
    assert _quoted(_cells(text, "SHA-256 of the signing input")[1]) == [
        sha256_hex(prefix + canon)]
    assert _quoted(_cells(text, "digest = SHA-256(JCS(envelope))")[1]) == [sealed.digest]
    assert _quoted(_cells(text, "signature (base64url)")[1]) == [signature]
    assert _cells(text, "wire bytes (JCS of the `SignedMessage`)")[1] == (
        f"{len(sealed.wire)} bytes, SHA-256 `{sha256_hex(sealed.wire)}`")
    _, independent = reference_sign(bytes.fromhex(RFC8032_TEST1_SECRET), prefix + canon)
    assert b64url_encode(independent) == signature


def test_the_receiver_admits_the_message_and_reassembles_the_file(section: str) -> None:
    """NL-NCC admits the message; its three chunks open, fit it and verify as one file."""
    message = _message(section)
    ring = _ring()
    held = re.search(r"holds the message from `([^`]+)`", section)
    assert held is not None
    now = _time(held.group(1))
    verified = open_signed(seal(message, SENDER_KEY).wire, ring)
    admitted = admit(verified, RECEIVER, now, attachments=True)
    assert isinstance(admitted.envelope, SitrepEnvelope)
    refs = admitted.envelope.attachments
    assert refs is not None
    assembly = Assembly(refs[0])
    ids = [_example(_halves(section)[1], "attachment-chunk")["id"],
           *re.findall(r"ids\n`([^`]+)` and `([^`]+)`", section)[0]]
    parts = []
    for index, chunk_id in enumerate(ids):
        opened = open_signed(seal(_chunk(section, message, index, chunk_id), SENDER_KEY).wire,
                             ring)
        header = Envelope.model_validate(opened.envelope)
        body = ChunkBody.model_validate(opened.envelope["body"])
        assert chunk_problem(header, body, admitted.envelope) is None
        step = assembly.add(body.index, body.payload())
        assert step.outcome is Outcome.ACCEPTED
        assembly = step.assembly
        parts.append(body.payload())
    assert assembly.complete
    assert assembly.verify(joined_sha256(parts)).assembly.verified
    assert b"".join(parts) == _file(section)
