"""The peer directory: who our peers are, their groups, and how to address them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from gateway.config import PeerSection
from gateway.errors import PolicyRefused
from gateway.protocol.types import CENTRE_ID_PATTERN

_CENTRE_RE = re.compile(CENTRE_ID_PATTERN)


class Directory:
    """Resolves recipients (centre ids and group names) against the configured peers."""

    def __init__(self, me: str, peers: Sequence[PeerSection],
                 fields: dict[str, list[str]] | None = None) -> None:
        self.me = me
        #: "field:<field of work>" -> centres with a contact point in that field.
        self.fields = fields or {}
        self.peers = {p.id: p for p in peers}
        self.groups: dict[str, list[str]] = {}
        for p in peers:
            for g in p.groups:
                self.groups.setdefault(g, []).append(p.id)
        self._by_user = {p.granted_user: p.id for p in peers}

    def peer(self, centre: str) -> PeerSection | None:
        """The peer with this id, if any."""
        return self.peers.get(centre)

    def peer_for_user(self, amqp_user: str) -> str | None:
        """The peer that publishes into our inbox as ``amqp_user``."""
        return self._by_user.get(amqp_user)

    def resolve(self, names: Iterable[str]) -> tuple[str, ...]:
        """Expand centre ids and group names into distinct active peer ids, in order.

        Raises :class:`PolicyRefused` naming every unknown or suspended
        recipient; our own centre id is refused as well.
        """
        return tuple(self.resolve_routes(names))

    def resolve_routes(self, names: Iterable[str]) -> dict[str, str | None]:
        """Like :meth:`resolve`, mapping each recipient to the group it was reached
        through, or None when it was named explicitly (naming wins over a group)."""
        names = list(names)
        out: list[str] = []
        via: dict[str, str | None] = {}
        errors: list[dict[str, object]] = []
        for index, name in enumerate(names):
            if name in self.peers:
                members = [name]
            elif name in self.groups:
                members = self.groups[name]
            elif name.startswith("field:") and self.fields.get(name[6:]):
                members = [c for c in self.fields[name[6:]] if c in self.peers]
            elif name == self.me:
                errors.append({"loc": ["to", index], "msg": f"{name} is this centre itself",
                               "code": "recipient_self", "name": name})
                continue
            else:
                kind = "centre" if _CENTRE_RE.match(name) else "centre or group"
                errors.append({"loc": ["to", index], "msg": f"unknown {kind}: {name}",
                               "code": "recipient_unknown", "name": name})
                continue
            for m in members:
                if self.peers[m].suspended:
                    errors.append({"loc": ["to", index], "msg": f"peer {m} is suspended",
                                   "code": "recipient_suspended", "name": m})
                    continue
                if m not in out:
                    out.append(m)
                if name == m or m not in via:
                    via[m] = None if name == m else name
        if errors:
            names_text = ", ".join(str(e["msg"]) for e in errors)
            raise PolicyRefused("Unknown recipient", names_text, errors)
        if not out:
            raise PolicyRefused("No recipient", "the recipient list is empty",
                                  [{"loc": ["to"], "msg": "no recipient",
                                    "code": "no_recipient"}])
        return {m: via[m] for m in out}
