"""The rotation rule of docs/PROTOCOL.md §3.3c: only the current key announces a key."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import KeyUpdateRefused
from gateway.protocol import keyupdate as ku
from gateway.protocol.envelope import DEDUP_WINDOW
from gateway.protocol.keys import PinnedKey, public_key_text
from gateway.protocol.keyupdate import KeyUpdate, NewKey, current_key, plan_key_update

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _private(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def _pinned(name: str, **validity: datetime | bool | None) -> PinnedKey:
    return PinnedKey(kid=f"NL-NCC.{name}", key=_private(name).public_key(),
                     **validity)  # type: ignore[arg-type]


def _update(new: str, previous: str, until: datetime,
            not_before: datetime | None = None) -> KeyUpdate:
    return KeyUpdate(new_key=NewKey(kid=f"NL-NCC.{new}",
                                    public_key=public_key_text(_private(new).public_key()),
                                    not_before=not_before),
                     previous_kid=f"NL-NCC.{previous}", previous_not_after=until)


def _apply(keys: list[PinnedKey], plan: ku.KeyUpdatePlan) -> list[PinnedKey]:
    """What the node does with an accepted plan (app._pin_peer_key, on PinnedKeys)."""
    out = []
    for k in keys:
        if k.kid in plan.dropped:
            continue
        out.append(k if k.kid != plan.previous_kid else PinnedKey(
            kid=k.kid, key=k.key, not_before=k.not_before, not_after=plan.previous_not_after,
            revoked=k.revoked))
    return [*out, PinnedKey(kid=plan.new.kid, key=_private(plan.new.kid.split(".")[1])
                            .public_key(), not_before=plan.not_before)]


def test_the_genuine_rotation_pins_the_new_key_and_ends_the_old_one() -> None:
    """Signed with the only key, naming it as previous: the new key is pinned from its
    not_before and the old key ends after the overlap."""
    keys = [_pinned("k1")]
    plan = plan_key_update(keys, signed_by="NL-NCC.k1",
                           update=_update("k2", "k1", T0 + timedelta(days=7), T0),
                           created=T0, now=T0)
    assert (plan.new.kid, plan.not_before) == ("NL-NCC.k2", T0)
    assert (plan.previous_kid, plan.previous_not_after) == ("NL-NCC.k1", T0 + timedelta(days=7))
    after = _apply(keys, plan)
    current = current_key(after)
    assert current is not None
    assert current.kid == "NL-NCC.k2"


def test_the_takeover_with_the_phased_out_key_is_refused() -> None:
    """The worked example: after k1 -> k2, a key-update signed with k1 (still valid for
    the overlap) that would end k2 and pin the thief's key is refused, whichever key it
    names as previous; nothing changes, so k2 still verifies and x is never pinned."""
    keys = _apply([_pinned("k1")], plan_key_update(
        [_pinned("k1")], signed_by="NL-NCC.k1",
        update=_update("k2", "k1", T0 + timedelta(days=7), T0), created=T0, now=T0))
    later = T0 + timedelta(hours=18)
    for previous in ("k2", "k1"):
        with pytest.raises(KeyUpdateRefused) as refused:
            plan_key_update(keys, signed_by="NL-NCC.k1",
                            update=_update("x", previous, later), created=later, now=later)
        assert refused.value.rule == ku.SIGNER_NOT_CURRENT
        assert "NL-NCC.k2" in refused.value.detail
    assert [k.kid for k in keys] == ["NL-NCC.k1", "NL-NCC.k2"]
    current = current_key(keys)
    assert current is not None
    assert current.kid == "NL-NCC.k2"
    assert current.not_after is None
    assert current.valid_at(later + timedelta(days=30))


def test_the_current_key_rotates_again() -> None:
    """k2, now current, announces k3; k1 and k2 are then both past keys."""
    keys = _apply([_pinned("k1")], plan_key_update(
        [_pinned("k1")], signed_by="NL-NCC.k1",
        update=_update("k2", "k1", T0 + timedelta(days=7), T0), created=T0, now=T0))
    t1 = T0 + timedelta(days=1)
    plan = plan_key_update(keys, signed_by="NL-NCC.k2",
                           update=_update("k3", "k2", t1 + timedelta(days=7)), created=t1,
                           now=t1)
    assert plan.not_before == t1  # no not_before: the update's creation time
    current = current_key(_apply(keys, plan))
    assert current is not None
    assert current.kid == "NL-NCC.k3"


def test_previous_kid_must_be_the_signing_key() -> None:
    """The current key may only end itself, never another pinned key."""
    keys = [_pinned("k0", not_before=T0 - timedelta(days=400)), _pinned("k1", not_before=T0)]
    with pytest.raises(KeyUpdateRefused) as refused:
        plan_key_update(keys, signed_by="NL-NCC.k1",
                        update=_update("k2", "k0", T0 + timedelta(days=7)), created=T0, now=T0)
    assert refused.value.rule == ku.PREVIOUS_KID


def test_an_older_key_is_refused_even_without_an_end_date() -> None:
    """Two keys pinned at enrolment: only the one with the latest not_before may rotate."""
    keys = [_pinned("k1", not_before=T0 - timedelta(days=10)),
            _pinned("k0", not_before=T0 - timedelta(days=400))]
    with pytest.raises(KeyUpdateRefused) as refused:
        plan_key_update(keys, signed_by="NL-NCC.k0",
                        update=_update("k2", "k0", T0 + timedelta(days=7)), created=T0, now=T0)
    assert refused.value.rule == ku.SIGNER_NOT_CURRENT


def test_a_revoked_key_is_never_current() -> None:
    """The newest key revoked: the next newest is current (and the revoked one refused)."""
    keys = [_pinned("k1", not_before=T0 - timedelta(days=10)),
            _pinned("k2", not_before=T0 - timedelta(days=1), revoked=True)]
    current = current_key(keys)
    assert current is not None
    assert current.kid == "NL-NCC.k1"
    with pytest.raises(KeyUpdateRefused):
        plan_key_update(keys, signed_by="NL-NCC.k2",
                        update=_update("k3", "k2", T0 + timedelta(days=7)), created=T0, now=T0)


def test_keys_without_not_before_are_ordered_by_pinning() -> None:
    """Among keys without not_before, the one pinned last is current."""
    keys = [_pinned("k1"), _pinned("k2")]
    current = current_key(keys)
    assert current is not None
    assert current.kid == "NL-NCC.k2"


@pytest.mark.parametrize(("update", "rule"), [
    (_update("k1", "k1", T0 + timedelta(days=7)), ku.KID_TAKEN),
    (_update("k1", "k1", T0 + timedelta(days=7)).model_copy(update={
        "new_key": NewKey(kid="NL-NCC.other",
                          public_key=public_key_text(_private("k1").public_key()))}),
     ku.KEY_REUSED),
    (_update("k2", "k1", T0 + timedelta(days=7), T0 - timedelta(days=30)), ku.NOT_BEFORE),
    (_update("k2", "k1", T0 + timedelta(days=7), T0 + timedelta(days=8)), ku.NOT_BEFORE),
    (_update("k2", "k1", T0 - timedelta(seconds=1), T0 - timedelta(hours=1)), ku.OVERLAP),
], ids=["kid-taken", "key-reused", "starts-before-current", "gap", "ends-before-update"])
def test_each_rule_is_named_when_it_fails(update: KeyUpdate, rule: str) -> None:
    """Every other rule of §3.3c refuses with its own name."""
    keys = [_pinned("k1", not_before=T0 - timedelta(days=1))]
    with pytest.raises(KeyUpdateRefused) as refused:
        plan_key_update(keys, signed_by="NL-NCC.k1", update=update, created=T0, now=T0)
    assert refused.value.rule == rule


def test_a_key_pinned_for_another_centre_is_not_announced() -> None:
    """A peer cannot announce a key already pinned for someone else (or for us)."""
    keys = [_pinned("k1")]
    other = _private("k2").public_key().public_bytes_raw()
    with pytest.raises(KeyUpdateRefused) as refused:
        plan_key_update(keys, signed_by="NL-NCC.k1",
                        update=_update("k2", "k1", T0 + timedelta(days=7)), created=T0,
                        now=T0, elsewhere=frozenset({other}))
    assert refused.value.rule == ku.KEY_REUSED


def test_the_number_of_pinned_keys_is_bounded_and_dead_keys_make_room() -> None:
    """At MAX_PINNED_KEYS live keys a rotation is refused; keys that ended more than the
    dedup window ago are unpinned to make room (revoked ones are kept)."""
    live = [_pinned(f"k{i}", not_before=T0 - timedelta(days=10 - i),
                    not_after=T0 + timedelta(days=1)) for i in range(ku.MAX_PINNED_KEYS - 1)]
    newest = _pinned("k9", not_before=T0)
    with pytest.raises(KeyUpdateRefused) as refused:
        plan_key_update([*live, newest], signed_by="NL-NCC.k9",
                        update=_update("k10", "k9", T0 + timedelta(days=7)), created=T0, now=T0)
    assert refused.value.rule == ku.TOO_MANY_KEYS
    long_ago = T0 - DEDUP_WINDOW - timedelta(days=1)
    dead = [_pinned(f"d{i}", not_before=T0 - timedelta(days=900 - i), not_after=long_ago)
            for i in range(3)]
    revoked = _pinned("r", not_before=T0 - timedelta(days=950), not_after=long_ago,
                      revoked=True)
    plan = plan_key_update([revoked, *dead, *live[:4], newest], signed_by="NL-NCC.k9",
                           update=_update("k10", "k9", T0 + timedelta(days=7)), created=T0,
                           now=T0)
    assert plan.dropped == ("NL-NCC.d0", "NL-NCC.d1", "NL-NCC.d2")


def test_a_redelivered_update_that_was_applied_changes_nothing() -> None:
    """After a crash between pinning and storing, the same update is accepted as applied
    (the signing key is no longer current, but nothing would change)."""
    update = _update("k2", "k1", T0 + timedelta(days=7), T0)
    keys = _apply([_pinned("k1")], plan_key_update([_pinned("k1")], signed_by="NL-NCC.k1",
                                                   update=update, created=T0, now=T0))
    again = plan_key_update(keys, signed_by="NL-NCC.k1", update=update, created=T0,
                            now=T0 + timedelta(seconds=5))
    assert again.applied


def test_the_signing_key_never_ends_later_than_it_already_did() -> None:
    """A current key with an end date (from its card) keeps the earlier limit."""
    limit = T0 + timedelta(days=3)
    keys = [_pinned("k1", not_after=limit)]
    plan = plan_key_update(keys, signed_by="NL-NCC.k1",
                           update=_update("k2", "k1", T0 + timedelta(days=7)), created=T0,
                           now=T0)
    assert plan.previous_not_after == limit
