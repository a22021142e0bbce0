"""Verifying an archive file (PROTOCOL.md §18.2), line by line (pure).

The format and the writer are in :mod:`gateway.protocol.archive`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from pydantic import ValidationError

from gateway.errors import GatewayError, MalformedInput, VerificationError
from gateway.protocol import ijson
from gateway.protocol.archive import (
    MAX_LINE_BYTES,
    RECORD_KINDS,
    ArchiveRecord,
    Header,
    Trailer,
    signing_input,
)
from gateway.protocol.auditlog import (
    GENESIS,
    Checkpoint,
    checkpoint_kid,
    link,
    open_checkpoint,
    sha256_hex,
)
from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.evidence import listed_keys
from gateway.protocol.keys import KeyRing, PinnedKey, b64url_decode, fingerprint
from gateway.protocol.signing import key_problem, open_signed
from gateway.protocol.types import format_time


class ArchiveRefused(GatewayError):
    """The archive does not prove what it claims; ``str()`` says why."""


@dataclass
class ArchiveVerdict:
    """A verified archive."""

    centre: str
    month: str
    created_at: str
    first_seq: int
    prev: str
    last_seq: int = 0
    head: str = GENESIS
    counts: dict[str, int] = field(default_factory=dict)
    checkpoint: tuple[int, str] = (0, "")
    keys: list[tuple[str, str]] = field(default_factory=list)
    keys_pinned: bool = False
    #: Messages whose signing key is not among the archive's keys (not checkable here).
    unknown_keys: int = 0
    #: Chain hashes at the sequence numbers the caller asked for (checkpoints).
    hashes: dict[int, str] = field(default_factory=dict)
    #: (sender, id) of every message in it, when the caller asked for them.
    messages: list[tuple[str, str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The human-readable verdict."""
        entries = (f"entries #{self.first_seq} to #{self.last_seq}"
                   if self.last_seq >= self.first_seq else "no entries")
        out = [
            "VERIFIED: every signature and link in this archive holds.",
            f"Archive of {self.centre} for {self.month}, written {self.created_at}",
            f"  {self.counts.get('sent', 0)} messages and receipts sent, "
            f"{self.counts.get('received', 0)} received, "
            f"{self.counts.get('receipt', 0)} receipts received",
            f"  audit log {entries}, chained from {self.prev[:16]}... to head "
            f"{self.head[:16]}..., checkpoint #{self.checkpoint[0]} signed {self.checkpoint[1]}",
        ]
        if self.unknown_keys:
            out.append(f"  {self.unknown_keys} messages are signed with keys this archive "
                       "does not list: their signatures were not checked")
        out.append("Keys (" + ("matched against the keys pinned in your configuration"
                               if self.keys_pinned else
                               "taken from the archive: compare the fingerprints with the "
                               "centres out of band") + "):")
        out.extend(f"  {c} {fp}" for c, fp in self.keys)
        return out


def _refuse(reason: str) -> ArchiveRefused:
    return ArchiveRefused(reason)


def _parse_line(line: bytes, n: int) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        raise _refuse(f"line {n} exceeds {MAX_LINE_BYTES} bytes")
    if not line.endswith(b"\n"):
        raise _refuse(f"line {n} is cut short: the file is truncated")
    try:
        raw = ijson.loads(line[:-1])
    except GatewayError as exc:
        raise _refuse(f"line {n} is not JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise _refuse(f"line {n} is not an object")
    try:
        canonical = canonical_bytes(raw)
    except GatewayError as exc:
        raise _refuse(f"line {n}: {exc}") from exc
    if canonical != line[:-1]:
        raise _refuse(f"line {n} is not in its canonical form: the file was modified")
    return raw


def _header(raw: dict[str, Any], pinned: KeyRing | None
            ) -> tuple[Header, dict[tuple[str, str], PinnedKey]]:
    try:
        header = Header.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _refuse(f"not an archive header: {where}: {first['msg']}") from exc
    return header, listed_keys(header.keys, pinned, ArchiveRefused)


class _Check:
    """The state of one verification as the records go by."""

    def __init__(self, header: Header, ring: KeyRing, verdict: ArchiveVerdict,
                 wanted: frozenset[int]) -> None:
        self.header, self.ring, self.verdict, self.wanted = header, ring, verdict, wanted
        self.counts = dict.fromkeys(RECORD_KINDS, 0)
        self.seq, self.head = header.audit.first_seq, header.audit.prev

    def record(self, raw: dict[str, Any], n: int, *, collect: bool) -> None:
        kind = raw.get("record")
        if kind not in RECORD_KINDS:
            raise _refuse(f"line {n}: unknown record {str(kind)[:40]!r}")
        try:
            ArchiveRecord.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"][1:])
            raise _refuse(f"line {n}: malformed {kind} record: {where}: {first['msg']}") from exc
        self.counts[kind] += 1
        if kind == "audit":
            self._audit(raw, n)
            return
        wire = self._wire(raw, n)
        sender, message_id = self._signed(wire, n, kind, raw)
        if collect and kind != "receipt":
            self.verdict.messages.append((kind, sender, message_id))

    def _audit(self, raw: dict[str, Any], n: int) -> None:
        seq, content = int(raw["seq"]), str(raw["content"])
        if seq != self.seq:
            raise _refuse(f"line {n}: audit entry {seq} where entry {self.seq} was expected "
                          "(entries removed or reordered)")
        data = content.encode()
        try:
            named = json.loads(data).get("seq")
        except (ValueError, AttributeError):
            named = None
        if named != seq:
            raise _refuse(f"line {n}: audit entry {seq} names sequence {named!r}")
        self.head = link(self.head, sha256_hex(data))
        if seq in self.wanted:
            self.verdict.hashes[seq] = self.head
        self.seq += 1

    @staticmethod
    def _wire(raw: dict[str, Any], n: int) -> bytes:
        try:
            return b64url_decode(str(raw["wire"]))
        except ValueError as exc:
            raise _refuse(f"line {n}: the wire is not base64url ({exc})") from exc

    def _signed(self, wire: bytes, n: int, kind: str, raw: dict[str, Any]) -> tuple[str, str]:
        try:
            verified = open_signed(wire, self.ring)
        except VerificationError as exc:
            if exc.reason in ("unknown_key", "unknown_sender"):
                self.verdict.unknown_keys += 1
                env = json.loads(wire).get("envelope", {})
                return str(env.get("from")), str(env.get("id"))
            raise _refuse(f"line {n}: the {kind} message does not verify: {exc.detail}") from exc
        except MalformedInput as exc:
            raise _refuse(f"line {n}: the {kind} message is malformed: {exc.detail}") from exc
        env = verified.envelope
        if kind == "sent" and verified.sender != self.header.centre:
            raise _refuse(f"line {n}: a sent message from {verified.sender}, not from "
                          f"{self.header.centre}")
        if kind == "receipt" and env.get("type") != "receipt":
            raise _refuse(f"line {n}: a received receipt that is a {env.get('type')!r}")
        admitted = kind != "received" or raw.get("state") != "rejected"
        problem = key_problem(verified)
        if admitted and problem is not None:
            raise _refuse(f"line {n}: {problem[1]}")
        return verified.sender, str(env.get("id"))

    def end(self, raw: dict[str, Any], sha256: str,
            keys: dict[tuple[str, str], PinnedKey]) -> None:
        try:
            trailer = Trailer.model_validate(raw)
        except ValidationError as exc:
            raise _refuse("the trailer is malformed: the file is truncated or altered") from exc
        end = trailer.end
        if end.sha256 != sha256:
            raise _refuse("the content does not match the trailer's hash: the file was "
                          "altered")
        centre = self.header.centre
        key = keys.get((centre, trailer.signature.kid))
        if key is None:
            raise _refuse(f"the archive is signed with {trailer.signature.kid[:70]!r}, which "
                          f"is not a key of {centre} in the archive")
        try:
            key.key.verify(b64url_decode(trailer.signature.value), signing_input(raw["end"]))
        except (InvalidSignature, ValueError) as exc:
            raise _refuse(f"the signature of {centre} does not verify: the archive was "
                          "altered") from exc
        if end.records != self.counts:
            raise _refuse(f"the trailer counts {end.records}, the file holds {self.counts}")
        if (end.audit.last_seq, end.audit.head) != (self.seq - 1, self.head):
            raise _refuse("the trailer's chain head is not where the entries lead")
        cp = self._checkpoint(end.audit.checkpoint, keys)
        if (cp.seq, cp.head) != (end.audit.last_seq, end.audit.head):
            raise _refuse("the checkpoint signs another head than the archive's last entry")
        self.verdict.last_seq, self.verdict.head = end.audit.last_seq, end.audit.head
        self.verdict.counts = dict(self.counts)
        self.verdict.checkpoint = (cp.seq, format_time(cp.at))

    def _checkpoint(self, raw: dict[str, Any], keys: dict[tuple[str, str], PinnedKey]
                    ) -> Checkpoint:
        centre = self.header.centre
        try:
            key = keys.get((centre, checkpoint_kid(raw)))
            if key is None:
                raise _refuse("the checkpoint is signed with a key the archive does not list")
            cp = open_checkpoint(raw, key)
        except (MalformedInput, VerificationError) as exc:
            raise _refuse(f"the checkpoint does not verify: {exc.detail}") from exc
        if cp.centre != centre:
            raise _refuse("the checkpoint is signed for another centre")
        return cp


def verify_archive(lines: Iterable[bytes], pinned: KeyRing | None = None, *,
                   hashes_at: Iterable[int] = (), collect_messages: bool = False
                   ) -> ArchiveVerdict:
    """Check an archive's lines (each with its line feed, as read from the decompressed
    file); raise :class:`ArchiveRefused` with the reason at the first thing that does not
    hold.

    ``pinned``: the verifier's own keys; when given, every listed key must be one of them.
    ``hashes_at``: sequence numbers whose chain hash the verdict should report (to check
    checkpoints kept elsewhere). ``collect_messages``: list (kind, sender, id) of every
    message, for callers that compare the archive with a ledger.
    """
    digest = hashlib.sha256()
    it = iter(lines)
    first = next(it, None)
    if first is None:
        raise _refuse("the file is empty")
    header, keys = _header(_parse_line(first, 1), pinned)
    digest.update(first)
    ring = KeyRing.build((c, k) for (c, _), k in keys.items())
    verdict = ArchiveVerdict(
        centre=header.centre, month=header.month, created_at=format_time(header.created_at),
        first_seq=header.audit.first_seq, prev=header.audit.prev,
        keys=[(f"{c} {kid}", fingerprint(k.key)) for (c, kid), k in sorted(keys.items())],
        keys_pinned=pinned is not None)
    check = _Check(header, ring, verdict, frozenset(hashes_at))
    for n, line in enumerate(it, 2):
        raw = _parse_line(line, n)
        if "end" in raw:
            if next(it, None) is not None:
                raise _refuse(f"line {n + 1}: content after the trailer")
            check.end(raw, digest.hexdigest(), keys)
            return verdict
        check.record(raw, n, collect=collect_messages)
        digest.update(line)
    raise _refuse("the archive has no trailer: the file is truncated")
