"""The peer directory: gateway.service.directory.Directory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import KeyEntry, PeerSection, TlsSection
from gateway.errors import PolicyRefused
from gateway.protocol.keys import public_key_text
from gateway.service.directory import Directory

ME = "NL-NCC"


@pytest.fixture
def make_peer() -> Callable[..., PeerSection]:
    """Factory of PeerSection objects with a valid pinned key and sensible defaults."""

    def make(centre: str, groups: Sequence[str] = (), **changes: Any) -> PeerSection:
        private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(centre.encode()).digest())
        fields: dict[str, Any] = {
            "id": centre, "name": f"{centre} crisis centre", "country": centre[:2],
            "groups": tuple(groups),
            "keys": (KeyEntry(kid=f"{centre}.k1",
                              public_key=public_key_text(private.public_key())),),
            "inbox_url": f"amqps://{ME}:secret@{centre.lower()}.example:5671/",
            "granted_user": f"{centre}@{ME}",
            "tls": TlsSection(spki_sha256=("ab" * 32,)),
        }
        fields.update(changes)
        return PeerSection(**fields)

    return make


@pytest.fixture
def make_directory(make_peer: Callable[..., PeerSection]) -> Callable[..., Directory]:
    """Factory of a Directory for NL-NCC with BE-NCCN, LU-HCPN, DE-NW, FR-COGIC as peers."""

    def make(suspended: Sequence[str] = ()) -> Directory:
        specs = [
            ("BE-NCCN", ("benelux", "meuse")),
            ("LU-HCPN", ("benelux",)),
            ("DE-NW", ("meuse", "rhine")),
            ("FR-COGIC", ("meuse",)),
        ]
        peers = [make_peer(c, g, suspended=c in suspended) for c, g in specs]
        return Directory(ME, peers)

    return make


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["BE-NCCN"], ("BE-NCCN",)),
        (["LU-HCPN", "BE-NCCN"], ("LU-HCPN", "BE-NCCN")),
        (["benelux"], ("BE-NCCN", "LU-HCPN")),
        (["meuse"], ("BE-NCCN", "DE-NW", "FR-COGIC")),
        (["benelux", "meuse"], ("BE-NCCN", "LU-HCPN", "DE-NW", "FR-COGIC")),
        (["DE-NW", "benelux", "meuse"], ("DE-NW", "BE-NCCN", "LU-HCPN", "FR-COGIC")),
        (["BE-NCCN", "BE-NCCN", "benelux"], ("BE-NCCN", "LU-HCPN")),
        (["rhine", "meuse", "rhine"], ("DE-NW", "BE-NCCN", "FR-COGIC")),
    ],
)
def test_resolve_expands_groups_in_order_without_duplicates(
    make_directory: Callable[..., Directory], names: list[str], expected: tuple[str, ...]
) -> None:
    """Centre ids and groups expand to distinct peers in first-mention order."""
    assert make_directory().resolve(names) == expected


def test_resolve_accepts_any_iterable(make_directory: Callable[..., Directory]) -> None:
    """resolve takes a generator as well as a list."""
    assert make_directory().resolve(n for n in ("rhine",)) == ("DE-NW",)


@pytest.mark.parametrize(
    ("names", "messages"),
    [
        (["XX-NOPE"], ["unknown centre: XX-NOPE"]),
        (["nosuch"], ["unknown centre or group: nosuch"]),
        (["BE-NCCN", "XX-NOPE", "benelux", "nosuch"],
         ["unknown centre: XX-NOPE", "unknown centre or group: nosuch"]),
        ([ME], [f"{ME} is this centre itself"]),
        (["benelux", ME, "XX-NOPE"], [f"{ME} is this centre itself", "unknown centre: XX-NOPE"]),
    ],
)
def test_unknown_or_own_recipient_is_422_naming_each(
    make_directory: Callable[..., Directory], names: list[str], messages: list[str]
) -> None:
    """Every unknown centre/group and our own centre is named in one 422 error."""
    with pytest.raises(PolicyRefused) as info:
        make_directory().resolve(names)
    err = info.value
    assert isinstance(err, PolicyRefused)
    assert err.detail == ", ".join(messages)
    assert [e["msg"] for e in err.errors] == messages
    for e in err.errors:
        loc = e["loc"]
        assert isinstance(loc, list)
        assert loc[0] == "to"
        assert names[loc[1]] in str(e["msg"])


@pytest.mark.parametrize(
    ("names", "suspended", "messages"),
    [
        (["LU-HCPN"], ["LU-HCPN"], ["peer LU-HCPN is suspended"]),
        (["benelux"], ["LU-HCPN"], ["peer LU-HCPN is suspended"]),
        (["meuse"], ["BE-NCCN", "FR-COGIC"],
         ["peer BE-NCCN is suspended", "peer FR-COGIC is suspended"]),
    ],
)
def test_suspended_peer_refused(
    make_directory: Callable[..., Directory], names: list[str], suspended: list[str],
    messages: list[str],
) -> None:
    """A suspended peer, named or reached through a group, makes resolution fail with 422."""
    with pytest.raises(PolicyRefused) as info:
        make_directory(suspended=suspended).resolve(names)
    assert [e["msg"] for e in info.value.errors] == messages


def test_suspension_does_not_affect_other_recipients(
    make_directory: Callable[..., Directory],
) -> None:
    """With LU-HCPN suspended, a group without it still resolves."""
    assert make_directory(suspended=["LU-HCPN"]).resolve(["rhine", "BE-NCCN"]) == (
        "DE-NW", "BE-NCCN")


def test_empty_recipient_list_is_422(make_directory: Callable[..., Directory]) -> None:
    """An empty list resolves to no recipient: 422 'No recipient'."""
    with pytest.raises(PolicyRefused) as info:
        make_directory().resolve([])
    assert info.value.title == "No recipient"
    assert info.value.errors == [{"loc": ["to"], "msg": "no recipient", "code": "no_recipient"}]


@pytest.mark.parametrize(
    ("user", "expected"),
    [("BE-NCCN@NL-NCC", "BE-NCCN"), ("DE-NW@NL-NCC", "DE-NW"), ("BE-NCCN", None),
     ("be-nccn@nl-ncc", None), ("", None), ("NL-NCC@NL-NCC", None)],
)
def test_peer_for_user(
    make_directory: Callable[..., Directory], user: str, expected: str | None
) -> None:
    """peer_for_user maps a granted AMQP user name (exactly) to its peer id."""
    assert make_directory().peer_for_user(user) == expected


def test_peer_for_user_custom_name(make_peer: Callable[..., PeerSection]) -> None:
    """A granted_user that is not derived from the centre id still maps back to the peer."""
    directory = Directory(ME, [make_peer("BE-NCCN", granted_user="federation-be")])
    assert directory.peer_for_user("federation-be") == "BE-NCCN"
    assert directory.peer_for_user("BE-NCCN@NL-NCC") is None


@pytest.mark.parametrize(("centre", "found"), [("BE-NCCN", True), ("XX-NOPE", False),
                                               (ME, False)])
def test_peer_lookup(make_directory: Callable[..., Directory], centre: str, found: bool) -> None:
    """peer() returns the configured PeerSection, or None."""
    peer = make_directory().peer(centre)
    assert (peer is not None) is found
    if peer is not None:
        assert peer.id == centre


def test_groups_index(make_directory: Callable[..., Directory]) -> None:
    """The group index lists members in configuration order."""
    assert make_directory().groups == {
        "benelux": ["BE-NCCN", "LU-HCPN"],
        "meuse": ["BE-NCCN", "DE-NW", "FR-COGIC"],
        "rhine": ["DE-NW"],
    }
