"""The pure core of attachments (docs/PROTOCOL.md §19): references, file names, chunks,
reassembly, bounds and the per-peer ledger."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.protocol import reasons
from gateway.protocol.attachments import (
    CHUNK_SIZE,
    MAX_ATTACHMENTS,
    MAX_CHUNK_CHARS,
    MIB,
    NAME_PATTERN,
    ORPHAN_HOLD,
    RESEND_CAP,
    RESEND_FIRST,
    Assembly,
    AttachmentRef,
    ChunkBody,
    InFlight,
    Limits,
    Outcome,
    Plan,
    admit_refs,
    chunk_body,
    chunk_envelope,
    chunk_problem,
    chunks_of,
    hostile_name,
    joined_sha256,
    name_problem,
    orphan_expired,
    plan,
    resend_delay,
    to_reserve,
    unanswered_expired,
    validate_name,
)
from gateway.protocol.envelope import Envelope
from gateway.protocol.messages import SitrepEnvelope
from gateway.protocol.receipts import Receipt, ReceiptEnvelope

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_ID = "3c6d2f0a-9b1e-4f7a-8d2c-5e4b3a291807"
CHUNK_ID = "9e8d7c6b-5a49-4382-b716-f5e4d3c2b1a0"
CREATED = datetime(2026, 11, 27, 10, 5, tzinfo=UTC)


def _data(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def _ref(data: bytes = b"hello", **changes: Any) -> dict[str, Any]:
    ref: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                           "media_type": "text/plain", "name": "hello.txt"}
    ref.update(changes)
    return ref


def _message(*refs: dict[str, Any], **changes: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "v": 1, "id": MESSAGE_ID, "type": "sitrep", "from": "BE-NCCN",
        "to": ["NL-NCC", "LU-HCPN"], "created": "2026-11-27T10:05:00.000Z",
        "expires": "2026-11-28T10:05:00.000Z", "mode": "actual", "tlp": "GREEN",
        "priority": "routine", "attachments": list(refs) or [_ref()],
        "body": {"incident": {"id": "BE-2026-0001", "title": "t"}, "report_number": 1,
                 "severity": "severe", "summary": {"en": "x"}}}
    env.update(changes)
    return env


def _schema(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8")))


# -- file names ------------------------------------------------------------------------

#: A Persian name with a zero-width non-joiner (U+200C) inside, as such names often have.
PERSIAN = "\u0646\u0642\u0634\u0647\u200c\u0647\u0627.pdf"
GOOD_NAMES = ["report.pdf", "relevés-Liège.bin", "a", "x" * 255, "Ωμέγα.txt",
              "clip \U0001f4ce.png", "a b.txt", ".hidden", "file.", PERSIAN]
HOSTILE_NAMES = ["a/b", "../etc/passwd", "..\\boot.ini", "/abs", "C:\\x", "x" * 300 + "/",
                 ".", "..", "...", ". .", "a\x00b", "line\nbreak", "del\x7f", "c1\x85",
                 "report\u202efdp.exe", "iso\u2066late", "lrm\u200e", "bom\ufeff",
                 "sep\u2028x", "alm\u061c"]
PLAIN_BAD_NAMES = ["", "x" * 256, "e\u0301.txt", " lead", "trail ", "\u00a0nbsp",
                   "ideo\u3000"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_valid_names_are_taken(name: str) -> None:
    """Names with non-ASCII letters, inner spaces, dots and astral characters are data."""
    assert name_problem(name) is None
    assert validate_name(name) == name


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_paths_dots_and_hiding_characters_are_refused_as_hostile(name: str) -> None:
    """A separator, . or .., dots only, or a control/bidi character: refused, hostile."""
    problem = name_problem(name)
    assert problem is not None
    assert problem.hostile
    with pytest.raises(ValueError, match=re.escape(problem.detail)):
        validate_name(name)


@pytest.mark.parametrize("name", PLAIN_BAD_NAMES)
def test_length_nfc_and_edge_spaces_are_refused_but_not_hostile(name: str) -> None:
    """Empty, over 255 characters, not NFC, or white space at an edge: refused, not hostile."""
    problem = name_problem(name)
    assert problem is not None
    assert not problem.hostile


def test_a_long_path_is_reported_as_a_path() -> None:
    """Hostile problems come first: a 300-character path is named a path, not too long."""
    problem = name_problem("a/" * 150)
    assert problem is not None
    assert "not a path" in problem.detail


@settings(max_examples=300)
@given(st.text(min_size=0, max_size=260))
def test_the_schema_pattern_says_what_the_model_says(name: str) -> None:
    """NAME_PATTERN (with the schema's length bounds) and NFC together are the model's rule."""
    schema_ok = 1 <= len(name) <= 255 and re.fullmatch(NAME_PATTERN, name) is not None
    assert (name_problem(name) is None) == (schema_ok and unicodedata.is_normalized("NFC", name))


@pytest.mark.parametrize(("name", "valid"), [
    ("report.pdf", True), ("relevés-Liège.bin", True), ("../x", False), ("a\\b", False),
    ("..", False), ("a\u202eb", False), ("a\x00", False), (" a", False), ("x" * 256, False),
    ("e\u0301", True),  # NFC is checked on top of the schema
])
def test_the_published_schema_refuses_what_the_pattern_refuses(name: str, valid: bool) -> None:
    """schemas/sitrep-envelope.schema.json carries the name rules (all but NFC)."""
    assert _schema("sitrep-envelope").is_valid(_message(_ref(name=name))) is valid


def test_hostile_name_reports_the_reference_for_the_security_event() -> None:
    """hostile_name finds the hostile name in a raw envelope; NFD or absent: nothing."""
    raw = _message(_ref(), _ref(b"x", name="../../etc/passwd"))
    detail = hostile_name(raw)
    assert detail is not None
    assert detail.startswith("attachments.1.name '../../etc/passwd'")
    assert hostile_name(_message(_ref(name="e\u0301.txt"))) is None
    assert hostile_name({"attachments": "junk"}) is None
    assert hostile_name({"attachments": [3, {"name": 4}]}) is None
    assert hostile_name({}) is None


# -- references and the envelope member ------------------------------------------------


def test_a_reference_parses_with_an_optional_description() -> None:
    """sha256, size, media type, name, and a description per language."""
    ref = AttachmentRef.model_validate(_ref(description={"fr": "Relevés", "en": "Readings"}))
    assert (ref.size, ref.media_type, ref.description) == (5, "text/plain",
                                                           {"fr": "Relevés", "en": "Readings"})


@pytest.mark.parametrize("changes", [
    {"size": 0}, {"size": True}, {"size": 1.0}, {"size": "5"}, {"size": 2**53},
    {"sha256": "A" * 64}, {"sha256": "0" * 63},
    {"media_type": "Text/Plain"}, {"media_type": "text/plain; charset=utf-8"},
    {"media_type": "textplain"}, {"media_type": "text/" + "a" * 128},
    {"name": "a/b"}, {"name": 7},
    {"description": {}}, {"description": {"EN": "x"}}, {"description": {"en": ""}},
    {"description": {"en": "x" * 2001}},
    {"extra": 1},
])
def test_references_that_break_a_rule_are_refused(changes: dict[str, Any]) -> None:
    """Each member's constraint of §19.2, and no unknown member."""
    with pytest.raises(ValidationError):
        AttachmentRef.model_validate(_ref(**changes))


def test_a_sitrep_envelope_carries_attachments() -> None:
    """The member is part of every typed envelope answered with receipts."""
    env = SitrepEnvelope.model_validate(_message(_ref(), _ref(b"other")))
    assert env.attachments is not None
    assert [a.size for a in env.attachments] == [5, 5]
    dumped = env.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["attachments"] == [_ref(), _ref(b"other")]


def test_no_attachments_means_no_member_on_the_wire() -> None:
    """Absent or null = none, and a dump without attachments has no member (old bytes)."""
    for env in (_message(attachments=None), {k: v for k, v in _message().items()
                                             if k != "attachments"}):
        model = SitrepEnvelope.model_validate(env)
        assert model.attachments is None
        assert "attachments" not in model.model_dump(by_alias=True, exclude_none=True)


@pytest.mark.parametrize("refs", [[], [_ref()] * 2, [_ref(b"%d" % i) for i in range(33)]])
def test_empty_duplicate_or_too_many_references_are_refused(refs: list[dict[str, Any]]) -> None:
    """1..32 references, no two with the same sha256."""
    with pytest.raises(ValidationError):
        SitrepEnvelope.model_validate(_message(attachments=refs))


def test_thirty_two_references_are_taken() -> None:
    """MAX_ATTACHMENTS references with distinct hashes fit one envelope."""
    refs = [_ref(b"%d" % i) for i in range(MAX_ATTACHMENTS)]
    env = SitrepEnvelope.model_validate(_message(attachments=refs))
    assert env.attachments is not None
    assert len(env.attachments) == 32


def test_receipts_and_chunks_carry_no_attachments() -> None:
    """Receipts and chunks carry no attachments: model refuses, receipt schema lacks it."""
    body = {"message_id": MESSAGE_ID, "message_sha256": "0" * 64, "state": "delivered",
            "at": "2026-11-27T10:05:00.000Z"}
    receipt = _message(type="receipt", to=["BE-NCCN"], **{"from": "NL-NCC"}, body=body)
    with pytest.raises(ValidationError, match="a receipt carries no attachments"):
        ReceiptEnvelope.model_validate(receipt)
    with pytest.raises(ValidationError, match="a chunk carries no attachments"):
        Envelope.model_validate(_message(type="chunk"))
    schema = json.loads((ROOT / "schemas" / "receipt-envelope.schema.json").read_text())
    assert "attachments" not in schema["properties"]
    assert "attachments" in json.loads(
        (ROOT / "schemas" / "alert-envelope.schema.json").read_text())["properties"]


# -- chunk bodies ----------------------------------------------------------------------


def _body(data: str, **changes: Any) -> dict[str, Any]:
    return {"message_id": MESSAGE_ID, "sha256": "0" * 64, "index": 0, "data": data, **changes}


def test_a_chunk_body_decodes_to_its_bytes() -> None:
    """payload() gives back the bytes; the largest chunk is exactly CHUNK_SIZE bytes."""
    part = _data(CHUNK_SIZE)
    text = base64.b64encode(part).decode()
    assert len(text) == MAX_CHUNK_CHARS == 262144
    assert ChunkBody.model_validate(_body(text)).payload() == part


@pytest.mark.parametrize("data", [
    "", "AA", "AB==", "AAA\n", "AA==\n", "-_8=", "AA=A", "====", " AAA",
    base64.b64encode(_data(CHUNK_SIZE + 3)).decode(),
])
def test_data_that_is_not_canonical_padded_base64_is_refused(data: str) -> None:
    """Standard alphabet, padding, no white space, zero unused bits, 1..CHUNK_SIZE bytes."""
    with pytest.raises(ValidationError):
        ChunkBody.model_validate(_body(data))


@pytest.mark.parametrize("changes", [{"index": -1}, {"index": True}, {"index": 1.0},
                                     {"message_id": "X"}, {"sha256": "g" * 64}, {"extra": 1}])
def test_chunk_body_members_are_checked(changes: dict[str, Any]) -> None:
    """index is a non-negative JSON integer; ids and hashes have their patterns; closed."""
    with pytest.raises(ValidationError):
        ChunkBody.model_validate(_body("AAAA", **changes))


def test_the_chunk_schema_matches_the_model() -> None:
    """schemas/chunk.schema.json takes a valid body and refuses bad base64 and members."""
    schema = _schema("chunk")
    assert schema.is_valid(_body("AAECAw=="))
    for bad in (_body("AA"), _body("AAECAw==", index=-1), _body("AAAA", extra=1)):
        assert not schema.is_valid(bad)


# -- plan and chunks -------------------------------------------------------------------


@pytest.mark.parametrize(("size", "count", "last"), [
    (1, 1, 1), (CHUNK_SIZE - 1, 1, CHUNK_SIZE - 1), (CHUNK_SIZE, 1, CHUNK_SIZE),
    (CHUNK_SIZE + 1, 2, 1), (3 * CHUNK_SIZE + 7, 4, 7),
])
def test_plan_and_chunks_of_round_trip(size: int, count: int, last: int) -> None:
    """count = ceil(size / CHUNK_SIZE); full chunks but the last; joined = the data."""
    data = _data(size)
    p = plan(size)
    assert p.count == count
    assert p.length(count - 1) == last
    chunks = chunks_of(data)
    assert [i for i, _ in chunks] == list(range(count))
    assert all(len(part) == CHUNK_SIZE for _, part in chunks[:-1])
    assert len(chunks[-1][1]) == last
    assert b"".join(part for _, part in chunks) == data
    assert [data[a:b] for a, b in p.spans] == [part for _, part in chunks]


@given(st.integers(min_value=1, max_value=5 * CHUNK_SIZE))
def test_spans_partition_the_file(size: int) -> None:
    """Spans are contiguous from 0 to size, each index * CHUNK_SIZE from the start."""
    p = Plan(size)
    assert p.spans[0][0] == 0
    assert p.spans[-1][1] == size
    for i, (start, stop) in enumerate(p.spans):
        assert start == i * CHUNK_SIZE
        assert 1 <= stop - start <= CHUNK_SIZE
        if i + 1 < p.count:
            assert p.spans[i + 1][0] == stop


def test_plan_refuses_empty_files_and_indexes_past_the_end() -> None:
    """An attachment has at least one byte; span() knows only its own indexes."""
    with pytest.raises(ValueError, match="at least one byte"):
        plan(0)
    with pytest.raises(ValueError, match="at least one byte"):
        chunks_of(b"")
    with pytest.raises(IndexError):
        plan(10).span(1)
    with pytest.raises(IndexError):
        plan(10).span(-1)


def test_chunk_envelope_copies_the_message() -> None:
    """A chunk copies from, to, expires, mode, tlp, priority; own id and time; no more."""
    message = _message(_ref(b"abc"), tlp="AMBER", priority="flash", incident="BE-1",
                       releasable=["eu"])
    body = chunk_body(MESSAGE_ID, hashlib.sha256(b"abc").hexdigest(), 0, b"abc")
    env = chunk_envelope(message, body, chunk_id=CHUNK_ID, created=CREATED)
    assert env == {"v": 1, "id": CHUNK_ID, "type": "chunk", "from": "BE-NCCN",
                   "to": ["NL-NCC", "LU-HCPN"], "created": "2026-11-27T10:05:00.000Z",
                   "expires": "2026-11-28T10:05:00.000Z", "mode": "actual", "tlp": "AMBER",
                   "priority": "flash", "body": body}
    header = Envelope.model_validate(env)
    assert chunk_problem(header, ChunkBody.model_validate(body),
                         Envelope.model_validate(message)) is None


def test_chunk_envelope_refuses_a_file_its_message_does_not_list() -> None:
    """The sender cannot build a chunk for another message or an unlisted file."""
    message = _message(_ref(b"abc"))
    with pytest.raises(ValueError, match="attachment of its message"):
        chunk_envelope(message, chunk_body(MESSAGE_ID, "1" * 64, 0, b"abc"),
                       chunk_id=CHUNK_ID, created=CREATED)
    other = chunk_body(CHUNK_ID, hashlib.sha256(b"abc").hexdigest(), 0, b"abc")
    with pytest.raises(ValueError, match="attachment of its message"):
        chunk_envelope(message, other, chunk_id=CHUNK_ID, created=CREATED)


# -- chunk against its message ---------------------------------------------------------


def _chunk_and_message(**chunk_changes: Any) -> tuple[Envelope, ChunkBody, Envelope]:
    message = _message(_ref(b"abc"))
    body = chunk_body(MESSAGE_ID, hashlib.sha256(b"abc").hexdigest(), 0, b"abc")
    env = {**chunk_envelope(message, body, chunk_id=CHUNK_ID, created=CREATED), **chunk_changes}
    return (Envelope.model_validate(env), ChunkBody.model_validate(env["body"]),
            Envelope.model_validate(message))


def test_a_chunk_of_an_unlisted_file_is_unreferenced() -> None:
    """The message does not list the chunk's sha256: attachment_unreferenced."""
    body = {"message_id": MESSAGE_ID, "sha256": "1" * 64, "index": 0, "data": "YWJj"}
    chunk, _, message = _chunk_and_message(body=body)
    refusal = chunk_problem(chunk, ChunkBody.model_validate(body), message)
    assert refusal is not None
    assert refusal.reason == reasons.ATTACHMENT_UNREFERENCED


@pytest.mark.parametrize(("changes", "field"), [
    ({"tlp": "RED"}, "tlp"), ({"mode": "exercise"}, "mode"), ({"priority": "flash"}, "priority"),
    ({"expires": "2026-11-28T10:05:00.001Z"}, "expires"), ({"to": ["NL-NCC"]}, "to"),
    ({"to": ["LU-HCPN", "NL-NCC"]}, "to"),
])
def test_a_chunk_whose_envelope_is_not_its_message_is_invalid(changes: dict[str, Any],
                                                              field: str) -> None:
    """to (same order), expires, mode, tlp and priority are the message's: chunk_invalid."""
    refusal = chunk_problem(*_chunk_and_message(**changes))
    assert refusal is not None
    assert refusal.reason == reasons.CHUNK_INVALID
    assert field in refusal.detail


@pytest.mark.parametrize("changes", [{"incident": "BE-1"}, {"releasable": ["eu"]}])
def test_a_chunk_has_no_incident_or_release_marking(changes: dict[str, Any]) -> None:
    """incident and releasable are absent from a chunk: chunk_invalid."""
    refusal = chunk_problem(*_chunk_and_message(**changes))
    assert refusal is not None
    assert refusal.reason == reasons.CHUNK_INVALID


def test_chunk_problem_needs_the_named_message() -> None:
    """Comparing a chunk with another message (or sender) is a caller's error."""
    chunk, body, _ = _chunk_and_message()
    stranger = Envelope.model_validate(_message(_ref(b"abc"), id=CHUNK_ID))
    with pytest.raises(ValueError, match="not the message"):
        chunk_problem(chunk, body, stranger)


# -- assembly --------------------------------------------------------------------------


def _assembly(size: int) -> tuple[Assembly, bytes]:
    data = _data(size)
    ref = AttachmentRef.model_validate(_ref(data, name="gauges.bin"))
    return Assembly(ref), data


def test_chunks_in_any_order_complete_and_verify() -> None:
    """Accepted out of order; complete when every index is held; verified by its hash."""
    assembly, data = _assembly(3 * CHUNK_SIZE + 7)
    chunks = chunks_of(data)
    for index, part in reversed(chunks):
        assert not assembly.complete
        step = assembly.add(index, part)
        assert step.outcome is Outcome.ACCEPTED
        assert step.refusal is None
        assembly = step.assembly
    assert assembly.complete
    assert assembly.missing == ()
    assert assembly.held_bytes == len(data)
    step = assembly.verify(joined_sha256(part for _, part in chunks))
    assert step.outcome is Outcome.ACCEPTED
    assert step.assembly.verified


def test_the_same_bytes_again_are_a_duplicate() -> None:
    """A resend or redelivery of a held chunk is ignored; the state does not change."""
    assembly, data = _assembly(CHUNK_SIZE + 1)
    assembly = assembly.add(1, data[CHUNK_SIZE:]).assembly
    step = assembly.add(1, data[CHUNK_SIZE:])
    assert step.outcome is Outcome.DUPLICATE
    assert step.assembly == assembly
    assert assembly.missing == (0,)


@pytest.mark.parametrize("index", [2, 3, 10**6, -1])
def test_an_index_past_the_declared_size_is_refused(index: int) -> None:
    """Two chunks declared: index 2 and beyond (or below 0) is chunk_invalid."""
    assembly, _ = _assembly(CHUNK_SIZE + 1)
    step = assembly.add(index, b"x")
    assert step.outcome is Outcome.REFUSED
    assert step.refusal is not None
    assert step.refusal.reason == reasons.CHUNK_INVALID
    assert step.assembly == assembly


@pytest.mark.parametrize(("index", "length"), [(0, CHUNK_SIZE - 1), (0, 1), (1, 2), (1, 0)])
def test_a_chunk_of_the_wrong_length_is_refused(index: int, length: int) -> None:
    """A full chunk must be CHUNK_SIZE bytes and the last the rest: else chunk_invalid."""
    assembly, _ = _assembly(CHUNK_SIZE + 1)
    step = assembly.add(index, b"\x00" * length)
    assert step.outcome is Outcome.REFUSED
    assert step.refusal is not None
    assert step.refusal.reason == reasons.CHUNK_INVALID
    assert "bytes, not" in step.refusal.detail


def test_other_bytes_for_a_held_index_are_refused_and_the_held_kept() -> None:
    """Conflicting bytes for an index already held: chunk_invalid; the first stays."""
    assembly, data = _assembly(10)
    assembly = assembly.add(0, data).assembly
    step = assembly.add(0, bytes(reversed(data)))
    assert step.outcome is Outcome.REFUSED
    assert step.refusal is not None
    assert step.refusal.reason == reasons.CHUNK_INVALID
    assert step.assembly.parts == assembly.parts


def test_a_hash_mismatch_empties_the_assembly_and_a_resend_fills_it() -> None:
    """Wrong joined hash: attachment_hash_mismatch, all chunks dropped; a resend verifies."""
    assembly, data = _assembly(CHUNK_SIZE + 5)
    wrong = data[:CHUNK_SIZE] + b"XXXXX"
    for index, part in chunks_of(wrong):
        assembly = assembly.add(index, part).assembly
    step = assembly.verify(joined_sha256([wrong]))
    assert step.outcome is Outcome.REFUSED
    assert step.refusal is not None
    assert step.refusal.reason == reasons.ATTACHMENT_HASH_MISMATCH
    assembly = step.assembly
    assert (dict(assembly.parts), assembly.verified) == ({}, False)
    for index, part in chunks_of(data):
        assembly = assembly.add(index, part).assembly
    assert assembly.verify(hashlib.sha256(data).hexdigest()).assembly.verified


def test_only_a_complete_assembly_is_verified() -> None:
    """verify() before every index is held is a caller's error."""
    assembly, data = _assembly(CHUNK_SIZE + 1)
    with pytest.raises(ValueError, match="missing"):
        assembly.add(0, data[:CHUNK_SIZE]).assembly.verify(hashlib.sha256(data).hexdigest())


def test_after_verification_chunks_are_duplicates_or_refused() -> None:
    """A verified file takes no new bytes: the same ones are duplicates, others refused."""
    assembly, data = _assembly(7)
    assembly = assembly.add(0, data).assembly.verify(hashlib.sha256(data).hexdigest()).assembly
    assert assembly.add(0, data).outcome is Outcome.DUPLICATE
    assert assembly.add(0, b"0" * 7).outcome is Outcome.REFUSED


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_any_order_with_repeats_reassembles(data: st.DataObject) -> None:
    """Chunks in any order, with duplicates, always end complete and verified."""
    size = data.draw(st.integers(min_value=1, max_value=4 * CHUNK_SIZE), label="size")
    assembly, raw = _assembly(size)
    chunks = chunks_of(raw)
    order = data.draw(st.permutations(chunks + data.draw(st.lists(st.sampled_from(chunks),
                                                                  max_size=6))))
    for index, part in order:
        assert assembly.add(index, part).outcome is not Outcome.REFUSED
        assembly = assembly.add(index, part).assembly
    assert assembly.complete
    assert assembly.verify(hashlib.sha256(raw).hexdigest()).assembly.verified


# -- bounds ----------------------------------------------------------------------------


def _refs(*sizes: int) -> list[AttachmentRef]:
    return [AttachmentRef(sha256=f"{i:064x}", size=size, media_type="application/pdf",
                          name=f"{i}.pdf") for i, size in enumerate(sizes)]


def test_default_limits_are_the_documented_ones() -> None:
    """32 attachments, 25 MiB each, 100 MiB per message, 200 MiB in flight per peer."""
    limits = Limits()
    assert (limits.attachments_per_message, limits.attachment_bytes, limits.message_bytes,
            limits.peer_bytes_in_flight) == (32, 25 * MIB, 100 * MIB, 200 * MIB)
    assert (limits.attachment_bytes, limits.message_bytes) == (26214400, 104857600)


@pytest.mark.parametrize("changes", [
    {"attachments_per_message": 0}, {"attachments_per_message": 33}, {"attachment_bytes": 0},
    {"attachment_bytes": 101 * MIB}, {"message_bytes": 201 * MIB},
])
def test_limits_keep_their_order(changes: dict[str, int]) -> None:
    """1..32 attachments; attachment <= message <= in flight, so a message always fits."""
    with pytest.raises(ValueError, match="attachment"):
        Limits(**changes)


def test_references_within_the_bounds_are_admitted() -> None:
    """Exactly at every bound is within it."""
    assert admit_refs(_refs(25 * MIB, 25 * MIB, 25 * MIB, 25 * MIB), Limits()) is None
    assert admit_refs(_refs(*[1] * 32), Limits()) is None


@pytest.mark.parametrize(("sizes", "limits", "word"), [
    ((25 * MIB + 1,), Limits(), "per attachment"),
    ((25 * MIB,) * 4 + (1,), Limits(), "per message"),
    ((1, 1, 1), Limits(attachments_per_message=2), "attachments;"),
    ((5 * MIB, 1, 1), Limits(attachments_per_message=2, attachment_bytes=MIB), "attachments;"),
])
def test_references_over_a_bound_are_too_large(sizes: tuple[int, ...], limits: Limits,
                                                word: str) -> None:
    """Number first, then each size, then the total: attachment_too_large (answered)."""
    refusal = admit_refs(_refs(*sizes), limits)
    assert refusal is not None
    assert refusal.reason == reasons.ATTACHMENT_TOO_LARGE
    assert refusal.reason in reasons.RECEIPTED
    assert word in refusal.detail


def test_only_new_files_are_reserved() -> None:
    """Files complete for the sender or already being assembled need no reservation."""
    refs = _refs(10, 20, 30)
    assert to_reserve(refs, complete={refs[0].sha256}, assembling={refs[1].sha256}) == {
        refs[2].sha256: 30}


def test_the_ledger_reserves_all_or_nothing_within_the_bound() -> None:
    """Reservations add up to the bound; over it nothing is reserved (attachment_quota)."""
    ledger = InFlight(peer="NL-NCC", bound=100)
    ledger, refusal = ledger.reserve({"a": 60})
    assert refusal is None
    same, refusal = ledger.reserve({"b": 30, "c": 11})
    assert same == ledger
    assert refusal is not None
    assert refusal.reason == reasons.ATTACHMENT_QUOTA
    assert refusal.reason in reasons.SECURITY
    ledger, refusal = ledger.reserve({"b": 30, "c": 10})
    assert (refusal, ledger.total) == (None, 100)


def test_a_key_is_reserved_once_and_released() -> None:
    """Reserving a held key again costs nothing; release frees it; unknown keys are ignored."""
    ledger, _ = InFlight(peer="NL-NCC", bound=100).reserve({"a": 100})
    again, refusal = ledger.reserve({"a": 100})
    assert (refusal, again.total) == (None, 100)
    ledger = ledger.release("a", "unknown")
    assert (ledger.total, dict(ledger.held)) == (0, {})
    with pytest.raises(ValueError, match="at least one byte"):
        ledger.reserve({"z": 0})


def test_a_message_reservation_takes_the_place_of_its_orphans() -> None:
    """Released orphans make room for the files; on a refusal the old ledger is kept."""
    ledger, _ = InFlight(peer="NL-NCC", bound=100).reserve({"orphan:1": 40, "orphan:2": 40})
    fits, refusal = ledger.release("orphan:1", "orphan:2").reserve({"f" * 64: 90})
    assert (refusal, fits.total) == (None, 90)
    _, refusal = ledger.release("orphan:1").reserve({"f" * 64: 90})
    assert refusal is not None
    assert ledger.total == 80


@given(st.lists(st.integers(min_value=1, max_value=CHUNK_SIZE), max_size=200))
def test_a_flood_of_orphans_never_passes_the_bound(sizes: list[int]) -> None:
    """However many chunks a peer sends ahead of messages, its bytes stay within the bound."""
    ledger = InFlight(peer="NL-NCC", bound=10 * CHUNK_SIZE)
    refused = 0
    for i, size in enumerate(sizes):
        ledger, refusal = ledger.reserve({f"orphan:{i}": size})
        refused += refusal is not None
        assert ledger.total <= ledger.bound
    assert refused == 0 or sum(sizes) > ledger.bound


def test_orphans_are_held_for_the_documented_time() -> None:
    """A chunk without its message is dropped ORPHAN_HOLD (10 min) after it arrived."""
    arrived = CREATED
    assert timedelta(minutes=10) == ORPHAN_HOLD
    assert not orphan_expired(arrived, arrived + ORPHAN_HOLD - timedelta(milliseconds=1))
    assert orphan_expired(arrived, arrived + ORPHAN_HOLD)


def test_resends_back_off_from_five_minutes_to_an_hour() -> None:
    """resend(n) = min(5 min * 2^(n-1), 1 h) * (0.5 + jitter / 2)."""
    assert (timedelta(minutes=5), timedelta(hours=1)) == (RESEND_FIRST, RESEND_CAP)
    assert resend_delay(1, 0.999999) < RESEND_FIRST
    assert resend_delay(1, 0.0) == RESEND_FIRST / 2
    assert resend_delay(2, 0.0) == RESEND_FIRST
    assert resend_delay(20, 0.0) == RESEND_CAP / 2


def test_a_sender_gives_up_an_hour_after_expiry_without_a_receipt() -> None:
    """A sent delivery that never got a receipt expires RESEND_CAP after ``expires``."""
    expires = CREATED
    assert not unanswered_expired(expires, expires + RESEND_CAP - timedelta(seconds=1))
    assert unanswered_expired(expires, expires + RESEND_CAP)


# -- reason codes ----------------------------------------------------------------------


def test_the_attachment_reason_codes_are_documented() -> None:
    """One answered code; the others are security events; every one has a description."""
    new = {reasons.ATTACHMENT_TOO_LARGE, reasons.ATTACHMENT_NAME_REFUSED,
           reasons.ATTACHMENT_QUOTA, reasons.ATTACHMENT_UNREFERENCED,
           reasons.ATTACHMENT_HASH_MISMATCH, reasons.CHUNK_INVALID}
    assert new <= reasons.ALL
    assert new & reasons.RECEIPTED == {reasons.ATTACHMENT_TOO_LARGE}
    assert not reasons.RECEIPTED & reasons.SECURITY
    assert all(reasons.DESCRIPTIONS[code] for code in new)


def test_a_rejected_receipt_may_say_attachment_too_large() -> None:
    """The answered code is a valid receipt reason (model and schema)."""
    receipt = {"message_id": MESSAGE_ID, "message_sha256": "0" * 64, "state": "rejected",
               "reason": "attachment_too_large", "at": "2026-11-27T10:05:00.000Z"}
    Receipt.model_validate(receipt)
    assert _schema("receipt").is_valid(receipt)
    assert not _schema("receipt").is_valid({**receipt, "reason": "chunk_invalid"})
