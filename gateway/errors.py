"""One root for every error the gateway raises on purpose.

    GatewayError
    ├── ProtocolError            bad wire input; carries a reason code (see protocol.reasons)
    │   ├── MalformedInput       not I-JSON, not an envelope, wrong size or shape
    │   ├── VerificationError    signature, key or sender binding does not hold
    │   └── RejectedMessage      authentic but refused (stale, expired, schema, not addressed)
    ├── KeyMaterialError         a key is malformed, small-order or unknown at enrolment
    │   └── KeyUpdateRefused     a peer's key-update breaks the rotation rule (names the rule)
    ├── ConfigError              the configuration file or directory is invalid
    ├── RequestRefused           a caller's request cannot be served; title, detail, fields
    │   ├── NotFound             no such message, incident, peer or key
    │   ├── Ambiguous            the id names several things; the caller must say which
    │   ├── InvalidRequest       the request's form is wrong (query, header, format)
    │   ├── InvalidBody          the body parses but a field is out of range
    │   ├── PolicyRefused        well-formed, but a rule forbids it (release policy,
    │   │                        unknown recipient, Draft alert, expiry out of range)
    │   ├── StateConflict        the thing's state does not allow it (acknowledge a rejected
    │   │                        message)
    │   ├── IdempotencyConflict  the Idempotency-Key came with another request
    │   └── NoSuchForm           the message has no form in the format asked for
    ├── XmlError                 an XML document (CAP, EDXL) is refused; names line and element
    ├── LedgerError              the ledger failed (disk full, corruption); maps to HTTP 503/507
    └── TransportError           the broker failed; always translated from aio-pika/aiormq
        ├── PublishUnknown       the outcome of a publish is unknown (timeout, connection lost)
        └── PublishRefused       the broker refused (returned, nacked, access refused)
            └── TlsFailure       the TLS handshake with a broker failed; ``reason`` says why

Third-party errors are translated at the adapter boundary with ``raise ... from exc``.
Errors are named after what happened; HTTP statuses are given to them in one place only,
:mod:`gateway.web.problems`.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of all errors raised by the gateway on purpose."""


class ProtocolError(GatewayError):
    """Wire input that the protocol refuses; ``reason`` is a documented reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MalformedInput(ProtocolError):
    """The bytes are not an acceptable wire object (not I-JSON, wrong shape, too large)."""


class VerificationError(ProtocolError):
    """The signature, the key or the sender binding does not verify."""


class RejectedMessage(ProtocolError):
    """The message is authentic but refused: stale, expired, schema-invalid, not addressed."""


class KeyMaterialError(GatewayError):
    """A public or private key is malformed, of small order, or unknown."""


class KeyUpdateRefused(KeyMaterialError):
    """A key-update that the rule of docs/PROTOCOL.md §3.3c does not allow; ``rule``
    names which part of it."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


class ConfigError(GatewayError):
    """The configuration is invalid; the message names the file and the field."""


class RequestRefused(GatewayError):
    """A caller's request is refused: ``title`` says what in a few words, ``detail`` why,
    ``errors`` name the fields (``[{"loc": [...], "msg": ...}]``)."""

    def __init__(self, title: str, detail: str,
                 errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(f"{title}: {detail}")
        self.title = title
        self.detail = detail
        self.errors = errors or []


class NotFound(RequestRefused):
    """There is no such message, incident, peer or key."""


class Ambiguous(RequestRefused):
    """The id names several things (one message id from two senders)."""


class InvalidRequest(RequestRefused):
    """The request's form is wrong: a query parameter, a header, a format name."""


class InvalidBody(RequestRefused):
    """The body parses, but a field is missing, unknown or out of range."""


class PolicyRefused(RequestRefused):
    """Well-formed, but a rule forbids it: the release policy, an unknown recipient, a
    Draft alert, an expiry out of range."""


class StateConflict(RequestRefused):
    """The thing's current state does not allow the request."""


class IdempotencyConflict(RequestRefused):
    """The Idempotency-Key was used before with a different request."""


class NoSuchForm(RequestRefused):
    """The message has no form in the format asked for (a directory update as CAP)."""


class XmlError(GatewayError):
    """An XML document is refused; ``line`` and ``element`` locate the first problem."""

    def __init__(self, detail: str, *, line: int | None = None, element: str | None = None,
                 errors: list[dict[str, object]] | None = None) -> None:
        where = ", ".join(p for p in (f"line {line}" if line else "",
                                      f"element {element}" if element else "") if p)
        super().__init__(f"{detail} ({where})" if where else detail)
        self.detail = detail
        self.line = line
        self.element = element
        self.errors = errors or []


class LedgerError(GatewayError):
    """The ledger cannot complete the operation; nothing was half-written."""

    def __init__(self, detail: str, *, disk_full: bool = False,
                 unavailable: bool = False) -> None:
        super().__init__(detail)
        self.disk_full = disk_full
        #: The database cannot be reached for now (a server restart, a lost route): the
        #: same operation will work once it is back, so callers wait instead of giving up.
        self.unavailable = unavailable

    @property
    def transient(self) -> bool:
        """Whether waiting and trying again is the answer (full disk, unreachable)."""
        return self.disk_full or self.unavailable


class TransportError(GatewayError):
    """The broker or the network failed."""


class PublishUnknown(TransportError):
    """The publish may or may not have reached the broker; resend the identical bytes."""


class PublishRefused(TransportError):
    """The broker refused the publish; ``retryable`` says whether trying again can help."""

    def __init__(self, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.retryable = retryable


class TlsFailure(PublishRefused):
    """The TLS handshake with a broker failed: ``reason`` is one of
    :data:`gateway.protocol.tlsanchor.REASONS` (expired, untrusted, hostname_mismatch,
    handshake_timeout, ...). Only a handshake timeout is worth retrying soon."""

    def __init__(self, reason: str, detail: str, *, retryable: bool = False) -> None:
        super().__init__(f"TLS {reason}: {detail}", retryable=retryable)
        self.reason = reason
