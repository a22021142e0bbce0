"""Body of a ``commcheck`` message: a communication test between crisis centres (pure).

A communication test is a signed message in ``test`` mode sent to every peer. The
peer's node answers it like any message: its ``delivered`` receipt is the technical
leg (round-trip time, verified signature), and the ``acknowledged`` receipt its duty
officer sends from the console is the human leg (time to confirmation).
"""

from __future__ import annotations

from pydantic import Field

from gateway.protocol.types import FrozenModel

COMMCHECK_TYPE = "commcheck"


class CommCheck(FrozenModel):
    """What a communication test says: who asked for it, and an optional note."""

    requested_by: str = Field(min_length=1, max_length=100,
                              description="Operator or schedule that started the test")
    note: str | None = Field(default=None, max_length=500)
