"""TLS client contexts for AMQP links, anchored in what the peer pinned.

A context is built for every connection attempt from the files and text of a
:class:`~gateway.config.TlsSection`, so renewed certificates are picked up without a
restart. It never loads the system CA store, requires TLS 1.2 or later, and checks the
host name. With a ``spki_sha256`` anchor, OpenSSL's chain check is replaced by
:func:`gateway.protocol.tlsanchor.leaf_problem`, run inside the handshake: a broker that
fails it never receives a byte of AMQP, so never a password.

:func:`classify` turns whatever a failed connection raised into a
:class:`~gateway.errors.TlsFailure` with a reason an operator can act on.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import TlsSection
from gateway.errors import ConfigError, TlsFailure
from gateway.protocol import tlsanchor as ta

# OpenSSL X509_V_ERR_* codes (openssl/x509_vfy.h) and the reason each one means here.
_VERIFY_CODES = {
    9: ta.NOT_YET_VALID,      # CERT_NOT_YET_VALID
    10: ta.EXPIRED,           # CERT_HAS_EXPIRED
    62: ta.HOSTNAME_MISMATCH,  # HOSTNAME_MISMATCH
    64: ta.HOSTNAME_MISMATCH,  # IP_ADDRESS_MISMATCH
}
# Alerts a broker sends when it refuses our client certificate.
_CLIENT_REFUSALS = ("ALERT_CERTIFICATE_REQUIRED", "ALERT_BAD_CERTIFICATE",
                    "ALERT_UNKNOWN_CA", "ALERT_CERTIFICATE_UNKNOWN", "ALERT_CERTIFICATE_EXPIRED",
                    "ALERT_CERTIFICATE_REVOKED", "ALERT_UNSUPPORTED_CERTIFICATE")
# What OpenSSL says when the other end does not speak TLS at all (a plaintext port).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE",
            "UNKNOWN_PROTOCOL", "HTTP_REQUEST")


class _PinRefused(ssl.SSLCertVerificationError):
    """Raised inside the handshake when the pinned-key check fails."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.crisisgw_reason = reason
        self.crisisgw_detail = detail


class AnchoredContext(ssl.SSLContext):
    """A client context that records how far its handshake got (to tell a handshake
    timeout from an unreachable host) and, for pinned keys, checks the leaf in it."""

    pins: frozenset[str] = frozenset()
    host: str = ""
    tcp_connected = False
    handshake_done = False


class _CheckedObject(ssl.SSLObject):
    def do_handshake(self) -> None:
        ctx = self.context
        assert isinstance(ctx, AnchoredContext)
        ctx.tcp_connected = True
        super().do_handshake()  # SSLWantReadError until the handshake is complete
        if ctx.pins:
            problem = ta.leaf_problem(self.getpeercert(binary_form=True), pins=ctx.pins,
                                      host=ctx.host, now=datetime.now(UTC))
            if problem is not None:
                raise _PinRefused(*problem)
        ctx.handshake_done = True


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc}") from exc


def client_context(tls: TlsSection, host: str) -> AnchoredContext:
    """A fresh context for one connection to ``host``. Raises :class:`ConfigError` when
    a file is missing or unreadable (the configuration points at it)."""
    ctx = AnchoredContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.sslobject_class = _CheckedObject
    ctx.host = host
    if tls.spki_sha256:
        # The pin replaces the chain: OpenSSL must not refuse a certificate from a CA we
        # do not know before our own check (leaf_problem) sees it.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.pins = frozenset(tls.spki_sha256)
    else:
        ca = tls.ca if tls.ca is not None else _read(tls.ca_file, "CA file") if tls.ca_file else ""
        try:
            ta.load_ca_pem(ca)
            ctx.load_verify_locations(cadata=ca)
        except (ValueError, ssl.SSLError) as exc:
            raise ConfigError(f"the TLS trust anchor for {host} is unusable: {exc}") from exc
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    if tls.client_cert is not None and tls.client_key is not None:
        try:
            ctx.load_cert_chain(tls.client_cert, tls.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the client certificate {tls.client_cert}: "
                              f"{exc}") from exc
    return ctx


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _from_ssl_error(err: ssl.SSLError, where: str) -> TlsFailure:
    if isinstance(err, _PinRefused):
        return TlsFailure(err.crisisgw_reason, f"{where}: {err.crisisgw_detail}")
    if isinstance(err, ssl.SSLCertVerificationError):
        reason = _VERIFY_CODES.get(err.verify_code, ta.UNTRUSTED)
        return TlsFailure(reason, f"{where}: {err.verify_message}")
    code = str(getattr(err, "reason", "") or err)
    if any(alert in code for alert in _CLIENT_REFUSALS):
        return TlsFailure(ta.CLIENT_CERT_REFUSED,
                          f"{where}: the broker refused our client certificate ({code})")
    if any(marker in code for marker in _NOT_TLS):
        return TlsFailure(ta.NOT_TLS, f"{where} does not speak TLS ({code}); "
                          "nothing was sent in plaintext")
    return TlsFailure(ta.HANDSHAKE_FAILED, f"{where}: {code}")


def classify(exc: BaseException, ctx: AnchoredContext | None, where: str) -> TlsFailure | None:
    """The TLS reason behind a failed connection to ``where``, or None when the failure
    is not about TLS (refused TCP connection, AMQP error after a good handshake)."""
    if ctx is None:
        return None
    ssl_error = next((e for e in _chain(exc) if isinstance(e, ssl.SSLError)), None)
    if ssl_error is not None:
        return _from_ssl_error(ssl_error, where)
    if not ctx.tcp_connected or ctx.handshake_done:
        return None
    if any(isinstance(err, TimeoutError) for err in _chain(exc)):
        return TlsFailure(ta.HANDSHAKE_TIMEOUT, f"{where} did not complete the TLS "
                          "handshake in time", retryable=True)
    return TlsFailure(ta.HANDSHAKE_FAILED, f"{where} closed the connection during the "
                      f"TLS handshake: {exc!r}"[:300], retryable=True)


class ServerCertificate:
    """The HTTPS context of the API: TLS 1.2 or later, with the node's certificate chain
    and key, reloaded in place when the files are renewed (new handshakes use the new
    certificate; open connections keep theirs)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self._cert, self._key = cert, key
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._files()
        self._load()

    def _files(self) -> tuple[int, int]:
        try:
            return (self._cert.stat().st_mtime_ns, self._key.stat().st_mtime_ns)
        except OSError:
            return (-1, -1)

    def _load(self) -> None:
        # Try the pair on a scratch context first: a certificate renewed before its key
        # (two files, two renames) must not leave the live context with a mismatched pair.
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self._cert, self._key)
            self.context.load_cert_chain(self._cert, self._key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the API certificate {self._cert}: {exc}") from exc

    def refresh(self) -> bool:
        """Reload the files if they changed; True when a new certificate is in use.
        Raises :class:`ConfigError` (and keeps the old one) when the new files are bad."""
        stamp = self._files()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self._load()
        return True
