"""A centre's broker as a 3-node RabbitMQ cluster: the quorum leader's node stops mid-stream.

BE-NCCN is the HA centre: two instances over one PostgreSQL ledger (a server of this
module's own), its inbox a quorum queue replicated on three RabbitMQ nodes (one CA, a
TLS listener each), the instances and NL-NCC's link to it given all three addresses.
NL-NCC is one node on SQLite with a broker node of its own. The centres join through
the CLI, as in production. Sitreps flow both ways while the node that leads BE-NCCN's
inbox queue is stopped; the counts table holds both directions, and BE-NCCN's audit
chain is intact afterwards.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_settings, update_config
from tests.faults.test_ha import _case, _chain_intact, _ready
from tests.integration.brokers import BrokerNode, script, start_brokers, start_cluster
from tests.integration.ha import HaCentre
from tests.integration.harness import Federation, NodeHandle, free_base_port, wait_until
from tests.pg import Postgres, PrivateServer

pytestmark = pytest.mark.broker
BE, NL = "BE-NCCN", "NL-NCC"
VHOST = "crisisgw-be-nccn"


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"crisisgw {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def brokers() -> Iterator[tuple[list[BrokerNode], BrokerNode]]:
    """BE-NCCN's 3-node cluster and NL-NCC's single node, started at the same time."""
    with ThreadPoolExecutor(2) as pool:
        cluster_job = pool.submit(start_cluster, 3)
        single_job = pool.submit(start_brokers, ("localhost", "127.0.0.1"))
        cluster_base, cluster = cluster_job.result()
        single_base, (single,) = single_job.result()
    try:
        yield cluster, single
    finally:
        for node in (*cluster, single):
            node.stop()
        shutil.rmtree(cluster_base, ignore_errors=True)
        shutil.rmtree(single_base, ignore_errors=True)


def _other_addresses(url: str, nodes: list[BrokerNode]) -> list[str]:
    """``url`` (to the first node) as it reads for each of the other nodes."""
    first = f"127.0.0.1:{nodes[0].port}"
    assert first in url
    return [url.replace(first, f"127.0.0.1:{n.port}") for n in nodes[1:]]


def _join(root: Path, cluster: list[BrokerNode], single: BrokerNode, pg_url: str) -> Federation:
    """BE-NCCN on the cluster and NL-NCC on its node join each other through the CLI;
    then each is given the cluster's other addresses."""
    ports = free_base_port(2)
    configs = {}
    for index, (centre, broker, name) in enumerate(((BE, cluster[0], "NCCN"),
                                                    (NL, single, "NCC"))):
        vhost = f"crisisgw-{centre.lower()}"
        url = f"amqps://{centre}:{secrets.token_hex(12)}@127.0.0.1:{broker.port}/{vhost}"
        _cli("init", "--centre", centre, "--name", name, "--country", centre[:2],
             "--amqp-url", url, "--dir", str(root / centre), "--api-port", str(ports + index),
             "--broker-ca", str(broker.ca_file), "--rabbitmq-node", broker.node)
        configs[centre] = root / centre / "gateway.toml"
    cards = {c: root / f"{c}.card" for c in configs}
    for centre, path in configs.items():
        cards[centre].write_text(_cli("identity", "export", "-c", str(path)))
    _cli("peers", "grant", NL, "-c", str(configs[BE]), "-o", str(root / "be-for-nl.json"),
         "--rabbitmq-node", cluster[0].node)
    _cli("peers", "grant", BE, "-c", str(configs[NL]), "-o", str(root / "nl-for-be.json"),
         "--rabbitmq-node", single.node)
    _cli("peers", "add", str(cards[NL]), "-c", str(configs[BE]), "--credentials",
         str(root / "nl-for-be.json"), "--yes")
    _cli("peers", "add", str(cards[BE]), "-c", str(configs[NL]), "--credentials",
         str(root / "be-for-nl.json"), "--yes")
    delivery = {"retry_base_seconds": 0.2, "retry_cap_seconds": 1.0,
                "refused_delay_seconds": 1.0, "publish_timeout_seconds": 3.0}

    def be(raw: dict[str, Any]) -> None:
        raw["broker"]["failover_urls"] = _other_addresses(raw["broker"]["url"], cluster)
        raw["ledger"] = {"url": pg_url}
        raw["delivery"] = {**raw.get("delivery", {}), **delivery}

    def nl(raw: dict[str, Any]) -> None:
        peer = next(p for p in raw["peers"] if p["id"] == BE)
        peer["inbox_failover_urls"] = _other_addresses(peer["inbox_url"], cluster)
        raw["delivery"] = {**raw.get("delivery", {}), **delivery}

    update_config(configs[BE], be)
    update_config(configs[NL], nl)
    fed = Federation(root=root, prefix="")
    for index, (centre, path) in enumerate(configs.items()):
        fed.nodes[centre] = NodeHandle(centre=centre, config=path, port=ports + index,
                                       token=(path.parent / "api-token").read_text().strip(),
                                       settings=load_settings(path))
    return fed


@pytest.fixture(scope="module")
def ha_cluster(brokers: tuple[list[BrokerNode], BrokerNode],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaCentre]:
    cluster, single = brokers
    server = PrivateServer()
    postgres = Postgres(server.admin_url)
    fed = _join(tmp_path_factory.mktemp("ha-broker"), cluster, single, postgres.ledger_url())
    centre = HaCentre(fed, BE, count=2)
    try:
        fed.start(NL)
        centre.start()
        yield centre
    finally:
        centre.close()
        fed.stop()
        postgres.drop()
        server.destroy()


def _leader(cluster: list[BrokerNode]) -> BrokerNode:
    """The node that leads BE-NCCN's inbox queue (asked of any running node)."""
    for node in cluster:
        done = subprocess.run(["rabbitmqctl", "-q", "-n", node.node, "list_queues", "-p",
                               VHOST, "name", "leader", "members", "--formatter", "json"],
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            continue
        for queue in json.loads(done.stdout or "[]"):
            if queue["name"] == "crisisgw.inbox":
                assert len(queue["members"]) == 3, queue  # replicated on every node
                return next(n for n in cluster if n.node == queue["leader"])
    raise AssertionError("no node knows BE-NCCN's inbox queue")


async def test_stop_of_the_quorum_leaders_broker_node_mid_stream(
        ha_cluster: HaCentre, brokers: tuple[list[BrokerNode], BrokerNode]) -> None:
    """The leader's node stops: a follower takes the lead, BE-NCCN's instances and
    NL-NCC's link move to the other addresses, nothing is lost or doubled."""
    ha = ha_cluster
    cluster, _ = brokers
    await _ready(ha)
    leader = _leader(cluster)

    async def strike() -> None:
        await asyncio.to_thread(leader.stop)

    await _case(ha, 106, "HA: stop of the quorum leader's broker node", "HA-BROKER", strike)
    survivors = [n for n in cluster if n is not leader]
    assert _leader(survivors) in survivors
    _chain_intact(ha)
    # The stopped node comes back and rejoins; the queue has its three members again.
    script("node-start", str(leader.dir), leader.name, str(leader.port), str(leader.dist_port))

    async def three_again() -> bool:
        try:
            _leader(cluster)
        except AssertionError:
            return False
        return True
    await wait_until(three_again, 60, "the inbox queue on three nodes again")
