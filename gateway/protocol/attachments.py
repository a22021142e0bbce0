"""Attachments: references in the signed envelope, chunks, reassembly, bounds (pure).

docs/PROTOCOL.md §19. A message lists its files in the envelope member ``attachments``
(so the signature covers their hashes); their bytes travel in signed ``chunk`` messages
of ``CHUNK_SIZE`` bytes each (the last holds the rest). The receiver holds the message
without a receipt until every attachment is complete and verified::

    sender                          receiver (per peer)
    plan(size), chunks_of(data)     admit_refs(refs, limits)   -> attachment_too_large
    chunk_body, chunk_envelope      InFlight.reserve(sizes)    -> attachment_quota
                                    chunk_problem(chunk, msg)  -> unreferenced, chunk_invalid
                                    Assembly.add(index, data)  -> accepted, duplicate, refused
                                    Assembly.verify(sha256)    -> verified, or mismatch (reset)

Nothing here stores bytes or reads a clock: an :class:`Assembly` keeps which indexes it
holds with their lengths and digests, the adapter keeps the bytes, and time is passed in.
This module imports no envelope model: :mod:`gateway.protocol.envelope` imports the
reference model from here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema

from gateway.protocol import reasons
from gateway.protocol.delivery import backoff
from gateway.protocol.sitrep import MAX_COUNT, MAX_LANGUAGES, Note
from gateway.protocol.types import (
    FrozenModel,
    LangTag,
    MessageId,
    Mode,
    Priority,
    Sha256Hex,
    Tlp,
    format_time,
)

CHUNK_TYPE = "chunk"
#: Types that never carry attachments: they are not answered with receipts (§19.2).
NO_ATTACHMENTS = frozenset({"receipt", CHUNK_TYPE})
#: Bytes of every chunk but an attachment's last; 262144 characters of base64.
CHUNK_SIZE = 196_608
MAX_CHUNK_CHARS = CHUNK_SIZE // 3 * 4
MAX_ATTACHMENTS = 32
MAX_NAME_CHARS = 255
MIB = 1024 * 1024
#: How long a receiver holds chunks whose message has not arrived (§19.7).
ORPHAN_HOLD = timedelta(minutes=10)
#: A sender's resends of a message with attachments that has no receipt yet (§19.5).
RESEND_FIRST = timedelta(minutes=5)
RESEND_CAP = timedelta(hours=1)

MEDIA_TYPE_PATTERN = (r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

# -- file names (§19.3) ----------------------------------------------------------------

#: Never in a name: C0 and C1 controls, the Arabic letter mark, LRM/RLM, the line and
#: paragraph separators, the bidirectional embeddings, overrides and isolates, U+FEFF.
_HIDING = ((0x00, 0x1F), (0x7F, 0x9F), (0x061C, 0x061C), (0x200E, 0x200F), (0x2028, 0x202E),
           (0x2066, 0x2069), (0xFEFF, 0xFEFF))
#: Not first or last: the white space that is not already in _HIDING.
_SPACES = ((0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x202F, 0x202F),
           (0x205F, 0x205F), (0x3000, 0x3000))


def _within(char: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= ord(char) <= high for low, high in ranges)


def _class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


_HIDING_RE = re.compile(f"[{_class(_HIDING)}]")
_NOT_IN = r"/\\" + _class(_HIDING)
#: The schema's form of rules 1, 3, 4 and 5 (ECMA-262 and Python ``re`` read it alike).
NAME_PATTERN = (rf"^(?![. ]+$)[^{_NOT_IN}{_class(_SPACES)}]"
                rf"(?:[^{_NOT_IN}]*[^{_NOT_IN}{_class(_SPACES)}])?$")


@dataclass(frozen=True, slots=True)
class NameProblem:
    """Why a file name is refused; ``hostile`` when it is a path or hides what it is."""

    detail: str
    hostile: bool


def _hostile(name: str) -> str | None:
    if "/" in name or "\\" in name:
        return "a file name, not a path: it may not contain / or \\"
    if name and not name.strip(". "):
        return "a file name may not be . or .. (nor only dots and spaces)"
    hiding = _HIDING_RE.search(name)
    if hiding is not None:
        return (f"U+{ord(hiding.group()):04X} (a control or bidirectional formatting "
                "character) may not be in a file name")
    return None


def _malformed(name: str) -> str | None:
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        return f"a file name has 1 to {MAX_NAME_CHARS} characters"
    if not unicodedata.is_normalized("NFC", name):
        return "a file name must be in Unicode normalization form C"
    if _within(name[0], _SPACES) or _within(name[-1], _SPACES):
        return "a file name may not start or end with white space"
    return None


def name_problem(name: str) -> NameProblem | None:
    """The first rule of §19.3 that ``name`` breaks, or None. Hostile problems (a path,
    dots only, hiding characters) are reported before the others."""
    hostile = _hostile(name)
    if hostile is not None:
        return NameProblem(hostile, hostile=True)
    other = _malformed(name)
    return None if other is None else NameProblem(other, hostile=False)


def validate_name(name: str) -> str:
    """``name`` if it is a valid file name (§19.3); else ``ValueError`` saying why."""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(problem.detail)
    return name


def hostile_name(envelope: Mapping[str, Any]) -> str | None:
    """For an envelope refused as ``schema_invalid``: the detail of the security event
    ``attachment_name_refused`` when one of its (unvalidated) names is hostile, else None."""
    refs = envelope.get("attachments")
    for i, ref in enumerate(refs if isinstance(refs, list) else ()):
        name = ref.get("name") if isinstance(ref, dict) else None
        if not isinstance(name, str):
            continue
        problem = name_problem(name)
        if problem is not None and problem.hostile:
            return f"attachments.{i}.name {name[:80]!r}: {problem.detail}"
    return None


# -- wire models -----------------------------------------------------------------------

FileName = Annotated[str, AfterValidator(validate_name), WithJsonSchema({
    "type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": NAME_PATTERN,
    "description": "A file name as data, never a path (§19.3); also in Unicode NFC"})]
MediaType = Annotated[str, StringConstraints(pattern=MEDIA_TYPE_PATTERN, max_length=255)]
Size = Annotated[int, Field(strict=True, ge=1, le=MAX_COUNT)]
Description = Annotated[
    dict[LangTag, Note],
    Field(min_length=1, max_length=MAX_LANGUAGES,
          json_schema_extra={"additionalProperties": False}),
]


class AttachmentRef(FrozenModel):
    """One file of a message, as the signed envelope lists it."""

    sha256: Sha256Hex = Field(description="SHA-256 of the file's bytes (lower-case hex)")
    size: Size = Field(description="Length in bytes")
    media_type: MediaType = Field(description="RFC 6838 type/subtype, lower case, no parameters")
    name: FileName
    description: Description | None = Field(
        default=None, description="What the file is, per language (1-2000 characters each)")


def _distinct(refs: tuple[AttachmentRef, ...]) -> tuple[AttachmentRef, ...]:
    if len({ref.sha256 for ref in refs}) != len(refs):
        raise ValueError("two references with the same sha256: a file is listed once")
    return refs


AttachmentRefs = Annotated[
    tuple[AttachmentRef, ...],
    Field(min_length=1, max_length=MAX_ATTACHMENTS),
    AfterValidator(_distinct),
]


def _canonical_base64(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"data is not base64: {exc}") from exc
    if base64.b64encode(raw).decode("ascii") != value:
        raise ValueError("data is not canonical base64 (the unused bits must be zero)")
    if not 1 <= len(raw) <= CHUNK_SIZE:
        raise ValueError(f"a chunk holds 1 to {CHUNK_SIZE} bytes")
    return value


class ChunkBody(FrozenModel):
    """The body of a ``chunk`` message: bytes ``index`` of one attachment of a message."""

    message_id: MessageId = Field(description="The message whose attachments include this one")
    sha256: Sha256Hex = Field(description="The attachment (its reference's sha256)")
    index: Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)] = Field(
        description=f"0-based; the chunk holds bytes [index * {CHUNK_SIZE}, ...) of the file")
    data: Annotated[str, StringConstraints(min_length=4, max_length=MAX_CHUNK_CHARS,
                                           pattern=BASE64_PATTERN),
                    AfterValidator(_canonical_base64)] = Field(
        description="The chunk's bytes, standard base64 with padding (RFC 4648 section 4)")

    def payload(self) -> bytes:
        """The chunk's bytes."""
        return base64.b64decode(self.data)


# -- the sender's side -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """How a file of ``size`` bytes is cut: ``count`` chunks of ``CHUNK_SIZE``, the last
    holding the rest. Chunk ``index`` holds bytes ``span(index)`` = [start, stop)."""

    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("an attachment has at least one byte")

    @property
    def count(self) -> int:
        """ceil(size / CHUNK_SIZE)."""
        return -(-self.size // CHUNK_SIZE)

    def span(self, index: int) -> tuple[int, int]:
        """[start, stop) of chunk ``index``; ``IndexError`` past the last chunk."""
        if not 0 <= index < self.count:
            raise IndexError(f"chunk {index} of {self.count}")
        start = index * CHUNK_SIZE
        return start, min(start + CHUNK_SIZE, self.size)

    def length(self, index: int) -> int:
        """Bytes in chunk ``index``: CHUNK_SIZE, or the rest for the last."""
        start, stop = self.span(index)
        return stop - start

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        """The span of every chunk, in index order."""
        return tuple(self.span(i) for i in range(self.count))


def plan(size: int) -> Plan:
    """The plan of a file of ``size`` bytes; ``ValueError`` when ``size < 1``."""
    return Plan(size)


def chunks_of(data: bytes) -> list[tuple[int, bytes]]:
    """(index, bytes) of every chunk of ``data``, in order; joined they give ``data``."""
    return [(i, data[start:stop]) for i, (start, stop) in enumerate(plan(len(data)).spans)]


def chunk_body(message_id: str, sha256: str, index: int, part: bytes) -> dict[str, Any]:
    """The JSON-ready body of chunk ``index`` (``part`` its bytes); validated."""
    body = {"message_id": message_id, "sha256": sha256, "index": index,
            "data": base64.b64encode(part).decode("ascii")}
    ChunkBody.model_validate(body)
    return body


def chunk_envelope(message: Mapping[str, Any], body: Mapping[str, Any], *, chunk_id: str,
                   created: datetime) -> dict[str, Any]:
    """The JSON-ready envelope of a chunk of ``message`` (a JSON-ready envelope as sent):
    its ``from``, ``to``, ``expires``, ``mode``, ``tlp`` and ``priority``, a fresh id,
    nothing else. ``ValueError`` when ``body`` is not for one of its attachments."""
    listed = {ref.get("sha256") for ref in message.get("attachments") or ()}
    if body["message_id"] != message["id"] or body["sha256"] not in listed:
        raise ValueError("a chunk carries an attachment of its message")
    return {"v": message["v"], "id": chunk_id, "type": CHUNK_TYPE, "from": message["from"],
            "to": list(message["to"]), "created": format_time(created),
            "expires": message["expires"], "mode": message["mode"], "tlp": message["tlp"],
            "priority": message["priority"], "body": dict(body)}


def resend_delay(n: int, jitter: float) -> timedelta:
    """Wait before the ``n``-th resend (1 = the first) of a message with attachments
    that has no receipt, after the last confirmed publish of it or of its chunks:
    min(RESEND_FIRST * 2^(n-1), RESEND_CAP) * (0.5 + jitter / 2), ``jitter`` in [0, 1)."""
    return backoff(RESEND_FIRST, RESEND_CAP, n, jitter)


def unanswered_expired(expires: datetime, now: datetime) -> bool:
    """Whether a ``sent`` delivery of a message with attachments that never got a receipt
    is ``expired`` now: ``RESEND_CAP`` after its ``expires`` (the receiver never recorded
    it; one that did answers ``expired`` itself by then)."""
    return now >= expires + RESEND_CAP


# -- the receiver's side ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """A documented reason code (:mod:`reasons`) and what exactly was wrong."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """A receiver's bounds (§19.8). Each is at most the next, so that a message within
    them always fits when nothing else of its sender is in flight."""

    attachments_per_message: int = MAX_ATTACHMENTS
    attachment_bytes: int = 25 * MIB
    message_bytes: int = 100 * MIB
    peer_bytes_in_flight: int = 200 * MIB

    def __post_init__(self) -> None:
        if not 1 <= self.attachments_per_message <= MAX_ATTACHMENTS:
            raise ValueError(f"attachments per message: 1 to {MAX_ATTACHMENTS}")
        if not 1 <= self.attachment_bytes <= self.message_bytes <= self.peer_bytes_in_flight:
            raise ValueError("bounds need 1 <= attachment_bytes <= message_bytes "
                             "<= peer_bytes_in_flight")


def admit_refs(refs: Sequence[AttachmentRef], limits: Limits) -> Refusal | None:
    """Whether a (schema-valid) message's references are within ``limits``: their number,
    then each size, then their total. None, or ``attachment_too_large`` (answered)."""
    if len(refs) > limits.attachments_per_message:
        return Refusal(reasons.ATTACHMENT_TOO_LARGE, f"{len(refs)} attachments; this node "
                       f"takes at most {limits.attachments_per_message} per message")
    for ref in refs:
        if ref.size > limits.attachment_bytes:
            return Refusal(reasons.ATTACHMENT_TOO_LARGE, f"{ref.name!r} has {ref.size} bytes; "
                           f"this node takes at most {limits.attachment_bytes} per attachment")
    total = sum(ref.size for ref in refs)
    if total > limits.message_bytes:
        return Refusal(reasons.ATTACHMENT_TOO_LARGE, f"the attachments total {total} bytes; "
                       f"this node takes at most {limits.message_bytes} per message")
    return None


def to_reserve(refs: Sequence[AttachmentRef], *, complete: Set[str],
               assembling: Set[str]) -> dict[str, int]:
    """sha256 -> size of the references that need a new assembly (and a reservation):
    neither complete for the sender nor already being assembled for it."""
    return {ref.sha256: ref.size for ref in refs
            if ref.sha256 not in complete and ref.sha256 not in assembling}


@dataclass(frozen=True, slots=True)
class InFlight:
    """The bytes one peer has in flight at a receiver: the sizes reserved for its
    assemblies not yet verified, and its orphan chunks, each under a key of the caller's
    (an attachment's sha256, an orphan chunk's id). Never above ``bound``.

    Immutable, so that "release a message's orphans, then reserve its files" either
    happens whole or not at all: on a refusal the caller keeps the ledger it had."""

    peer: str
    bound: int
    held: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Bytes in flight."""
        return sum(self.held.values())

    def reserve(self, items: Mapping[str, int]) -> tuple[InFlight, Refusal | None]:
        """All of ``items`` (key -> bytes) or none. Keys already held are not counted
        again. Over the bound: the ledger unchanged and ``attachment_quota``."""
        new = {key: size for key, size in items.items() if key not in self.held}
        if any(size < 1 for size in new.values()):
            raise ValueError("a reservation is at least one byte")
        total = self.total + sum(new.values())
        if total > self.bound:
            return self, Refusal(reasons.ATTACHMENT_QUOTA, f"{self.peer} would have {total} "
                                 f"bytes of attachments in flight; the bound is {self.bound}")
        return replace(self, held={**self.held, **new}), None

    def release(self, *keys: str) -> InFlight:
        """The ledger without ``keys`` (unknown keys are ignored)."""
        return replace(self, held={k: n for k, n in self.held.items() if k not in keys})


def orphan_expired(arrived: datetime, now: datetime) -> bool:
    """Whether a chunk held since ``arrived`` without its message is dropped now."""
    return now >= arrived + ORPHAN_HOLD


class Header(Protocol):
    """The envelope fields :func:`chunk_problem` compares (an ``EnvelopeHeader`` has them)."""

    @property
    def id(self) -> str: ...
    @property
    def from_(self) -> str: ...
    @property
    def to(self) -> tuple[str, ...]: ...
    @property
    def expires(self) -> datetime: ...
    @property
    def mode(self) -> Mode: ...
    @property
    def tlp(self) -> Tlp: ...
    @property
    def priority(self) -> Priority: ...
    @property
    def incident(self) -> str | None: ...
    @property
    def releasable(self) -> tuple[str, ...] | None: ...
    @property
    def attachments(self) -> tuple[AttachmentRef, ...] | None: ...


def chunk_problem(chunk: Header, body: ChunkBody, message: Header) -> Refusal | None:
    """Whether a chunk fits the message it names (§19.7 steps 3-4): the message lists its
    attachment (else ``attachment_unreferenced``) and the chunk's envelope copies the
    message's (else ``chunk_invalid``). ``ValueError`` if ``message`` is not the one named."""
    if body.message_id != message.id or chunk.from_ != message.from_:
        raise ValueError("not the message this chunk names")
    if body.sha256 not in {ref.sha256 for ref in message.attachments or ()}:
        return Refusal(reasons.ATTACHMENT_UNREFERENCED,
                       f"message {message.id} does not reference attachment {body.sha256}")
    pairs: tuple[tuple[str, object, object], ...] = (
        ("to", chunk.to, message.to), ("expires", chunk.expires, message.expires),
        ("mode", chunk.mode, message.mode), ("tlp", chunk.tlp, message.tlp),
        ("priority", chunk.priority, message.priority))
    differ = [name for name, mine, theirs in pairs if mine != theirs]
    if differ:
        return Refusal(reasons.CHUNK_INVALID, f"the chunk's {', '.join(differ)} "
                       f"differ from message {message.id}'s")
    if chunk.incident is not None or chunk.releasable or chunk.attachments is not None:
        return Refusal(reasons.CHUNK_INVALID, "a chunk has no incident, releasable or attachments")
    return None


class Outcome(StrEnum):
    """What a step of an :class:`Assembly` did."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Part:
    """A chunk an assembly holds: its length and the SHA-256 of its bytes."""

    length: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Step:
    """The assembly after a step, what the step did and, if refused, why."""

    assembly: Assembly
    outcome: Outcome
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True)
class Assembly:
    """One attachment being reassembled at a receiver, for one sender (§19.7 steps 5-6).

    Immutable: :meth:`add` and :meth:`verify` return the next state. Chunks are
    deduplicated by index and content: the same bytes again are a duplicate, other bytes
    for a held index are refused and the held ones kept.
    """

    ref: AttachmentRef
    parts: Mapping[int, Part] = field(default_factory=dict)
    verified: bool = False

    @property
    def plan(self) -> Plan:
        """How the declared size is cut."""
        return Plan(self.ref.size)

    @property
    def complete(self) -> bool:
        """Every index is held (not yet necessarily verified)."""
        return len(self.parts) == self.plan.count

    @property
    def missing(self) -> tuple[int, ...]:
        """The indexes not held yet."""
        return tuple(i for i in range(self.plan.count) if i not in self.parts)

    @property
    def held_bytes(self) -> int:
        """Bytes of the chunks held."""
        return sum(part.length for part in self.parts.values())

    def _refuse(self, detail: str) -> Step:
        return Step(self, Outcome.REFUSED, Refusal(reasons.CHUNK_INVALID, detail))

    def add(self, index: int, data: bytes) -> Step:
        """Take chunk ``index``: accepted, duplicate (same bytes again: ignored) or refused
        (``chunk_invalid``: past the declared size, wrong length, other bytes than held)."""
        count, what = self.plan.count, f"attachment {self.ref.sha256[:12]}"
        if not 0 <= index < count:
            return self._refuse(f"chunk {index} is past the declared size of {what}: "
                                f"{self.ref.size} bytes make chunks 0 to {count - 1}")
        expected = self.plan.length(index)
        if len(data) != expected:
            return self._refuse(f"chunk {index} of {what} has {len(data)} bytes, "
                                f"not {expected}")
        digest = hashlib.sha256(data).hexdigest()
        held = self.parts.get(index)
        if held is not None:
            if held.sha256 == digest:
                return Step(self, Outcome.DUPLICATE)
            return self._refuse(f"chunk {index} of {what} differs from the one already held")
        return Step(replace(self, parts={**self.parts, index: Part(len(data), digest)}),
                    Outcome.ACCEPTED)

    def verify(self, sha256: str) -> Step:
        """Check the SHA-256 of the joined bytes (computed by the caller, in index order).
        Equal to the reference's: accepted, ``verified``. Else refused
        (``attachment_hash_mismatch``) and the assembly emptied: every chunk is discarded
        and the sender's resends fill it again. ``ValueError`` unless complete."""
        if not self.complete:
            raise ValueError(f"chunks {self.missing[:5]} are missing: nothing to verify")
        if sha256 == self.ref.sha256:
            return Step(replace(self, verified=True), Outcome.ACCEPTED)
        return Step(Assembly(self.ref), Outcome.REFUSED, Refusal(
            reasons.ATTACHMENT_HASH_MISMATCH, f"the {self.ref.size} bytes of {self.ref.name!r} "
            f"hash to {sha256}, not {self.ref.sha256}; its chunks are discarded"))


def joined_sha256(parts: Iterable[bytes]) -> str:
    """SHA-256 (hex) of ``parts`` joined, computed incrementally."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()
