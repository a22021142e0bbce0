"""Body of a ``directory`` message: a centre's own contact points per field of work (pure).

Each centre is authoritative for its own entries only: a directory message carries the
complete current list of the *sender's* contact points and replaces whatever the
receiver held for that centre. Entries not re-confirmed for 90 days are flagged.
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum

from pydantic import Field

from gateway.protocol.types import FrozenModel, LangTag

DIRECTORY_TYPE = "directory"
STALE_AFTER = timedelta(days=90)


class FieldOfWork(StrEnum):
    """Fields of work with a contact point in every centre (Benelux programme)."""

    PUBLIC_HEALTH = "public-health"
    NUCLEAR_RADIOLOGICAL = "nuclear-radiological"
    CIVIL_PROTECTION = "civil-protection"
    PUBLIC_ORDER_SECURITY = "public-order-security"
    CRITICAL_INFRASTRUCTURE = "critical-infrastructure"
    CYBER = "cyber"
    CRISIS_COMMUNICATION = "crisis-communication"


class ContactPoint(FrozenModel):
    """One contact point of a centre for one field of work."""

    field: FieldOfWork
    name: str = Field(min_length=1, max_length=200, description="Person or desk")
    role: str | None = Field(default=None, max_length=200)
    phone: str = Field(pattern=r"^\+?[0-9 ()./-]{3,32}$")
    email: str = Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$")
    languages: tuple[LangTag, ...] = Field(min_length=1, max_length=8)
    available_24_7: bool
    confirmed: date = Field(description="When the centre last re-confirmed this entry")


class DirectoryUpdate(FrozenModel):
    """The complete list of the sender's contact points (replaces earlier ones)."""

    entries: tuple[ContactPoint, ...] = Field(max_length=200)


def is_stale(entry: ContactPoint, today: date) -> bool:
    """Whether the entry was last confirmed more than 90 days before ``today``."""
    return today - entry.confirmed > STALE_AFTER
