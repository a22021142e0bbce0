"""Release policy: which messages may go to (and come from) which peers.

Rules are checked at submission, per recipient, where a refusal is a 422 naming the
rule, and again at reception, where a refusal is a signed ``rejected`` receipt with
reason ``policy`` naming the rule. The functions are pure: they see the configured
peers and the envelope's markings, nothing else.

- ``red-named-only``: TLP:RED goes only to centres named explicitly, never through a
  group (checked by the sender, which alone resolves groups).
- ``amber-strict-named-only``: TLP:AMBER+STRICT likewise stays with the named centres.
- ``exercise-participants``: exercise traffic goes only to, and is accepted only from,
  peers configured with ``exercise = true``.
- ``release-marking``: a peer in a release group (``eu`` by default) receives only
  messages marked releasable to that group, and a message from such a peer must carry
  the same marking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.config import PeerSection
from gateway.config_operations import PolicySection

RED_NAMED_ONLY = "red-named-only"
AMBER_STRICT_NAMED_ONLY = "amber-strict-named-only"
EXERCISE_PARTICIPANTS = "exercise-participants"
RELEASE_MARKING = "release-marking"


@dataclass(frozen=True, slots=True)
class Violation:
    """One rule broken for one peer."""

    rule: str
    peer: str
    detail: str


def check_outgoing(policy: PolicySection, peers: Mapping[str, PeerSection],
                   routes: Mapping[str, str | None], *, tlp: str, mode: str,
                   releasable: Sequence[str]) -> list[Violation]:
    """Violations of sending a message with these markings along ``routes``
    (recipient -> the group it was reached through, None when named)."""
    found = []
    for peer_id, group in routes.items():
        peer = peers[peer_id]
        if group is not None and tlp == "RED" and not policy.red_to_groups:
            found.append(Violation(RED_NAMED_ONLY, peer_id,
                                   f"TLP:RED goes only to centres named explicitly, "
                                   f"not through the group {group}"))
        if group is not None and tlp == "AMBER+STRICT" and not policy.amber_strict_to_groups:
            found.append(Violation(AMBER_STRICT_NAMED_ONLY, peer_id,
                                   f"TLP:AMBER+STRICT stays with the named organisations, "
                                   f"not the group {group}"))
        found.extend(_common(policy, peer, mode=mode, releasable=releasable, outgoing=True))
    return found


def check_incoming(policy: PolicySection, peer: PeerSection, *, mode: str,
                   releasable: Sequence[str]) -> list[Violation]:
    """Violations of accepting a message with these markings from ``peer``."""
    return _common(policy, peer, mode=mode, releasable=releasable, outgoing=False)


def _common(policy: PolicySection, peer: PeerSection, *, mode: str,
            releasable: Sequence[str], outgoing: bool) -> list[Violation]:
    found = []
    if mode == "exercise" and not peer.exercise:
        where = "does not take part" if outgoing else "does not take part with us"
        found.append(Violation(EXERCISE_PARTICIPANTS, peer.id,
                               f"{peer.id} {where} in exercises"))
    for group in policy.release_groups:
        if group in peer.groups and group not in releasable:
            found.append(Violation(RELEASE_MARKING, peer.id,
                                   f"{peer.id} is in the group {group}, which receives only "
                                   f"what is marked releasable to {group}"))
    return found
