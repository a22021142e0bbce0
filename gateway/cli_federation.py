"""The commands of joining a federation: ``crisisgw init``, ``identity export`` and
``peers grant|add|list|suspend|resume|remove`` (README, "Joining the federation")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.config import load_settings
from gateway.errors import GatewayError


def _cmd_init(args: argparse.Namespace) -> int:
    from gateway.federation import init  # noqa: PLC0415

    config = init(centre=args.centre, name=args.name, country=args.country,
                  amqp_url=args.amqp_url, directory=Path(args.dir), api_port=args.api_port,
                  provision=not args.no_provision,
                  broker_ca=Path(args.broker_ca) if args.broker_ca else None,
                  rabbitmq_node=args.rabbitmq_node)
    print(f"node {args.centre} created: crisisgw run -c {config}")
    return 0


def _cmd_identity_export(args: argparse.Namespace) -> int:
    from gateway.federation import identity_card  # noqa: PLC0415

    sys.stdout.buffer.write(identity_card(load_settings(Path(args.config))) + b"\n")
    return 0


def _cmd_peers_grant(args: argparse.Namespace) -> int:
    from gateway.federation import grant  # noqa: PLC0415

    creds = grant(load_settings(Path(args.config)), args.peer, Path(args.out),
                  client_cert=Path(args.client_cert) if args.client_cert else None,
                  client_key=Path(args.client_key) if args.client_key else None,
                  rabbitmq_node=args.rabbitmq_node)
    secret = "a client certificate and its key" if creds.client_key else "a password"
    print(f"user {creds.user} may now write to our inbox; send {args.out} to "
          f"{args.peer} out of band (it holds {secret})")
    return 0


def _cmd_peers_add(args: argparse.Namespace) -> int:
    from gateway.federation import add_peer, read_card, read_credentials  # noqa: PLC0415

    card, prints = read_card(Path(args.card))
    print(f"{card.centre} — {card.name} ({card.country}); compare by phone:")
    for line in prints:
        print(f"  {line}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise GatewayError("compare the fingerprint by phone, then run again with --yes")
        if input("Does the fingerprint match what they read to you? [y/N] ").strip().lower() \
                not in ("y", "yes"):
            print("not enrolled")
            return 1
    if not args.credentials:
        raise GatewayError("--credentials FILE (the credentials the peer granted us) is needed")
    credentials = read_credentials(Path(args.credentials))
    groups = tuple(g for g in (args.groups or "").split(",") if g)
    add_peer(Path(args.config), card, credentials, groups,
             allow_plaintext=args.allow_plaintext)
    print(f"{card.centre} enrolled; the running node picks it up by itself")
    return 0


def _cmd_peers_list(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config))
    for p in settings.peers:
        flags = " (suspended)" if p.suspended else ""
        print(f"{p.id:10} {p.country}  {','.join(p.groups) or '-':12} "
              f"{', '.join(k.kid for k in p.keys)}{flags}")
    return 0


def _cmd_peers_suspend(args: argparse.Namespace) -> int:
    from gateway.federation import set_suspended  # noqa: PLC0415

    set_suspended(Path(args.config), args.peer, not args.resume)
    print(f"{args.peer} {'resumed' if args.resume else 'suspended'}")
    return 0


def _cmd_peers_remove(args: argparse.Namespace) -> int:
    from gateway.federation import remove_peer  # noqa: PLC0415

    remove_peer(Path(args.config), args.peer)
    print(f"{args.peer} removed")
    return 0


def add_federation(sub: Any) -> None:
    """The ``init``, ``identity`` and ``peers`` commands."""
    init = sub.add_parser("init", help="create a new node's keys and config")
    init.add_argument("--centre", required=True)
    init.add_argument("--name", required=True)
    init.add_argument("--country", required=True)
    init.add_argument("--amqp-url", required=True,
                      help="our own broker, with the node's user and password")
    init.add_argument("--dir", required=True)
    init.add_argument("--api-port", type=int, default=8401)
    init.add_argument("--no-provision", action="store_true",
                      help="the broker is provisioned by hand (deploy/provision-node.sh)")
    init.add_argument("--broker-ca", help="our broker's CA certificate (deploy/broker-tls.sh "
                      "ca): the trust anchor of an amqps:// URL and of our identity card")
    init.add_argument("--rabbitmq-node", help="the RabbitMQ node to provision (name@host), "
                      "where the machine runs several")
    init.set_defaults(func=_cmd_init)
    identity = sub.add_parser("identity", help="identity cards").add_subparsers(
        dest="identity", required=True)
    export = identity.add_parser("export", help="print our identity card, signed by us")
    export.add_argument("-c", "--config", required=True)
    export.set_defaults(func=_cmd_identity_export)
    peers = sub.add_parser("peers", help="the federation's peers").add_subparsers(
        dest="peers", required=True)
    grant = peers.add_parser("grant", help="create the user a peer publishes to us with")
    grant.add_argument("peer")
    grant.add_argument("-c", "--config", required=True)
    grant.add_argument("-o", "--out", required=True)
    grant.add_argument("--client-cert", help="PEM client certificate (CN = PEER@US) made by "
                       "deploy/broker-tls.sh client: the peer logs in with it, no password")
    grant.add_argument("--client-key", help="its private key")
    grant.add_argument("--rabbitmq-node", help="our RabbitMQ node (name@host), where the "
                       "machine runs several")
    grant.set_defaults(func=_cmd_peers_grant)
    add = peers.add_parser("add", help="enrol a peer from its identity card")
    add.add_argument("card")
    add.add_argument("-c", "--config", required=True)
    add.add_argument("--groups", help="comma-separated, e.g. benelux,eu")
    add.add_argument("--credentials", help="the credentials file the peer granted us")
    add.add_argument("--yes", action="store_true", help="fingerprint already compared")
    add.add_argument("--allow-plaintext", action="store_true",
                     help="accept an amqp:// URL to a non-loopback broker (never between "
                     "real centres)")
    add.set_defaults(func=_cmd_peers_add)
    for name, func, text in (("list", _cmd_peers_list, "list the peers"),):
        cmd = peers.add_parser(name, help=text)
        cmd.add_argument("-c", "--config", required=True)
        cmd.set_defaults(func=func)
    for name, func, text in (("suspend", _cmd_peers_suspend, "stop exchanging with a peer"),
                             ("remove", _cmd_peers_remove, "remove a peer")):
        cmd = peers.add_parser(name, help=text)
        cmd.add_argument("peer")
        cmd.add_argument("-c", "--config", required=True)
        if name == "suspend":
            cmd.add_argument("--resume", action="store_true")
        cmd.set_defaults(func=func)
