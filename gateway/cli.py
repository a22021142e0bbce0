"""The ``crisisgw`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import __version__
from gateway.cli_bench import add_bench
from gateway.cli_evidence import add_evidence
from gateway.cli_exercise import add_exercise
from gateway.cli_federation import add_federation
from gateway.cli_ledger import add_ledger
from gateway.config import Settings, failpoints_from_env, load_settings
from gateway.errors import GatewayError, RequestRefused
from gateway.keyfiles import write_private_key
from gateway.logging import configure_logging
from gateway.protocol.keys import default_key_id, fingerprint, public_key_text


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway import failpoints  # noqa: PLC0415 - keeps `crisisgw --help` fast
    from gateway.app import Node  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    os.umask(0o077)  # everything the node writes (ledger, keys, logs) is its own only
    failpoints.arm(failpoints_from_env())
    configure_logging(args.log_format or settings.log_format, args.log_level)
    asyncio.run(Node(settings, config_path=Path(args.config), instance=args.instance,
                     api_port=args.api_port).run_until_signalled())
    return 0


def _own_api(settings: Settings) -> tuple[str, ssl.SSLContext | None]:
    """The base URL of our node's API, and for HTTPS a context that trusts exactly the
    node's own certificate (it is ours; no CA or host name is involved)."""
    api = settings.api
    host = "127.0.0.1" if api.host in ("0.0.0.0", "::", "") else api.host  # noqa: S104
    if not api.https or api.tls_cert is None:
        return f"http://{host}:{api.port}", None
    ctx = ssl.create_default_context(cafile=str(api.tls_cert))
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf itself is the anchor
    ctx.check_hostname = False
    return f"https://{host}:{api.port}", ctx


def _api(settings: Settings, token: str, method: str, path: str, *,
         body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, Any]:
    base, ctx = _own_api(settings)
    url = f"{base}{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={  # noqa: S310
        "Authorization": f"Bearer {token}", "Content-Type": "application/json",
        **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:  # noqa: S310 - our node
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (urllib.error.URLError, OSError) as exc:
        raise GatewayError(f"cannot reach the node's API at {url}: {exc}") from exc


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    path = Path(args.token_file) if args.token_file else Path(args.config).parent / "api-token"
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise GatewayError(f"no API token: pass --token or --token-file ({exc})") from exc


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None
          ) -> tuple[int, Any]:
    """One request to the node of ``-c``, with the token of the options."""
    return _api(load_settings(Path(args.config)), _token(args), method, path, body=body)


def _cmd_send(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config))
    body = json.loads(Path(args.file).read_text(encoding="utf-8"))
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    path = "/v1/alerts" if isinstance(body, dict) and "alert" in body else "/v1/sitreps"
    status, answer = _api(settings, _token(args), "POST", path, body=body, headers=headers)
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0 if status == 202 else 1


def _cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config))
    status, answer = _api(settings, _token(args), "GET", f"/v1/messages/{args.id}")
    if status != 200 or args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0 if status == 200 else 1
    print(f"{answer['id']}  {answer['type']}  incident={answer.get('incident')}  "
          f"tlp={answer['tlp']}  priority={answer['priority']}")
    for r in answer.get("recipients", []):
        when = r.get("acknowledged_at") or r.get("delivered_at") or r.get("sent_at") or ""
        extra = f"  reason={r['reason']}" if r.get("reason") else ""
        extra += f"  last_error={r['last_error']}" if r.get("last_error") else ""
        print(f"  {r['centre']:10} {r['state']:13} {when}{extra}")
    return 0


def _cmd_keys_generate(args: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    out = Path(args.out)
    if out.exists():
        raise GatewayError(f"{out} exists; a signing key is never overwritten")
    write_private_key(out, key)
    pub = key.public_key()
    kid = args.kid or default_key_id(args.centre, pub)
    print(json.dumps({"kid": kid, "public_key": public_key_text(pub),
                      "fingerprint": fingerprint(pub), "private_key_file": str(out)}, indent=2))
    return 0


def _cmd_keys_rotate(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config))
    status, answer = _api(settings, _token(args), "POST", "/v1/keys/rotate",
                          body={"overlap_days": args.overlap_days})
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0 if status == 200 else 1


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config))
    status, answer = _api(settings, _token(args), "POST",
                          f"/v1/peers/{args.peer}/keys/{args.kid}/revoke", body={})
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0 if status == 200 else 1


def _cmd_keys_show(args: argparse.Namespace) -> int:
    from gateway.adapters.stores.keys import current_signing_key  # noqa: PLC0415 - fast --help

    settings = load_settings(Path(args.config))
    key, _ = current_signing_key(settings)
    print(json.dumps({"centre": settings.node.centre, "kid": key.kid,
                      "public_key": public_key_text(key.public()),
                      "fingerprint": fingerprint(key.public())}, indent=2))
    return 0


def _cmd_cap_import(args: argparse.Namespace) -> int:
    from gateway.formats.cap import parse_cap  # noqa: PLC0415 - lxml only when needed
    from gateway.protocol.alert import (  # noqa: PLC0415
        alert_json,
        default_priority,
        default_tlp,
        mode_for_status,
    )
    from gateway.service.submit import alert_incident  # noqa: PLC0415

    alert = parse_cap(Path(args.file).read_bytes())
    try:
        mode = mode_for_status(alert.status).value
    except ValueError as exc:
        raise GatewayError(str(exc)) from exc
    submission = {
        "to": [t for t in (args.to or "").split(",") if t],
        "tlp": args.tlp or default_tlp(alert).value,
        "priority": args.priority or default_priority(alert).value,
        "mode": mode, "incident": args.incident or alert_incident(alert),
        "alert": alert_json(alert),
    }
    if not args.send:
        print(json.dumps(submission, indent=2, ensure_ascii=False))
        return 0
    if not args.config or not submission["to"]:
        raise GatewayError("--send needs -c CONFIG and --to CENTRE[,GROUP...]")
    settings = load_settings(Path(args.config))
    status, answer = _api(settings, _token(args), "POST", "/v1/alerts", body=submission)
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0 if status == 202 else 1


def _read_json_arg(path: str) -> Any:
    """The JSON in file ``path``, or on standard input for ``-``."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise GatewayError(f"{'stdin' if path == '-' else path}: not JSON: {exc}") from exc


def _message_file(path: str) -> tuple[dict[str, Any], bytes]:
    from gateway.protocol.canonical import canonical_bytes  # noqa: PLC0415

    data = _read_json_arg(path)
    if not isinstance(data, dict) or "envelope" not in data or "signature" not in data:
        raise GatewayError(f"{path}: expected a message as returned by GET /v1/messages/{{id}}")
    return data["envelope"], canonical_bytes({"envelope": data["envelope"],
                                              "signature": data["signature"]})


def _write_out(data: bytes, out: str | None) -> None:
    if out:
        Path(out).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)


def _cmd_cap_export(args: argparse.Namespace) -> int:
    from gateway.web.exports import cap_xml  # noqa: PLC0415

    data = _read_json_arg(args.file)
    if isinstance(data, dict) and "alert" in data and "envelope" not in data:
        # What `crisisgw cap import` prints (an alert submission): export its alert.
        envelope: dict[str, Any] = {"type": "alert", "body": data["alert"]}
    elif isinstance(data, dict) and isinstance(data.get("envelope"), dict):
        envelope = data["envelope"]
    else:
        raise GatewayError(f"{args.file}: expected a message (GET /v1/messages/{{id}}) or the "
                           "output of `crisisgw cap import`")
    try:
        _write_out(cap_xml(envelope), args.out)
    except (RequestRefused, ValueError) as exc:
        raise GatewayError(f"{args.file}: cannot export as CAP: {exc}") from exc
    return 0


def _cmd_edxl_export(args: argparse.Namespace) -> int:
    from gateway.formats.edxl import edxl_de  # noqa: PLC0415
    from gateway.web.exports import cap_xml  # noqa: PLC0415

    envelope, wire = _message_file(args.file)
    cap = cap_xml(envelope) if envelope.get("type") in ("alert", "sitrep") else None
    _write_out(edxl_de(envelope, wire, cap_xml=cap), args.out)
    return 0


def _cmd_tokens_add(args: argparse.Namespace) -> int:
    import hashlib  # noqa: PLC0415
    import secrets  # noqa: PLC0415

    from gateway.config import SCOPES, update_config  # noqa: PLC0415

    scopes = sorted(set(args.scope or ()))
    if not scopes or set(scopes) - set(SCOPES):
        raise GatewayError(f"give one or more --scope of {', '.join(SCOPES)}")
    token = secrets.token_urlsafe(32)
    entry = {"sha256": hashlib.sha256(token.encode()).hexdigest(), "scopes": scopes}
    update_config(Path(args.config), lambda raw: raw.setdefault("api", {}).setdefault(
        "tokens", {}).__setitem__(args.client, entry))
    print(token)
    print(f"token for {args.client} ({', '.join(scopes)}): shown once; the node keeps only "
          "its SHA-256 and picks it up by itself", file=sys.stderr)
    return 0


def _cmd_tokens_remove(args: argparse.Namespace) -> int:
    from gateway.config import update_config  # noqa: PLC0415

    def change(raw: dict[str, Any]) -> None:
        if raw.get("api", {}).get("tokens", {}).pop(args.client, None) is None:
            raise GatewayError(f"no token for {args.client}")
    update_config(Path(args.config), change)
    return 0


def _cmd_set_password(args: argparse.Namespace) -> int:
    import getpass  # noqa: PLC0415

    from gateway.config import update_config  # noqa: PLC0415
    from gateway.web.console.auth import ROLES, hash_password  # noqa: PLC0415

    path = Path(args.config)
    load_settings(path)  # refuse to touch an invalid file
    if args.role not in ROLES:
        raise GatewayError(f"role must be one of {', '.join(ROLES)}")
    password = (sys.stdin.readline().rstrip("\n") if args.password_stdin
                else getpass.getpass(f"New password for {args.name}: "))
    if len(password) < 10:
        raise GatewayError("use at least 10 characters")
    entry = {"name": args.name, "role": args.role, "password_hash": hash_password(password)}

    def change(raw: dict[str, Any]) -> None:
        operators = raw.setdefault("console", {}).setdefault("operators", [])
        operators[:] = [o for o in operators if o.get("name") != args.name] + [entry]

    update_config(path, change)
    print(f"password set for {args.name} ({args.role}) in {path}")
    return 0


def _cmd_commcheck(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    token = _token(args)
    status, answer = _api(settings, token, "POST", "/v1/commchecks", body={})
    if status != 202:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 1
    check_id = answer["id"]
    deadline = time.monotonic() + args.wait
    while True:
        _, report = _api(settings, token, "GET", f"/v1/commchecks/{check_id}?wait={args.wait}")
        if report["reached"] == report["total"] or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    _, report = _api(settings, token, "GET", f"/v1/commchecks/{check_id}?wait=0")
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(f"communication test {check_id}: {report['reached']}/{report['total']} reached")
        for p in report["peers"]:
            rtt = f"{p['round_trip_s']:.3f} s" if p["round_trip_s"] is not None else "—"
            print(f"  {p['peer']:10} {'reached' if p['reached'] else 'UNREACHABLE':12} "
                  f"round trip {rtt:>10}  receipt verified: "
                  f"{'yes' if p['receipt_verified'] else 'no'}"
                  + (f"  ({p['failure']})" if p["failure"] else ""))
            print(f"  {'':10} fallback: {_fallback_line(p)}")
    return 0 if report["reached"] == report["total"] else 3


def _fallback_line(p: dict[str, Any]) -> str:
    """The fallback leg of one peer in a few words."""
    return {
        "confirmed": f"code confirmed by {p.get('fallback_by')} after "
                     f"{p.get('fallback_after_s')} s",
        "sent": f"code e-mailed to {p.get('fallback_contact')}, waiting for it in "
                "their console",
        "refused": f"only wrong codes so far ({p.get('fallback_error')})",
        "failed": f"no code sent ({p.get('fallback_error')})",
    }.get(str(p.get("fallback")), "no code (yet)")


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import local_tls, run  # noqa: PLC0415

    tls = None if args.plaintext else local_tls(Path(args.tls_dir), args.tls_port)
    return run(Path(args.dir), args.base_port, args.amqp_url, args.init_only, args.broker_prefix,
               tls=tls)


def _cmd_schemas(args: argparse.Namespace) -> int:
    from gateway.wire_schemas import write_all  # noqa: PLC0415

    for path in write_all(Path(args.out)):
        print(path)
    return 0


def _with_api(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-c", "--config", required=True, help="the node's gateway.toml")
    sp.add_argument("--token", help="API bearer token")
    sp.add_argument("--token-file", help="file holding the API token "
                    "(default: api-token next to the config)")


def _add_operations(sub: Any) -> None:
    """The ``commcheck`` and ``operators`` commands."""
    # "commscheck" was this command's first spelling: kept so scripts keep working.
    check = sub.add_parser("commcheck", aliases=["commscheck"],
                           help="run a communication test with every peer")
    _with_api(check)
    check.add_argument("--json", action="store_true")
    check.add_argument("--wait", type=float, default=20.0,
                       help="seconds to wait for every peer's receipt (default 20)")
    check.set_defaults(func=_cmd_commcheck)

    ops = sub.add_parser("operators", help="console operator accounts").add_subparsers(
        dest="operators", required=True)
    setpw = ops.add_parser("set-password", help="create an account or change its password")
    setpw.add_argument("name")
    setpw.add_argument("-c", "--config", required=True)
    setpw.add_argument("--role", default="operator", help="viewer, operator or admin")
    setpw.add_argument("--password-stdin", action="store_true",
                       help="read the password from standard input")
    setpw.set_defaults(func=_cmd_set_password)
    tokens = sub.add_parser("tokens", help="API tokens and their scopes").add_subparsers(
        dest="tokens", required=True)
    tadd = tokens.add_parser("add", help="a new token for a centre system (printed once)")
    tadd.add_argument("client")
    tadd.add_argument("--scope", action="append",
                      help="read, submit, acknowledge or admin (repeat for several)")
    tadd.add_argument("-c", "--config", required=True)
    tadd.set_defaults(func=_cmd_tokens_add)
    trm = tokens.add_parser("remove", help="revoke a client's token")
    trm.add_argument("client")
    trm.add_argument("-c", "--config", required=True)
    trm.set_defaults(func=_cmd_tokens_remove)
    add_evidence(sub)
    add_ledger(sub)


def _add_demo(sub: Any) -> None:
    """The ``demo`` command."""
    demo = sub.add_parser("demo", help="run the four-centre demo federation")
    demo.add_argument("--dir", default="crisisgw-demo")
    demo.add_argument("--base-port", type=int, default=8401)
    demo.add_argument("--amqp-url", default="amqp://127.0.0.1:5672/")
    demo.add_argument("--init-only", action="store_true")
    demo.add_argument("--tls-dir", default="/etc/rabbitmq/crisisgw-tls",
                      help="the local broker's CA (deploy/broker-tls.sh local makes it)")
    demo.add_argument("--tls-port", type=int, default=5671,
                      help="the local broker's TLS listener")
    demo.add_argument("--plaintext", action="store_true",
                      help="plain AMQP on loopback instead of TLS")
    demo.add_argument("--broker-prefix", default="crisisgw",
                      help="vhost (and, if not the default, user) name prefix on the broker")
    demo.set_defaults(func=_cmd_demo)


def _add_standards(sub: Any) -> None:
    """The ``cap`` and ``edxl`` command groups."""
    cap = sub.add_parser("cap", help="CAP 1.2 import and export").add_subparsers(
        dest="cap", required=True)
    cap_import = cap.add_parser("import", help="convert a CAP 1.2 alert into an alert message")
    cap_import.add_argument("file")
    cap_import.add_argument("--send", action="store_true", help="submit it instead of printing")
    cap_import.add_argument("-c", "--config")
    cap_import.add_argument("--to", help="comma-separated centre ids and group names")
    cap_import.add_argument("--tlp")
    cap_import.add_argument("--priority")
    cap_import.add_argument("--incident")
    cap_import.add_argument("--token")
    cap_import.add_argument("--token-file")
    cap_import.set_defaults(func=_cmd_cap_import)
    cap_export = cap.add_parser("export", help="a message (GET /v1/messages/{id} JSON) or the "
                                "output of `cap import`, as CAP 1.2 XML")
    cap_export.add_argument("file", help="a JSON file, or - for standard input")
    cap_export.add_argument("-o", "--out")
    cap_export.set_defaults(func=_cmd_cap_export)
    edxl = sub.add_parser("edxl", help="EDXL-DE 1.0 export").add_subparsers(
        dest="edxl", required=True)
    edxl_export = edxl.add_parser("export", help="a message as an EDXL-DE distribution")
    edxl_export.add_argument("file", help="a JSON file, or - for standard input")
    edxl_export.add_argument("-o", "--out")
    edxl_export.set_defaults(func=_cmd_edxl_export)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crisisgw", description="Crisis Exchange Gateway")
    p.add_argument("--version", action="version", version=f"crisisgw {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one node")
    run.add_argument("-c", "--config", required=True)
    run.add_argument("--log-format", choices=["auto", "json", "console"])
    run.add_argument("--log-level", default="info")
    run.add_argument("--instance", help="this instance's name, when several instances of "
                     "the node share a PostgreSQL ledger (default: the host name)")
    run.add_argument("--api-port", type=int, help="this instance's API port instead of "
                     "[api] port (several instances on one machine)")
    run.set_defaults(func=_cmd_run)

    send = sub.add_parser("send", help="submit a sitrep from a JSON file")
    send.add_argument("file")
    send.add_argument("--idempotency-key")
    _with_api(send)
    send.set_defaults(func=_cmd_send)

    status = sub.add_parser("status", help="delivery states of a message")
    status.add_argument("id")
    status.add_argument("--json", action="store_true")
    _with_api(status)
    status.set_defaults(func=_cmd_status)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys", required=True)
    gen = keys.add_parser("generate", help="create an Ed25519 signing key")
    gen.add_argument("--centre", required=True)
    gen.add_argument("--out", required=True, help="private key file to create (mode 0600)")
    gen.add_argument("--kid", help="key id (default: derived from centre and key)")
    gen.set_defaults(func=_cmd_keys_generate)
    rotate = keys.add_parser("rotate", help="new signing key, announced to every peer")
    _with_api(rotate)
    rotate.add_argument("--overlap-days", type=float, default=7.0,
                        help="how long peers still accept the previous key (default 7)")
    rotate.set_defaults(func=_cmd_keys_rotate)
    revoke = keys.add_parser("revoke", help="refuse a peer's compromised key at once")
    revoke.add_argument("peer")
    revoke.add_argument("kid")
    _with_api(revoke)
    revoke.set_defaults(func=_cmd_keys_revoke)
    show = keys.add_parser("show", help="print the node's public key and fingerprint")
    show.add_argument("-c", "--config", required=True)
    show.set_defaults(func=_cmd_keys_show)

    _add_demo(sub)

    _add_standards(sub)

    _add_operations(sub)
    add_federation(sub)
    add_bench(sub)
    add_exercise(sub, _with_api, _call)

    schemas = sub.add_parser("schemas", help="write the JSON Schemas of the wire objects")
    schemas.add_argument("--out", default="schemas")
    schemas.set_defaults(func=_cmd_schemas)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``crisisgw``."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GatewayError as exc:
        print(f"crisisgw: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
