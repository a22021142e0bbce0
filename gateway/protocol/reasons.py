"""Documented reason codes (pure). docs/PROTOCOL.md lists the same codes.

Codes in ``RECEIPTED`` are sent back to an authenticated sender in a signed
``rejected`` receipt. Codes in ``SECURITY`` are recorded as security events and never
answered: the sender is not authenticated, or the signed input breaks the transport
binding, reuses an id, or refers to nothing we sent. A receipt is never answered
either, so a receipt refused for a ``RECEIPTED`` reason is recorded the same way.

The ``attachment_*`` and ``chunk_invalid`` codes belong to the optional attachments
feature (PROTOCOL.md §19): a node sends ``attachment_too_large`` only in answer to a
message that carries attachments, hence only to a sender that implements the feature.
"""

from __future__ import annotations

# Answered with a signed "rejected" receipt (sender authenticated).
EXPIRED = "expired"
STALE = "stale"
FUTURE = "future_dated"
SCHEMA_INVALID = "schema_invalid"
NOT_ADDRESSED = "not_addressed"
UNSUPPORTED_VERSION = "unsupported_version"
UNSUPPORTED_TYPE = "unsupported_type"
KEY_NOT_VALID = "key_not_valid"
POLICY = "policy"
#: The attachments of a message exceed a bound of the receiver (§19.8).
ATTACHMENT_TOO_LARGE = "attachment_too_large"

# Security events (no receipt: the sender is not authenticated).
TOO_LARGE = "too_large"
NOT_IJSON = "not_ijson"
MALFORMED = "malformed"
UNKNOWN_SENDER = "unknown_sender"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
SENDER_MISMATCH = "sender_mismatch"
UNEXPECTED_RECEIPT = "unexpected_receipt"
ID_CONFLICT = "id_conflict"
#: Also answered (``key_not_valid``): recorded because it may be an attempted takeover.
KEY_UPDATE_REFUSED = "key_update_refused"
# Attachments (§19): chunks are never answered; a hostile file name is also answered
# (schema_invalid), the per-peer bound refuses without an answer (the sender resends).
ATTACHMENT_NAME_REFUSED = "attachment_name_refused"
ATTACHMENT_QUOTA = "attachment_quota"
ATTACHMENT_UNREFERENCED = "attachment_unreferenced"
ATTACHMENT_HASH_MISMATCH = "attachment_hash_mismatch"
CHUNK_INVALID = "chunk_invalid"

RECEIPTED = frozenset(
    {EXPIRED, STALE, FUTURE, SCHEMA_INVALID, NOT_ADDRESSED, UNSUPPORTED_VERSION,
     UNSUPPORTED_TYPE, KEY_NOT_VALID, POLICY, ATTACHMENT_TOO_LARGE}
)
SECURITY = frozenset(
    {TOO_LARGE, NOT_IJSON, MALFORMED, UNKNOWN_SENDER, UNKNOWN_KEY, BAD_SIGNATURE,
     SENDER_MISMATCH, UNEXPECTED_RECEIPT, ID_CONFLICT, KEY_UPDATE_REFUSED,
     ATTACHMENT_NAME_REFUSED, ATTACHMENT_QUOTA, ATTACHMENT_UNREFERENCED,
     ATTACHMENT_HASH_MISMATCH, CHUNK_INVALID}
)
ALL = RECEIPTED | SECURITY

DESCRIPTIONS: dict[str, str] = {
    EXPIRED: "the message's expiry time has passed (beyond the clock-skew tolerance)",
    STALE: "the message was created longer ago than the dedup window",
    FUTURE: "the message was created further in the future than the clock-skew tolerance",
    SCHEMA_INVALID: "the envelope or body does not validate against the schema",
    NOT_ADDRESSED: "the receiving centre is not among the recipients",
    UNSUPPORTED_VERSION: "the protocol version is not supported by the receiver",
    UNSUPPORTED_TYPE: "the message type is not known to the receiver",
    KEY_NOT_VALID: "the signing key was not valid (expired, revoked) at the creation time",
    POLICY: "the release policy of the receiver refuses the message",
    ATTACHMENT_TOO_LARGE: ("the attachments exceed a bound of the receiver (their number, "
                           "the size of one, or their total)"),
    TOO_LARGE: "the payload exceeds the size limit",
    NOT_IJSON: "the payload is not I-JSON (RFC 7493)",
    MALFORMED: "the payload is not a well-formed signed-message object (shape, message id)",
    UNKNOWN_SENDER: "no keys are pinned for the claimed sender",
    UNKNOWN_KEY: "the key id is not pinned for the claimed sender",
    BAD_SIGNATURE: "the signature does not verify",
    SENDER_MISMATCH: "the broker-authenticated publisher is not the claimed sender",
    UNEXPECTED_RECEIPT: ("a receipt for a message never sent to that centre, with a wrong "
                         "digest, or dated before the message"),
    ID_CONFLICT: "the sender reused a message id for different content",
    KEY_UPDATE_REFUSED: ("a key-update broke the rotation rule of §3.3c; the message is "
                         "also answered with key_not_valid"),
    ATTACHMENT_NAME_REFUSED: ("an attachment's file name is a path or hides what it is "
                              "(separator, dots only, control or bidirectional character); "
                              "the message is also answered with schema_invalid"),
    ATTACHMENT_QUOTA: ("the sender's attachment bytes in flight would exceed the receiver's "
                       "per-peer bound; nothing is recorded, the sender resends"),
    ATTACHMENT_UNREFERENCED: ("a chunk of an attachment its message does not reference, or "
                              "whose message did not arrive in time"),
    ATTACHMENT_HASH_MISMATCH: ("the reassembled bytes of an attachment do not have the "
                               "SHA-256 of its reference; its chunks are discarded"),
    CHUNK_INVALID: ("a chunk does not fit its attachment or its message (index past the "
                    "declared size, wrong length, bytes unlike those held, envelope fields)"),
}
