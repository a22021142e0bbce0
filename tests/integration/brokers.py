"""Extra RabbitMQ nodes for tests: a centre's own broker, TLS only, with its own CA.

Each node is started with ``deploy/broker-tls.sh node-start`` (the script operators
use), under a folder the rabbitmq user can read, and stopped afterwards. Its CA and
certificate come from the same script; certificates the script would refuse to make
(expired, for another host) are issued with :mod:`tests.pki` from the node's CA key.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.adapters.provision import Definitions
from tests.integration.harness import free_base_port
from tests.pki import Authority, Issued

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "broker-tls.sh"


def script(*args: str, timeout: float = 180) -> str:
    """Run deploy/broker-tls.sh; fail the test with its output when it fails."""
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"broker-tls.sh {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


@dataclass
class BrokerNode:
    """One RabbitMQ node of the tests with a TLS listener on 127.0.0.1 only."""

    name: str
    dir: Path
    port: int
    dist_port: int
    hosts: tuple[str, ...]

    @property
    def node(self) -> str:
        """The Erlang node name (for rabbitmqctl -n)."""
        return f"{self.name}@localhost"

    @property
    def ca_file(self) -> Path:
        """The node's CA certificate: its trust anchor."""
        return self.dir / "ca.pem"

    @property
    def ca_pem(self) -> str:
        """The CA certificate as text (what an identity card carries)."""
        return self.ca_file.read_text(encoding="ascii")

    def authority(self) -> Authority:
        """The node's CA (made by the script) as a tests.pki issuer."""
        key = load_pem_private_key((self.dir / "private" / "ca.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return Authority(name=self.name, key=key,
                         cert=x509.load_pem_x509_certificate(self.ca_file.read_bytes()))

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against this node."""
        done = subprocess.run(["rabbitmqctl", "-q", "-n", self.node, *args],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def connections(self) -> list[dict[str, Any]]:
        """Open client connections: user, ssl, auth mechanism, peer certificate."""
        out = self.ctl("list_connections", "user", "ssl", "auth_mechanism",
                       "peer_cert_subject", "peer_cert_validity", "--formatter", "json")
        return list(json.loads(out or "[]"))

    def close_connections(self) -> None:
        """Close every client connection (they reconnect, with a new handshake)."""
        self.ctl("close_all_connections", "--global", "test")

    def install_certificate(self, issued: Issued) -> None:
        """Replace the broker's certificate and make new connections use it (renewal)."""
        issued.write(self.dir / "server.pem", self.dir / "server.key", owner="rabbitmq")
        script("reload", self.name)

    def renew(self) -> None:
        """A fresh, valid certificate from the node's CA, as the script makes them."""
        script("server", str(self.dir), *self.hosts)
        script("reload", self.name)

    def provision(self, defs: Definitions) -> None:
        """Import vhosts, users and permissions into this node."""
        defs.apply(self.node)

    def stop(self) -> None:
        """Stop the node (its data folder is removed with the test's folder)."""
        subprocess.run(["bash", str(SCRIPT), "node-stop", str(self.dir), self.name],
                       capture_output=True, timeout=120, check=False)


def start_brokers(*hosts: tuple[str, ...]) -> tuple[Path, list[BrokerNode]]:
    """Make one CA and node per entry of ``hosts`` (the names its certificate is for)
    and start them in parallel; returns their common folder (remove it after stopping
    them) and the nodes."""
    base = Path(tempfile.mkdtemp(prefix="crisisgw-brokers-"))
    base.chmod(0o755)  # the rabbitmq user must reach the node folders
    tag = secrets.token_hex(2)
    nodes = []
    for index, names in enumerate(hosts):
        ports = free_base_port(2)
        node = BrokerNode(name=f"tls{chr(97 + index)}{tag}", dir=base / f"broker{index}",
                          port=ports, dist_port=ports + 1, hosts=names)
        script("ca", str(node.dir), f"test broker {index}")
        script("server", str(node.dir), *names)
        nodes.append(node)
    try:
        _start_all(nodes)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return base, nodes


def _start_all(nodes: list[BrokerNode]) -> None:
    """Start ``nodes`` in parallel with deploy/broker-tls.sh node-start; if one fails,
    stop them all and fail with its output."""
    procs = [subprocess.Popen(["bash", str(SCRIPT), "node-start", str(n.dir), n.name,
                               str(n.port), str(n.dist_port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in nodes]
    failed = []
    for node, proc in zip(nodes, procs, strict=True):
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            failed.append(f"{node.name}: {out}")
    if failed:
        for node in nodes:
            node.stop()
        raise AssertionError("broker nodes did not start:\n" + "\n".join(failed))


def start_cluster(size: int = 3, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
                  ) -> tuple[Path, list[BrokerNode]]:
    """One centre's broker as a cluster of ``size`` RabbitMQ nodes on this machine: one
    CA and certificate, a TLS listener per node, the nodes joined to the first (with
    deploy/broker-tls.sh). Returns the folder (remove it after stopping them) and the
    nodes, the first one first."""
    base = Path(tempfile.mkdtemp(prefix="crisisgw-cluster-"))
    base.chmod(0o755)
    tag = secrets.token_hex(2)
    folder = base / "broker"
    script("ca", str(folder), "test broker cluster")
    script("server", str(folder), *hosts)
    nodes = []
    for index in range(size):
        ports = free_base_port(2)
        nodes.append(BrokerNode(name=f"q{index + 1}{tag}", dir=folder, port=ports,
                                dist_port=ports + 1, hosts=hosts))
    try:
        _start_all(nodes)
        for node in nodes[1:]:
            script("cluster-join", node.name, nodes[0].name)
    except BaseException:
        for node in nodes:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)
        raise
    return base, nodes
