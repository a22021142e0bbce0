"""The HTTP API's refusals: authentication, validation, recipients, size, content type."""

from __future__ import annotations

import json

import pytest

from tests.integration.harness import EXAMPLE, Federation

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("token", ["", "wrong-token"])
async def test_missing_or_wrong_token_is_401(federation: Federation, token: str) -> None:
    """No or a wrong bearer token gives 401 problem+json and stores nothing."""
    await federation.wait_ready()
    status, body = await federation.api("BE-NCCN", "POST", "/v1/sitreps", EXAMPLE, token=token)
    assert status == 401
    assert body["status"] == 401
    status, body = await federation.api("BE-NCCN", "GET", "/v1/messages", token=token)
    assert status == 401


async def test_invalid_body_names_each_bad_field(federation: Federation) -> None:
    """A body with several bad fields gets a 422 naming every one of them."""
    await federation.wait_ready()
    bad = {"to": ["NL-NCC"], "tlp": "PURPLE", "sitrep": {
        "incident": {"id": "BE-1", "title": "x"}, "report_number": 0, "severity": "bad",
        "summary": "s"}}
    status, body = await federation.api("BE-NCCN", "POST", "/v1/sitreps", bad)
    assert status == 422
    fields = {e["field"] for e in body["errors"]}
    assert {"tlp", "sitrep.report_number", "sitrep.severity"} <= fields


async def test_unknown_recipient_is_422_naming_it(federation: Federation) -> None:
    """An unknown centre or group in `to` is a 422 that names it."""
    await federation.wait_ready()
    status, body = await federation.api("BE-NCCN", "POST", "/v1/sitreps",
                                        {**EXAMPLE, "to": ["NL-NCC", "XX-NOPE", "martians"]})
    assert status == 422
    assert "XX-NOPE" in body["detail"]
    assert "martians" in body["detail"]


async def test_group_name_expands_to_its_members(federation: Federation) -> None:
    """`to: ["benelux"]` from BE-NCCN addresses NL-NCC and LU-HCPN."""
    await federation.wait_ready()
    status, body = await federation.api("BE-NCCN", "POST", "/v1/sitreps",
                                        {**EXAMPLE, "to": ["benelux"]})
    assert status == 202
    _, view = await federation.api("BE-NCCN", "GET", f"/v1/messages/{body['id']}")
    assert sorted(r["centre"] for r in view["recipients"]) == ["LU-HCPN", "NL-NCC"]


@pytest.mark.parametrize(
    ("raw", "status", "slug"),
    [
        (b'{"to": ["NL-NCC"], "to": ["LU-HCPN"]}', 400, "not_ijson"),
        (b'{"to": NaN}', 400, "not_ijson"),
        (b'{"n": 9007199254740993}', 400, "not_ijson"),
        (b'{"s": "\\ud800"}', 400, "not_ijson"),
        (b"[" * 5000, 400, "not_ijson"),
        (b"{not json", 400, "not_ijson"),
    ],
)
async def test_non_ijson_bodies_are_400(federation: Federation, raw: bytes, status: int,
                                        slug: str) -> None:
    """Duplicate keys, NaN, big integers, lone surrogates, deep nesting: 400, no crash."""
    await federation.wait_ready()
    got, body = await federation.api("BE-NCCN", "POST", "/v1/sitreps", raw=raw)
    assert got == status
    assert body["type"].endswith(slug)


async def test_oversized_body_is_413_with_the_limit(federation: Federation) -> None:
    """A body above the limit gets 413 stating the limit."""
    await federation.wait_ready()
    big = b'{"x": "' + b"a" * (300 * 1024) + b'"}'
    status, body = await federation.api("BE-NCCN", "POST", "/v1/sitreps", raw=big)
    assert status == 413
    assert "262144" in body["detail"]


async def test_wrong_content_type_is_415(federation: Federation) -> None:
    """A form-encoded body is refused with 415."""
    await federation.wait_ready()
    status, _ = await federation.api("BE-NCCN", "POST", "/v1/sitreps", raw=b"a=b",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415


async def test_openapi_and_probes(federation: Federation) -> None:
    """OpenAPI 3.1 document, /healthz, /readyz and /metrics answer."""
    await federation.wait_ready()
    status, doc = await federation.api("BE-NCCN", "GET", "/v1/openapi.json", token="")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    assert "/v1/sitreps" in doc["paths"]
    assert (await federation.api("BE-NCCN", "GET", "/healthz"))[0] == 200
    assert (await federation.api("BE-NCCN", "GET", "/readyz"))[0] == 200
    status, metrics = await federation.api("BE-NCCN", "GET", "/metrics")
    assert status == 200
    assert "crisisgw_inbox_consumer_up 1.0" in metrics


async def test_peers_lists_pinned_keys(federation: Federation) -> None:
    """GET /v1/peers lists the three peers with their key ids and fingerprints."""
    await federation.wait_ready()
    status, body = await federation.api("BE-NCCN", "GET", "/v1/peers")
    assert status == 200
    assert sorted(p["id"] for p in body["peers"]) == ["DE-NW", "LU-HCPN", "NL-NCC"]
    assert all(p["keys"][0]["fingerprint"] for p in body["peers"])


async def test_no_secret_reaches_a_log_line(federation: Federation) -> None:
    """Broker passwords and API tokens never appear in any node's log."""
    await federation.wait_ready()
    secrets = json.loads((federation.root / ".secrets.json").read_text()).values()
    tokens = [node.token for node in federation.nodes.values()]
    for node in federation.nodes.values():
        text = node.log.read_text(errors="replace")
        assert "node_started" in text
        for secret in [*secrets, *tokens]:
            assert secret not in text, f"a secret leaked into {node.log}"


async def test_tlp_red_to_a_group_is_refused_naming_the_rule(federation: Federation) -> None:
    """TLP:RED to `benelux` is a 422 naming red-named-only; to named centres it is accepted."""
    await federation.wait_ready()
    status, body = await federation.api("BE-NCCN", "POST", "/v1/sitreps",
                                        {**EXAMPLE, "to": ["benelux"], "tlp": "RED"})
    assert status == 422
    assert "red-named-only" in body["detail"]
    assert {e["rule"] for e in body["errors"]} == {"red-named-only"}
    status, body = await federation.api("BE-NCCN", "POST", "/v1/sitreps",
                                        {**EXAMPLE, "to": ["NL-NCC", "LU-HCPN"], "tlp": "RED"})
    assert status == 202, body
