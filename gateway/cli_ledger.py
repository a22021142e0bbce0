"""``crisisgw ledger migrate|backup|restore``: moving a centre's ledger between engines,
and keeping copies of it.

- ``migrate --from sqlite:PATH --to postgresql://...`` copies the embedded ledger into
  an empty PostgreSQL database with its audit chain intact (node stopped); with
  ``-c``, the configuration is then pointed at the new ledger.
- ``backup -c CONFIG FILE`` takes a consistent copy while the node runs: SQLite's
  online backup for the embedded ledger, ``pg_dump --format=custom`` for PostgreSQL.
- ``restore -c CONFIG FILE`` puts a copy back (node stopped): the SQLite file, or
  ``pg_restore`` into the configured (empty) database. ``crisisgw audit verify`` then
  checks the restored chain.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from gateway.config import load_settings, update_config
from gateway.errors import ConfigError, LedgerError


def _sqlite_source(text: str) -> Path:
    if not text.startswith("sqlite:"):
        raise ConfigError(f"--from {text!r}: give the file as sqlite:/path/ledger.sqlite3")
    return Path(text.removeprefix("sqlite:").removeprefix("//")).expanduser()


def _cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.adapters.postgres.copy import copy_ledger  # noqa: PLC0415 - fast --help
    from gateway.adapters.stores.offline import ledger_path  # noqa: PLC0415

    config = Path(args.config) if args.config else None
    if args.source:
        source = _sqlite_source(args.source)
    elif config is not None:
        source = ledger_path(load_settings(config))
    else:
        raise ConfigError("say where the SQLite ledger is: --from sqlite:PATH or -c CONFIG")
    if urlsplit(args.to).scheme not in {"postgresql", "postgres"}:
        raise ConfigError("--to is a postgresql://user@host:port/database URL")
    report = copy_ledger(source, args.to, progress=lambda line: print(line, file=sys.stderr))
    for line in report.lines():
        print(line)
    if config is not None:
        update_config(config, lambda raw: raw.__setitem__(
            "ledger", {**raw.get("ledger", {}), "url": args.to}))
        print(f"{config}: [ledger] url set; start the node to use the PostgreSQL ledger")
    return 0


def _pg_schema(url: str) -> str | None:
    """The schema a URL's ``options=-csearch_path=...`` names, if any."""
    for key, value in parse_qsl(urlsplit(url).query):
        if key == "options":
            for part in unquote(value).split():
                if part.startswith("-csearch_path="):
                    return part.removeprefix("-csearch_path=").split(",")[0]
    return None


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603 - fixed programs
    if done.returncode != 0:
        raise LedgerError(f"{argv[0]} exited with {done.returncode}: {done.stderr.strip()[-800:]}")


def _cmd_backup(args: argparse.Namespace) -> int:
    from gateway.adapters.stores.offline import connect_sqlite, ledger_path  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    out = Path(args.file)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # TLP:RED texts
    os.close(fd)
    url = settings.ledger.postgres_url()
    if url is None:
        source = connect_sqlite(ledger_path(settings))
        try:
            target = sqlite3.connect(out)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
    else:
        schema = _pg_schema(url)
        _run([_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={out}",
              *([f"--schema={schema}"] if schema else []), f"--dbname={url}"])
    print(f"{out}: a backup of the {settings.ledger.shown()} ledger ({out.stat().st_size} bytes)")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from gateway.adapters.stores.offline import ledger_path  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    backup = Path(args.file)
    if not backup.is_file():
        raise ConfigError(f"no backup at {backup}")
    url = settings.ledger.postgres_url()
    if url is None:
        target = ledger_path(settings)
        if target.exists() and not args.force:
            raise ConfigError(f"{target} exists: stop the node, and give --force to "
                              "replace it with the backup")
        for extra in (target.with_name(target.name + "-wal"),
                      target.with_name(target.name + "-shm")):
            extra.unlink(missing_ok=True)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(backup, target)
        target.chmod(0o600)
    else:
        _run([_tool("pg_restore"), "--no-owner", "--exit-on-error", "--single-transaction",
              f"--dbname={url}", str(backup)])
    print(f"{backup} restored into the {settings.ledger.shown()} ledger; check it with "
          "crisisgw audit verify")
    return 0


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} not found: install PostgreSQL's client programs "
                          "(Debian: postgresql-client)")
    return found


def add_ledger(sub: Any) -> None:
    """Register the ledger commands."""
    ledger = sub.add_parser("ledger", help="move, back up and restore the ledger"
                            ).add_subparsers(dest="ledger", required=True)
    migrate = ledger.add_parser("migrate", help="copy the SQLite ledger into PostgreSQL "
                                "(node stopped), its audit chain intact")
    migrate.add_argument("--from", dest="source", help="sqlite:/path/ledger.sqlite3 "
                         "(default: the ledger of -c)")
    migrate.add_argument("--to", required=True, help="postgresql://user@host:port/db")
    migrate.add_argument("-c", "--config", help="the node's gateway.toml: its [ledger] url "
                         "is set to --to once the copy is complete")
    migrate.set_defaults(func=_cmd_migrate)
    backup = ledger.add_parser("backup", help="a consistent copy of the ledger (the node "
                               "may run)")
    backup.add_argument("-c", "--config", required=True)
    backup.add_argument("file")
    backup.set_defaults(func=_cmd_backup)
    restore = ledger.add_parser("restore", help="put a backup back (node stopped)")
    restore.add_argument("-c", "--config", required=True)
    restore.add_argument("file")
    restore.add_argument("--force", action="store_true",
                         help="replace an existing SQLite ledger file")
    restore.set_defaults(func=_cmd_restore)
