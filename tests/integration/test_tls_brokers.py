"""Two centres, two RabbitMQ nodes, two CAs: every link over verified TLS, as in production.

BE-NCCN's inbox is on broker A, NL-NCC's on broker B; each broker has its own CA and
listens for AMQPS only. The centres join through the CLI (init, identity cards with the
broker's CA, grants, enrolment), NL-NCC publishing into BE-NCCN's inbox with a client
certificate (RabbitMQ's EXTERNAL mechanism) and BE-NCCN into NL-NCC's with a password.
The failure cases (wrong CA, expired certificate, host name mismatch, plaintext
downgrade, silent broker) each show their reason on /v1/peers, /metrics, the console and
the log, lose nothing, and clear when the certificate is renewed, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.config import load_settings, update_config
from tests.integration.brokers import BrokerNode, script, start_brokers
from tests.integration.harness import (
    EXAMPLE,
    Federation,
    NodeHandle,
    console_page,
    free_base_port,
    wait_until,
)

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
BE, NL = "BE-NCCN", "NL-NCC"


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"crisisgw {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def brokers() -> Iterator[list[BrokerNode]]:
    """Broker A (certificate for localhost, 127.0.0.1) and broker B (for broker-b.test,
    127.0.0.1), each with its own CA, TLS only."""
    base, nodes = start_brokers(("localhost", "127.0.0.1"), ("broker-b.test", "127.0.0.1"))
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)


def _schema(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text()))


def _join(root: Path, a: BrokerNode, b: BrokerNode) -> Federation:
    """BE-NCCN on broker A and NL-NCC on broker B join each other through the CLI."""
    ports = free_base_port(2)
    configs = {}
    for index, (centre, broker, name) in enumerate(((BE, a, "NCCN"), (NL, b, "NCC"))):
        vhost = f"crisisgw-{centre.lower()}"
        url = f"amqps://{centre}:{secrets.token_hex(12)}@127.0.0.1:{broker.port}/{vhost}"
        _cli("init", "--centre", centre, "--name", name, "--country", centre[:2],
             "--amqp-url", url, "--dir", str(root / centre), "--api-port", str(ports + index),
             "--broker-ca", str(broker.ca_file), "--rabbitmq-node", broker.node)
        configs[centre] = root / centre / "gateway.toml"
    cards = {c: root / f"{c}.card" for c in configs}
    for centre, path in configs.items():
        cards[centre].write_text(_cli("identity", "export", "-c", str(path)))
    # BE-NCCN lets NL-NCC in with a client certificate from broker A's CA (CN = the user).
    script("client", str(a.dir), f"{NL}@{BE}", str(root / "nl-at-be"))
    _cli("peers", "grant", NL, "-c", str(configs[BE]), "-o", str(root / "be-for-nl.json"),
         "--client-cert", str(root / "nl-at-be.pem"), "--client-key", str(root / "nl-at-be.key"),
         "--rabbitmq-node", a.node)
    _cli("peers", "grant", BE, "-c", str(configs[NL]), "-o", str(root / "nl-for-be.json"),
         "--rabbitmq-node", b.node)
    shown = _cli("peers", "add", str(cards[NL]), "-c", str(configs[BE]), "--credentials",
                 str(root / "nl-for-be.json"), "--yes")
    assert "broker CA certificate (SHA-256)" in shown
    _cli("peers", "add", str(cards[BE]), "-c", str(configs[NL]), "--credentials",
         str(root / "be-for-nl.json"), "--yes")
    for path in configs.values():
        update_config(path, lambda raw: raw.update(delivery={
            "retry_base_seconds": 0.2, "retry_cap_seconds": 1.0, "refused_delay_seconds": 1.0}))
    fed = Federation(root=root, prefix="")
    for index, (centre, path) in enumerate(configs.items()):
        fed.nodes[centre] = NodeHandle(centre=centre, config=path, port=ports + index,
                                       token=(path.parent / "api-token").read_text().strip(),
                                       settings=load_settings(path))
    return fed


@pytest.fixture(scope="module")
def pair(brokers: list[BrokerNode], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Federation]:
    """The two centres, joined and running."""
    fed = _join(tmp_path_factory.mktemp("tls-pair"), *brokers)
    fed.start()
    try:
        yield fed
    finally:
        fed.stop()


async def _send(fed: Federation, sender: str, to: str) -> str:
    status, answer = await fed.api(sender, "POST", "/v1/sitreps", {**EXAMPLE, "to": [to]})
    assert status == 202, answer
    return str(answer["id"])


async def _state(fed: Federation, sender: str, message_id: str) -> dict[str, Any]:
    _, view = await fed.api(sender, "GET", f"/v1/messages/{message_id}")
    return dict(view["recipients"][0])


async def _delivered(fed: Federation, sender: str, ids: list[str], timeout: float = 30) -> None:
    async def done() -> bool:
        states = [(await _state(fed, sender, i))["state"] for i in ids]
        return all(s in ("delivered", "acknowledged") for s in states)
    await wait_until(done, timeout, f"{len(ids)} messages from {sender} delivered")


async def _peer_problem(fed: Federation, centre: str, peer: str) -> dict[str, Any] | None:
    status, peers = await fed.api(centre, "GET", "/v1/peers")
    assert status == 200, peers
    row = next(p for p in peers["peers"] if p["id"] == peer)
    return row["link_problem"]


async def _wait_problem(fed: Federation, centre: str, peer: str, reason: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def shown() -> bool:
        problem = await _peer_problem(fed, centre, peer)
        seen["problem"] = problem
        return problem is not None and problem["tls"] == reason
    try:
        await wait_until(shown, 20, f"{centre}'s link to {peer} failing with {reason}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {seen.get('problem')}") from exc
    return dict(seen["problem"])


def _set_peer(fed: Federation, centre: str, peer: str, **fields: Any) -> None:
    """Change a peer entry in a running node's file (it reloads within a second)."""
    def change(raw: dict[str, Any]) -> None:
        entry = next(p for p in raw["peers"] if p["id"] == peer)
        entry.update(fields)
    update_config(fed.nodes[centre].config, change)


def _log_events(node: NodeHandle, event: str) -> list[dict[str, Any]]:
    out = []
    for line in node.log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == event:
                out.append(entry)
    return out


async def test_two_centres_exchange_across_two_brokers_over_tls(
        pair: Federation, brokers: list[BrokerNode]) -> None:
    """Sitreps both ways are delivered and acknowledged; every connection on both brokers
    is TLS; NL-NCC's publisher logs in to broker A with its client certificate."""
    await pair.wait_ready()
    be_to_nl = await _send(pair, BE, NL)
    nl_to_be = await _send(pair, NL, BE)
    await _delivered(pair, BE, [be_to_nl])
    await _delivered(pair, NL, [nl_to_be])
    status, _ = await pair.api(NL, "POST", f"/v1/messages/{be_to_nl}/ack")
    assert status == 200

    async def acknowledged() -> bool:
        return (await _state(pair, BE, be_to_nl))["state"] == "acknowledged"
    await wait_until(acknowledged, 20, "NL-NCC's acknowledgement at BE-NCCN")

    a, b = brokers
    on_a = {c["user"]: c for c in a.connections()}
    on_b = {c["user"]: c for c in b.connections()}
    assert set(on_a) == {BE, f"{NL}@{BE}"}, on_a
    assert set(on_b) == {NL, f"{BE}@{NL}"}, on_b
    assert all(c["ssl"] is True for c in [*on_a.values(), *on_b.values()])
    assert on_a[f"{NL}@{BE}"]["auth_mechanism"] == "EXTERNAL"
    assert f"CN={NL}@{BE}" in on_a[f"{NL}@{BE}"]["peer_cert_subject"]
    assert on_b[f"{BE}@{NL}"]["auth_mechanism"] == "PLAIN"
    _, metrics = await pair.api(BE, "GET", "/metrics")
    assert f'crisisgw_link_tls{{link="{NL}"}} 1.0' in metrics
    assert 'crisisgw_link_tls{link="inbox"} 1.0' in metrics


def test_cards_and_credentials_validate_against_the_published_schemas(pair: Federation) -> None:
    """What init, identity export and peers grant wrote matches schemas/ (and so what
    docs/PROTOCOL.md §15 specifies): the card with its TLS anchor, both credentials."""
    card_schema, cred_schema = _schema("identity-card"), _schema("credentials")
    for centre in (BE, NL):
        card = json.loads((pair.root / f"{centre}.card").read_text())
        jsonschema.Draft202012Validator(card_schema).validate(card)
        assert "BEGIN CERTIFICATE" in card["card"]["inbox"]["tls"]["ca"]
    external = json.loads((pair.root / "be-for-nl.json").read_text())
    password = json.loads((pair.root / "nl-for-be.json").read_text())
    for credentials in (external, password):
        jsonschema.Draft202012Validator(cred_schema).validate(credentials)
    assert external["url"].endswith("?auth=external")
    assert "client_certificate" in external
    assert "client_certificate" not in password


async def _sitreps_stay_queued(fed: Federation, ids: list[str], seconds: float) -> int:
    """While the link fails: nothing is lost or given up, and retries are paced. Returns
    the number of publish attempts made."""
    await asyncio.sleep(seconds)
    attempts = 0
    for message_id in ids:
        row = await _state(fed, BE, message_id)
        assert row["state"] == "queued", row
        attempts += row["attempts"]
    return attempts


async def test_a_wrong_ca_is_untrusted_shown_everywhere_and_fixed_by_a_reload(
        pair: Federation, brokers: list[BrokerNode]) -> None:
    """BE-NCCN pins broker A's CA for NL-NCC: untrusted. The reason is on /v1/peers, on
    /metrics, on the console overview and in the log; the sitrep stays queued with paced
    retries (no tight loop); pinning the right CA again delivers it, with no restart."""
    await pair.wait_ready()
    a, b = brokers
    be = pair.nodes[BE]
    pid = be.proc.pid if be.proc else None
    _set_peer(pair, BE, NL, tls={"ca": a.ca_pem})
    await asyncio.sleep(1.5)
    message_id = await _send(pair, BE, NL)
    problem = await _wait_problem(pair, BE, NL, "untrusted")
    assert "certificate" in problem["detail"]
    _, metrics = await pair.api(BE, "GET", "/metrics")
    assert f'crisisgw_link_tls_problem{{link="{NL}",reason="untrusted"}} 1.0' in metrics
    assert re.search(rf'crisisgw_tls_failures_total{{link="{NL}",reason="untrusted"}} [1-9]',
                     metrics)
    page = await console_page(pair, BE, "/console")
    assert "TLS certificate not trusted" in page
    assert any(e.get("reason") == "untrusted" and e.get("peer") == NL
               for e in _log_events(be, "peer_link_tls_failed"))
    attempts = await _sitreps_stay_queued(pair, [message_id], 4)
    assert attempts <= 6, f"{attempts} attempts in ~5 s: not paced"
    _set_peer(pair, BE, NL, tls={"ca": b.ca_pem})
    await _delivered(pair, BE, [message_id])
    assert await _peer_problem(pair, BE, NL) is None
    assert be.proc is not None
    assert be.proc.pid == pid


async def test_a_host_name_the_certificate_does_not_name_is_refused(
        pair: Federation, brokers: list[BrokerNode]) -> None:
    """Broker B's certificate is for broker-b.test and 127.0.0.1: reached as localhost,
    the link fails with hostname_mismatch; back on 127.0.0.1 it delivers."""
    await pair.wait_ready()
    _, b = brokers
    good = pair.nodes[BE].settings.peer(NL)
    assert good is not None
    url = good.inbox_url.get_secret_value()
    _set_peer(pair, BE, NL, inbox_url=url.replace("@127.0.0.1:", "@localhost:"))
    await asyncio.sleep(1.5)
    message_id = await _send(pair, BE, NL)
    await _wait_problem(pair, BE, NL, "hostname_mismatch")
    await _sitreps_stay_queued(pair, [message_id], 1)
    _set_peer(pair, BE, NL, inbox_url=url)
    await _delivered(pair, BE, [message_id])
    assert f"127.0.0.1:{b.port}/" in url


async def test_a_plaintext_downgrade_is_refused(pair: Federation) -> None:
    """amqp:// to a host that is not loopback is refused at reload (the error names the
    peer and the rule; the link keeps its TLS settings); an amqps:// link pointed at a
    plaintext port fails as not_tls instead of falling back."""
    await pair.wait_ready()
    be = pair.nodes[BE]
    good = be.settings.peer(NL)
    assert good is not None
    url = good.inbox_url.get_secret_value()
    before = len(_log_events(be, "config_reload_refused"))
    _set_peer_raw_unchecked(be.config, NL, inbox_url=url.replace("amqps://", "amqp://").replace(
        "@127.0.0.1:", "@broker-b.test:"))
    async def refused() -> bool:
        return len(_log_events(be, "config_reload_refused")) > before
    await wait_until(refused, 10, "BE-NCCN refusing the plaintext URL")
    error = _log_events(be, "config_reload_refused")[-1]["error"]
    assert f"peer {NL}" in error
    assert "tls-required" in error
    _set_peer(pair, BE, NL, inbox_url=url)  # the file is valid again
    message_id = await _send(pair, BE, NL)
    await _delivered(pair, BE, [message_id])

    # An amqps:// link that meets a plaintext AMQP port (the local broker's 5672).
    _set_peer(pair, BE, NL, inbox_url=re.sub(r"@127\.0\.0\.1:\d+/", "@127.0.0.1:5672/", url))
    await asyncio.sleep(1.5)
    message_id = await _send(pair, BE, NL)
    problem = await _wait_problem(pair, BE, NL, "not_tls")
    assert "nothing was sent in plaintext" in problem["detail"]
    _set_peer(pair, BE, NL, inbox_url=url)
    await _delivered(pair, BE, [message_id])


def _set_peer_raw_unchecked(config: Path, peer: str, **fields: Any) -> None:
    """Write a peer entry without validating it (as an operator's editor would)."""
    import tomllib  # noqa: PLC0415

    import tomli_w  # noqa: PLC0415

    raw = tomllib.loads(config.read_text())
    next(p for p in raw["peers"] if p["id"] == peer).update(fields)
    config.write_text(tomli_w.dumps(raw))


@contextlib.asynccontextmanager
async def _silent_listener() -> AsyncIterator[int]:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(4096):
                pass
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_broker_that_never_answers_is_a_handshake_timeout(pair: Federation) -> None:
    """TCP accepted, no TLS answer: handshake_timeout, not a hang and not 'unreachable'."""
    await pair.wait_ready()
    good = pair.nodes[BE].settings.peer(NL)
    assert good is not None
    url = good.inbox_url.get_secret_value()
    async with _silent_listener() as port:
        _set_peer(pair, BE, NL, inbox_url=re.sub(r"@127\.0\.0\.1:\d+/", f"@127.0.0.1:{port}/",
                                                 url))
        await asyncio.sleep(1.5)
        message_id = await _send(pair, BE, NL)
        await _wait_problem(pair, BE, NL, "handshake_timeout")
        _set_peer(pair, BE, NL, inbox_url=url)
    await _delivered(pair, BE, [message_id])


async def test_an_expired_certificate_then_its_renewal_without_a_restart(
        pair: Federation, brokers: list[BrokerNode]) -> None:
    """Broker B presents an expired certificate: BE-NCCN's link and NL-NCC's own inbox
    both fail as expired (NL-NCC is then not ready). Renewing broker B's certificate with
    deploy/broker-tls.sh (server, then reload) brings both back, no node restarted, and
    the sitreps sent meanwhile are delivered."""
    await pair.wait_ready()
    _, b = brokers
    pids = {c: n.proc.pid for c, n in pair.nodes.items() if n.proc}
    now = datetime.now(UTC)
    b.install_certificate(b.authority().issue(
        "broker-b.test", b.hosts, not_before=now - timedelta(days=400),
        not_after=now - timedelta(days=1)))
    b.close_connections()

    async def reconnected_or_failed() -> bool:
        _, peers = await pair.api(BE, "GET", "/v1/peers")
        return not next(p for p in peers["peers"] if p["id"] == NL)["link_up"]
    await wait_until(reconnected_or_failed, 10, "BE-NCCN's link to NL-NCC closed")
    ids = [await _send(pair, BE, NL)]
    await _wait_problem(pair, BE, NL, "expired")

    async def nl_inbox_expired() -> bool:
        status, ready = await pair.api(NL, "GET", "/readyz")
        return status == 503 and ready["checks"]["inbox"] is False and any(
            e.get("reason") == "expired"
            for e in _log_events(pair.nodes[NL], "inbox_tls_failed"))
    await wait_until(nl_inbox_expired, 20, "NL-NCC's inbox failing on the expired certificate")
    page = await console_page(pair, NL, "/console")
    assert "Our inbox on the broker is not connected: TLS certificate expired" in page
    ids.append(await _send(pair, BE, NL))
    await _sitreps_stay_queued(pair, ids, 2)

    b.renew()
    await _delivered(pair, BE, ids, timeout=45)
    await pair.wait_ready()
    assert await _peer_problem(pair, BE, NL) is None
    assert {c: n.proc.pid for c, n in pair.nodes.items() if n.proc} == pids


async def test_a_renewed_client_certificate_is_used_without_a_restart(
        pair: Federation, brokers: list[BrokerNode]) -> None:
    """NL-NCC's client certificate for broker A is replaced on disk: its next publish
    reconnects and broker A sees the new certificate."""
    await pair.wait_ready()
    a, _ = brokers
    nl = pair.nodes[NL]

    def nl_cert_validity() -> str:
        conns = [c for c in a.connections() if c["user"] == f"{NL}@{BE}"]
        return str(conns[0]["peer_cert_validity"]) if conns else ""

    await _delivered(pair, NL, [await _send(pair, NL, BE)])
    before = nl_cert_validity()
    assert before
    folder = nl.config.parent / "peer-certs"
    renewed = a.authority().issue(f"{NL}@{BE}", client=True,
                                  not_after=datetime.now(UTC) + timedelta(days=77))
    renewed.write(folder / f"{BE}.pem", folder / f"{BE}.key")
    time.sleep(0.05)
    await _delivered(pair, NL, [await _send(pair, NL, BE)])
    after = nl_cert_validity()
    assert after
    assert after != before
    assert _log_events(nl, "peer_link_certificates_renewed")
