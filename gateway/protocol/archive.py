"""Archive files: a month of settled history moved out of the hot ledger, with its proof
(pure: no I/O; the caller compresses, writes and reads the lines).

An archive is a sequence of lines, each the RFC 8785 form of one JSON object followed
by a line feed (PROTOCOL.md §18); the file is those lines gzip-compressed:

1. a header: the centre, the month, the public keys, and where its audit entries join
   the chain (``first_seq`` and the chain hash before it, ``prev``);
2. records: messages we sent (with their deliveries), messages we received (with their
   outcome), receipts we received, and audit entries, each entry as its exact stored
   content;
3. a trailer, ``{"end": ..., "signature": ...}``: the record counts, the SHA-256 of every
   byte before it, the chain head after the last entry with a checkpoint signing it,
   and the centre's signature over ``end`` in the ``archive`` signature domain.

Because the trailer signs the hash of everything before it, any changed, added,
removed or reordered byte is detected. The verifier
(:mod:`gateway.protocol.archive_verify`) reads line by line, so memory does not grow
with the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, RootModel, StringConstraints

from gateway.protocol.auditlog import (
    GENESIS,
    link,
    sha256_hex,
)
from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.envelope import Signature
from gateway.protocol.evidence import BundleKey
from gateway.protocol.keys import (
    SigningKey,
    b64url_encode,
)
from gateway.protocol.signing import DOMAIN_PREFIX
from gateway.protocol.types import CentreId, FrozenModel, Sha256Hex, UtcTime, format_time

ARCHIVE_CONTEXT = b"archive"
FILE_TYPE = "crisisgw-archive"
#: Longest line a verifier reads (a record holds one wire of at most 512 KiB, base64url).
MAX_LINE_BYTES = 4 * 1024 * 1024
RECORD_KINDS = ("sent", "received", "receipt", "audit")
MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class AuditStart(FrozenModel):
    """Where the archive's audit entries join the chain."""

    first_seq: int = Field(ge=1)
    prev: Sha256Hex


class Header(FrozenModel):
    """The first line of an archive."""

    type: Literal["crisisgw-archive"]
    v: Literal[1]
    centre: CentreId
    month: str = Field(pattern=MONTH)
    created_at: UtcTime
    keys: tuple[BundleKey, ...] = Field(min_length=1)
    audit: AuditStart


_Text = Annotated[str, StringConstraints(max_length=1000)]
_Wire = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", max_length=MAX_LINE_BYTES)]


class DeliveryOutcome(FrozenModel):
    """A delivery of an archived message, in its final state (PROTOCOL.md §8.1)."""

    recipient: CentreId
    state: Literal["queued", "sent", "delivered", "acknowledged", "rejected", "expired"]
    attempts: int = Field(ge=0)
    sent_at: UtcTime | None = None
    delivered_at: UtcTime | None = None
    acknowledged_at: UtcTime | None = None
    rejected_at: UtcTime | None = None
    expired_at: UtcTime | None = None
    reason: _Text | None = None


class SentRecord(FrozenModel):
    """One of the centre's messages (or receipts): its exact signed bytes (base64url)."""

    record: Literal["sent"]
    wire: _Wire
    submitted_at: UtcTime
    deliveries: tuple[DeliveryOutcome, ...]


class ReceivedRecord(FrozenModel):
    """A message the centre received, and what became of it."""

    record: Literal["received"]
    wire: _Wire
    received_at: UtcTime
    state: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")]
    reason: _Text | None = None
    detail: _Text | None = None
    acknowledged_at: UtcTime | None = None
    acknowledged_by: _Text | None = None


class ReceiptRecord(FrozenModel):
    """A receipt the centre received for one of the archived messages."""

    record: Literal["receipt"]
    wire: _Wire
    received_at: UtcTime


class AuditRecord(FrozenModel):
    """An audit entry: its exact stored content (§16.1)."""

    record: Literal["audit"]
    seq: int = Field(ge=1)
    content: str


class ArchiveRecord(RootModel[Annotated[SentRecord | ReceivedRecord | ReceiptRecord
                                        | AuditRecord, Field(discriminator="record")]]):
    """Any line between the header and the trailer."""


class AuditEnd(FrozenModel):
    """The chain head after the archive's last entry, and a checkpoint signing it."""

    last_seq: int = Field(ge=0)
    head: Sha256Hex
    checkpoint: dict[str, Any]


class End(FrozenModel):
    """The signed content of the trailer."""

    records: dict[str, int]
    sha256: Sha256Hex
    audit: AuditEnd


class Trailer(FrozenModel):
    """The last line: ``end`` and the centre's signature over it (schema only)."""

    end: End
    signature: Signature


def signing_input(end: Mapping[str, Any]) -> bytes:
    """What the trailer's signature signs (§18.1)."""
    return DOMAIN_PREFIX + ARCHIVE_CONTEXT + b"\n" + canonical_bytes(end)


def _line(obj: Mapping[str, Any]) -> bytes:
    return canonical_bytes(dict(obj)) + b"\n"


# -- writing -----------------------------------------------------------------------------


class ArchiveBuilder:
    """Makes the lines of one archive, in order: :meth:`header`, then records, then
    :meth:`trailer`. Audit entries must be added in sequence order, contiguous from the
    header's ``first_seq``; the builder follows the chain so that the trailer's head is
    computed, never copied."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._counts = dict.fromkeys(RECORD_KINDS, 0)
        self._next_seq = 0
        self._head = GENESIS

    def _emit(self, obj: Mapping[str, Any]) -> bytes:
        line = _line(obj)
        self._hash.update(line)
        return line

    def header(self, centre: str, month: str, created_at: datetime,  # noqa: PLR0917 - the header's fields
               keys: Sequence[Mapping[str, Any]], first_seq: int, prev: str) -> bytes:
        """The header line."""
        body = {"type": FILE_TYPE, "v": 1, "centre": centre, "month": month,
                "created_at": format_time(created_at), "keys": [dict(k) for k in keys],
                "audit": {"first_seq": first_seq, "prev": prev}}
        Header.model_validate(body)
        self._next_seq, self._head = first_seq, prev
        return self._emit(body)

    def sent(self, wire: bytes, submitted_at: str, deliveries: Sequence[Mapping[str, Any]]
             ) -> bytes:
        """One of our messages (or receipts) and the final state of each delivery."""
        self._counts["sent"] += 1
        return self._emit({"record": "sent", "wire": b64url_encode(wire),
                           "submitted_at": submitted_at,
                           "deliveries": [dict(d) for d in deliveries]})

    def received(self, wire: bytes, outcome: Mapping[str, Any]) -> bytes:
        """A message we received and what became of it (state, reason, acknowledgement)."""
        self._counts["received"] += 1
        return self._emit({"record": "received", "wire": b64url_encode(wire), **outcome})

    def receipt(self, wire: bytes, received_at: str) -> bytes:
        """A receipt we received for one of the archived messages."""
        self._counts["receipt"] += 1
        return self._emit({"record": "receipt", "wire": b64url_encode(wire),
                           "received_at": received_at})

    def audit(self, seq: int, content: bytes) -> bytes:
        """The audit entry ``seq`` as stored (its exact content bytes)."""
        if seq != self._next_seq:
            raise ValueError(f"audit entry {seq} does not follow entry {self._next_seq - 1}")
        self._head = link(self._head, sha256_hex(content))
        self._next_seq = seq + 1
        self._counts["audit"] += 1
        return self._emit({"record": "audit", "seq": seq, "content": content.decode("ascii")})

    @property
    def head(self) -> tuple[int, str]:
        """The sequence number and chain hash of the last entry added (or of ``prev``)."""
        return self._next_seq - 1, self._head

    def trailer(self, checkpoint: Mapping[str, Any], key: SigningKey) -> bytes:
        """The signed trailer; ``checkpoint`` is a signed checkpoint of :attr:`head`."""
        last_seq, head = self.head
        end = {"records": dict(self._counts), "sha256": self._hash.hexdigest(),
               "audit": {"last_seq": last_seq, "head": head, "checkpoint": dict(checkpoint)}}
        End.model_validate(end)
        value = b64url_encode(key.private.sign(signing_input(end)))
        return _line({"end": end, "signature": {"alg": "Ed25519", "kid": key.kid,
                                                "value": value}})
