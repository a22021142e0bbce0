"""A signal that the ledger changed: one source for every live view.

The ledger bumps :class:`ChangeSignal` once per committed batch of writes. A live view
(the console's event stream) waits on it instead of polling: however many browsers are
open, one task reads the ledger once per change (:mod:`gateway.web.console.live`).
"""

from __future__ import annotations

import asyncio


class ChangeSignal:
    """A version number that goes up on every committed change, and a way to wait for
    the next one. Used from the event loop only."""

    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def bump(self) -> None:
        """Something was committed: wake every waiter."""
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen: int) -> int:
        """The version once it is past ``seen`` (at once if it already is); bound the
        wait with ``asyncio.timeout``."""
        if self.version == seen:
            await self._event.wait()
        return self.version
