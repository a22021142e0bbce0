"""``crisisgw audit verify|checkpoint``, ``crisisgw evidence export`` and ``crisisgw verify``.

``verify`` works offline: it reads one bundle file and, optionally, a node's
configuration for its pinned keys; it never touches a broker or a ledger.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import Settings, load_settings
from gateway.errors import GatewayError
from gateway.protocol.keys import KeyRing, PinnedKey


def _own_ring(settings: Settings) -> KeyRing:
    """Our own public keys (current and earlier ones on disk) plus every pinned peer key."""
    from gateway.adapters.sqlite.keys import (  # noqa: PLC0415 - fast --help
        ledger_path,
        own_public_keys_all,
        read_learned_keys,
    )
    from gateway.service.keyring import effective_ring  # noqa: PLC0415 - fast --help

    own = [(settings.node.centre, PinnedKey(kid=kid, key=key))
           for kid, key in own_public_keys_all(settings).items()]
    ring = effective_ring(settings, read_learned_keys(ledger_path(settings)))
    peers = [(c, k) for c, per in ring.keys.items() for k in per.values()]
    return KeyRing.build([*own, *peers])


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.adapters.sqlite import audit as sqlite_audit  # noqa: PLC0415 - keeps `--help` fast
    from gateway.service.audit import verify_log  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    ring = _own_ring(settings)
    path = settings.node.data_dir / "ledger.sqlite3"
    conn = sqlite_audit.connect_existing(path)
    try:
        def hash_at(seq: int) -> str | None:
            row = conn.execute("SELECT hash FROM audit_log WHERE seq=?", (seq,)).fetchone()
            return None if row is None else str(row[0])

        report = verify_log(sqlite_audit.rows(conn), sqlite_audit.checkpoints(conn),
                            lambda kid: ring.lookup(settings.node.centre, kid), hash_at)
    finally:
        conn.close()
    chain = report.chain
    if chain.ok:
        print(f"audit chain intact: {chain.entries} entries, head #{chain.head_seq} "
              f"{chain.head}")
    else:
        print(f"audit chain BROKEN at entry #{chain.broken_at}: {chain.problem}")
        print(f"  the first {chain.entries} entries (up to #{chain.head_seq}) are intact")
    for problem in report.problems:
        print(f"checkpoint problem: {problem}")
    if report.latest_checkpoint is not None:
        seq, at = report.latest_checkpoint
        print(f"{report.checkpoints} signed checkpoints checked; latest #{seq} at {at}")
    else:
        print("no signed checkpoint yet")
    return 0 if report.ok else 1


def _cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    from gateway.adapters.sqlite import audit as sqlite_audit  # noqa: PLC0415
    from gateway.adapters.sqlite.keys import current_signing_key  # noqa: PLC0415
    from gateway.protocol.auditlog import sign_checkpoint  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    key, _ = current_signing_key(settings)
    conn = sqlite_audit.connect_existing(settings.node.data_dir / "ledger.sqlite3", write=True)
    try:
        now = datetime.now(UTC)
        conn.execute("BEGIN IMMEDIATE")
        _, _, wire = sqlite_audit.checkpoint_now(
            conn, now, lambda seq, head: sign_checkpoint(settings.node.centre, seq, head, now,
                                                         key))
        conn.execute("COMMIT")
    finally:
        conn.close()
    _write(args.out, wire)
    return 0


def _write(out: str | None, data: bytes) -> None:
    if out and out != "-":
        Path(out).write_bytes(data)
        print(f"wrote {out} ({len(data)} bytes)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data + b"\n")


def _cmd_evidence_export(args: argparse.Namespace) -> int:
    from gateway.adapters.sqlite.evidence import export_bundle  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    bundle = export_bundle(settings, args.id, datetime.now(UTC))
    _write(args.out, bundle)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from gateway.protocol.evidence import BundleRefused, verify_bundle  # noqa: PLC0415

    try:
        data = Path(args.bundle).read_bytes()
    except OSError as exc:
        raise GatewayError(f"{args.bundle}: {exc.strerror}") from exc
    pinned = _own_ring(load_settings(Path(args.config))) if args.config else None
    try:
        verdict = verify_bundle(data, pinned)
    except BundleRefused as exc:
        print(f"REFUSED: {exc}")
        return 1
    print("\n".join(verdict.lines()))
    return 0


def add_evidence(sub: Any) -> None:
    """Register the audit, evidence and verify commands."""
    audit = sub.add_parser("audit", help="the tamper-evident audit log").add_subparsers(
        dest="audit", required=True)
    verify = audit.add_parser("verify", help="check the hash chain and signed checkpoints")
    verify.add_argument("-c", "--config", required=True)
    verify.set_defaults(func=_cmd_audit_verify)
    checkpoint = audit.add_parser("checkpoint",
                                  help="sign the chain head now (a file to share with peers)")
    checkpoint.add_argument("-c", "--config", required=True)
    checkpoint.add_argument("-o", "--out")
    checkpoint.set_defaults(func=_cmd_audit_checkpoint)

    evidence = sub.add_parser("evidence", help="evidence bundles").add_subparsers(
        dest="evidence", required=True)
    export = evidence.add_parser("export", help="one file proving what happened to a message")
    export.add_argument("id")
    export.add_argument("-c", "--config", required=True)
    export.add_argument("-o", "--out", required=True)
    export.set_defaults(func=_cmd_evidence_export)

    check = sub.add_parser("verify", help="check an evidence bundle offline")
    check.add_argument("bundle")
    check.add_argument("-c", "--config",
                       help="also require the bundle's keys to be the ones pinned here")
    check.set_defaults(func=_cmd_verify)
