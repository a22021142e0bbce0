"""The tamper-evident audit log: a hash chain with signed checkpoints (pure).

Every entry has a sequence number and a *content*: a JSON object stored as the exact
bytes that are hashed, so verification never needs to re-serialise anything. Entry
``n`` links to entry ``n - 1``::

    content_sha256(n) = SHA-256(content bytes of n)
    hash(n)           = SHA-256(b"crisisgw-audit-v1\\x00" || hash(n-1) || content_sha256(n))

with ``hash(0)`` = 32 zero bytes. Changing, inserting, removing or reordering an entry
changes every later hash. A *checkpoint* is the chain head ``(seq, hash)`` signed by
the node's key in its own signature domain (``audit-checkpoint``); once a checkpoint
has been handed to a peer, even the node itself cannot rewrite what it covers.

To prove one entry without revealing the others, a proof lists the ``content_sha256``
of every entry from the first proven one up to a checkpoint (PROTOCOL.md §16).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from pydantic import Field, ValidationError

from gateway.errors import MalformedInput, VerificationError
from gateway.protocol import ijson
from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.envelope import Signature
from gateway.protocol.keys import PinnedKey, SigningKey, b64url_decode, b64url_encode
from gateway.protocol.signing import DOMAIN_PREFIX
from gateway.protocol.types import CentreId, FrozenModel, Sha256Hex, UtcTime, format_time

CHAIN_DOMAIN = b"crisisgw-audit-v1\x00"
GENESIS = "0" * 64
CHECKPOINT_CONTEXT = b"audit-checkpoint"


def content_bytes(seq: int, at: datetime, kind: str, actor: str, subject: str,  # noqa: PLR0917 - the entry fields in order
                  data: dict[str, Any]) -> bytes:
    """The stored (and hashed) bytes of an entry: compact, sorted, ASCII-only JSON."""
    return json.dumps({"seq": seq, "at": format_time(at), "kind": kind, "actor": actor,
                       "subject": subject, "data": data},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def link(prev: str, content_sha256: str) -> str:
    """``hash(n)`` from ``hash(n-1)`` and ``content_sha256(n)`` (hex in, hex out)."""
    return hashlib.sha256(CHAIN_DOMAIN + bytes.fromhex(prev)
                          + bytes.fromhex(content_sha256)).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One row of the log as the ledger holds it."""

    seq: int
    content: bytes
    content_sha256: str
    prev: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of :func:`verify_chain`: ``broken_at`` is None when every link holds."""

    entries: int
    head_seq: int
    head: str
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when the chain is intact."""
        return self.broken_at is None


def verify_chain(rows: Iterable[StoredEntry], *, start_seq: int = 1,
                 start_prev: str = GENESIS) -> ChainReport:
    """Walk stored rows in order and report the first broken link, if any.

    Checks, per row: the sequence number follows on, the content hashes to the stored
    ``content_sha256``, the content names its own sequence number, ``prev`` is the
    previous row's hash, and ``hash`` is the link of the two.
    """
    expected_seq, prev, count = start_seq, start_prev, 0
    for row in rows:
        problem = _row_problem(row, expected_seq, prev)
        if problem is not None:
            return ChainReport(count, expected_seq - 1, prev, broken_at=row.seq, problem=problem)
        prev, expected_seq, count = row.hash, row.seq + 1, count + 1
    return ChainReport(count, expected_seq - 1, prev)


def _row_problem(row: StoredEntry, expected_seq: int, prev: str) -> str | None:
    if row.seq != expected_seq:
        return f"expected entry {expected_seq}, found {row.seq} (entries removed or reordered)"
    if sha256_hex(row.content) != row.content_sha256:
        return "the entry's content does not match its content hash (entry altered)"
    try:
        named = json.loads(row.content).get("seq")
    except (ValueError, AttributeError):
        named = None
    if named != row.seq:
        return f"the entry's content names sequence {named!r}, not {row.seq}"
    if row.prev != prev:
        return "prev does not match the previous entry's hash (chain cut or spliced)"
    if row.hash != link(prev, row.content_sha256):
        return "the entry's hash is not the link of prev and its content hash"
    return None


def head_from_links(prev: str, content_hashes: Sequence[str]) -> str:
    """The chain hash after appending ``content_hashes`` to ``prev``."""
    head = prev
    for h in content_hashes:
        head = link(head, h)
    return head


# -- checkpoints ---------------------------------------------------------------------


class Checkpoint(FrozenModel):
    """A chain head signed by the node that keeps the log."""

    centre: CentreId
    seq: int = Field(ge=0)
    head: Sha256Hex
    at: UtcTime


class SignedCheckpoint(FrozenModel):
    """A checkpoint with the node's signature, as stored and shared (schema only)."""

    checkpoint: Checkpoint
    signature: Signature


def _checkpoint_input(body: dict[str, Any]) -> bytes:
    return DOMAIN_PREFIX + CHECKPOINT_CONTEXT + b"\n" + canonical_bytes(body)


def sign_checkpoint(centre: str, seq: int, head: str, at: datetime, key: SigningKey) -> bytes:
    """A signed checkpoint as canonical JSON bytes."""
    body = Checkpoint(centre=centre, seq=seq, head=head, at=at).model_dump(mode="json")
    value = b64url_encode(key.private.sign(_checkpoint_input(body)))
    return canonical_bytes({"checkpoint": body,
                            "signature": {"alg": "Ed25519", "kid": key.kid, "value": value}})


def checkpoint_kid(raw: Any) -> str:
    """The key id a signed checkpoint names; raise :class:`MalformedInput` if malformed."""
    if not isinstance(raw, dict) or set(raw) != {"checkpoint", "signature"} \
            or not isinstance(raw["checkpoint"], dict) or not isinstance(raw["signature"], dict) \
            or set(raw["signature"]) != {"alg", "kid", "value"} \
            or raw["signature"]["alg"] != "Ed25519" \
            or not isinstance(raw["signature"]["kid"], str) \
            or not isinstance(raw["signature"]["value"], str):
        raise MalformedInput("malformed", "expected {checkpoint, signature: {alg, kid, value}}")
    return str(raw["signature"]["kid"])


def open_checkpoint(raw: Any, key: PinnedKey) -> Checkpoint:
    """Verify a parsed signed checkpoint under ``key`` and return its content.

    Raises :class:`MalformedInput` (wrong shape) or :class:`VerificationError` (another
    key, or a signature that does not hold).
    """
    kid = checkpoint_kid(raw)
    if kid != key.kid:
        raise VerificationError("unknown_key", f"checkpoint signed with {kid[:70]!r}, "
                                               f"not {key.kid}")
    try:
        key.key.verify(b64url_decode(raw["signature"]["value"]),
                       _checkpoint_input(raw["checkpoint"]))
    except (InvalidSignature, ValueError) as exc:
        raise VerificationError("bad_signature",
                                "the checkpoint signature does not verify") from exc
    try:
        return Checkpoint.model_validate(raw["checkpoint"])
    except ValidationError as exc:
        raise MalformedInput("schema_invalid", f"not a checkpoint: {exc}") from exc


def parse_checkpoint(data: bytes) -> Any:
    """Parse signed-checkpoint bytes (strict I-JSON) and check their shape."""
    raw = ijson.loads(data)
    checkpoint_kid(raw)
    return raw
