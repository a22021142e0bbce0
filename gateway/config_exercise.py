"""``[exercise]``: how this node plays exercises on the live federation
(:mod:`gateway.protocol.exercise`), and how it reaches the other centres' nodes.

An exercise's injects from this centre go through this node's own submission path;
those from another centre go through that centre's HTTP API, with a token its
operators issued for the exercise (scopes ``submit`` and ``read``: the after-action
report reads back delivery, reading and acknowledgement times). Example::

    [[exercise.centres]]
    id = "NL-NCC"
    api_url = "https://gateway.ncc.example"
    token_file = "/etc/crisisgw/exercise/NL-NCC.token"
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gateway.protocol.types import CentreId


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExerciseCentre(_Section):
    """Another centre's node, as the exercise controller reaches it."""

    id: CentreId
    api_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]
    token_file: Path
    #: A CA file for the centre's HTTPS certificate (default: the system's CAs).
    ca_file: Path | None = None


class ExerciseSection(_Section):
    """Exercises: the pace of the player, and the other centres' APIs."""

    #: How often the player looks for injects that fell due.
    every_seconds: float = Field(default=1.0, gt=0, le=60)
    centres: tuple[ExerciseCentre, ...] = Field(default=(), max_length=64)

    def centre(self, centre: str) -> ExerciseCentre | None:
        """How to reach ``centre``'s node, if configured."""
        return next((c for c in self.centres if c.id == centre), None)
