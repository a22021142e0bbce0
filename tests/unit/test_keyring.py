"""The ring in force: the operator's pinned keys merged with what the node learned, and
the ledger rows that hold what it learned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.adapters.sqlite.ledger import SqliteLedger
from gateway.config import Settings
from gateway.protocol.keys import PinnedKey, public_key_from_text, public_key_text
from gateway.protocol.keyupdate import KeyUpdatePlan, NewKey
from gateway.service.keyring import effective_ring, pins_of
from gateway.service.records import LearnedKey

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PEER = "LU-HCPN"


def _public() -> str:
    return public_key_text(Ed25519PrivateKey.generate().public_key())


FILE_KEYS = {"LU-HCPN.k1": _public(), "LU-HCPN.k2": _public()}


def _settings(tmp_path: Path) -> Settings:
    raw: dict[str, Any] = {
        "node": {"centre": "NL-NCC", "name": "NL", "country": "NL",
                 "signing_key_file": str(tmp_path / "signing.key"),
                 "signing_key_id": "NL-NCC.k", "data_dir": str(tmp_path / "data")},
        "broker": {"url": "amqp://u:p@127.0.0.1:5672/nl"},
        "peers": [{"id": PEER, "name": "LU", "country": "LU",
                   "inbox_url": "amqp://u:p@127.0.0.1:5672/lu", "granted_user": "LU-HCPN@NL-NCC",
                   "keys": [{"kid": kid, "public_key": pk} for kid, pk in FILE_KEYS.items()]}],
    }
    return Settings.model_validate(raw)


def _learned(kid: str, public_key: str | None = None, **changes: Any) -> LearnedKey:
    fields: dict[str, Any] = {"peer": PEER, "kid": kid,
                              "public_key": public_key or FILE_KEYS.get(kid) or _public(),
                              "not_before": None, "not_after": None, "revoked": False,
                              "unpinned": False, "source": "test"}
    return LearnedKey(**{**fields, **changes})


def test_without_learned_keys_the_ring_is_the_files(tmp_path: Path) -> None:
    """Nothing learned: the ring in force is the operator's pins, in file order."""
    ring = effective_ring(_settings(tmp_path), [])
    assert [k.kid for k in pins_of(ring, PEER)] == list(FILE_KEYS)


def test_a_learned_key_is_added_after_the_files(tmp_path: Path) -> None:
    """A key pinned from a key-update comes after the file's keys (pinning order)."""
    new = _public()
    ring = effective_ring(_settings(tmp_path), [_learned("LU-HCPN.k3", new,
                                                         not_before=NOW)])
    keys = pins_of(ring, PEER)
    assert [k.kid for k in keys] == [*FILE_KEYS, "LU-HCPN.k3"]
    assert keys[2].key == public_key_from_text(new)
    assert keys[2].not_before == NOW


@pytest.mark.parametrize(("file_end", "learned_end", "expected"), [
    (None, NOW, NOW), (NOW + timedelta(days=1), NOW, NOW),
    (NOW - timedelta(days=1), NOW, NOW - timedelta(days=1)), (None, None, None)])
def test_a_key_in_both_ends_at_the_earlier_time(
        tmp_path: Path, file_end: datetime | None, learned_end: datetime | None,
        expected: datetime | None) -> None:
    """Validity is only ever shortened by what was learned, never extended."""
    settings = _settings(tmp_path)
    if file_end is not None:
        raw = settings.model_dump(mode="python")
        raw["peers"][0]["keys"][1]["not_after"] = file_end
        settings = Settings.model_validate(raw)
    ring = effective_ring(settings, [_learned("LU-HCPN.k2", not_after=learned_end)])
    assert ring.lookup(PEER, "LU-HCPN.k2") is not None
    assert ring.lookup(PEER, "LU-HCPN.k2").not_after == expected  # type: ignore[union-attr]


def test_revoked_by_either_is_revoked_and_the_files_public_key_wins(tmp_path: Path) -> None:
    """A revocation learned at run time holds; a learned row cannot swap the file's key."""
    ring = effective_ring(_settings(tmp_path),
                          [_learned("LU-HCPN.k1", _public(), revoked=True)])
    k1 = ring.lookup(PEER, "LU-HCPN.k1")
    assert k1 is not None
    assert k1.revoked
    assert k1.key == public_key_from_text(FILE_KEYS["LU-HCPN.k1"])


def test_an_unpinned_key_is_left_out_and_an_unknown_peers_keys_too(tmp_path: Path) -> None:
    """Keys the rotation rule unpinned leave the ring; a peer no longer configured has
    no keys, whatever the ledger holds for it."""
    stranger = LearnedKey(peer="FR-COGIC", kid="FR-COGIC.k", public_key=_public(),
                          not_before=None, not_after=None, revoked=False, unpinned=False,
                          source="test")
    ring = effective_ring(_settings(tmp_path), [_learned("LU-HCPN.k1", unpinned=True),
                                                stranger])
    assert [k.kid for k in pins_of(ring, PEER)] == ["LU-HCPN.k2"]
    assert not ring.knows("FR-COGIC")


async def test_the_ledger_keeps_an_applied_key_update_and_a_revocation(tmp_path: Path) -> None:
    """A plan applied through the key store comes back as learned rows (ended previous
    key, new key, unpinned one) with audit entries; a revocation too."""
    settings = _settings(tmp_path)
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3", clock=lambda: NOW)
    await ledger.open()
    try:
        pinned = pins_of(effective_ring(settings, []), PEER)
        new = NewKey(kid="LU-HCPN.k3", public_key=_public(), not_before=NOW)
        plan = KeyUpdatePlan(new=new, not_before=NOW, previous_kid="LU-HCPN.k2",
                             previous_not_after=NOW + timedelta(days=7),
                             dropped=("LU-HCPN.k1",))
        await ledger.keys.apply_update(PEER, plan, pinned, "key-update", NOW)
        ring = effective_ring(settings, await ledger.keys.learned())
        assert [k.kid for k in pins_of(ring, PEER)] == ["LU-HCPN.k2", "LU-HCPN.k3"]
        assert ring.lookup(PEER, "LU-HCPN.k2").not_after == NOW + timedelta(days=7)  # type: ignore[union-attr]
        k3 = ring.lookup(PEER, "LU-HCPN.k3")
        assert isinstance(k3, PinnedKey)
        await ledger.keys.revoke(PEER, k3, "api-client", NOW)
        ring = effective_ring(settings, await ledger.keys.learned())
        assert ring.lookup(PEER, "LU-HCPN.k3").revoked  # type: ignore[union-attr]
        kinds = [e.kind for e in reversed(await ledger.audit.entries(20))]
        assert kinds == ["key.validity", "key.pinned", "key.unpinned", "key.revoked"]
    finally:
        await ledger.close()
