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

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from gateway.adapters.provision import (
    OWN_CHANNELS,
    OWN_CONNECTIONS,
    PEER_CHANNELS,
    PEER_CONNECTIONS,
    Definitions,
)
from gateway.adapters.stores.keys import current_signing_key
from gateway.config import SCOPES, Settings, load_settings, update_config
from gateway.errors import ConfigError, MalformedInput
from gateway.keyfiles import load_signing_key, write_private_key
from gateway.protocol import ijson
from gateway.protocol.card import Card, CardKey, Credentials, Inbox, open_card, sign_card
from gateway.protocol.keys import (
    default_key_id,
    fingerprint,
    public_key_from_text,
    public_key_text,
)
from gateway.protocol.tlsanchor import ca_fingerprint
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
         api_port: int = 8401, provision: bool = True, broker_ca: Path | None = None,
         rabbitmq_node: str | None = None) -> Path:
    """Create a node's key, token, console account and config under ``directory``.

    ``broker_ca``: our broker's CA certificate (``deploy/broker-tls.sh ca``), the trust
    anchor of our ``amqps://`` URL and of our identity card. ``rabbitmq_node``: the
    RabbitMQ node to provision when the machine runs several.

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
        defs.limit(user, OWN_CONNECTIONS, OWN_CHANNELS)
        defs.apply(rabbitmq_node)
    broker: dict[str, Any] = {"url": amqp_url}
    if broker_ca is not None:
        broker["tls"] = {"ca_file": str(broker_ca.resolve())}
    text = tomli_w.dumps({
        "node": {"centre": centre, "name": name, "country": country, "data_dir": "data",
                 "signing_key_file": "signing.key",
                 "signing_key_id": default_key_id(centre, public)},
        "broker": broker,
        "api": {"host": "127.0.0.1", "port": api_port,
                "tokens": {"local": {"sha256": hashlib.sha256(token.encode()).hexdigest(),
                                     "scopes": list(SCOPES)}}},
        "console": {"operators": [{"name": "operator", "role": "operator",
                                   "password_hash": hash_password(operator_password)}]},
    })
    _private_write(config, text)
    load_settings(config)
    return config


def _advertised(settings: Settings) -> tuple[str, int, str]:
    """(host, port, vhost) of our inbox as peers reach it."""
    b = settings.broker
    host, port, vhost, _, _ = _broker_parts(b.url.get_secret_value())
    return b.advertised_host or host, b.advertised_port or port, vhost


def identity_card(settings: Settings) -> bytes:
    """This node's identity card, signed by itself, with our broker's TLS trust anchor."""
    key, _ = current_signing_key(settings)
    host, port, vhost = _advertised(settings)
    anchor = settings.broker.tls.anchor() if settings.broker.tls is not None else None
    card = Card(
        centre=settings.node.centre, name=settings.node.name, country=settings.node.country,
        keys=(CardKey(kid=key.kid, public_key=public_key_text(key.public())),),
        inbox=Inbox(host=host, port=port, vhost=vhost, tls=anchor), issued=datetime.now(UTC))
    return sign_card(card, key)


def grant(settings: Settings, peer: str, out: Path, *, client_cert: Path | None = None,
          client_key: Path | None = None, rabbitmq_node: str | None = None) -> Credentials:
    """Create on our broker the user ``peer`` publishes with (write to our inbox only),
    and write its credentials to ``out`` (0600) for out-of-band transfer.

    With ``client_cert`` and ``client_key`` (made by ``deploy/broker-tls.sh client`` with
    CN = the user), the peer logs in with RabbitMQ's EXTERNAL mechanism and no password
    is set. Over ``amqps://`` when our broker has a TLS anchor.
    """
    me = settings.node.centre
    host, port, vhost = _advertised(settings)
    user = f"{peer}@{me}"
    secure = settings.broker.tls is not None and settings.broker.tls.has_anchor
    scheme = "amqps" if secure else "amqp"
    defs = Definitions()
    extra: dict[str, str] = {}
    if client_cert is not None and client_key is not None:
        if not secure:
            raise ConfigError("a client certificate needs TLS: give [broker.tls] a trust anchor")
        defs.user(user, None)
        url = f"{scheme}://{quote(user, safe='')}@{host}:{port}/{quote(vhost, safe='')}" \
              "?auth=external"
        extra = {"client_certificate": client_cert.read_text(encoding="ascii"),
                 "client_key": client_key.read_text(encoding="ascii")}
    else:
        password = secrets.token_hex(20)
        defs.user(user, password)
        url = f"{scheme}://{quote(user, safe='')}:{password}@{host}:{port}/{quote(vhost, safe='')}"
    defs.grant(vhost, user, "^$", INBOX_WRITE, "^$")
    defs.limit(user, PEER_CONNECTIONS, PEER_CHANNELS)
    defs.apply(rabbitmq_node)
    credentials = Credentials(issuer=me, peer=peer, user=user, url=url,
                              issued=datetime.now(UTC), **extra)
    _private_write(out, json.dumps(credentials.model_dump(mode="json", exclude_none=True),
                                   indent=2) + "\n")
    return credentials


def read_card(path: Path) -> tuple[Card, list[str]]:
    """A verified card and what to compare by phone: the fingerprint of each key and of
    the broker's TLS trust anchor."""
    card = open_card(path.read_bytes())
    prints = [f"key {k.kid}: {fingerprint(public_key_from_text(k.public_key))}"
              for k in card.keys]
    anchor = card.inbox.tls
    if anchor is not None and anchor.ca is not None:
        prints.append(f"broker CA certificate (SHA-256): {ca_fingerprint(anchor.ca)}")
    elif anchor is not None:
        prints += [f"broker public key (SHA-256): {pin}" for pin in anchor.spki_sha256 or ()]
    else:
        prints.append("no TLS trust anchor: its broker is reached without TLS")
    return card, prints


def read_credentials(path: Path) -> Credentials:
    """Parse a credentials file; raises :class:`ConfigError` naming what is wrong."""
    try:
        return Credentials.model_validate(ijson.loads(path.read_bytes()))
    except (OSError, ValidationError, MalformedInput) as exc:
        raise ConfigError(f"{path}: not a credentials file: {exc}") from exc


def add_peer(config: Path, card: Card, credentials: Credentials, groups: tuple[str, ...], *,
             allow_plaintext: bool = False, granted_user: str | None = None) -> Settings:
    """Enrol the peer of ``card`` with the credentials it issued us (hot-reloaded).

    The keys and the broker's TLS trust anchor come from the signed card; the URL (and a
    client certificate, if any) from the credentials, which must point at the card's
    inbox. ``granted_user`` is the user we created for the peer on our broker (default
    ``<PEER>@<US>``), bound to it at reception (docs/PROTOCOL.md §5 step 8).
    """
    me = load_settings(config).node.centre
    if credentials.issuer != card.centre or credentials.peer != me:
        raise ConfigError(f"the credentials were issued by {credentials.issuer} for "
                          f"{credentials.peer}, not by {card.centre} for {me}")
    parts = urlsplit(credentials.url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    if (parts.hostname, port, vhost) != (card.inbox.host, card.inbox.port, card.inbox.vhost):
        raise ConfigError(
            f"the credentials point at {parts.hostname}:{parts.port}/{vhost}, but the signed "
            f"card puts {card.centre}'s inbox at {card.inbox.host}:{card.inbox.port}/"
            f"{card.inbox.vhost}")
    if unquote(parts.username or "") != credentials.user:
        raise ConfigError("the credentials' URL does not log in as their user")
    entry: dict[str, Any] = {
        "id": card.centre, "name": card.name, "country": card.country, "groups": list(groups),
        "keys": [k.model_dump(mode="json", exclude_none=True) for k in card.keys],
        "inbox_url": credentials.url, "granted_user": granted_user or f"{card.centre}@{me}",
    }
    if allow_plaintext:
        entry["allow_plaintext"] = True
    tls: dict[str, Any] = {}
    if parts.scheme == "amqps":
        if card.inbox.tls is None:
            raise ConfigError(f"{card.centre}'s card publishes no TLS trust anchor for its "
                              "broker; ask for a card that does")
        tls = card.inbox.tls.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    if credentials.client_certificate and credentials.client_key:
        folder = config.parent / "peer-certs"
        folder.mkdir(mode=0o700, exist_ok=True)
        cert, key = folder / f"{card.centre}.pem", folder / f"{card.centre}.key"
        _private_write(cert, credentials.client_certificate)
        _private_write(key, credentials.client_key)
        tls |= {"client_cert": str(cert), "client_key": str(key)}
    if tls:
        entry["tls"] = tls

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
