"""``crisisgw audit verify|checkpoint``, ``crisisgw evidence export``, ``crisisgw archive
run|list`` and ``crisisgw verify``.

``verify`` works offline: it reads one bundle or archive file and, optionally, a node's
configuration for its pinned keys; it never touches a broker or a ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import Settings, load_settings
from gateway.errors import GatewayError
from gateway.protocol.keys import KeyRing


def _own_ring(settings: Settings) -> KeyRing:
    """Our own public keys (current and earlier ones) plus every pinned peer key."""
    from gateway.adapters.stores.keys import known_keys  # noqa: PLC0415 - fast --help

    return known_keys(settings)


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.adapters.stores import audit as sqlite_audit  # noqa: PLC0415 - keeps `--help` fast
    from gateway.adapters.stores import offline  # noqa: PLC0415
    from gateway.adapters.stores.archive import (  # noqa: PLC0415
        archive_dir,
        read_lines,
        registered,
    )
    from gateway.protocol.archive_verify import verify_archive  # noqa: PLC0415
    from gateway.service.audit import verify_history  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    ring = _own_ring(settings)
    with offline.connect(settings) as conn:
        checkpoints = sqlite_audit.checkpoints(conn)
        wanted = [seq for seq, _ in checkpoints]
        folder = archive_dir(settings)

        def archives() -> Any:
            for row in registered(conn):
                file = folder / row["file"]
                yield row["file"], (int(row["first_seq"]), int(row["last_seq"])), (
                    lambda f=file: verify_archive(read_lines(f), ring, hashes_at=wanted))

        def hash_at(seq: int) -> str | None:
            row = conn.execute("SELECT hash FROM audit_log WHERE seq=?", (seq,)).fetchone()
            return None if row is None else str(row[0])

        report = verify_history(archives(), lambda first: sqlite_audit.rows(conn, first),
                                checkpoints,
                                lambda kid: ring.lookup(settings.node.centre, kid), hash_at)
    for line in report.archive_lines:
        print(line)
    chain = report.chain
    if chain.ok:
        print(f"audit chain intact: {chain.entries} entries in the ledger"
              + (f" after {report.archived} archived" if report.archived else "")
              + f", head #{chain.head_seq} {chain.head}")
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
    from gateway.adapters.stores import audit as sqlite_audit  # noqa: PLC0415
    from gateway.adapters.stores import offline  # noqa: PLC0415
    from gateway.adapters.stores.keys import current_signing_key  # noqa: PLC0415
    from gateway.protocol.auditlog import sign_checkpoint  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    key, _ = current_signing_key(settings)
    with offline.connect(settings, write=True) as conn:
        now = datetime.now(UTC)
        conn.execute("BEGIN IMMEDIATE")
        try:
            _, _, wire = sqlite_audit.checkpoint_now(
                conn, now, lambda seq, head: sign_checkpoint(settings.node.centre, seq, head,
                                                             now, key))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    _write(args.out, wire)
    return 0


def _write(out: str | None, data: bytes) -> None:
    if out and out != "-":
        Path(out).write_bytes(data)
        print(f"wrote {out} ({len(data)} bytes)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data + b"\n")


def _cmd_evidence_export(args: argparse.Namespace) -> int:
    from gateway.adapters.stores.evidence import export_bundle  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    bundle = export_bundle(settings, args.id, datetime.now(UTC))
    _write(args.out, bundle)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from gateway.protocol.archive_verify import ArchiveRefused, verify_archive  # noqa: PLC0415
    from gateway.protocol.evidence import BundleRefused, verify_bundle  # noqa: PLC0415

    file = Path(args.bundle)
    try:
        with file.open("rb") as f:
            archive = f.read(2) == b"\x1f\x8b"  # gzip: an archive (PROTOCOL.md §18)
        data = b"" if archive else file.read_bytes()
    except OSError as exc:
        raise GatewayError(f"{args.bundle}: {exc.strerror}") from exc
    pinned = _own_ring(load_settings(Path(args.config))) if args.config else None
    try:
        if archive:
            from gateway.adapters.stores.archive import read_lines  # noqa: PLC0415

            try:
                lines = verify_archive(read_lines(file), pinned).lines()
            except (OSError, EOFError) as exc:
                raise ArchiveRefused(f"the file is not a readable gzip stream ({exc})") from exc
        else:
            lines = verify_bundle(data, pinned).lines()
    except (BundleRefused, ArchiveRefused) as exc:
        print(f"REFUSED: {exc}")
        return 1
    print("\n".join(lines))
    return 0


def _cmd_archive_run(args: argparse.Namespace) -> int:
    from gateway import failpoints  # noqa: PLC0415
    from gateway.adapters.stores.archive import run_retention  # noqa: PLC0415
    from gateway.config import failpoints_from_env  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    if settings.retention.keep_days is None:
        print("retention is off: set [retention] keep_days in the configuration")
        return 2
    os.umask(0o077)  # archives hold TLP:RED texts, as the ledger does
    failpoints.arm(failpoints_from_env())
    report = run_retention(settings, datetime.now(UTC))
    if args.json:
        print(json.dumps(report.as_json()))
        return 0
    for file in report.files:
        print(f"wrote {file}")
    print(f"archived {report.sent} sent and {report.received} received messages and "
          f"{report.audit} audit entries; {report.kept} changed since and stay; "
          f"{report.forgotten} ids past the dedup window forgotten; "
          f"{report.freed_bytes} bytes handed back")
    return 0


def _cmd_archive_list(args: argparse.Namespace) -> int:
    from gateway.adapters.stores import offline  # noqa: PLC0415
    from gateway.adapters.stores.archive import archive_dir, registered  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    with offline.connect(settings) as conn:
        rows = registered(conn)
    folder = archive_dir(settings)
    for r in rows:
        print(f"{folder / r['file']}  {r['month']}  audit #{r['first_seq']}-#{r['last_seq']}"
              f"  {r['bytes']} bytes  {r['state']}")
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

    archive = sub.add_parser("archive", help="retention: settled months in signed archive "
                                            "files").add_subparsers(dest="archive",
                                                                   required=True)
    run = archive.add_parser("run", help="archive every month older than "
                                         "[retention] keep_days now")
    run.add_argument("-c", "--config", required=True)
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.set_defaults(func=_cmd_archive_run)
    listing = archive.add_parser("list", help="the archive files the ledger knows of")
    listing.add_argument("-c", "--config", required=True)
    listing.set_defaults(func=_cmd_archive_list)

    check = sub.add_parser("verify", help="check an evidence bundle or an archive offline")
    check.add_argument("bundle")
    check.add_argument("-c", "--config",
                       help="also require the bundle's keys to be the ones pinned here")
    check.set_defaults(func=_cmd_verify)
