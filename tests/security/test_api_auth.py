"""API authorisation (findings 11 and 15): scoped tokens, the client as the audit actor,
and a /metrics that never touches the ledger and can require a token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.adapters.stores.keys import current_signing_key
from gateway.app import Node
from gateway.config import BrokerSection, load_settings, update_config
from tests.integration.harness import EXAMPLE, Federation, wait_until

pytestmark = pytest.mark.broker
CENTRE = "DE-NW"


def _token(config: Path, client: str, *scopes: str) -> str:
    args = [a for s in scopes for a in ("--scope", s)]
    done = subprocess.run([sys.executable, "-m", "gateway", "tokens", "add", client, *args,
                           "-c", str(config)], capture_output=True, text=True, timeout=60,
                          check=True)
    return done.stdout.strip()


async def _status(fed: Federation, method: str, path: str, token: str,
                  body: Any = None) -> int:
    status, _ = await fed.api(CENTRE, method, path, body, token=token)
    return status


async def test_each_token_does_only_what_its_scopes_allow(federation: Federation) -> None:
    """A read token reads; a submit token submits; neither rotates keys, revokes a peer's
    key or publishes the directory (403 naming the scope); admin can."""
    await federation.wait_ready()
    config = federation.nodes[CENTRE].config
    reader = _token(config, "dashboard", "read")
    submitter = _token(config, "sitrep-system", "submit", "read")

    async def loaded() -> bool:
        return await _status(federation, "GET", "/v1/peers", submitter) == 200
    await wait_until(loaded, 15, "the node picking up the new tokens")
    assert await _status(federation, "GET", "/v1/messages", reader) == 200
    assert await _status(federation, "POST", "/v1/sitreps", reader,
                         {**EXAMPLE, "to": ["BE-NCCN"]}) == 403
    assert await _status(federation, "POST", "/v1/sitreps", submitter,
                         {**EXAMPLE, "to": ["BE-NCCN"]}) == 202
    for token in (reader, submitter):
        for path in ("/v1/keys/rotate", "/v1/directory/publish",
                     "/v1/peers/BE-NCCN/keys/BE-NCCN.x/revoke"):
            status, problem = await federation.api(CENTRE, "POST", path, {}, token=token)
            assert status == 403, path
            assert "admin scope" in problem["detail"]
    status, _ = await federation.api(CENTRE, "POST", "/v1/directory/publish", {})
    assert status == 202  # the demo's own token has every scope


async def test_a_bare_token_hash_from_an_older_config_is_not_admin(
        federation: Federation) -> None:
    """A token written the old way (a bare hash) keeps read, submit and acknowledge."""
    import hashlib  # noqa: PLC0415

    config = federation.nodes[CENTRE].config
    legacy = "legacy-token-value-for-the-test"
    update_config(config, lambda raw: raw["api"]["tokens"].__setitem__(
        "legacy", hashlib.sha256(legacy.encode()).hexdigest()))

    async def loaded() -> bool:
        return await _status(federation, "GET", "/v1/peers", legacy) == 200
    await wait_until(loaded, 15, "the node picking up the legacy token")
    assert await _status(federation, "POST", "/v1/keys/rotate", legacy, {}) == 403


async def test_the_audit_actor_is_the_client_not_the_body(federation: Federation) -> None:
    """An acknowledgement "by" someone is recorded as done by the token's client."""
    await federation.wait_ready()
    status, answer = await federation.api("BE-NCCN", "POST", "/v1/sitreps",
                                          {**EXAMPLE, "to": [CENTRE]})
    assert status == 202

    async def arrived() -> bool:
        _, inbox = await federation.api(CENTRE, "GET", "/v1/inbox?from=BE-NCCN&limit=200")
        return any(i["id"] == answer["id"] for i in inbox["items"])
    await wait_until(arrived, 20, "the sitrep at DE-NW")
    acker = _token(federation.nodes[CENTRE].config, "ack-system", "acknowledge", "read")

    async def loaded() -> bool:
        return await _status(federation, "GET", "/v1/peers", acker) == 200
    await wait_until(loaded, 15, "the acknowledging token")
    status, entry = await federation.api(CENTRE, "POST", f"/v1/messages/{answer['id']}/ack",
                                         {"by": "the director himself"}, token=acker)
    assert status == 200, entry
    assert entry["acknowledged_by"] == "the director himself"
    _, audit = await federation.api(CENTRE, "GET",
                                    f"/v1/audit?kind=message.acknowledged&subject={answer['id']}")
    (item,) = audit["items"]
    assert item["actor"] == "ack-system"
    assert item["data"]["by"] == "the director himself"


async def test_metrics_never_touch_the_ledger_and_can_need_a_token(
        federation: Federation, tmp_path: Path) -> None:
    """In a node whose ledger refuses the statistics query after start, /metrics still
    answers (the gauges come from the background refresh); with [api] metrics_token it
    needs a read token."""
    import aiohttp  # noqa: PLC0415

    source = federation.nodes["LU-HCPN"]
    settings = load_settings(source.config)
    # A clone of LU-HCPN that talks to nobody: no peers, its broker on a closed port.
    settings = settings.model_copy(update={
        "api": settings.api.model_copy(update={"port": source.port + 1000,
                                               "metrics_token": True}),
        "node": settings.node.model_copy(update={  # its key in use (it may have rotated)
            "data_dir": tmp_path / "data", "signing_key_file": current_signing_key(settings)[1],
            "signing_key_id": current_signing_key(settings)[0].kid}),
        "broker": BrokerSection(url=SecretStr("amqp://x:y@127.0.0.1:1/none")),
        "peers": ()})
    node = Node(settings)
    await node.start()
    try:
        async def refuse(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("a scrape touched the ledger")
        node.ledger.stats = refuse  # type: ignore[method-assign]  # what scrapes used to run
        url = f"http://127.0.0.1:{settings.api.port}/metrics"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                assert resp.status == 401
            for _ in range(50):
                async with http.get(url, headers={
                        "Authorization": f"Bearer {source.token}"}) as resp:
                    assert resp.status == 200
                    assert "crisisgw_inbox_consumer_up" in await resp.text()
    finally:
        await node.stop()
