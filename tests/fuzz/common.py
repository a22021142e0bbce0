"""Shared pieces of the fuzzers: the budget, the input counters, keys and wire strategies.

Budget: ``CRISISGW_FUZZ_BUDGET`` = ``ci`` (default, a few minutes on 2 cores), ``long``
(x20: tens of thousands of inputs per fuzzer) or a number (the multiplier itself).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gateway.config import KeyEntry, PeerSection, TlsSection
from gateway.errors import ProtocolError
from gateway.protocol import reasons
from gateway.protocol.keys import KeyRing, PinnedKey, SigningKey, default_key_id, public_key_text
from gateway.protocol.signing import seal
from gateway.protocol.types import format_time

ROOT = Path(__file__).resolve().parents[2]
SCALES = {"ci": 1.0, "long": 20.0}


def scale() -> float:
    """The multiplier chosen by ``CRISISGW_FUZZ_BUDGET``."""
    value = os.environ.get("CRISISGW_FUZZ_BUDGET", "ci").strip() or "ci"
    return SCALES[value] if value in SCALES else float(value)


def examples(ci: int) -> int:
    """Hypothesis ``max_examples`` for a fuzzer that runs ``ci`` inputs in CI."""
    return max(1, round(ci * scale()))


def fuzz_settings(ci: int) -> settings:
    """Settings for one fuzzer: the budgeted example count, no deadline, no database."""
    return settings(
        max_examples=examples(ci), deadline=None, database=None, derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much, HealthCheck.large_base_example,
                               HealthCheck.function_scoped_fixture])


#: fuzzer -> outcome label -> count; printed by tests/fuzz/conftest.py at the end.
COUNTS: defaultdict[str, Counter[str]] = defaultdict(Counter)
SECONDS: defaultdict[str, float] = defaultdict(float)


def record(fuzzer: str, outcome: str) -> None:
    """Count one generated input of ``fuzzer`` and what became of it."""
    COUNTS[fuzzer][outcome] += 1


def total(fuzzer: str) -> int:
    """Inputs counted so far for ``fuzzer``."""
    return sum(COUNTS[fuzzer].values())


def check_protocol_error(exc: ProtocolError) -> str:
    """A protocol rejection must carry a documented reason code and a non-empty detail."""
    assert exc.reason in reasons.ALL, f"undocumented reason {exc.reason!r}"
    assert exc.detail.strip(), f"empty detail for {exc.reason}"
    return exc.reason


# --- keys and valid messages -------------------------------------------------------------

ME, BE, LU = "NL-NCC", "BE-NCCN", "LU-HCPN"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _key(centre: str) -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"fuzz:{centre}".encode()).digest())
    return SigningKey(kid=default_key_id(centre, private.public_key()), private=private)


KEYS = {c: _key(c) for c in (ME, BE, LU)}
RING = KeyRing.build((c, PinnedKey(kid=k.kid, key=k.public())) for c, k in KEYS.items())


def peer(centre: str) -> PeerSection:
    """``centre`` as a peer of NL-NCC, publishing as ``<centre>@NL-NCC``."""
    return PeerSection(
        id=centre, name=centre, country=centre[:2],
        keys=(KeyEntry(kid=KEYS[centre].kid, public_key=public_key_text(KEYS[centre].public())),),
        inbox_url=f"amqps://{ME}:pw@{centre.lower()}.example/", granted_user=f"{centre}@{ME}",
        tls=TlsSection(spki_sha256=("ab" * 32,)))


SITREP_BODY: dict[str, Any] = {
    "incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
    "report_number": 1,
    "severity": "severe",
    "summary": {"en": "Water levels rising at Liège."},
}


def _alert_body() -> dict[str, Any]:
    from gateway.formats.cap import parse_cap  # noqa: PLC0415 - lxml only when needed
    from gateway.protocol.alert import alert_json  # noqa: PLC0415

    return alert_json(parse_cap((ROOT / "tests/assets/cap/oasis-appendix-a1.xml").read_bytes()))


BODIES: dict[str, Any] = {
    "sitrep": SITREP_BODY,
    "commcheck": {"requested_by": "duty officer", "note": "quarterly"},
}


def body_for(msg_type: str) -> dict[str, Any]:
    """A valid body of ``msg_type`` (alert bodies come from an OASIS CAP example)."""
    if msg_type == "alert" and "alert" not in BODIES:
        BODIES["alert"] = _alert_body()
    return copy.deepcopy(BODIES[msg_type])


def envelope(msg_type: str = "sitrep", *, sender: str = BE, now: datetime = NOW,
             **changes: Any) -> dict[str, Any]:
    """A valid envelope of ``msg_type`` from ``sender`` to NL-NCC created at ``now``."""
    env: dict[str, Any] = {
        "v": 1, "id": str(uuid.uuid4()), "type": msg_type, "from": sender, "to": [ME],
        "created": format_time(now), "expires": format_time(now + timedelta(days=1)),
        "mode": "test" if msg_type == "commcheck" else "exercise", "tlp": "AMBER",
        "priority": "urgent", "incident": "BE-2026-0001", "body": body_for(msg_type),
    }
    env.update(changes)
    return env


# --- strategies ---------------------------------------------------------------------------

JSON_SCALARS = (st.none() | st.booleans()
                | st.integers(min_value=-(2**60), max_value=2**60)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=30)
                | st.sampled_from(["", "sitrep", "receipt", ME, BE, LU, "actual", "test",
                                   "2026-11-27T10:00:00.000Z", "AMBER", str(uuid.UUID(int=0))]))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)

#: Hand-made hostile JSON texts: what strict I-JSON parsing must refuse cleanly.
HOSTILE_TEXTS = [
    '{"a":1,"a":2}', "NaN", "[Infinity]", "[-Infinity]", '"\\ud800"', '{"\\udfff":1}',
    "1e400", "-1e400", "9007199254740993", "1" * 5000, "\ufeff{}", "[" * 40 + "]" * 40,
    "{}", "[]", "null", '{"envelope":{},"signature":{}}', "\x00", '"\x01"', "{" * 200_000,
    '{"envelope":{"from":"BE-NCCN","type":"sitrep"},"signature":'
    '{"alg":"Ed25519","kid":"x","value":"!!"}}',
]


@st.composite
def hostile_json(draw: st.DrawFn) -> bytes:
    """A hostile or deeply nested JSON text."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.sampled_from(HOSTILE_TEXTS)).encode("utf-8", "surrogatepass")
    if kind == 1:
        depth = draw(st.integers(1, 5000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (opener * depth + "1" + closer * depth).encode()
    return json.dumps(draw(JSON_VALUES)).encode()


def shuffle_keys(value: Any, rnd: random.Random) -> Any:
    """``value`` with every object's members in a random order (same JSON value)."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: shuffle_keys(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [shuffle_keys(v, rnd) for v in value]
    return value


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member or item inside ``value``."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out.extend(paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            out.extend(paths(v, (*prefix, i)))
    return out


def set_path(value: Any, path: tuple[Any, ...], new: Any, *, delete: bool = False) -> None:
    """Replace (or delete) the member or item at ``path`` in place."""
    parent = value
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new


@st.composite
def changed_json(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with one to three members replaced, deleted or added."""
    value = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        where = paths(value)
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if not where or action == "add":
            containers = [p for p in [(), *where] if isinstance(_at(value, p), dict)]
            target = _at(value, draw(st.sampled_from(containers)))
            target[draw(st.text(max_size=10) | st.sampled_from(list(base)))] = draw(JSON_VALUES)
            continue
        path = draw(st.sampled_from(where))
        set_path(value, path, draw(JSON_VALUES), delete=action == "delete")
    return value


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def byte_mutation(draw: st.DrawFn, wire: bytes) -> bytes:
    """``wire`` with a few bit flips, byte insertions, deletions or a truncation."""
    data = bytearray(wire)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "replace"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[at:]
        else:
            data[at] = draw(st.sampled_from(b'{}[]",:\\0 e-.'))
    return bytes(data)


def resign(env: dict[str, Any], sender: str = BE) -> bytes:
    """Sign ``env`` (any JSON object) as ``sender`` without building it through a model."""
    return seal(env, KEYS[sender]).wire
