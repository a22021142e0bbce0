"""Evidence bundles: one file that proves what happened to one message, offline (pure).

A bundle holds the signed message, every signed receipt for it, the public keys
involved, the exporting node's audit-log entries about the message with the chain
proof up to a signed checkpoint, and the exporter's signature over all of it, in the
"evidence-bundle" signature domain. The file is the RFC 8785 form of
``{"bundle": ..., "signature": ...}``: since a canonical document has exactly one
byte sequence, any changed byte is detected, either as a non-canonical file or as a
failing signature (PROTOCOL.md §17).

:func:`verify_bundle` needs no node, broker or ledger: only the bytes and, optionally,
the keys the verifier has pinned itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from pydantic import Field, ValidationError

from gateway.errors import GatewayError, MalformedInput, VerificationError
from gateway.protocol import ijson
from gateway.protocol.auditlog import (
    Checkpoint,
    checkpoint_kid,
    head_from_links,
    open_checkpoint,
    sha256_hex,
)
from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.envelope import Signature
from gateway.protocol.keys import (
    KeyRing,
    PinnedKey,
    SigningKey,
    b64url_decode,
    b64url_encode,
    fingerprint,
    public_key_from_text,
    public_key_text,
)
from gateway.protocol.signing import DOMAIN_PREFIX, Verified, key_problem, open_signed
from gateway.protocol.types import CentreId, FrozenModel, KeyId, Sha256Hex, UtcTime, format_time

BUNDLE_CONTEXT = b"evidence-bundle"
#: Upper bound on what ``crisisgw verify`` reads (the proof grows with the log).
MAX_BUNDLE_BYTES = 64 * 1024 * 1024


class BundleKey(FrozenModel):
    """A public key the bundle's signatures are checked with."""

    centre: CentreId
    kid: KeyId
    public_key: str
    not_before: UtcTime | None = None
    not_after: UtcTime | None = None


def key_entry(centre: str, kid: str, key: PinnedKey) -> dict[str, Any]:
    """A public key as bundles (§17) and archives (§18) list it."""
    entry: dict[str, Any] = {"centre": centre, "kid": kid,
                             "public_key": public_key_text(key.key)}
    if key.not_before is not None:
        entry["not_before"] = format_time(key.not_before)
    if key.not_after is not None:
        entry["not_after"] = format_time(key.not_after)
    return entry


class AuditProof(FrozenModel):
    """The exporter's audit entries about the message, linked to a signed checkpoint.

    ``links`` holds the content hash of every entry from ``first_seq`` up to the
    checkpoint; ``prev`` is the chain hash just before ``first_seq``.
    """

    entries: tuple[str, ...] = Field(min_length=1)
    first_seq: int = Field(ge=1)
    prev: Sha256Hex
    links: tuple[Sha256Hex, ...] = Field(min_length=1)
    checkpoint: dict[str, Any]


class Bundle(FrozenModel):
    """The signed content of an evidence bundle."""

    v: Literal[1]
    type: Literal["evidence-bundle"]
    exported_by: CentreId
    exported_at: UtcTime
    message: str = Field(description="base64url of the signed message's exact bytes")
    receipts: tuple[str, ...] = Field(description="base64url of each signed receipt")
    keys: tuple[BundleKey, ...] = Field(min_length=1)
    audit: AuditProof


class SignedBundle(FrozenModel):
    """The bundle file: a bundle and the exporter's signature (schema only)."""

    bundle: Bundle
    signature: Signature


def _input(bundle: Mapping[str, Any]) -> bytes:
    return DOMAIN_PREFIX + BUNDLE_CONTEXT + b"\n" + canonical_bytes(bundle)


def seal_bundle(bundle: dict[str, Any], key: SigningKey) -> bytes:
    """Sign a bundle (a JSON-ready dict matching :class:`Bundle`) as canonical bytes."""
    Bundle.model_validate(bundle)
    value = b64url_encode(key.private.sign(_input(bundle)))
    return canonical_bytes({"bundle": bundle,
                            "signature": {"alg": "Ed25519", "kid": key.kid, "value": value}})


# -- verification ----------------------------------------------------------------------


class BundleRefused(GatewayError):
    """The bundle does not prove what it claims; ``str()`` says why."""


@dataclass
class Outcome:
    """What one recipient's receipts say."""

    delivered_at: str | None = None
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    rejected: str | None = None


@dataclass
class Verdict:
    """A verified bundle, ready to be printed for a human."""

    message_id: str
    message_type: str
    sender: str
    recipients: tuple[str, ...]
    created: str
    incident: str | None
    sha256: str
    exporter: str
    exported_at: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    audit_entries: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: tuple[int, str, str] = (0, "", "")
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    keys_pinned: bool = False

    def lines(self) -> list[str]:
        """The human-readable verdict."""
        out = [
            "VERIFIED: every signature in this bundle holds.",
            f"Message {self.message_id} ({self.message_type}"
            + (f", incident {self.incident}" if self.incident else "") + ")",
            f"  sent by {self.sender} at {self.created} to {', '.join(self.recipients)}",
            f"  SHA-256 of the signed envelope: {self.sha256}",
        ]
        for peer in self.recipients:
            o = self.outcomes.get(peer, Outcome())
            if o.rejected:
                state = f"REJECTED ({o.rejected})"
            elif o.acknowledged_at:
                state = (f"delivered {o.delivered_at or '(receipt not included)'}, "
                         f"acknowledged {o.acknowledged_at}"
                         + (f" by {o.acknowledged_by}" if o.acknowledged_by else ""))
            elif o.delivered_at:
                state = f"delivered {o.delivered_at}, not acknowledged"
            else:
                state = "no receipt in this bundle"
            out.append(f"  {peer}: {state}")
        seq, head, at = self.checkpoint
        out.append(f"Audit log of {self.exporter}: {len(self.audit_entries)} entries, "
                   f"chained to checkpoint #{seq} (head {head[:16]}...) signed {at}")
        for e in self.audit_entries:
            data = e.get("data", {})
            extra = ", ".join(f"{k}={v}" for k, v in sorted(data.items())
                              if k in {"state", "recipient", "issuer", "from", "to", "reason"}
                              and v not in (None, ""))
            out.append(f"  #{e['seq']} {e['at']} {e['kind']} by {e['actor']}"
                       + (f" ({extra})" if extra else ""))
        out.append("Keys (" + ("matched against the keys pinned in your configuration"
                               if self.keys_pinned else
                               "taken from the bundle: compare the fingerprints with the "
                               "centres out of band") + "):")
        out.extend(f"  {c} {kid}  {fp}" for c, kid, fp in self.keys)
        out.append(f"Exported by {self.exporter} at {self.exported_at}.")
        return out


def _refuse(reason: str) -> BundleRefused:
    return BundleRefused(reason)


def _parse(data: bytes) -> tuple[dict[str, Any], Bundle]:
    if len(data) > MAX_BUNDLE_BYTES:
        raise _refuse(f"the file exceeds {MAX_BUNDLE_BYTES} bytes")
    body = data[:-1] if data.endswith(b"\n") else data
    try:
        raw = ijson.loads(body)
    except GatewayError as exc:
        raise _refuse(f"not a bundle: the file is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or set(raw) != {"bundle", "signature"} \
            or not isinstance(raw["bundle"], dict):
        raise _refuse("not a bundle: expected an object with 'bundle' and 'signature'")
    try:
        canonical = canonical_bytes(raw)
    except GatewayError as exc:
        raise _refuse(f"not a bundle: {exc}") from exc
    if canonical != body:
        raise _refuse("the file is not in the canonical form it was exported in: "
                      "it was modified after export")
    try:
        bundle = Bundle.model_validate(raw["bundle"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _refuse(f"malformed bundle: {where}: {first['msg']}") from exc
    return raw, bundle


def listed_keys(listed: Iterable[BundleKey], pinned: KeyRing | None, refuse: type[GatewayError]
                ) -> dict[tuple[str, str], PinnedKey]:
    """The public keys a file lists, by (centre, kid); with ``pinned`` (the verifier's
    own keys), each must be the key pinned there. Raises ``refuse(reason)`` otherwise.
    Evidence bundles (§17) and archives (§18) list their keys this way."""
    keys: dict[tuple[str, str], PinnedKey] = {}
    for k in listed:
        try:
            public = public_key_from_text(k.public_key)
        except GatewayError as exc:
            raise refuse(f"key {k.kid} of {k.centre} is unusable: {exc}") from exc
        if pinned is not None:
            mine = pinned.lookup(k.centre, k.kid)
            if mine is None or mine.key.public_bytes_raw() != public.public_bytes_raw():
                raise refuse(f"key {k.kid} of {k.centre} is not a key pinned in your "
                             "configuration")
        keys[(k.centre, k.kid)] = PinnedKey(kid=k.kid, key=public, not_before=k.not_before,
                                            not_after=k.not_after)
    return keys


def _check_signature(raw: dict[str, Any], bundle: Bundle,
                     keys: dict[tuple[str, str], PinnedKey]) -> None:
    sig = raw["signature"]
    if not isinstance(sig, dict) or set(sig) != {"alg", "kid", "value"} \
            or sig["alg"] != "Ed25519" or not isinstance(sig["kid"], str) \
            or not isinstance(sig["value"], str):
        raise _refuse("the bundle signature is malformed")
    key = keys.get((bundle.exported_by, sig["kid"]))
    if key is None:
        raise _refuse(f"the bundle is signed with {sig['kid'][:70]!r}, which is not a key of "
                      f"the exporter {bundle.exported_by} in the bundle")
    try:
        key.key.verify(b64url_decode(sig["value"]), _input(raw["bundle"]))
    except (InvalidSignature, ValueError) as exc:
        raise _refuse(f"the exporter's signature ({bundle.exported_by}) does not verify: "
                      "the bundle was altered") from exc


def _open(b64: str, ring: KeyRing, what: str) -> tuple[bytes, Any]:
    try:
        wire = b64url_decode(b64)
    except ValueError as exc:
        raise _refuse(f"{what}: not base64url ({exc})") from exc
    try:
        verified = open_signed(wire, ring)
    except (MalformedInput, VerificationError) as exc:
        raise _refuse(f"{what}: {exc.reason}: {exc.detail}") from exc
    return wire, verified


def _valid_at(verified: Verified, what: str) -> None:
    problem = key_problem(verified)
    if problem is not None:
        raise _refuse(f"{what}: {problem[1]} (signed at {verified.envelope.get('created')})")


def verify_bundle(data: bytes, pinned: KeyRing | None = None) -> Verdict:
    """Check every signature and link in a bundle; raise :class:`BundleRefused` with the
    reason at the first thing that does not hold.

    ``pinned``: the verifier's own pinned keys; when given, every key in the bundle must
    be one of them (otherwise the keys in the bundle are trusted and reported with
    their fingerprints for an out-of-band check).
    """
    raw, bundle = _parse(data)
    keys = listed_keys(bundle.keys, pinned, BundleRefused)
    _check_signature(raw, bundle, keys)
    ring = KeyRing.build((c, k) for (c, _), k in keys.items())

    _, message = _open(bundle.message, ring, "the message")
    env = message.envelope
    if env.get("type") == "receipt":
        raise _refuse("the message is a receipt, not a message")
    _valid_at(message, "the message")
    recipients = tuple(str(r) for r in env.get("to", ()) if isinstance(r, str))
    verdict = Verdict(
        message_id=str(env.get("id")), message_type=str(env.get("type")),
        sender=message.sender, recipients=recipients, created=str(env.get("created")),
        incident=env.get("incident") if isinstance(env.get("incident"), str) else None,
        sha256=message.digest, exporter=bundle.exported_by,
        exported_at=raw["bundle"]["exported_at"], keys_pinned=pinned is not None,
        keys=[(c, kid, fingerprint(k.key)) for (c, kid), k in sorted(keys.items())])
    if bundle.exported_by not in (message.sender, *recipients):
        raise _refuse(f"the exporter {bundle.exported_by} is neither the sender nor a "
                      "recipient of the message")

    receipt_hashes = _receipts(bundle, ring, verdict)
    _audit(bundle, keys, verdict, receipt_hashes)
    return verdict


def _receipts(bundle: Bundle, ring: KeyRing, verdict: Verdict) -> set[str]:
    hashes: set[str] = set()
    for n, b64 in enumerate(bundle.receipts, 1):
        what = f"receipt {n}"
        wire, receipt = _open(b64, ring, what)
        env = receipt.envelope
        if env.get("type") != "receipt":
            raise _refuse(f"{what}: is a {env.get('type')!r}, not a receipt")
        _valid_at(receipt, what)
        body = env.get("body") if isinstance(env.get("body"), dict) else {}
        if body.get("message_id") != verdict.message_id or \
                body.get("message_sha256") != verdict.sha256:
            raise _refuse(f"{what}: from {receipt.sender} answers another message or other "
                          "bytes than the ones in this bundle")
        if receipt.sender not in verdict.recipients or env.get("to") != [verdict.sender]:
            raise _refuse(f"{what}: {receipt.sender} is not a recipient of the message")
        outcome = verdict.outcomes.setdefault(receipt.sender, Outcome())
        state, at = body.get("state"), body.get("at")
        if state == "delivered":
            outcome.delivered_at = at
        elif state == "acknowledged":
            outcome.acknowledged_at, outcome.acknowledged_by = at, body.get("by")
        elif state == "rejected":
            outcome.rejected = f"{body.get('reason')} at {at}"
        hashes.add(sha256_hex(wire))
    return hashes


def _checkpoint(bundle: Bundle, keys: dict[tuple[str, str], PinnedKey]) -> Checkpoint:
    try:
        kid = checkpoint_kid(bundle.audit.checkpoint)
    except MalformedInput as exc:
        raise _refuse(f"audit checkpoint: {exc.detail}") from exc
    key = keys.get((bundle.exported_by, kid))
    if key is None:
        raise _refuse(f"audit checkpoint: signed with {kid[:70]!r}, not a key of the exporter")
    try:
        cp = open_checkpoint(bundle.audit.checkpoint, key)
    except (MalformedInput, VerificationError) as exc:
        raise _refuse(f"audit checkpoint: {exc.detail}") from exc
    if cp.centre != bundle.exported_by:
        raise _refuse("audit checkpoint: signed for another centre")
    return cp


def _audit(bundle: Bundle, keys: dict[tuple[str, str], PinnedKey], verdict: Verdict,
           receipt_hashes: set[str]) -> None:
    proof = bundle.audit
    cp = _checkpoint(bundle, keys)
    if proof.first_seq + len(proof.links) - 1 != cp.seq:
        raise _refuse(f"audit proof: {len(proof.links)} links from entry {proof.first_seq} "
                      f"do not reach the checkpoint at entry {cp.seq}")
    if head_from_links(proof.prev, proof.links) != cp.head:
        raise _refuse("audit proof: the links do not lead to the signed checkpoint head")
    seen_wires: set[str] = set()
    message_recorded = False
    for text in proof.entries:
        try:
            entry = json.loads(text)
            seq = int(entry["seq"])
        except (ValueError, KeyError, TypeError) as exc:
            raise _refuse("audit proof: an entry is not a log entry") from exc
        index = seq - proof.first_seq
        if not 0 <= index < len(proof.links) or \
                sha256_hex(text.encode()) != proof.links[index]:
            raise _refuse(f"audit proof: entry {seq} is not the entry chained at {seq}")
        data = entry.get("data") if isinstance(entry.get("data"), dict) else {}
        if entry.get("subject") != verdict.message_id:
            raise _refuse(f"audit proof: entry {seq} is about another message")
        if entry.get("kind") in ("message.submitted", "message.received") \
                and data.get("sha256") == verdict.sha256:
            message_recorded = True
        if isinstance(data.get("wire_sha256"), str):
            seen_wires.add(data["wire_sha256"])
        verdict.audit_entries.append(entry)
    if not message_recorded:
        raise _refuse("audit proof: no entry records these message bytes being sent or "
                      "received")
    missing = receipt_hashes - seen_wires
    if missing:
        raise _refuse(f"audit proof: {len(missing)} receipt(s) in the bundle are not "
                      "recorded in the exporter's audit log")
    verdict.checkpoint = (cp.seq, cp.head, format_time(cp.at))
