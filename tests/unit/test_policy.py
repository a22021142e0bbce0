"""Release policy rules, at submission (per recipient route) and at reception."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from gateway.config import KeyEntry, PeerSection
from gateway.config_operations import PolicySection
from gateway.errors import PolicyRefused
from gateway.protocol.keys import public_key_text
from gateway.service.directory import Directory
from gateway.service.policy import (
    AMBER_STRICT_NAMED_ONLY,
    EXERCISE_PARTICIPANTS,
    RED_NAMED_ONLY,
    RELEASE_MARKING,
    check_incoming,
    check_outgoing,
)


def _peer(centre: str, groups: tuple[str, ...] = (), *, exercise: bool = True) -> PeerSection:
    key = public_key_text(Ed25519PrivateKey.generate().public_key())
    return PeerSection(id=centre, name=centre, country=centre[:2], groups=groups,
                       keys=(KeyEntry(kid=f"{centre}.1", public_key=key),),
                       inbox_url=SecretStr("amqp://x:y@127.0.0.1/"),
                       granted_user=f"{centre}@BE-NCCN", exercise=exercise)


PEERS = {p.id: p for p in (_peer("NL-NCC", ("benelux",)), _peer("LU-HCPN", ("benelux",)),
                           _peer("EU-ERCC", ("eu",)),
                           _peer("DE-NW", ("nrw",), exercise=False))}
DIRECTORY = Directory("BE-NCCN", list(PEERS.values()))
POLICY = PolicySection()


def _rules(to: list[str], *, tlp: str = "GREEN", mode: str = "actual",
           releasable: tuple[str, ...] = ()) -> set[tuple[str, str]]:
    routes = DIRECTORY.resolve_routes(to)
    return {(v.rule, v.peer) for v in check_outgoing(POLICY, PEERS, routes, tlp=tlp, mode=mode,
                                                     releasable=releasable)}


def test_routes_remember_whether_a_centre_was_named_or_reached_through_a_group() -> None:
    """Naming a centre wins over reaching it through a group."""
    assert DIRECTORY.resolve_routes(["benelux"]) == {"NL-NCC": "benelux", "LU-HCPN": "benelux"}
    assert DIRECTORY.resolve_routes(["benelux", "NL-NCC"]) == {"NL-NCC": None,
                                                                "LU-HCPN": "benelux"}


@pytest.mark.parametrize(("tlp", "rule"), [("RED", RED_NAMED_ONLY),
                                           ("AMBER+STRICT", AMBER_STRICT_NAMED_ONLY)])
def test_red_and_amber_strict_never_go_through_a_group(tlp: str, rule: str) -> None:
    """TLP:RED and AMBER+STRICT to a group break the rule for each member reached so."""
    assert _rules(["benelux"], tlp=tlp) == {(rule, "NL-NCC"), (rule, "LU-HCPN")}
    assert _rules(["NL-NCC", "LU-HCPN"], tlp=tlp) == set()
    assert _rules(["benelux", "NL-NCC"], tlp=tlp) == {(rule, "LU-HCPN")}


def test_the_rules_can_be_relaxed_in_the_configuration() -> None:
    """A centre may allow RED to groups explicitly."""
    routes = DIRECTORY.resolve_routes(["benelux"])
    relaxed = PolicySection(red_to_groups=True)
    assert check_outgoing(relaxed, PEERS, routes, tlp="RED", mode="actual", releasable=()) == []


def test_exercise_traffic_only_to_participants() -> None:
    """An exercise message to DE-NW (not taking part) breaks exercise-participants."""
    assert _rules(["DE-NW", "NL-NCC"], mode="exercise") == {(EXERCISE_PARTICIPANTS, "DE-NW")}
    assert _rules(["DE-NW"], mode="actual") == set()


def test_the_eu_group_receives_only_what_is_marked_releasable() -> None:
    """EU-ERCC gets a message only when it is marked releasable to eu."""
    assert _rules(["EU-ERCC"]) == {(RELEASE_MARKING, "EU-ERCC")}
    assert _rules(["eu"], releasable=("eu",)) == set()


def test_reception_applies_the_exercise_and_release_rules() -> None:
    """A receiver refuses exercise traffic from a non-participant and unmarked eu traffic."""
    assert [v.rule for v in check_incoming(POLICY, PEERS["DE-NW"], mode="exercise",
                                           releasable=())] == [EXERCISE_PARTICIPANTS]
    assert [v.rule for v in check_incoming(POLICY, PEERS["EU-ERCC"], mode="actual",
                                           releasable=())] == [RELEASE_MARKING]
    assert check_incoming(POLICY, PEERS["EU-ERCC"], mode="actual", releasable=("eu",)) == []
    assert check_incoming(POLICY, PEERS["NL-NCC"], mode="exercise", releasable=()) == []


def test_unknown_recipients_are_still_named_before_policy() -> None:
    """resolve_routes refuses unknown names exactly like resolve."""
    with pytest.raises(PolicyRefused) as info:
        DIRECTORY.resolve_routes(["XX-NONE", "benelux"])
    assert "XX-NONE" in info.value.detail
