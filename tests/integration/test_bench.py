"""``crisisgw bench --json`` runs end to end on a small budget (figures by hand: README)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.adapters.provision import rabbitmqctl
from tests.integration.harness import free_base_port
from tests.pg import ADMIN_URL

pytestmark = pytest.mark.broker


def test_bench_json_reports_ceiling_gateway_ratio_latency_drain_fanout_and_cost() -> None:
    """A small run prints every figure with sane values (the drain after a partition
    next to the steady rate) and leaves nothing on the broker."""
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "bench", "--json", "--messages", "60",
         "--concurrency", "8", "--rate", "40", "--latency-messages", "20", "--peers", "2",
         "--repeats", "1", "--base-port", str(free_base_port(16)), "--instances", "2",
         "--postgres", ADMIN_URL],
        capture_output=True, text=True, timeout=420, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert {"machine", "ceiling", "gateway", "latency", "ratio", "fanout"} <= set(result)
    assert result["machine"]["cpus"] >= 1
    assert result["ceiling"]["messages"] == 60
    assert result["ceiling"]["payload_bytes"] > 300  # a signed sitrep
    assert result["ceiling"]["msg_per_s"] > 0
    gateway = result["gateway"]
    assert gateway["messages"] == 60
    assert 0 < gateway["msg_per_s"] <= gateway["accepted_per_s"] * 1.01
    assert gateway["cpu_s_per_1000"] > 0
    assert gateway["peak_rss_mb"] > 10
    assert result["ratio"] == pytest.approx(
        gateway["msg_per_s"] / result["ceiling"]["msg_per_s"], abs=0.002)
    latency = result["latency"]
    assert latency["messages"] == 20
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    drain = result["drain"]
    assert drain["messages"] == 60
    assert 0 < drain["first_delivered_s"] <= drain["flash_done_by_s"] <= drain["drain_s"]
    assert drain["msg_per_s"] > 0
    assert result["drain_ratio"] == pytest.approx(
        drain["msg_per_s"] / gateway["msg_per_s"], abs=0.01)
    assert result["fanout"]["peers"] == 2
    assert 0 < result["fanout"]["best_s"] <= result["fanout"]["median_s"]
    multi = result["instances"]
    assert multi["ceiling"]["cpu_ms_per_operation"] > 0
    assert multi["operations_per_sitrep"] == {"a": 2, "b": 3}
    per_op = multi["ceiling"]["cpu_ms_per_operation"]
    assert multi["bound_ms"] == {"a": pytest.approx(4 * per_op, rel=0.01),
                                 "b": pytest.approx(6 * per_op, rel=0.01)}
    under = multi["floor"]
    assert set(under["a"]["parts"]) == {"http", "seal_sitrep", "verify_receipt", "amqp"}
    assert set(under["b"]["parts"]) == {"verify_sitrep", "seal_receipt", "amqp"}
    for node, ops in (("a", 2), ("b", 3)):
        parts = under[node]["parts"]
        assert all(v > 0 for v in parts.values()), parts
        assert parts["amqp"] == pytest.approx(ops * per_op, rel=0.01)
        assert under[node]["ms"] == pytest.approx(sum(parts.values()), abs=0.002)
    assert [(r["engine"], r["instances"]) for r in multi["rows"]] == [
        ("sqlite", 1), ("postgresql", 2)]
    for row in multi["rows"]:
        assert row["sitreps_per_s"] > 0
        for node in ("a", "b"):
            assert row[f"cpu_ms_per_sitrep_{node}"] > 0
            assert row[f"cpu_ratio_{node}"] == pytest.approx(
                row[f"cpu_ms_per_sitrep_{node}"] / row[f"raw_client_cpu_ms_{node}"], rel=0.02)
    assert "bench" not in rabbitmqctl("list_vhosts", "--no-table-headers")
