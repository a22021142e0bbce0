"""The demo federation: four centres on the local RabbitMQ, one vhost each.

``prepare`` is idempotent: it keeps existing keys, tokens and passwords and only
(re)creates what is missing, then resets broker users and permissions to match.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.adapters.provision import (
    OWN_CHANNELS,
    OWN_CONNECTIONS,
    PEER_CHANNELS,
    PEER_CONNECTIONS,
    Definitions,
)
from gateway.config import SCOPES
from gateway.demo_mail import DemoMailbox
from gateway.errors import ConfigError
from gateway.keyfiles import load_signing_key, write_private_key
from gateway.protocol.keys import default_key_id, public_key_text
from gateway.web.console.auth import hash_password


@dataclass(frozen=True)
class Centre:
    """A demo centre."""

    id: str
    name: str
    country: str
    groups: tuple[str, ...]

    def vhost(self, prefix: str = "crisisgw") -> str:
        """Its broker vhost."""
        return f"{prefix}-{self.id.lower()}"


LANGUAGES = {"BE": ["nl", "fr", "de", "en"], "NL": ["nl", "en"], "LU": ["fr", "de", "lb"],
             "DE": ["de", "en"]}
DEFAULT_LANGUAGES = ["en"]


def demo_contacts(c: Centre, today: str) -> list[dict[str, Any]]:
    """Illustrative contact points of a demo centre (crisis communication, civil protection)."""
    domain = c.id.lower().replace("-", "") + ".example"
    return [
        {"field": "crisis-communication", "name": f"{c.id} press and communication desk",
         "role": "crisis communication specialist", "phone": "+32 2 000 00 00",
         "email": f"communication@{domain}",
         "languages": LANGUAGES.get(c.country, DEFAULT_LANGUAGES),
         "available_24_7": True, "confirmed": today},
        {"field": "civil-protection", "name": f"{c.id} duty officer civil protection",
         "phone": "+32 2 000 00 01", "email": f"duty@{domain}",
         "languages": LANGUAGES.get(c.country, DEFAULT_LANGUAGES), "available_24_7": True,
         "confirmed": today},
    ]


CENTRES = (
    Centre("BE-NCCN", "Nationaal Crisiscentrum / Centre de Crise National", "BE", ("benelux",)),
    Centre("NL-NCC", "Nationaal Crisiscentrum", "NL", ("benelux",)),
    Centre("LU-HCPN", "Haut-Commissariat à la Protection nationale", "LU", ("benelux",)),
    Centre("DE-NW", "Krisenstab Nordrhein-Westfalen", "DE", ("nrw",)),
)

EXAMPLE = {"to": ["NL-NCC", "LU-HCPN", "DE-NW"], "tlp": "GREEN",
           "sitrep": {"incident": {"id": "BE-2026-0001", "title": "Flooding of the Meuse"},
                      "report_number": 1, "severity": "severe",
                      "summary": "Water levels rising at Liège."}}


def peer_user(publisher: str, owner: str, prefix: str = "") -> str:
    """The user ``publisher`` has on ``owner``'s broker."""
    return f"{prefix}{publisher}@{owner}"


#: Where ``deploy/broker-tls.sh local`` keeps the local broker's CA and certificate.
LOCAL_TLS_DIR = Path("/etc/rabbitmq/crisisgw-tls")
LOCAL_TLS_PORT = 5671
#: The demo mailbox listens on the base port plus this.
MAILBOX_OFFSET = 25


@dataclass(frozen=True)
class BrokerTls:
    """The local broker's TLS listener: every demo link uses it, verified against its CA."""

    ca_file: Path
    port: int = LOCAL_TLS_PORT
    #: The name the links use; the broker certificate is made for it (and for 127.0.0.1).
    host: str = "localhost"

    def ca_pem(self) -> str:
        """The CA certificate, as a centre publishes it in its identity card."""
        return self.ca_file.read_text(encoding="ascii")


def amqp_url(base: str, user: str, password: str, vhost: str,
             tls: BrokerTls | None = None) -> str:
    """An AMQP URL on the base broker with these credentials and vhost (``amqps://`` to
    the TLS listener when ``tls`` is given)."""
    parts = urlsplit(base)
    scheme, host, port = "amqp", parts.hostname or "127.0.0.1", parts.port or 5672
    if tls is not None:
        scheme, host, port = "amqps", tls.host, tls.port
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"{scheme}://{credentials}@{host}:{port}/{quote(vhost, safe='')}"


def _secret_store(root: Path) -> dict[str, str]:
    path = root / ".secrets.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    return {}


def _save_secrets(root: Path, data: dict[str, str]) -> None:
    path = root / ".secrets.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)


def _write_private_text(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def prepare(root: Path, base_port: int, amqp_base: str, *,
            centres: tuple[Centre, ...] = CENTRES, provision: bool = True,
            overrides: dict[str, Any] | None = None, prefix: str = "crisisgw",
            user_prefix: str = "", tls: BrokerTls | None = None,
            mail: tuple[int, Path] | None = None) -> dict[str, Path]:
    """Create keys, tokens, broker users and configs; returns centre id -> config path.

    With ``tls`` every link (each node's own inbox and every peer link) is AMQPS to the
    local broker's TLS listener, verified against its CA, as between real centres. With
    ``mail`` (the port and CA file of the demo mailbox) every node e-mails through it:
    escalations and the communication tests' fallback codes, linking to each peer's
    console.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    store = _secret_store(root)

    def secret(name: str) -> str:
        if name not in store:
            store[name] = secrets.token_hex(20)  # hex: never starts with "-" (rabbitmqctl argv)
        return store[name]

    public: dict[str, tuple[str, str]] = {}
    for c in centres:
        cdir = root / c.id
        cdir.mkdir(exist_ok=True)
        key_path = cdir / "signing.key"
        if not key_path.exists():
            write_private_key(key_path, Ed25519PrivateKey.generate())
        priv = load_signing_key(key_path, "tmp").private.public_key()
        public[c.id] = (default_key_id(c.id, priv), public_key_text(priv))
        token_path = cdir / "api-token"
        if not token_path.exists():
            _write_private_text(token_path, secrets.token_urlsafe(32) + "\n")
        password_path = cdir / "operator-password"
        if not password_path.exists():
            _write_private_text(password_path, secrets.token_urlsafe(12) + "\n")

    defs = Definitions()
    for c in centres:
        own = user_prefix + c.id
        defs.vhost(c.vhost(prefix))
        defs.user(own, secret(own))
        defs.grant(c.vhost(prefix), own, r"^crisisgw\..*", r"^crisisgw\..*", r"^crisisgw\..*")
        defs.limit(own, OWN_CONNECTIONS, OWN_CHANNELS)
        for other in centres:
            if other.id != c.id:
                user = peer_user(other.id, c.id, user_prefix)
                defs.user(user, secret(user))
                defs.grant(c.vhost(prefix), user, "^$", r"^crisisgw\.inbox$", "^$")
                defs.limit(user, PEER_CONNECTIONS, PEER_CHANNELS)
    if provision:
        defs.apply()
    _save_secrets(root, store)

    # Peers trust each other's broker through the CA text from the identity card.
    ca_pem = tls.ca_pem() if tls is not None else None
    paths = {}
    for index, c in enumerate(centres):
        cdir = root / c.id
        token = (cdir / "api-token").read_text().strip()
        kid, _ = public[c.id]
        config: dict[str, Any] = {
            "log_format": "auto",
            "node": {"centre": c.id, "name": c.name, "country": c.country, "data_dir": "data",
                     "signing_key_file": "signing.key", "signing_key_id": kid},
            "broker": {"url": amqp_url(amqp_base, user_prefix + c.id, store[user_prefix + c.id],
                                       c.vhost(prefix), tls)}
            | ({"tls": {"ca_file": str(tls.ca_file)}} if tls else {}),
            "api": {"host": "127.0.0.1", "port": base_port + index,
                    "tokens": {"demo": {"sha256": hashlib.sha256(token.encode()).hexdigest(),
                                        "scopes": list(SCOPES)}}},
            "delivery": {"retry_base_seconds": 1.0, "retry_cap_seconds": 30.0,
                         "refused_delay_seconds": 30.0},
            "directory": demo_contacts(c, datetime.now(UTC).date().isoformat()),
            "console": {"operators": [{
                "name": "operator", "role": "operator",
                "password_hash": hash_password((cdir / "operator-password").read_text().strip()),
            }]},
            "peers": [
                {"id": o.id, "name": o.name, "country": o.country, "groups": list(o.groups),
                 "keys": [{"kid": public[o.id][0], "public_key": public[o.id][1]}],
                 "inbox_url": amqp_url(amqp_base, peer_user(c.id, o.id, user_prefix),
                                       store[peer_user(c.id, o.id, user_prefix)],
                                       o.vhost(prefix), tls),
                 "granted_user": peer_user(o.id, c.id, user_prefix)}
                | ({"tls": {"ca": ca_pem}} if ca_pem else {})
                for o in centres if o.id != c.id
            ],
        }
        # any demo centre can control an exercise: it reaches the others' APIs
        config["exercise"] = {"centres": [
            {"id": o.id, "api_url": f"http://127.0.0.1:{base_port + i}",
             "token_file": str(root / o.id / "api-token")}
            for i, o in enumerate(centres) if o.id != c.id]}
        if mail is not None:
            config["escalation"] = _demo_escalation(c, centres, base_port, *mail)
        _override(config, overrides or {})
        path = cdir / "gateway.toml"
        _write_private_text(path, tomli_w.dumps(config))
        paths[c.id] = path
    return paths


def _override(config: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Merge ``overrides`` into ``config``, a table into a table, anything else replaced."""
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section].update(values)
        else:
            config[section] = values


def _demo_escalation(c: Centre, centres: tuple[Centre, ...], base_port: int, port: int,
                     ca_file: Path) -> dict[str, Any]:
    """``[escalation]`` of a demo centre: e-mail through the demo mailbox at once when a
    flash or urgent message is overdue, and every peer's console linked."""
    domain = c.id.lower().replace("-", "") + ".example"
    return {
        "steps": {"flash": [{"after": 0, "channel": "email"}],
                  "urgent": [{"after": 0, "channel": "email"}]},
        "email": {"host": "127.0.0.1", "port": port, "sender": f"crisisgw@{domain}",
                  "ca_file": str(ca_file)},
        "peers": [{"id": o.id, "console_url": f"http://127.0.0.1:{base_port + i}/console",
                   "exercise_contacts": [{
                       "name": f"{o.id} exercise control",
                       "email": f"exercise@{o.id.lower().replace('-', '')}.example"}]}
                  for i, o in enumerate(centres) if o.id != c.id],
    }


def wait_ready(port: int, timeout: float = 60.0,
               proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll a node's /readyz until it answers 200; False if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _crisisgw() -> str:
    """How to call the CLI of this installation (the venv's, when not on PATH)."""
    beside = Path(sys.executable).parent / "crisisgw"
    return "crisisgw" if shutil.which("crisisgw") == str(beside) or not beside.exists() \
        else str(beside)


def _print_example(base_port: int, root: Path) -> None:
    config = root / "BE-NCCN" / "gateway.toml"
    token_file = root / "BE-NCCN" / "api-token"
    example = root / "example-sitrep.json"
    cli = _crisisgw()
    print("\nSend the example sitrep from BE-NCCN to its three peers:\n")
    print(f"  {cli} send {example} -c {config}")
    print(f"  {cli} status <id from the answer> -c {config}\n")
    print("or over the HTTP API:\n")
    print(f"  curl -sS -X POST http://127.0.0.1:{base_port}/v1/sitreps \\\n"
          f"    -H \"Authorization: Bearer $(cat {token_file})\" \\\n"
          f"    -H 'Content-Type: application/json' --data-binary @{example}\n")
    print("Then watch it in the console:")
    print(f"  http://127.0.0.1:{base_port}/console  (user: operator, password in "
          f"{token_file.parent / 'operator-password'})\n")
    print("Ctrl-C stops the federation.")


def _spawn(paths: dict[str, Path]) -> list[tuple[str, subprocess.Popen[bytes]]]:
    procs = []
    for cid, path in paths.items():
        log_path = path.parent / "node.log"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.chmod(log_path, 0o600)  # the log may name peers, incidents and operators
        with os.fdopen(fd, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "gateway", "run", "-c", str(path), "--log-format", "json"],
                stdout=log, stderr=log)
        procs.append((cid, proc))
    return procs


def _stop(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for _, proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def local_tls(tls_dir: Path = LOCAL_TLS_DIR, port: int = LOCAL_TLS_PORT) -> BrokerTls:
    """The local broker's TLS listener made by ``deploy/broker-tls.sh local``; raises
    :class:`ConfigError` saying how to make it when it is missing."""
    ca = tls_dir / "ca.pem"
    if not ca.exists():
        raise ConfigError(f"no broker CA at {ca}: run deploy/broker-tls.sh local (or "
                          "./deploy/run-demo.sh, which does), or pass --plaintext")
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 3):
        return BrokerTls(ca_file=ca, port=port)
    raise ConfigError(f"the local broker has no TLS listener on port {port}: run "
                      "deploy/broker-tls.sh local, or pass --plaintext")


def run(root: Path, base_port: int, amqp_base: str, init_only: bool,
        broker_prefix: str = "crisisgw", *, tls: BrokerTls | None = None) -> int:
    """Prepare, then run the four nodes until Ctrl-C (or SIGTERM).

    ``broker_prefix`` names the vhosts (``<prefix>-be-nccn``); any other value than the
    default also prefixes the broker user names, so two federations can share a broker.
    ``tls``: every link over AMQPS to that listener (the default of ``crisisgw demo``).
    """
    # One line at a time, also into a pipe (`run-demo.sh | tee demo.log`).
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    user_prefix = "" if broker_prefix == "crisisgw" else f"{broker_prefix}."
    mailbox = DemoMailbox(root.resolve() / "mail", base_port + MAILBOX_OFFSET)
    paths = prepare(root, base_port, amqp_base, prefix=broker_prefix, user_prefix=user_prefix,
                    tls=tls, mail=(mailbox.port, mailbox.ca_file))
    (root / "example-sitrep.json").write_text(json.dumps(EXAMPLE, indent=2, ensure_ascii=False)
                                              + "\n", encoding="utf-8")
    print(f"Demo federation prepared in {root.resolve()}")
    if tls is not None:
        print(f"Every link is AMQPS to {tls.host}:{tls.port}, verified against {tls.ca_file}")
    else:
        print("Links are plaintext AMQP on loopback (--plaintext)")
    if init_only:
        for cid, path in paths.items():
            print(f"  {cid}: crisisgw run -c {path}")
        return 0
    # Ctrl-C must stop the federation even when started from a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    mailbox.start()
    print(f"Demo mailbox: smtp://127.0.0.1:{mailbox.port} (STARTTLS), e-mails kept in "
          f"{mailbox.folder}")
    procs = _spawn(paths)
    try:
        for index, (cid, proc) in enumerate(procs):
            if not wait_ready(base_port + index, proc=proc):
                print(f"{cid} did not become ready; see {paths[cid].parent / 'node.log'}")
                return 1
            print(f"  {cid:8} ready  http://127.0.0.1:{base_port + index}  (pid {proc.pid})")
        _print_example(base_port, root)
        reported: set[str] = set()
        # A stopped node is reported, the others keep running (a peer may be stopped on
        # purpose, e.g. to see a communication test report it unreachable).
        while any(p.poll() is None for _, p in procs):
            for cid, p in procs:
                if p.poll() is not None and cid not in reported:
                    reported.add(cid)
                    print(f"{cid} stopped (exit {p.returncode}); the others keep running")
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping the federation ...")
        return 0
    else:
        print("every node has stopped")
        return 1
    finally:
        _stop(procs)
        mailbox.stop()
