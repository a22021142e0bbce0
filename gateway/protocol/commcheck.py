"""Body of a ``commcheck`` message: a communication test between crisis centres (pure).

A communication test is a signed message in ``test`` mode sent to every peer. The
peer's node answers it like any message: its ``delivered`` receipt is the technical
leg (round-trip time, verified signature), and the ``acknowledged`` receipt its duty
officer sends from the console is the human leg (time to confirmation).

The third leg tests the alternative means: the sender e-mails each peer's contact point
a one-time code; a duty officer there enters it in that centre's console, whose node
returns it in a signed ``fallback`` message. The sender keeps only a digest of each
code and answers a wrong one ``rejected``, so the peer's console says so.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from gateway.protocol.types import FrozenModel, MessageId

COMMCHECK_TYPE = "commcheck"


class CommCheck(FrozenModel):
    """What a communication test says: who asked for it, and an optional note."""

    requested_by: str = Field(min_length=1, max_length=100,
                              description="Operator or schedule that started the test")
    note: str | None = Field(default=None, max_length=500)


# --- The fallback leg: a one-time code over the alternative means (e-mail) ------------

#: The message type by which a peer's node returns the code its duty officer entered.
FALLBACK_TYPE = "fallback"
#: Crockford's base32: no I, L, O or U, so a code read over the phone is not misread.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10
#: A code is valid this long after it was sent (a quarter's test is answered in days).
VALID_FOR = timedelta(days=14)
#: Wrong codes a peer may return for one test before its attempts are refused.
MAX_ATTEMPTS = 5
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


class FallbackConfirmation(FrozenModel):
    """Body of a ``fallback`` message: the one-time code a duty officer of the sending
    centre entered, which the recipient's node e-mailed for its communication test."""

    check_id: MessageId = Field(description="The communication test (its message id)")
    code: str = Field(min_length=4, max_length=32, pattern=r"^[0-9A-Za-z -]+$",
                      description="The code as entered (case, spaces and hyphens ignored)")
    confirmed_by: str = Field(min_length=1, max_length=100,
                              description="The duty officer who entered it")


def new_code(random: bytes) -> str:
    """A code from ``CODE_LENGTH`` random bytes, in two groups: ``7KQ2M-XD94R``."""
    if len(random) < CODE_LENGTH:
        raise ValueError(f"need {CODE_LENGTH} random bytes")
    chars = "".join(ALPHABET[b % len(ALPHABET)] for b in random[:CODE_LENGTH])
    return f"{chars[:5]}-{chars[5:]}"


def normalize(code: str) -> str:
    """The code as compared: upper case, without spaces and hyphens, O read as 0 and
    I or L as 1."""
    return "".join(code.split()).replace("-", "").upper().translate(_READ_AS)


def code_digest(check_id: str, peer: str, code: str) -> str:
    """What the sender keeps of a code (never the code): a SHA-256 bound to the test and
    the peer, so a code cannot be replayed for another test or by another peer."""
    data = f"crisisgw-fallback-v1\n{check_id}\n{peer}\n{normalize(code)}".encode()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class CodeSent:
    """A code e-mailed to a peer's contact point for one test."""

    peer: str
    digest: str
    sent_at: datetime


def judge(sent: CodeSent | None, code: str, check_id: str, *, wrong_before: int,
          confirmed: bool, now: datetime) -> str | None:
    """Whether ``code``, returned by ``sent.peer`` for test ``check_id``, proves the
    fallback: None when it does, else why not (for the ``rejected`` receipt). A test
    already confirmed stays confirmed (a repeat is not an error)."""
    if sent is None:
        return "no fallback code was sent to this centre for that test"
    if confirmed:
        return None
    if wrong_before >= MAX_ATTEMPTS:
        return f"too many wrong codes for this test ({MAX_ATTEMPTS})"
    if now > sent.sent_at + VALID_FOR:
        return "the code has expired"
    if not hmac.compare_digest(code_digest(check_id, sent.peer, code), sent.digest):
        return "the code does not match"
    return None


def fallback_mail(*, check_id: str, sender: str, peer: str, code: str,
                  console_url: str | None) -> tuple[str, str]:
    """Subject and text of the e-mail that carries a code to a peer's contact point."""
    where = (f"{console_url.rstrip('/')}/fallback?from={sender}&check={check_id}"
             f"&code={code}" if console_url else
             "the Communication tests page of your gateway console")
    return (f"Communication test from {sender}: confirm code {code}",
            f"{sender} is testing the alternative means of communication with {peer}.\n\n"
            f"Please confirm this one-time code in your crisis gateway console:\n\n"
            f"    {code}\n\n"
            f"Open {where}\n"
            "and confirm it there. The code proves that this e-mail reached your duty "
            f"officers; it is valid for {VALID_FOR.days} days.\n\n"
            f"Test: {check_id}\n"
            "This is an automated test message; it needs no other action.\n")
