"""Joining a federation without code changes: init, identity cards, grants, enrolment.

These run from the CLI, next to a node's configuration; a running node picks up the
changed configuration by itself (it watches its file).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.adapters.provision import Definitions
from gateway.config import Settings, load_settings, update_config
from gateway.errors import ConfigError
from gateway.keyfiles import load_signing_key, write_private_key
from gateway.protocol.card import Card, CardKey, Inbox, open_card, sign_card
from gateway.protocol.keys import (
    default_key_id,
    fingerprint,
    public_key_from_text,
    public_key_text,
)
from gateway.protocol.types import format_time
from gateway.web.console.auth import hash_password

INBOX_WRITE = r"^crisisgw\.inbox$"
OWN_RESOURCES = r"^crisisgw\..*"


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _broker_parts(url: str) -> tuple[str, int, str, str, str]:
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return (parts.hostname or "127.0.0.1", parts.port or 5672, vhost,
            unquote(parts.username or ""), unquote(parts.password or ""))


def init(*, centre: str, name: str, country: str, amqp_url: str, directory: Path,
         api_port: int = 8401, provision: bool = True) -> Path:
    """Create a node's key, token, console account and config under ``directory``.

    With ``provision`` (admin rights on the local broker through rabbitmqctl) the vhost
    and the node's own user are created from the URL. Returns the config path.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "gateway.toml"
    if config.exists():
        raise ConfigError(f"{config} exists; init never overwrites a node")
    _, _, vhost, user, password = _broker_parts(amqp_url)
    if not user or not password:
        raise ConfigError("the AMQP URL must carry the node's user and password")
    key_path = directory / "signing.key"
    write_private_key(key_path, Ed25519PrivateKey.generate())
    public = load_signing_key(key_path, "-").public()
    token = secrets.token_urlsafe(32)
    _private_write(directory / "api-token", token + "\n")
    operator_password = secrets.token_urlsafe(12)
    _private_write(directory / "operator-password", operator_password + "\n")
    if provision:
        defs = Definitions()
        defs.vhost(vhost)
        defs.user(user, password)
        defs.grant(vhost, user, OWN_RESOURCES, OWN_RESOURCES, OWN_RESOURCES)
        defs.apply()
    import tomli_w  # noqa: PLC0415

    text = tomli_w.dumps({
        "node": {"centre": centre, "name": name, "country": country, "data_dir": "data",
                 "signing_key_file": "signing.key",
                 "signing_key_id": default_key_id(centre, public)},
        "broker": {"url": amqp_url},
        "api": {"host": "127.0.0.1", "port": api_port,
                "tokens": {"local": hashlib.sha256(token.encode()).hexdigest()}},
        "console": {"operators": [{"name": "operator", "role": "operator",
                                   "password_hash": hash_password(operator_password)}]},
    })
    _private_write(config, text)
    load_settings(config)
    return config


def identity_card(settings: Settings) -> bytes:
    """This node's identity card, signed by itself."""
    key = load_signing_key(settings.node.signing_key_file, settings.node.signing_key_id)
    host, port, vhost, _, _ = _broker_parts(settings.broker.url.get_secret_value())
    card = Card(
        centre=settings.node.centre, name=settings.node.name, country=settings.node.country,
        keys=(CardKey(kid=key.kid, public_key=public_key_text(key.public())),),
        inbox=Inbox(host=host, port=port, vhost=vhost), issued=datetime.now(UTC))
    return sign_card(card, key)


def grant(settings: Settings, peer: str, out: Path) -> dict[str, str]:
    """Create on our broker the user ``peer`` publishes with (write to our inbox only),
    and write its credentials to ``out`` (0600) for out-of-band transfer."""
    me = settings.node.centre
    host, port, vhost, _, _ = _broker_parts(settings.broker.url.get_secret_value())
    user = f"{peer}@{me}"
    password = secrets.token_hex(20)
    defs = Definitions()
    defs.user(user, password)
    defs.grant(vhost, user, "^$", INBOX_WRITE, "^$")
    defs.apply()
    url = (f"amqp://{quote(user, safe='')}:{password}@{host}:{port}/{quote(vhost, safe='')}")
    credentials = {"issuer": me, "peer": peer, "user": user, "url": url,
                   "issued": format_time(datetime.now(UTC))}
    _private_write(out, json.dumps(credentials, indent=2) + "\n")
    return credentials


def read_card(path: Path) -> tuple[Card, list[str]]:
    """A verified card and the fingerprints of its keys (to compare by phone)."""
    card = open_card(path.read_bytes())
    return card, [f"{k.kid}: {fingerprint(public_key_from_text(k.public_key))}"
                  for k in card.keys]


def add_peer(config: Path, card: Card, credentials: dict[str, Any],
             groups: tuple[str, ...]) -> Settings:
    """Enrol the peer of ``card`` with the credentials it issued us (hot-reloaded)."""
    me = load_settings(config).node.centre
    if credentials.get("issuer") != card.centre or credentials.get("peer") != me:
        raise ConfigError(f"the credentials were issued by {credentials.get('issuer')} for "
                          f"{credentials.get('peer')}, not by {card.centre} for {me}")
    entry = {
        "id": card.centre, "name": card.name, "country": card.country, "groups": list(groups),
        "keys": [k.model_dump(mode="json", exclude_none=True) for k in card.keys],
        "inbox_url": str(credentials["url"]), "granted_user": f"{card.centre}@{me}",
    }

    def change(raw: dict[str, Any]) -> None:
        peers = [p for p in raw.get("peers", []) if p.get("id") != card.centre]
        raw["peers"] = [*peers, entry]

    return update_config(config, change)


def set_suspended(config: Path, peer: str, suspended: bool) -> Settings:
    """Suspend or resume a peer."""
    def change(raw: dict[str, Any]) -> None:
        found = [p for p in raw.get("peers", []) if p.get("id") == peer]
        if not found:
            raise ConfigError(f"no peer {peer}")
        found[0]["suspended"] = suspended

    return update_config(config, change)


def remove_peer(config: Path, peer: str) -> Settings:
    """Remove a peer (its messages and receipts stay in the ledger as evidence)."""
    def change(raw: dict[str, Any]) -> None:
        before = raw.get("peers", [])
        raw["peers"] = [p for p in before if p.get("id") != peer]
        if len(raw["peers"]) == len(before):
            raise ConfigError(f"no peer {peer}")

    return update_config(config, change)
